"""Extraction speed and memory, side by side in one run: `clvq_nb.extract.extract` against a bare
`model(**batch, output_hidden_states=True)` loop (sorted by length and unsorted) and NeuroX 1.0.9's
`transformers_extractor` (hdf5 and JSON), on the first sentences of ERASER movies' train.txt with MiniLM.

    python benchmarks/bench_extract.py                  # the full run: 2,000 sentences, 2 threads, 3 rounds (about 15 min)
    python benchmarks/bench_extract.py --n 300 --rounds 1 --no-neurox --mem 100 300   # a quick look

Layers 2, 4, 6 (a layer pair and more), and once all 7 hidden states (0-6): NeuroX's default, which the issue's
NeuroX figures used. Peak memory: 500, 5,000 and all 13,878 sentences, each extracted in a fresh process.

NeuroX is a benchmark peer only, never a dependency: `pip install --no-deps neurox==1.0.9 h5py`.
Writes benchmarks/results/extract.json and prints a table. Timed runs repeat in interleaved rounds (bare sorted, ours,
bare unsorted) so that load from other processes hits all of them alike; ratios are medians of per-round ratios.
Each run is timed twice: wall-clock seconds, and CPU seconds of this process (all its threads), which other
processes' load hardly changes; on a shared machine the CPU-time ratios are the steadier figures.
"""
import argparse, contextlib, json, os, platform, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch, datasets
from transformers import AutoModel, AutoTokenizer
from clvq_nb.assets import fetch
from clvq_nb.extract import extract, plan_words, plan_batches

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent/'shared'/'data'/'eraser-movie'/'train.txt'

@contextlib.contextmanager
def clock(into:dict, name:str):
    "Append the wall and CPU seconds of the block to into['wall'][name] and into['cpu'][name]."
    w, c = time.perf_counter(), time.process_time()
    yield
    into['wall'].setdefault(name, []).append(time.perf_counter() - w); into['cpu'].setdefault(name, []).append(time.process_time() - c)

def load_texts(corpus:Path, n:int) -> list:
    "The first n non-empty lines of a one-sentence-a-line corpus."
    return [t for t in corpus.read_text(encoding='utf-8').splitlines() if t.split()][:n]

def bare_batches(tok, texts:list, sort:bool) -> list:
    "Tokenized batches for the bare loop: the very batches `extract` forms (sorted), or 64 at a time in corpus order."
    words = [t.split() for t in texts]
    if sort: idx = plan_batches(np.minimum(plan_words(tok, words, 512)['n_tokens'], 512))
    else: idx = [np.arange(i, min(i + 64, len(texts))) for i in range(0, len(texts), 64)]
    return [tok([' '.join(words[i]) for i in b], padding=True, truncation=True, max_length=512, return_tensors='pt') for b in idx]

def run_bare(model, batches:list):
    "A bare forward loop with all hidden states."
    with torch.inference_mode():
        for b in batches: model(**b, output_hidden_states=True)

def run_ours(model, tok, ds, layers:list, work:Path, secs:dict, name:str='ours') -> tuple:
    "`extract` into a fresh store (nothing reused), timed; the store's size in bytes and its word count."
    path = Path(tempfile.mkdtemp(dir=work))/'store'
    with clock(secs, name): store = extract(model, tok, ds, layers, path, label_col=None, verbose=False)
    size, n = sum(f.stat().st_size for f in path.rglob('*') if f.is_file()), store.num_words
    shutil.rmtree(path.parent)
    return size, n

def run_neurox(model_dir:Path, texts:list, layers:list|None, fmt:str, work:Path, secs:dict, name:str) -> int:
    "NeuroX's transformers_extractor writing `fmt` (all layers if `layers` is None), its model loaded beforehand (timed: the extraction only); the file's size."
    from neurox.data.extraction import transformers_extractor as nx
    loaded = nx.get_model_and_tokenizer(str(model_dir))
    nx.get_model_and_tokenizer = lambda *a, **k: loaded
    corpus, out = work/'neurox.txt', work/f'neurox.{fmt}'
    corpus.write_text('\n'.join(texts) + '\n')
    with open(os.devnull, 'w') as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null), clock(secs, name):
        nx.extract_representations(str(model_dir), str(corpus), str(out), output_type=fmt, aggregation='last',
                                   filter_layers=','.join(map(str, layers)) if layers else None)
    size = out.stat().st_size; out.unlink()
    return size

