"""Two CPU processes (torchrun, gloo) against one, on the same 96 sentences: the same store byte for byte, the same
quantizer state on both processes after every epoch, and the same training result.

Tolerances, from measurements on this 2-core machine:
- Without sampling and dropout (top_k=1, dropout=0) two processes differ from one only in the order of floating-point
  sums; the measured relative difference of the final validation loss and FVU was about 1e-6. We allow 1e-4.
- With the demo preset's top-k sampling and dropout the two draw different random numbers, so they differ as
  one-process runs with different seeds do: eight one-process runs differing only in their dropout and sampling seeds
  gave a validation-loss std of 0.0044 around 0.190 (benchmarks/bench_scaling.py, results/scaling.json 'seed_spread'),
  so the difference of two such runs has a std of 0.0044 * sqrt(2) = 0.0062. We allow 4 of those: 0.025.
"""
import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from clvq_nb.distributed import store_diff, torchrun

WORKER = '''
import json, sys, torch
from pathlib import Path
import clvq_nb.train as T
from clvq_nb.core import ClvqError
from clvq_nb.data import load_task
from clvq_nb.extract import extract
from clvq_nb.core import init_distributed
from clvq_nb.models import load_model

def tiny(**model): return T.preset('demo', 4, 6, max_epochs=2, batch_size=16, model=dict(num_codes=16, decoder_layers=1, decoder_ff=64) | model)

def stop_after_first(rec):
    if rec['epoch'] == 1: raise KeyboardInterrupt

out = Path(sys.argv[1]); rank, world = init_distributed(); torch.set_num_threads(1)
lm, tok = load_model('minilm', device='cpu')
store = extract(lm, tok, load_task('sentiment')['train'].select(range(96)), [4, 6], out/'store', verbose=False)
inner = T.train_epoch
def train_epoch(model, opt, pairs, cfg, epoch, *rest):
    metrics = inner(model, opt, pairs, cfg, epoch, *rest)
    q = getattr(model, 'module', model).quantizer
    torch.save({k: v for k, v in q.state_dict().items() if k != '_extra_state'}, out/f'quantizer-{cfg.model.top_k}-{epoch}-{rank}.pt')
    return metrics
T.train_epoch = train_epoch
res = {name: T.train(store, tiny(**m), out/name, progress=False) for name, m in dict(exact=dict(top_k=1, dropout=0.0), demo={}).items()}
T.train_epoch = inner
try: T.train(store, tiny(), out/'resumed', progress=False, on_epoch_end=stop_after_first)
except KeyboardInterrupt: pass
resumed = T.train(store, tiny(), out/'resumed', progress=False)
try: T.train(store, tiny(num_codes=8), out/'demo', progress=False); error = None
except ClvqError as e: error = str(e)
(out/f'rank-{rank}.json').write_text(json.dumps(dict(world=world, error=error,
    metrics={k: r.metrics for k, r in res.items()}, resumed_equal=T.state_sha(resumed.model) == T.state_sha(res['demo'].model)
    and resumed.history.drop(columns=['seconds', 'words_per_s']).equals(res['demo'].history.drop(columns=['seconds', 'words_per_s'])))))
'''

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "The worker run by one process and, at the same time, by two under torchrun."
    d = tmp_path_factory.mktemp('distributed'); (d/'worker.py').write_text(WORKER)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false'}
    one = subprocess.Popen([sys.executable, d/'worker.py', d/'one'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    torchrun(d/'worker.py', d/'two', nproc=2, timeout=600)
    _, err = one.communicate(timeout=600)
    assert one.returncode == 0, err[-3000:]
    return d

def result(d, run, rank=0): return json.loads((d/run/f'rank-{rank}.json').read_text())

def test_one_store(runs):
    assert store_diff(runs/'one'/'store', runs/'two'/'store') == []

def test_processes_hold_one_quantizer_state(runs):
    for top_k in (1, 5):
        for epoch in (0, 1):
            r0, r1 = (torch.load(runs/'two'/f'quantizer-{top_k}-{epoch}-{rank}.pt') for rank in (0, 1))
            assert r0.keys() == {'codebook', 'ema_count', 'ema_sum', 'steps_unused', 'initialised'}
            for k in r0: assert torch.equal(r0[k], r1[k]), (top_k, epoch, k)

def test_exact_setting_matches_one_process(runs):
    one, two = result(runs, 'one')['metrics']['exact'], result(runs, 'two')['metrics']['exact']
    for m in ('loss', 'mse', 'fvu', 'perplexity'):
        assert abs(two['validation'][m] - one['validation'][m]) < 1e-4 * abs(one['validation'][m]), m
    cb1, cb2 = (torch.load(runs/run/'quantizer-1-1-0.pt')['codebook'] for run in ('one', 'two'))
    assert (cb1 - cb2).abs().max() < 1e-4

def test_demo_setting_within_seed_spread(runs):
    one, two = result(runs, 'one')['metrics']['demo'], result(runs, 'two')['metrics']['demo']
    assert abs(two['validation']['loss'] - one['validation']['loss']) < 0.025

def test_run_records(runs):
    for rank in (0, 1):
        r = result(runs, 'two', rank)
        assert r['world'] == 2 and r['metrics']['demo']['processes'] == 2
        assert r['resumed_equal']                                    # interrupted and resumed on 2 processes = uninterrupted
        assert 'holds a run with other settings' in r['error']       # rank 0's check stops every process
    assert 'processes' not in result(runs, 'one')['metrics']['demo'] and result(runs, 'one')['resumed_equal']
