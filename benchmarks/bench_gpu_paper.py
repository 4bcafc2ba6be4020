"""The release's exact settings (`--preset paper`) on ERASER movies, timed stage by stage, on a GPU when there is one.

Settings: the base-size MPNet (12 x 768, layers 8 -> 12, the paper's own pair), SmolLM2-135M (30 x 576, layers 20 -> 30,
last-token sentence vectors) and MiniLM (6 x 384, layers 4 -> 6: the pair of notebook 13's CPU tables, for a like-for-like
speed ratio). Each follows the release's protocol as notebook 13's fair table does (`clvq_nb.sweeps.eraser_stores`): a
`sentiment` classifier, the first 800 sentences of train.txt to train on, the 856 labelled sentences of dev.json to judge.
Stages: fine-tune the classifier (cached), extract both layers, train the paper preset, find each test sentence's salient
word (Integrated Gradients), and measure the CLVQ-VAE by the fair table's probe and model-intervention conditions
(`clvq_nb.sweeps.faithfulness_row`). Training is also timed per epoch (the median of its epochs).

    python benchmarks/bench_gpu_paper.py                                   # all settings, seed 42, GPU if there is one
    python benchmarks/bench_gpu_paper.py --settings minilm --device cpu    # the same on the CPU
    python benchmarks/bench_gpu_paper.py --settings minilm --epochs 1 --out /tmp/check.csv   # a quick look

Appends one row per (setting, seed, device) to benchmarks/results/gpu_paper.csv; rows already there are skipped, and
every stage is cached (`CLVQ_CACHE`), so an interrupted run resumes. A stage's seconds time this call: a stage the cache
already held (a later seed's classifier, stores and salient words; a run trained before) is timed as a read, while
`epoch_s` always comes from the run's own history, i.e. from when it trained. Needs ../shared/data/eraser-movie (or --release).
"""
import argparse, platform, time
from pathlib import Path
import numpy as np, pandas as pd, torch
from clvq_nb.core import check_device, write_atomic
from clvq_nb.models import finetune, load_model
from clvq_nb.sweeps import EXPERIMENTS, eraser_stores, faithfulness_row, run_dir, sweep_config
from clvq_nb.faithfulness import cached_saliency
from clvq_nb.baselines import VQConcepts
from clvq_nb.train import train

ROOT = Path(__file__).resolve().parents[1]
# name: (model, layer pair, layers its stores hold, fine-tuning options); MiniLM's are notebook 13's ERASER setting's, so that
# its CPU runs are read from the cache
_minilm = EXPERIMENTS['minilm_eraser']
SETTINGS = {'mpnet': ('mpnet', (8, 12), (8, 12), {}), 'smollm2': ('smollm2', (20, 30), (20, 30), dict(lr=5e-5, max_train=800)),
            'minilm': (_minilm.model, _minilm.pair, _minilm.layers, _minilm.finetune_options)}
KEY = ['setting', 'seed', 'device', 'epochs_asked']

def timed(on, fn, *args, **kwargs):
    "(fn's result, its wall seconds), waiting for the queued work of device `on` to finish before the clock stops."
    t = time.perf_counter(); out = fn(*args, **kwargs)
    if on.type == 'cuda': torch.cuda.synchronize(on)
    return out, time.perf_counter() - t

def measure(setting:str, seed:int, device, release:Path, epochs:int|None) -> dict:
    "One row: each stage's seconds, the trained model's quality and its faithfulness by the fair table's conditions."
    model, (l, h), layers, options = SETTINGS[setting]
    classifier, finetune_s = timed(device, finetune, model, 'sentiment', device=device, **options)
    (_, train_store, test_store), extract_s = timed(device, eraser_stores, release/'eraser-movie', model, layers, 800, options, device)
    cfg = sweep_config(dict(seed=seed, **({'max_epochs': epochs} if epochs else {})), dict(layer_in=l, layer_out=h), 'paper')
    run, train_s = timed(device, train, train_store, cfg, run_dir(train_store, cfg), device=device, progress=False)
    salient, saliency_s = timed(device, cached_saliency, classifier, test_store, l, device=device)
    clf = load_model(classifier, num_labels=len(test_store.label_names), device=device)
    faith, faith_s = timed(device, faithfulness_row, VQConcepts(run.model, l), test_store, l, salient, device=device, classifier=clf)
    m = run.metrics
    return dict(setting=setting, seed=seed, device=device.type, epochs_asked=epochs or 0, model=model, layer_in=l, layer_out=h,
                device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), torch=torch.__version__, train_sentences=len(train_store), train_words=train_store.num_words,
                finetune_s=finetune_s, extract_s=extract_s, train_s=train_s, epochs=m['epochs'], epoch_s=float(np.median(run.history.seconds)),
                saliency_s=saliency_s, faithfulness_s=faith_s, val_fvu=m['validation']['fvu'], val_ridge_fvu=m['baselines']['ridge_fvu'],
                val_lookup_fvu=m['baselines']['lookup_fvu'], code_ratio=m['code_ratio'], **faith)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument('--seeds', nargs='+', type=int, default=[42])
    ap.add_argument('--device', default=None, help='cpu, cuda …; default: a GPU when there is one')
    ap.add_argument('--epochs', type=int, default=None, help="cap the paper preset's 50 epochs (a quick look)")
    ap.add_argument('--release', type=Path, default=ROOT.parent/'shared'/'data', help="the release's data folder (holds eraser-movie/)")
    ap.add_argument('--out', type=Path, default=ROOT/'benchmarks'/'results'/'gpu_paper.csv')
    a = ap.parse_args(); device = check_device(a.device)
    for seed in a.seeds:
        for setting in a.settings:
            done = pd.read_csv(a.out) if a.out.exists() else None
            if done is not None and (setting, seed, device.type, a.epochs or 0) in set(done[KEY].itertuples(index=False, name=None)): continue
            row = measure(setting, seed, device, a.release, a.epochs)
            print({k: row[k] for k in ('setting', 'seed', 'device', 'finetune_s', 'extract_s', 'train_s', 'epoch_s', 'val_fvu', 'val_ridge_fvu',
                                      'code_ratio', 'iv_perturbed_drop', 'iv_matched_code_drop')}, flush=True)
            write_atomic(a.out, pd.concat([d for d in (done, pd.DataFrame([row])) if d is not None]).to_csv(index=False))
