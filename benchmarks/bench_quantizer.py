"""Codebook initialisation and quantizer throughput, side by side with the peers the issue names.

Init: clvq_nb's scaled-spherical k-means++ vs scikit-learn `KMeans` (k-means++, n_init=5: the authors' release)
and faiss's spherical k-means, on real MiniLM-L6 layer-4 word vectors, K = 400; quality = mean cosine of each
vector to its most similar centroid. Quantizer: forward + the quantizer's own loss (+ a stand-in reconstruction
MSE) backward on 128 x 32 x d batches, K = 400, d = 384 and 768, vs `vector-quantize-pytorch` and a minimal argmin
EMA quantizer. faiss-cpu and vector-quantize-pytorch are benchmark-only peers, never project dependencies.

Run: `python benchmarks/bench_quantizer.py [--threads 2] [--quick]`; writes benchmarks/results/quantizer.json.
"""
import argparse, json, os, platform, statistics, subprocess, time
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
from clvq_nb.quantizer import VectorQuantizer, kmeans_init, mean_cosine

RESULTS = Path(__file__).parent / 'results' / 'quantizer.json'
TRAIN = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'eraser-movie' / 'train.txt'
CACHE = Path('/tmp/clvq_bench_minilm_l4_words.npy')

def minilm_word_vectors(n_words=56_175, layer=4, path=TRAIN, batch=64, cache=CACHE) -> np.ndarray:
    "The first `n_words` whitespace words of `path` as MiniLM layer-`layer` vectors (mean over subwords); cached."
    if cache.exists() and (x := np.load(cache)).shape[0] == n_words: return x
    from transformers import AutoModel, AutoTokenizer
    from clvq_nb.assets import fetch
    tok = AutoTokenizer.from_pretrained(fetch('minilm')); model = AutoModel.from_pretrained(fetch('minilm')).eval()
    sents, total = [], 0
    for line in path.read_text(encoding='utf-8').splitlines():
        if words := line.split(): sents.append(words); total += len(words)
        if total >= n_words: break
    out = []
    with torch.inference_mode():
        for i in range(0, len(sents), batch):
            enc = tok(sents[i:i + batch], is_split_into_words=True, truncation=True, padding=True, return_tensors='pt')
            h = model(**enc, output_hidden_states=True).hidden_states[layer]
            for b, s in enumerate(sents[i:i + batch]):
                w = torch.tensor([-1 if j is None else j for j in enc.word_ids(b)]); keep = w >= 0
                sums = torch.zeros(len(s), h.shape[-1]).index_add_(0, w[keep], h[b, keep])
                out.append((sums / torch.bincount(w[keep], minlength=len(s)).clamp_min(1)[:, None]).numpy())
    x = np.concatenate(out)[:n_words].astype(np.float32)
    tmp = cache.with_suffix('.tmp.npy'); np.save(tmp, x); os.replace(tmp, cache)
    return x

def load() -> str:
    "The 1-minute load average, as `uptime` prints it."
    return subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()

# ---------------------------------------------------------------- init

def init_sklearn(x, k, seed=42):
    from sklearn.cluster import KMeans
    return KMeans(k, init='k-means++', n_init=5, max_iter=300, random_state=seed).fit(x).cluster_centers_

def init_faiss(x, k, seed=42):
    import faiss
    u = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True))
    km = faiss.Kmeans(x.shape[1], k, niter=25, spherical=True, seed=seed, verbose=False); km.train(u)
    return km.centroids

