"Faults a hostile but fair user meets: damaged or foreign caches and checkpoints, NaN, odd data, a full disk, killed runs. Each ends in one message (exit 2) or a correct rebuild."
import contextlib, csv, errno, io, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch
from clvq_nb.cli import main
from clvq_nb.core import temp_path
from clvq_nb.testing import one_word_task, tiny_bert

MODEL = str(tiny_bert())  # built (once) in the default cache, before the tests point CLVQ_CACHE elsewhere
RUN = ['--model', MODEL, '--layers', '1', '2', '--epochs', '1', '--codes', '8', '--folds', '2', '--ig-steps', '2', '--clouds', '2', '--grid', '1']

def clvq(*args) -> tuple[int, str, str]:
    "Run the command line in this process: (exit status, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main(list(map(str, args)))
    return code, out.getvalue(), err.getvalue()

def refused(r, message:str):
    "Exit 2, no traceback, and the last line is the one message, holding `message`."
    code, _, err = r
    last = err.strip().splitlines()[-1]
    assert code == 2 and 'Traceback' not in err and last.startswith('clvq: error:') and message in last, err[-2000:]
    return last

def write_corpus(path:Path, texts, labels) -> Path:
    with open(path, 'w', newline='') as f: csv.writer(f).writerows([('text', 'label'), *zip(texts, labels)])
    return path

@pytest.fixture(scope='module')
def env(tmp_path_factory):
    "A cache of this module's own, and a corpus of 200 texts whose label is decided by one word."
    root = tmp_path_factory.mktemp('faults')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('CLVQ_CACHE', str(root/'cache')); mp.setenv('TOKENIZERS_PARALLELISM', 'false')
        yield root, write_corpus(root/'corpus.csv', *one_word_task(200, seed=3))

def args(env, out) -> list: return ['--out', out, '--task', 'file', '--data', env[1], *RUN]

@pytest.fixture(scope='module')
def base(env):
    "A complete, uninterrupted run: what every repaired run must equal."
    out = env[0]/'base'
    assert clvq('run', *args(env, out))[0] == 0
    return out

def copy_run(base:Path, dest:Path) -> Path: shutil.copytree(base, dest, symlinks=True); return dest

def same_training(a:Path, b:Path):
    "Two run folders hold the same trained model (every tensor and the header's metadata) and the same validation metrics."
    from safetensors import safe_open
    (ma, ta), (mb, tb) = ((f.metadata(), {k: f.get_tensor(k) for k in f.keys()}) for f in
                          (safe_open(p/'run'/'best.safetensors', 'pt') for p in (a, b)))
    assert ma == mb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    ma, mb = (json.loads((p/'run'/'metrics.json').read_text()) for p in (a, b))
    for key in ('validation', 'bottleneck', 'baselines', 'best_epoch'): assert ma[key] == mb[key], key

def new_files(folder:Path, since:float) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file() and p.stat().st_mtime > since)

def vector_rows(store:Path, layer:int) -> tuple[Path, int, int]:
    "The word-vector file of `layer`, where its first row starts, and a row's size in bytes (read from the store itself)."
    from clvq_nb.extract import ActivationStore
    s = ActivationStore(store); v = s.word_vectors(layer); f = store/'word_vectors'/f'layer_{layer}.arrow'
    return f, f.read_bytes().find(v[:1].tobytes()), v[:1].nbytes

# 1. A checkpoint is checked against its run, and for damage
def test_foreign_checkpoint_is_refused(env, base):
    other = env[0]/'downward'; other.mkdir(); (other/'stores').symlink_to(base/'stores')
    assert clvq('train', *args(env, other), '--layers', '2', '1', '--downward')[0] == 0  # a 2 → 1 run, asked for explicitly
    a = copy_run(base, env[0]/'foreign'); shutil.copyfile(other/'run'/'best.safetensors', a/'run'/'best.safetensors')
    t = time.time(); time.sleep(0.01)
    assert 'it maps layers 2 → 1, this run 1 → 2' in refused(clvq('evaluate', *args(env, a)), 'was not written by the run in')
    assert new_files(a, t) == ['config.json'] and not (a/'metrics.json').exists() and not (a/'report.html').exists()
    refused(clvq('report', *args(env, a)), 'metrics.json is missing')  # the report never shows old metrics beside a new run

