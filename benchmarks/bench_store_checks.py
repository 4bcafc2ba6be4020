"""What the store checks cost: sha256 of a vector file (what `extract` compares before it reuses a store) and the NaN/inf
scan of `first_nonfinite` (what an `ActivationStore` runs on the first read of each vector file), on a float16 file of
MiniLM's width (384), against reading the file once (`np.sum` over it).

    python benchmarks/bench_store_checks.py [--mib 512] [--rounds 3]

The file is written first, so it is in the page cache: the figures are the checks' own cost, not the disk's.
Writes benchmarks/results/store_checks.json (medians over the rounds) and prints it.
"""
import argparse, json, platform, statistics, tempfile, time
from pathlib import Path
import numpy as np, torch
from clvq_nb.core import sha256_file
from clvq_nb.extract import first_nonfinite

def timed(f) -> float:
    t = time.perf_counter(); f(); return time.perf_counter() - t

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--mib', type=int, default=512); ap.add_argument('--rounds', type=int, default=3)
    a = ap.parse_args(); torch.set_num_threads(1); d = 384; n = (a.mib << 20) // (2 * d)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp)/'vectors.npy'
        np.lib.format.open_memmap(p, 'w+', np.float16, (n, d))[:] = np.random.default_rng(0).normal(size=(1, d)).astype(np.float16)
        v = np.load(p, mmap_mode='r')
        runs = {k: [] for k in ('read', 'sha256', 'nan_scan')}
        for _ in range(a.rounds):
            runs['read'].append(timed(lambda: v.sum(dtype=np.float32)))
            runs['sha256'].append(timed(lambda: sha256_file(p)))
            runs['nan_scan'].append(timed(lambda: first_nonfinite(v)))
    med = {k: statistics.median(t) for k, t in runs.items()}
    res = dict(mib=a.mib, rows=n, width=d, dtype='float16', rounds=a.rounds, machine=platform.processor() or platform.machine(),
               seconds=med, mib_per_s={k: a.mib / t for k, t in med.items()})
    out = Path(__file__).parent/'results'/'store_checks.json'; out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
