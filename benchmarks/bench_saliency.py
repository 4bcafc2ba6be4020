"""Saliency speed: Integrated Gradients with the layers below l skipped in the fed passes (ours) vs run and discarded.

The default run's setting: MiniLM fine-tuned on `sentiment` (cached by `finetune`), the first --texts test sentences,
layer 4 of 6, 32 IG steps, batches of 8 texts, torch on --threads threads. Both variants must pick the same salient
words (the attributions agree to float32 round-off). Writes benchmarks/results/saliency.json.
Usage: python benchmarks/bench_saliency.py [--texts 400] [--threads 2]
"""
import argparse, json, os, platform, time
from pathlib import Path
from unittest import mock
import numpy as np, torch
import clvq_nb.faithfulness as fa
from clvq_nb.data import load_task
from clvq_nb.models import finetune, load_model

root = Path(__file__).resolve().parent.parent

def timed(model, tok, texts, layer, steps, skip:bool) -> tuple:
    "Seconds and attributions of `word_attributions`, with the lower layers skipped or (patched off) run."
    with mock.patch.object(fa, '_skippable', fa._skippable if skip else (lambda model, layer: [])):
        t = time.perf_counter(); wa = fa.word_attributions(model, tok, texts, layer, steps=steps, progress=False)
    return time.perf_counter() - t, wa

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--texts', type=int, default=400); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--layer', type=int, default=4); ap.add_argument('--steps', type=int, default=32)
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    texts = load_task('sentiment')['test']['text'][:a.texts]
    model, tok = load_model(finetune('minilm', 'sentiment'), num_labels=2, device='cpu')
    load = os.getloadavg()
    (s_run, wa_run), (s_skip, wa_skip) = (timed(model, tok, texts, a.layer, a.steps, skip) for skip in (False, True))
    res = dict(texts=len(texts), layer=a.layer, layers=model.config.num_hidden_layers, steps=a.steps, threads=a.threads,
               load_before=load, machine=platform.machine(), torch=torch.__version__,
               seconds_lower_layers_run=round(s_run, 2), seconds_lower_layers_skipped=round(s_skip, 2), speedup=round(s_run / s_skip, 2),
               same_salient_words=bool((wa_run.salient == wa_skip.salient).all()),
               max_abs_attribution_difference=float(np.abs(wa_run.scores - wa_skip.scores).max()))
    print(json.dumps(res, indent=1))
    (root/'benchmarks'/'results'/'saliency.json').write_text(json.dumps(res, indent=1) + '\n')
