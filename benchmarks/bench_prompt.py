"""Prompt classification speed: `predict_logits` of a `PromptClassifier` (ours) vs the bare forward pass over the same prompts.

SmolLM2-135M-Instruct with the `sentiment` task's default prompt (`clvq_nb.models.PROMPTS`), on --texts test sentences
(a stratified, seeded sample, as `--limit` draws it). Ours is the whole call: tokenizing each text into the prompt,
batching by length, the LM's body, and its head on each text's last token only. The bare pass is the LM's body alone
(`base_model`) over the very same prompt token ids, in the same length-sorted batches of 64, already tokenized and
padded; the full causal-LM pass (its head at every position) is shown for reference. Each variant runs --repeats times,
interleaved after one warm-up batch, and the fastest run counts. Also the zero-shot accuracy on these texts.
Writes benchmarks/results/prompt.json.
Usage: python benchmarks/bench_prompt.py [--texts 400] [--threads 2] [--repeats 2]
"""
import argparse, json, os, platform, time
from pathlib import Path
import numpy as np, torch
from clvq_nb.data import load_task, stratified_sample
from clvq_nb.models import PROMPTS, collate, encode, max_tokens, predict_logits, prompt_model

root = Path(__file__).resolve().parent.parent

def seconds(f) -> float:
    "Wall-clock seconds of one call of `f`."
    t = time.perf_counter(); f(); return time.perf_counter() - t

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--texts', type=int, default=400); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--repeats', type=int, default=2); ap.add_argument('--batch_size', type=int, default=64)
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    task = load_task('sentiment'); test = stratified_sample(task['test'], a.texts, 42); texts, y = list(test['text']), np.asarray(test['label'])
    template, words = PROMPTS['sentiment'][0], list(PROMPTS['sentiment'][1].values())
    clf, tok = prompt_model('smollm2', template, words, task['train'].features['label'].names, device='cpu')
    ids = encode(tok, texts, max_tokens(clf, tok)); order = np.argsort([len(i) for i in ids], kind='stable')
    batches = [collate([ids[j] for j in order[i:i + a.batch_size]], tok.pad_token_id) for i in range(0, len(ids), a.batch_size)]
    out = {}  # ours keeps its logits, for the accuracy
    variants = dict(ours=lambda: out.update(logits=predict_logits(clf, tok, texts, batch_size=a.batch_size)),
                    bare_forward=lambda: [clf.base_model(**b) for b in batches], full_lm_forward=lambda: [clf.lm(**b) for b in batches])
    load = os.getloadavg(); runs = {k: [] for k in variants}
    with torch.inference_mode():
        clf.base_model(**batches[0])  # warm-up
        for _ in range(a.repeats):
            for k, f in variants.items(): runs[k].append(seconds(f))
    logits = out['logits']
    best = {k: min(v) for k, v in runs.items()}
    res = dict(model='smollm2', task='sentiment', split='test', texts=len(texts), prompt_tokens_mean=round(float(np.mean([len(i) for i in ids])), 1),
               template=template, label_words=words, batch_size=a.batch_size, threads=a.threads, repeats=a.repeats,
               load_before=load, load_after=os.getloadavg(), machine=platform.machine(), torch=torch.__version__,
               seconds={k: [round(s, 2) for s in v] for k, v in runs.items()}, texts_per_second={k: round(len(texts) / s, 2) for k, s in best.items()},
               cost_over_bare_forward=round(best['ours'] / best['bare_forward'], 3), full_lm_over_bare_forward=round(best['full_lm_forward'] / best['bare_forward'], 3),
               zero_shot_accuracy=round(float((logits.argmax(-1) == y).mean()), 4), predicted_share={n: round(float((logits.argmax(-1) == i).mean()), 4) for i, n in enumerate(clf.config.id2label.values())})
    print(json.dumps(res, indent=1))
    (root/'benchmarks'/'results'/'prompt.json').write_text(json.dumps(res, indent=1) + '\n')