def bench_init(x, k, repeats, with_sklearn=True):
    "Time and quality of each init; the fast ones interleaved over `repeats` rounds (median), scikit-learn once."
    xt = torch.from_numpy(x)
    runs = {'clvq_nb spherical k-means++': lambda: kmeans_init(xt, k, 'spherical', device='cpu'),
            'clvq_nb spherical k-means++ (tol=1e-2)': lambda: kmeans_init(xt, k, 'spherical', tol=1e-2, device='cpu'),
            'clvq_nb euclidean k-means++': lambda: kmeans_init(xt, k, 'euclidean', device='cpu'),
            'clvq_nb random tokens': lambda: kmeans_init(xt, k, 'random', device='cpu'),
            'faiss spherical k-means (niter=25)': lambda: init_faiss(x, k)}
    times, cents = {n: [] for n in runs}, {}
    for _ in range(repeats):
        for n, f in runs.items():
            t = time.perf_counter(); cents[n] = f(); times[n].append(time.perf_counter() - t)
    if with_sklearn:
        n = 'scikit-learn KMeans k-means++ n_init=5 max_iter=300'
        t = time.perf_counter(); cents[n] = init_sklearn(x, k); times[n] = [time.perf_counter() - t]
    res = {}
    for n, ts in times.items():
        res[n] = dict(seconds=round(statistics.median(ts), 3), runs=[round(t, 3) for t in ts],
                      mean_cosine=round(mean_cosine(xt, torch.as_tensor(np.asarray(cents[n]))), 4))
        print(f"  {n:55s} {res[n]['seconds']:7.2f} s  mean cosine {res[n]['mean_cosine']:.4f}", flush=True)
    ours, fa = res['clvq_nb spherical k-means++'], res['faiss spherical k-means (niter=25)']
    res['ratios'] = dict(ours_time_over_faiss=round(ours['seconds'] / fa['seconds'], 2),
                         ours_cos_minus_faiss=round(ours['mean_cosine'] - fa['mean_cosine'], 4))
    if with_sklearn:
        sk = res['scikit-learn KMeans k-means++ n_init=5 max_iter=300']
        res['ratios'].update(sklearn_time_over_ours=round(sk['seconds'] / ours['seconds'], 2),
                             ours_cos_minus_sklearn=round(ours['mean_cosine'] - sk['mean_cosine'], 4))
    return res

# ---------------------------------------------------------------- quantizers

class ArgminEMA(torch.nn.Module):
    "A minimal nearest-code EMA quantizer (the floor any quantizer pays): argmin, EMA, commitment, straight-through."
    def __init__(self, codebook, decay=0.99, eps=1e-5, beta=0.1):
        super().__init__()
        self.register_buffer('e', codebook.clone()); self.register_buffer('n', torch.ones(len(codebook)))
        self.register_buffer('m', codebook.clone()); self.decay, self.eps, self.beta = decay, eps, beta
    def forward(self, z):
        flat = z.reshape(-1, z.shape[-1])
        codes = torch.cdist(flat.detach(), self.e).argmin(1); q = self.e[codes]
        with torch.no_grad():
            onehot_n = torch.bincount(codes, minlength=len(self.e)).float()
            self.n.mul_(self.decay).add_(onehot_n, alpha=1 - self.decay)
            self.m.mul_(self.decay).add_(torch.zeros_like(self.m).index_add_(0, codes, flat.detach()), alpha=1 - self.decay)
            tot = self.n.sum(); self.e.copy_(self.m / ((self.n + self.eps) / (tot + len(self.e) * self.eps) * tot)[:, None])
        return (flat + (q - flat).detach()).view_as(z), self.beta * F.mse_loss(flat, q)

def make_quantizers(codebook, d, k):
    "name -> (module, step(module, z) -> (z_q, own loss))."
    from vector_quantize_pytorch import VectorQuantize
    def ours(top_k):
        q = VectorQuantizer(k, d, top_k=top_k).init_codebook(codebook, 'codebook').train()
        def step(m, z): out = m(z); return out.z_q, out.loss
        return q, step
    def vqp(stochastic):
        q = VectorQuantize(dim=d, codebook_size=k, decay=0.99, commitment_weight=0.1, stochastic_sample_codes=stochastic,
                           sample_codebook_temp=1.0).train()
        with torch.no_grad(): q._codebook.embed.copy_(codebook[None]); q._codebook.embed_avg.copy_(codebook[None])
        def step(m, z): zq, _, loss = m(z); return zq, loss.sum()
        return q, step
    def argmin():
        def step(m, z): return m(z)
        return ArgminEMA(codebook), step
    return {'clvq_nb top-k sampling (k=5, T=1, EMA)': ours(5), 'clvq_nb nearest (k=1, EMA)': ours(1),
            'vector-quantize-pytorch EMA, stochastic sampling (T=1)': vqp(True),
            'vector-quantize-pytorch EMA, nearest': vqp(False), 'minimal argmin EMA quantizer': argmin()}

