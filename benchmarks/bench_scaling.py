"""How far one machine goes (issue 7): extraction speed and store size per million tokens for MiniLM and SmolLM2, on one
process and on two (torchrun, gloo); the peak memory of training as the corpus grows; and the seed-to-seed spread of a
tiny training run, from which tests/test_distributed.py takes its tolerance.

    python benchmarks/bench_scaling.py                    # everything, 2 threads (about 15 min on 2 busy cores)
    python benchmarks/bench_scaling.py --only memory --sizes 1000 4000

Extraction: the first --sentences texts of the embedded sentiment task's train split, a layer pair per model (MiniLM
4 and 6 of 6 layers, SmolLM2 20 and 30 of 30), float16 stores, best of --rounds; the model's load is not timed.
Tokens are the model's tokens (special tokens included); words are the store's rows.
Training memory: stores of 1k, 4k and 16k sentences drawn with replacement from MiniLM's layer-4/6 store of the
sentiment train split (real vectors and real lengths), one epoch of the demo preset in a fresh process each, its
resident memory sampled every 20 ms from /proc (anonymous memory, and file-backed pages of the memory-mapped store).
Writes benchmarks/results/scaling.json. Others share this machine: the load average is recorded before and after.
"""
import argparse, json, os, platform, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path
import numpy as np, torch, datasets
from datasets.arrow_writer import ArrowWriter

ROOT = Path(__file__).resolve().parents[1]
MODELS = dict(minilm=[4, 6], smollm2=[20, 30])

def texts(n:int) -> datasets.Dataset:
    "The first n texts of the sentiment task's train split."
    from clvq_nb.data import load_task
    return load_task('sentiment')['train'].select(range(n))

def store_bytes(path:Path) -> int: return sum(f.stat().st_size for f in Path(path).rglob('*') if f.is_file())

def sentence_table(path:Path) -> datasets.Dataset: return datasets.Dataset.from_file(str(Path(path)/'sentences.arrow'))

def model_tokens(path:Path) -> int: return int(sentence_table(path).data.column('n_tokens').to_numpy().sum())

def extraction(name:str, n:int, rounds:int, work:Path) -> dict:
    "Time `extract` of n texts with model `name` on this process, best of `rounds`; the store's size per million tokens."
    from clvq_nb.extract import extract
    from clvq_nb.models import load_model
    model, tok = load_model(name, device='cpu'); data = texts(n); wall, cpu = [], []
    for r in range(rounds):
        path = work/f'{name}-{r}'; w, c = time.perf_counter(), time.process_time()
        store = extract(model, tok, data, MODELS[name], path, verbose=False)
        wall.append(time.perf_counter() - w); cpu.append(time.process_time() - c)
    tokens, size = model_tokens(path), store_bytes(path)
    return dict(texts=n, layers=MODELS[name], width=store.dims[MODELS[name][0]], tokens=tokens, words=store.num_words,
                seconds=round(min(wall), 2), cpu_seconds=round(min(cpu), 2), tokens_per_s=round(tokens / min(wall), 1),
                tokens_per_cpu_s=round(tokens / min(cpu), 1),
                words_per_s=round(store.num_words / min(wall), 1), store_mb=round(size / 1e6, 3),
                store_mb_per_million_tokens=round(size / 1e6 / tokens * 1e6, 1), store_mb_per_million_words=round(size / 1e6 / store.num_words * 1e6, 1))

TWO = '''
import json, sys, time, torch
import torch.distributed as dist
sys.path.insert(0, sys.argv[3])
from bench_scaling import texts, model_tokens, MODELS
from clvq_nb.extract import extract
from clvq_nb.core import init_distributed
from clvq_nb.models import load_model
rank, world = init_distributed(); name, n = sys.argv[1], int(sys.argv[2])
model, tok = load_model(name, device='cpu'); data = texts(n); dist.barrier()
t, c = time.perf_counter(), time.process_time(); store = extract(model, tok, data, MODELS[name], sys.argv[4], verbose=False)
cpu = torch.tensor(time.process_time() - c, dtype=torch.float64); dist.all_reduce(cpu)
if rank == 0: print(json.dumps(dict(seconds=time.perf_counter() - t, cpu_seconds=cpu.item(), tokens=model_tokens(store.path))))
'''

