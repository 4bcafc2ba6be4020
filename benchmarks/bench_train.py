"""Training-epoch speed: length-bucketed batches (ours) vs plain padded batches in sentence order (the release).

MiniLM layer 4 -> 6 word vectors of ERASER movie training sentences (../shared/data/eraser-movie/train.txt),
the paper's model (6-layer decoder, K = 400, batch 128) and the demo preset, torch on --threads threads.
Writes benchmarks/results/train.json. Usage: python benchmarks/bench_train.py [--sentences 2000] [--threads 2]
"""
import argparse, json, os, platform, time
from pathlib import Path
import datasets, numpy as np, torch
from clvq_nb.extract import extract
from clvq_nb.models import load_model
from clvq_nb.train import SentencePairs, preset
from clvq_nb.clvq import CLVQVAE

root = Path(__file__).resolve().parent.parent

def eraser_store(n:int):
    "MiniLM layers 4 and 6 of the first n ERASER training sentences (cached in the store cache)."
    lines = [l.strip() for l in (root.parent/'shared'/'data'/'eraser-movie'/'train.txt').read_text().splitlines() if l.strip()][:n]
    lm, tok = load_model('minilm', device='cpu')
    return extract(lm, tok, datasets.Dataset.from_dict({'text': lines}), [4, 6], task='eraser-train', split=f'first-{n}', label_col=None, verbose=False)

def epoch_seconds(store, cfg, shuffle:bool, bucket:bool) -> dict:
    "Time one training epoch over all sentences with the given batch order; return seconds and tokens/s."
    pairs = SentencePairs(store, cfg.layer_in, cfg.layer_out)
    model = CLVQVAE(store.dims[4], store.dims[6], cfg.model)
    model.init_codebook(pairs.word_sample(50_000, 0)); model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    real = padded = 0; t = time.perf_counter()
    for x, y, mask in pairs.batches(cfg.batch_size, seed=0, epoch=0, shuffle=shuffle, bucket=bucket):
        out = model(x, mask, y); opt.zero_grad(set_to_none=True); out.loss.backward(); opt.step()
        real += int(mask.sum()); padded += mask.numel()
    s = time.perf_counter() - t
    return dict(seconds=round(s, 2), tokens_per_s=round(real / s, 1), padding_overhead=round(padded / real, 3))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--sentences', type=int, default=2000); ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    store = eraser_store(a.sentences)
    res = dict(sentences=len(store), words=store.num_words, threads=a.threads, load_before=os.getloadavg(), machine=platform.machine(),
               torch=torch.__version__)
    paper = preset('paper', 4, 6)
    res['paper_bucketed'] = epoch_seconds(store, paper, shuffle=True, bucket=True)
    res['paper_release_order'] = epoch_seconds(store, paper, shuffle=False, bucket=False)
    res['demo_bucketed'] = epoch_seconds(store, preset('demo', 4, 6), shuffle=True, bucket=True)
    res['ratio_bucketed_vs_release'] = round(res['paper_bucketed']['seconds'] / res['paper_release_order']['seconds'], 3)
    res['load_after'] = os.getloadavg()
    out = root/'benchmarks'/'results'; out.mkdir(parents=True, exist_ok=True)
    (out/'train.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