def rss_mb(field:str) -> float:
    "VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB."
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(field)) / 1024

def reset_peak():
    "Linux: reset this process's peak RSS (VmHWM) to its current RSS."
    Path('/proc/self/clear_refs').write_text('5')

def child_memory(n:int, layers:list, threads:int, corpus:Path) -> dict:
    "In this (child) process: load MiniLM, warm up, then the peak RSS of extracting n sentences, and of a bare loop over the same batches."
    torch.set_num_threads(threads)
    model_dir = fetch('minilm', verbose=False)
    model, tok = AutoModel.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)
    ds = datasets.Dataset.from_dict({'text': load_texts(corpus, n)})
    with tempfile.TemporaryDirectory() as d:
        extract(model, tok, ds.select(range(20)), layers, Path(d)/'warm', label_col=None, verbose=False)
        reset_peak(); before = rss_mb('VmRSS')
        store = extract(model, tok, ds, layers, Path(d)/'s', label_col=None, verbose=False)
        ours = dict(sentences=n, words=store.num_words, longest_text_tokens=int(max(store.dataset['n_tokens'][:])),
                    rss_mb_before=round(before, 1), peak_rss_mb=round(rss_mb('VmHWM'), 1), peak_increase_mb=round(rss_mb('VmHWM') - before, 1))
    batches = bare_batches(tok, ds['text'][:], True)
    reset_peak(); before = rss_mb('VmRSS')
    run_bare(model, batches)
    return ours | dict(bare_rss_mb_before=round(before, 1), bare_peak_rss_mb=round(rss_mb('VmHWM'), 1))

def run_child(n:int, args) -> dict:
    "Peak memory of extracting n sentences, measured in a fresh process."
    cmd = [sys.executable, __file__, '--child-mem', str(n), '--threads', str(args.threads), '--corpus', str(args.corpus), '--layers', *map(str, args.layers)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])

def summarise(secs:dict, n_words:int) -> dict:
    "Per clock: median seconds, words per second, and ratios (medians of per-round ratios where both ran in every round)."
    out = {}
    for kind, s in secs.items():
        med = {k: float(np.median(v)) for k, v in s.items()}
        ours = np.array(s['ours'])
        ratios = {'ours_time_over_bare_sorted': np.median(ours / np.array(s['bare_sorted'])),
                  'bare_unsorted_time_over_ours': np.median(np.array(s['bare_unsorted']) / ours)}
        ratios |= {f'{k}_time_over_ours' + ('_all' if k.endswith('_all') else ''): v / med['ours_all' if k.endswith('_all') else 'ours']
                   for k, v in med.items() if k.startswith('neurox')}
        out[kind] = dict(seconds={k: [round(x, 2) for x in v] for k, v in s.items()}, words_per_second={k: round(n_words / v) for k, v in med.items()},
                         ratios={k: round(float(v), 2) for k, v in ratios.items()})
    return out

TARGETS = {'ours_time_over_bare_sorted': '<= 1.3', 'neurox_hdf5_time_over_ours': '>= 3', 'neurox_json_time_over_ours': '>= 20',
           'neurox_hdf5_all_time_over_ours_all': '>= 3', 'neurox_json_all_time_over_ours_all': '>= 20'}