def bench_quantizers(batches, targets, codebook, k, rounds, warmup=3):
    d = batches[0].shape[-1]; qs = make_quantizers(codebook, d, k)
    per = {n: [] for n in qs}
    for _ in range(rounds):  # interleave contenders so a burst of load hits all of them alike
        for name, (q, step) in qs.items():
            def run(bs):
                for z, y in bs:
                    z = z.clone().requires_grad_(); zq, loss = step(q, z)
                    (loss + F.mse_loss(zq, y)).backward()
            run(list(zip(batches, targets))[:warmup])
            t = time.perf_counter(); run(zip(batches, targets)); dt = time.perf_counter() - t
            per[name].append(sum(b.shape[0] * b.shape[1] for b in batches) / dt)
    res = {n: dict(vectors_per_s=round(statistics.median(v)), rounds=[round(x) for x in v]) for n, v in per.items()}
    for n, r in res.items(): print(f"  d={d} {n:55s} {r['vectors_per_s']:>9,} vectors/s", flush=True)
    ours = res['clvq_nb top-k sampling (k=5, T=1, EMA)']['vectors_per_s']
    res['ratios'] = dict(ours_topk_over_vqp_stochastic=round(ours / res['vector-quantize-pytorch EMA, stochastic sampling (T=1)']['vectors_per_s'], 2),
                         ours_topk_over_vqp_nearest=round(ours / res['vector-quantize-pytorch EMA, nearest']['vectors_per_s'], 2),
                         ours_topk_over_minimal_argmin=round(ours / res['minimal argmin EMA quantizer']['vectors_per_s'], 2))
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--quick', action='store_true', help='skip scikit-learn')
    ap.add_argument('--repeats', type=int, default=3); ap.add_argument('--out', type=Path, default=RESULTS)
    ap.add_argument('--data', type=Path, default=TRAIN, help='one tokenised sentence a line (ERASER movies train.txt)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); os.environ['OMP_NUM_THREADS'] = str(a.threads)
    from threadpoolctl import threadpool_limits
    import faiss
    faiss.omp_set_num_threads(a.threads); threadpool_limits(a.threads)
    from importlib.metadata import version
    run = dict(machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                            cpus=os.cpu_count(), threads=a.threads, load_before=load()))
    x = minilm_word_vectors(path=a.data); K = 400
    print(f"init: {x.shape[0]:,} x {x.shape[1]} vectors, K = {K}, {a.threads} threads", flush=True)
    run['init'] = bench_init(x, K, a.repeats, with_sklearn=not a.quick)
    g = torch.Generator().manual_seed(0); run['quantizer'] = {}
    for d in (384, 768):
        if d == 384: data = torch.from_numpy(x[:(len(x) // 4096) * 4096]).view(-1, 128 * 32, 384)[:12]
        else: data = torch.randn(12, 4096, d, generator=g)  # no 768-d real vectors offline in this run: Gaussian stand-ins
        batches = [b.view(128, 32, d) for b in data]
        targets = [torch.randn(128, 32, d, generator=g) for _ in batches]
        codebook = kmeans_init(data.reshape(-1, d), K, iters=5, device='cpu')
        print(f"quantizer: {len(batches)} batches of 128 x 32 x {d} ({'real' if d == 384 else 'Gaussian'}), K = {K}", flush=True)
        run['quantizer'][f'd={d}'] = dict(data='MiniLM layer-4 word vectors' if d == 384 else 'standard Gaussian',
                                          **bench_quantizers(batches, targets, codebook, K, a.repeats))
    run['machine']['load_after'] = load()
    report = json.loads(a.out.read_text()) if a.out.exists() else {}  # one entry per thread count, kept across runs
    report.update(versions={p: version(p) for p in ('torch', 'faiss-cpu', 'scikit-learn', 'vector-quantize-pytorch', 'numpy')},
                  data=dict(what='MiniLM-L6 (all-MiniLM-L6-v2) layer-4 word vectors, mean over subwords, first whitespace '
                                 'words of shared/data/eraser-movie/train.txt', shape=list(x.shape)))
    report.setdefault('runs', {})[f'threads={a.threads}'] = run
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix('.tmp'); tmp.write_text(json.dumps(report, indent=1)); os.replace(tmp, a.out)
    print(json.dumps(run['init']['ratios']), *(json.dumps(q['ratios']) for q in run['quantizer'].values()), sep='\n')

if __name__ == '__main__': main()