def extraction_two(name:str, n:int, work:Path) -> dict:
    "Time `extract` of n texts with model `name` on two processes of one thread each (torchrun)."
    from clvq_nb.distributed import torchrun
    (work/'two.py').write_text(TWO)
    r = json.loads(torchrun(work/'two.py', name, n, ROOT/'benchmarks', work/f'{name}-two').strip().splitlines()[-1])
    return dict(processes=2, threads_each=1, seconds=round(r['seconds'], 2), cpu_seconds=round(r['cpu_seconds'], 2),
                tokens_per_s=round(r['tokens'] / r['seconds'], 1), tokens_per_cpu_s=round(r['tokens'] / r['cpu_seconds'], 1))

def resampled_store(src, n:int, path:Path, seed:int=0):
    "A store of n sentences drawn with replacement from the store `src`: their real vectors and lengths."
    from clvq_nb.extract import ActivationStore, VectorFile
    pick = np.random.default_rng(seed).integers(0, len(src), n); lens = np.diff(src.offsets)[pick]
    rows = np.repeat(src.offsets[pick] - (np.cumsum(lens) - lens), lens) + np.arange(lens.sum())
    path.mkdir(parents=True)
    for l in src.layers:
        d = src.dims[l]; w = VectorFile(path/'word_vectors'/f'layer_{l}.arrow', f'layer_{l}', len(rows), d)
        for s in range(0, len(rows), 65536): w.write(s, src.word_vectors(l)[rows[s:s + 65536]])
        w.close(); v = VectorFile(path/'sentence_vectors'/f'layer_{l}.arrow', f'layer_{l}', n, d); v.write(0, src.sentence_vectors(l)[pick]); v.close()
    feats = datasets.Features(word=datasets.Value('string'), sentence=datasets.Value('int64'), position=datasets.Value('int32'))
    with ArrowWriter(features=feats, path=str(path/'words.arrow')) as wr:
        wr.write_batch(dict(word=src.words[rows].tolist(), sentence=np.repeat(np.arange(n), lens), position=np.arange(len(rows)) - np.repeat(np.cumsum(lens) - lens, lens)))
        wr.finalize()
    table = sentence_table(src.path).select(pick).flatten_indices()
    with ArrowWriter(features=table.features, path=str(path/'sentences.arrow')) as wr: wr.write_table(table.data.table); wr.finalize()
    fp = {**src.metadata['fingerprint'], 'resampled': dict(sentences=n, seed=seed)}
    (path/'metadata.json').write_text(json.dumps({**src.metadata, 'fingerprint': fp, 'num_sentences': n, 'num_words': int(len(rows))}, indent=1))
    return ActivationStore(path)