def report(args, secs:dict, sizes:dict, mem:dict, kept:int, n_words:int, load_start:tuple, model_layers:int):
    "Print a table and write the JSON."
    times = summarise(secs, n_words)
    peaks = [mem[str(n)]['peak_rss_mb'] for n in args.mem]
    res = dict(
        what='clvq_nb.extract vs a bare forward loop vs NeuroX 1.0.9 transformers_extractor; MiniLM (all-MiniLM-L6-v2), aggregation last, float16 store',
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), torch_threads=args.threads, torch=torch.__version__,
                     load_avg_at_start=[round(x, 2) for x in load_start], load_avg_at_end=[round(x, 2) for x in os.getloadavg()]),
        corpus=args.corpus.name, sentences=args.n, words=n_words, words_kept=kept, layers=args.layers, batch_size=64, rounds=args.rounds,
        all_layers=list(range(model_layers + 1)), wall_clock=times['wall'], cpu_time=times['cpu'],
        targets=TARGETS | {f'peak_rss_ratio_{args.mem[1]}_over_{args.mem[0]}': '<= 1.2'},
        memory=mem | {f'peak_rss_ratio_{n}_over_{args.mem[0]}': round(p / peaks[0], 3) for n, p in zip(args.mem[1:], peaks[1:])},
        bytes_per_1000_words={k: round(v / (kept if k.startswith('ours') else n_words) * 1000) for k, v in sizes.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix('.json.tmp'); tmp.write_text(json.dumps(res, indent=1) + '\n'); os.replace(tmp, args.out)
    print(f"\n{args.n:,} sentences, {n_words:,} words, layers {args.layers}, {args.threads} threads, "
          f"load {res['machine']['load_avg_at_start'][0]} -> {res['machine']['load_avg_at_end'][0]}")
    print(f"{'method':<16}{'wall s':>9}{'words/s':>9}{'cpu s':>9}{'words/s':>9}")
    for k, v in times['wall']['seconds'].items():
        c = times['cpu']['seconds'][k]
        print(f'{k:<16}{np.median(v):>9.1f}{times["wall"]["words_per_second"][k]:>9,}{np.median(c):>9.1f}{times["cpu"]["words_per_second"][k]:>9,}')
    print(f"{'ratio':<34}{'wall':>7}{'cpu':>7}   target")
    for k, v in times['wall']['ratios'].items(): print(f'{k:<34}{v:>7.2f}{times["cpu"]["ratios"][k]:>7.2f}   {TARGETS.get(k, "-")}')
    print('peak RSS: ' + ', '.join(f"{n:,} sentences {p:.0f} MB (longest text {mem[str(n)]['longest_text_tokens']} tokens)" for n, p in zip(args.mem, peaks)))
    print('bytes per 1,000 words: ' + ', '.join(f'{k} {v:,}' for k, v in res['bytes_per_1000_words'].items()))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=2000); p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=3); p.add_argument('--layers', type=int, nargs='+', default=[2, 4, 6])
    p.add_argument('--mem', type=int, nargs='+', default=[500, 5000, 13878]); p.add_argument('--no-neurox', action='store_true')
    p.add_argument('--corpus', type=Path, default=CORPUS); p.add_argument('--child-mem', type=int)
    p.add_argument('--out', type=Path, default=ROOT/'benchmarks'/'results'/'extract.json')
    args = p.parse_args()
    if args.child_mem: return print(json.dumps(child_memory(args.child_mem, args.layers, args.threads, args.corpus)))
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    model_dir = fetch('minilm', verbose=False)
    model, tok = AutoModel.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)
    texts = load_texts(args.corpus, args.n); n_words = sum(len(t.split()) for t in texts)
    ds = datasets.Dataset.from_dict({'text': texts})
    sorted_b, unsorted_b = bare_batches(tok, texts, True), bare_batches(tok, texts, False)
    run_bare(model, sorted_b[-3:])  # warm up
    secs, sizes = {'wall': {}, 'cpu': {}}, {}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for r in range(args.rounds):
            with clock(secs, 'bare_sorted'): run_bare(model, sorted_b)
            sizes['ours'], kept = run_ours(model, tok, ds, args.layers, work, secs)
            with clock(secs, 'bare_unsorted'): run_bare(model, unsorted_b)
            print(f"round {r + 1}: " + ', '.join(f'{k} {v[-1]:.1f} s' for k, v in secs['wall'].items()), flush=True)
        every = list(range(model.config.num_hidden_layers + 1))  # NeuroX's default: all layers, as in the figures
        sizes['ours_all'], _ = run_ours(model, tok, ds, every, work, secs, 'ours_all')
        if not args.no_neurox:
            for fmt in ('hdf5', 'json'):
                sizes[f'neurox_{fmt}'] = run_neurox(model_dir, texts, args.layers, fmt, work, secs, f'neurox_{fmt}')
                sizes[f'neurox_{fmt}_all'] = run_neurox(model_dir, texts, None, fmt, work, secs, f'neurox_{fmt}_all')
    mem = {str(n): run_child(n, args) for n in args.mem}
    report(args, secs, sizes, mem, kept, n_words, load_start, model.config.num_hidden_layers)

if __name__ == '__main__': main()