@pytest.mark.parametrize('damage', ['truncated', 'overwritten', 'not a checkpoint'])
def test_damaged_checkpoint_is_refused(env, base, damage):
    a = copy_run(base, env[0]/f'damaged-{damage.replace(" ", "-")}'); best = a/'run'/'best.safetensors'; raw = best.read_bytes()
    best.write_bytes({'truncated': raw[:len(raw) // 2], 'overwritten': raw[:-4096] + bytes(range(256)) * 16, 'not a checkpoint': b'{"weights": []}'}[damage])
    t = time.time(); time.sleep(0.01)
    refused(clvq('evaluate', *args(env, a)), 'is damaged or is not a clvq_nb checkpoint')
    assert new_files(a, t) == ['config.json'] and not (a/'metrics.json').exists()
    refused(clvq('report', *args(env, a)), 'metrics.json is missing')
    if damage == 'truncated':  # the fix the message names: delete the run and train again; the result equals the uninterrupted run's
        shutil.rmtree(a/'run'); assert clvq('train', *args(env, a))[0] == 0; same_training(a, base)

# 2. NaN is caught where data enters: the store on first read, and the training loss
def test_nan_in_train_store(env, base):
    a = copy_run(base, env[0]/'nan-train'); shutil.rmtree(a/'run')
    f, at, row = vector_rows(a/'stores'/'train', 2); raw = f.read_bytes()
    f.write_bytes(raw[:at + 5 * row] + np.full(3 * row // 2, np.nan, np.float16).tobytes() + raw[at + 8 * row:])  # rows 5, 6, 7
    refused(clvq('train', *args(env, a)), 'holds NaN or inf in word_vectors of layer 2, first at row 5')
    assert not (a/'run'/'best.safetensors').exists()
    assert clvq('extract', *args(env, a))[0] == 0 and f.read_bytes() == (base/'stores'/'train'/'word_vectors'/'layer_2.arrow').read_bytes()  # rebuilt
    assert clvq('train', *args(env, a))[0] == 0; same_training(a, base)

def test_nan_in_test_store(env, base):
    a = copy_run(base, env[0]/'nan-test')
    f, at, row = vector_rows(a/'stores'/'test', 1); raw = f.read_bytes()
    f.write_bytes(raw[:at] + np.full(row // 2, np.inf, np.float16).tobytes() + raw[at + row:])
    refused(clvq('evaluate', *args(env, a)), f"{a/'stores'/'test'} holds NaN or inf in word_vectors of layer 1, first at row 0")
    assert not (a/'metrics.json').exists()

def test_nonfinite_loss_stops_training(env, base):
    a = env[0]/'diverge'; a.mkdir(); (a/'stores').symlink_to(base/'stores')
    last = refused(clvq('train', *args(env, a), '--set', 'train.lr=1e38', '--set', 'train.grad_clip=null', '--epochs', '3'), 'the training loss is')
    assert 'training stops at the first non-finite loss' in last and ', step ' in last

# 3. A damaged store is detected beyond metadata.json, and rebuilt
def test_truncated_store(env, base):
    a = copy_run(base, env[0]/'cut-store'); shutil.rmtree(a/'run')
    f = a/'stores'/'train'/'word_vectors'/'layer_2.arrow'; raw = f.read_bytes(); f.write_bytes(raw[:len(raw) // 3])
    refused(clvq('train', *args(env, a)), f'word_vectors/layer_2.arrow has {len(raw) // 3:,} bytes, not {len(raw):,}')
    code, out, err = clvq('extract', *args(env, a))
    assert code == 0 and 'rebuilding' in out + err and f.read_bytes() == raw

# 4. The fine-tuned classifier is cached by the data's content
def test_finetune_cache_follows_content(env, tmp_path):
    texts, labels = one_word_task(200, seed=3); data = write_corpus(tmp_path/'mine.csv', texts, labels)
    first = json.loads(clvq('finetune', *args((env[0], data), tmp_path/'a'))[1])
    write_corpus(data, texts, 1 - labels)  # the same file, its labels edited in place
    second = json.loads(clvq('finetune', *args((env[0], data), tmp_path/'a'))[1])
    assert first['finetuned'] != second['finetuned']
    assert json.loads(clvq('finetune', *args((env[0], data), tmp_path/'b'))[1])['finetuned'] == second['finetuned']  # same content: reused

# 5. Odd data and settings: one message before any work
@pytest.mark.parametrize('labels, message', [([1] * 200, 'has fewer than two classes (train 1 160; validation 1 20; test 1 20)'),
                                              ([0, 1, 0], 'is too small: its validation and test splits are empty')])
def test_odd_data_refused_before_any_work(env, tmp_path, labels, message):
    data = write_corpus(tmp_path/'odd.csv', one_word_task(len(labels))[0], labels)
    before = sorted((env[0]/'cache').rglob('*'))
    refused(clvq('run', *args((env[0], data), tmp_path/'out')), message)
    assert not (tmp_path/'out').exists() and sorted((env[0]/'cache').rglob('*')) == before  # nothing made, nothing cached

@pytest.mark.parametrize('extra, message', [(['--layers', '2', '1'], '--layers 2 1 maps layer 2 to layer 1, not to a higher one'),
                                            (['--layers', '2', '2'], 'to map downwards on purpose, add --downward'),
                                            (['--codes', '0'], 'num_codes=0 must be at least 1')])
def test_settings_refused(env, tmp_path, extra, message):
    refused(clvq('run', *args(env, tmp_path/'out'), *extra), message)
    assert not (tmp_path/'out').exists()

def test_missing_column_names_a_fix_the_command_line_has(env, tmp_path):
    data = tmp_path/'cols.csv'; data.write_text('sentence,y\ngood film,1\n')
    refused(clvq('finetune', *args((env[0], data), tmp_path/'out')), 'rename them to `text` and `label`')

# 6. No CUDA, a full disk, killed runs, a run that failed before its first epoch
@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_no_cuda(env, tmp_path):
    refused(clvq('extract', *args(env, tmp_path/'out'), '--device', 'cuda'), "device 'cuda': this machine has no CUDA GPU")

def hidden(folder:Path) -> list: return sorted(str(p.relative_to(folder)) for p in folder.rglob('.*'))

def test_disk_full_while_extracting(env, tmp_path, monkeypatch):
    from clvq_nb.extract import VectorFile
    def full(self, row, x): self.f.write(b'\0' * 10); raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(VectorFile, 'write', full)
    refused(clvq('extract', *args(env, tmp_path/'out')), 'the disk is full writing')
    assert hidden(tmp_path/'out') == [] and not (tmp_path/'out'/'stores'/'train').exists()

def test_disk_full_while_writing_a_checkpoint(env, base, tmp_path, monkeypatch):
    import clvq_nb.clvq as clvq_module
    def full(state, path, metadata=None): Path(path).write_bytes(b'\0' * 10); raise Exception('Error while serializing: I/O error: No space left on device (os error 28)')
    a = tmp_path/'out'; a.mkdir(); (a/'stores').symlink_to(base/'stores'); monkeypatch.setattr(clvq_module, 'save_file', full)
    refused(clvq('train', *args(env, a)), f"the disk is full writing {a/'run'}")
    assert hidden(a/'run') == []
    dead = subprocess.Popen(['true']); dead.wait()  # and a checkpoint's temporary file that a killed process left
    stale = a/'run'/temp_path(a/'run'/'best.safetensors').name.replace(f'-{os.getpid()}-', f'-{dead.pid}-'); stale.write_bytes(b'\0' * 10)
    monkeypatch.undo(); assert clvq('train', *args(env, a))[0] == 0; same_training(a, base)  # space freed: the same command trains as if nothing happened
    assert hidden(a/'run') == []

def test_stale_temporary_folder_of_a_killed_extraction(env, base, tmp_path):
    "`kill -9` in the middle of extraction leaves a hidden temporary folder; the next run removes it and builds the same store."
    a = tmp_path/'out'
    script = ("import os, signal\nimport clvq_nb.extract as ex\n"
              "ex.forward = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
              f"from clvq_nb.cli import main; main({list(map(str, ['extract', *args(env, a)]))!r})")
    p = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert [n.split('.tmp-')[0] for n in hidden(a)] == ['stores/.train']  # the killed extraction's leftover
    assert clvq('extract', *args(env, a))[0] == 0 and hidden(a) == []
    for rel in ('word_vectors/layer_1.arrow', 'word_vectors/layer_2.arrow', 'sentences.arrow'):
        assert (a/'stores'/'train'/rel).read_bytes() == (base/'stores'/'train'/rel).read_bytes()

def test_run_failed_before_first_epoch_does_not_block(env, base, tmp_path, monkeypatch):
    import clvq_nb.train as train_module
    from clvq_nb.core import ClvqError
    def fails(*a, **k): raise ClvqError('the initialisation failed')
    a = tmp_path/'out'; a.mkdir(); (a/'stores').symlink_to(base/'stores')
    monkeypatch.setattr(train_module, '_init_model', fails)
    refused(clvq('train', *args(env, a)), 'the initialisation failed')
    assert (a/'run'/'run.json').exists()
    monkeypatch.undo()
    assert clvq('train', *args(env, a), '--codes', '12')[0] == 0  # the corrected command, in the same folder
    assert json.loads((a/'run'/'run.json').read_text())['config']['model']['num_codes'] == 12

def test_disk_full_while_fetching_an_asset(tmp_path, monkeypatch):
    "With an empty cache on a full disk, pip's failure is reported as the full disk it is, not as the network."
    import clvq_nb.assets as assets
    pip_says = 'ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device'
    monkeypatch.setattr(assets.subprocess, 'run', lambda *a, **k: subprocess.CompletedProcess(a, 1, '', pip_says))
    with pytest.raises(assets.ClvqError, match='the disk is full writing') as e: assets.download_dist(assets.get_asset('minilm').dists[0], tmp_path)
    assert 'PyPI' not in str(e.value)