class Peak:
    "Peak resident memory of this process, sampled every 20 ms: anonymous, file-backed, total (MiB)."
    def __init__(self): self.peak, self.stop = dict(RssAnon=0, RssFile=0, VmRSS=0), False; threading.Thread(target=self._run, daemon=True).start()
    def _run(self):
        while not self.stop:
            for line in Path('/proc/self/status').read_text().splitlines():
                k = line.split(':')[0]
                if k in self.peak: self.peak[k] = max(self.peak[k], int(line.split()[1]) // 1024)
            time.sleep(0.02)

def memory_run(n:int, work:Path) -> dict:
    "In this (fresh) process: one demo-preset epoch on the store of n resampled sentences; peak memory and time."
    from clvq_nb.extract import ActivationStore
    from clvq_nb.train import preset, train
    store, peak = ActivationStore(work/f'store-{n}'), Peak()
    time.sleep(0.1); before, t = dict(peak.peak), time.perf_counter()
    res = train(store, preset('demo', 4, 6, max_epochs=1), work/f'run-{n}', device='cpu', progress=False)
    seconds = time.perf_counter() - t; peak.stop = True; time.sleep(0.05)
    return dict(sentences=n, words=store.num_words, store_mb=round(store_bytes(store.path) / 1e6, 1), train_seconds=round(seconds, 1),
                words_per_s=round(float(res.history.words_per_s.iloc[0]), 1), anon_before_mib=before['RssAnon'], peak_anon_mib=peak.peak['RssAnon'],
                peak_file_mib=peak.peak['RssFile'], peak_rss_mib=peak.peak['VmRSS'])

def seed_spread(runs:int, work:Path) -> dict:
    "The tiny training of tests/test_distributed.py on one process, `runs` times with other dropout and sampling seeds only."
    import clvq_nb.train as T
    from clvq_nb.extract import extract
    from clvq_nb.models import load_model
    lm, tok = load_model('minilm', device='cpu')
    store = extract(lm, tok, texts(96), [4, 6], work/'tiny', verbose=False)
    out = []
    for r in range(runs):
        def seed_epoch(cfg, epoch, quantizer, r=r):  # as a process of rank r would seed itself, in a run of its own
            a, b = np.random.SeedSequence([cfg.seed, epoch, r]).generate_state(2)
            torch.manual_seed(int(a)); quantizer.rng.manual_seed(int(b))
        T._seed_epoch = seed_epoch
        cfg = T.preset('demo', 4, 6, max_epochs=2, batch_size=16, model=dict(num_codes=16, decoder_layers=1, decoder_ff=64))
        out.append(T.train(store, cfg, work/f'spread-{r}', progress=False).metrics['validation'])
    loss, fvu = (np.array([m[k] for m in out]) for k in ('loss', 'fvu'))
    return dict(runs=runs, loss_mean=round(float(loss.mean()), 5), loss_std=round(float(loss.std(ddof=1)), 5),
                loss_range=round(float(np.ptp(loss)), 5), fvu_mean=round(float(fvu.mean()), 4), fvu_std=round(float(fvu.std(ddof=1)), 4))

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--only', choices=['extraction', 'memory', 'spread'], action='append')
    ap.add_argument('--sentences', type=int, nargs=2, default=[400, 200], help='texts for MiniLM and SmolLM2')
    ap.add_argument('--rounds', type=int, default=2); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--sizes', type=int, nargs='+', default=[1000, 4000, 16000])
    ap.add_argument('--memory-run', type=int, help=argparse.SUPPRESS); ap.add_argument('--work', help=argparse.SUPPRESS)
    a = ap.parse_args(); torch.set_num_threads(a.threads); os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    if a.memory_run: print(json.dumps(memory_run(a.memory_run, Path(a.work)))); sys.exit()
    parts = a.only or ['extraction', 'memory', 'spread']
    out_file = ROOT/'benchmarks'/'results'/'scaling.json'
    res = json.loads(out_file.read_text()) if out_file.exists() else {}
    res.update(machine=platform.machine(), cpus=os.cpu_count(), threads=a.threads, torch=torch.__version__)
    def save(part:str, value):
        "Record one part in the results file, which is rewritten after each part so that a partial run keeps what it measured."
        res[part] = value; out_file.parent.mkdir(parents=True, exist_ok=True); out_file.write_text(json.dumps(res, indent=1))
        print(part, json.dumps(value, indent=1), flush=True)
    work = Path(tempfile.mkdtemp())
    try:
        if 'extraction' in parts:
            load, ex = os.getloadavg()[0], {name: extraction(name, n, a.rounds, work) for name, n in zip(MODELS, a.sentences)}
            ex['minilm']['two_processes'] = extraction_two('minilm', a.sentences[0], work)
            save('extraction', dict(runs=ex, load_before=load, load_after=os.getloadavg()[0]))
        if 'memory' in parts:
            from clvq_nb.extract import extract
            from clvq_nb.models import load_model
            lm, tok = load_model('minilm', device='cpu')
            src = extract(lm, tok, texts(3200), [4, 6], task='sentiment', split='train', verbose=False)
            mem, load = {}, os.getloadavg()[0]
            for n in a.sizes:
                resampled_store(src, n, work/f'store-{n}')
                r = subprocess.run([sys.executable, __file__, '--memory-run', str(n), '--work', str(work), '--threads', str(a.threads)],
                                   capture_output=True, text=True, check=True)
                mem[f'{n // 1000}k'] = json.loads(r.stdout.strip().splitlines()[-1]); print(n, mem[f'{n // 1000}k'], flush=True)
                shutil.rmtree(work/f'store-{n}'); shutil.rmtree(work/f'run-{n}')
            save('training_memory', dict(runs=mem, load_before=load, load_after=os.getloadavg()[0]))
        if 'spread' in parts:
            torch.set_num_threads(1); load = os.getloadavg()[0]
            save('seed_spread', seed_spread(8, work) | dict(load_before=load, load_after=os.getloadavg()[0]))
    finally: shutil.rmtree(work, ignore_errors=True)
