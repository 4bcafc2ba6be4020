"The `clvq` console script end to end: a tiny pipeline, `clvq run` and its report, its error paths, and resuming after Ctrl-C."
import json, math, os, signal, subprocess, sys, time
from html import escape
from pathlib import Path
import pandas as pd, pytest
from clvq_nb.cli import main
from clvq_nb.concepts import code_caption

ENV = {**os.environ, 'TOKENIZERS_PARALLELISM': 'false', 'OMP_NUM_THREADS': '2', 'PYTHONUNBUFFERED': '1'}

def _ctrl_c_reaches(): signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell's background job starts with SIGINT ignored; Python would keep ignoring it
TINY = ['--no-finetune', '--limit', '60', '--layers', '2', '4']

def clvq(*args, check=True):
    "Run the installed console script; return the completed process."
    r = subprocess.run(['clvq', *map(str, args)], capture_output=True, text=True, env=ENV, timeout=900)
    if check: assert r.returncode == 0, r.stderr[-3000:]
    return r

@pytest.fixture(scope='module')
def extracted(tmp_path_factory):
    out = tmp_path_factory.mktemp('run')
    clvq('extract', '--out', out, *TINY)
    return out

def test_extract_writes_stores(extracted):
    summary = json.loads((extracted/'extract.json').read_text())
    assert summary['layers'] == [2, 4]
    for split in ('train', 'test'):
        meta = json.loads((extracted/'stores'/split/'metadata.json').read_text())
        assert meta['layers'] == [2, 4] and summary['stores'][split]['texts'] == 60
        assert summary['stores'][split]['words'] > 60 * 5

def test_train_end_to_end(extracted):
    r = clvq('train', '--out', extracted, '--epochs', '2', '--codes', '16')
    metrics = json.loads((extracted/'run'/'metrics.json').read_text())
    assert metrics['epochs'] == 2 and math.isfinite(metrics['validation']['fvu']) and metrics['validation']['num_codes'] == 16
    assert set(metrics['bottleneck']) == {'real', 'shuffled', 'no_memory'}
    assert metrics['best_epoch'] in (1, 2) and r.stdout.count('\nepoch ') + r.stdout.startswith('epoch ') == 2

def test_resume_after_interrupt(extracted):
    out = extracted/'resume'; out.mkdir()
    (out/'stores').symlink_to(extracted/'stores')
    args = ['clvq', 'train', '--out', out, '--epochs', '40', '--codes', '16']
    p = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, preexec_fn=_ctrl_c_reaches)
    latest, t = out/'run'/'latest.json', time.time()
    while not latest.exists() and time.time() - t < 600 and p.poll() is None: time.sleep(0.2)
    assert latest.exists(), p.communicate()[1][-2000:]
    p.send_signal(signal.SIGINT); _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and 'run the same command again to resume' in err, err[-2000:]
    done = json.loads(latest.read_text())['epoch']
    r = clvq('train', '--out', out, '--epochs', str(done + 2), '--codes', '16', check=False)
    assert r.returncode == 2 and 'holds a run with other settings' in r.stderr   # a different run is refused...
    p2 = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, preexec_fn=_ctrl_c_reaches)
    t = time.time()
    while time.time() - t < 600 and p2.poll() is None:
        if json.loads(latest.read_text())['epoch'] > done: break
        time.sleep(0.2)
    p2.send_signal(signal.SIGINT); out2, _ = p2.communicate(timeout=120)
    assert f'resuming {out/"run"} after epoch {done + 1}' in out2, out2[-2000:]   # ...the same run picks up where it stopped

RUN = ['--limit', '80', '--set', 'classifier.max_train=300', '--epochs', '2', '--codes', '16', '--folds', '4',
       '--ig-steps', '8', '--clouds', '3', '--grid', '1']

@pytest.fixture(scope='module')
def ran(tmp_path_factory):
    out = tmp_path_factory.mktemp('run')
    r = clvq('run', '--out', out, *RUN)
    return out, r

def test_run_writes_everything(ran):
    out, r = ran
    m = json.loads((out/'metrics.json').read_text())
    for key in ('reconstruction.fvu', 'reconstruction.mse', 'codebook.perplexity', 'codebook.used_fraction', 'codebook.dead_codes',
                'bottleneck.real', 'bottleneck.shuffled', 'bottleneck.no_memory'):
        section, name = key.split('.'); assert math.isfinite(m[section][name]), key
    for cond in ('original', 'perturbed', 'random'): assert set(m['faithfulness'][cond]) == {'mean', 'std'}
    assert set(m['timing']) == {'finetune', 'extract', 'train', 'evaluate', 'quality', 'judge', 'report'}
    assert m['config']['pipeline']['limit'] == 80 and m['config']['train']['model']['num_codes'] == 16
    assert (out/'history.csv').exists() and (out/'run'/'best.safetensors').exists() and len(list((out/'clouds').glob('*.png'))) == 3
    concepts = (out/'concepts.csv').read_text(); assert concepts.count('\n') > 3
    q = m['concept_quality']; assert set(q['methods']) == {'CLVQ-VAE', 'k-means (K=16)', 'word identity (control)'} and 'name' in concepts.splitlines()[0]
    named, shown = pd.read_csv(out/'eval'/'concept_quality.csv', keep_default_na=False).set_index('code').name, pd.read_csv(out/'eval'/'outcomes.csv').code
    grid = (out/'eval'/'outcome_grid.html').read_text()
    assert all(f'>{escape(code_caption(c, named.get(c)))}</div>' in grid for c in shown), 'the outcome grid names its codes'
    html = (out/'report.html').read_text()
    assert 'src="http' not in html and '<script src=' not in html, 'the report must open offline'
    assert html.count('class="plotly-graph-div"') >= 3 and html.count('data:image/png;base64,') >= 3 + 4
    assert 'report:' in r.stdout and 'probe accuracy: original' in r.stdout

def test_run_again_reuses_every_cache(ran):
    out, _ = ran
    before = (out/'history.csv').read_text(), (out/'eval'/'saliency-layer4-steps8.json').stat().st_mtime
    r = clvq('run', '--out', out, *RUN)
    assert (out/'history.csv').read_text() == before[0] and (out/'eval'/'saliency-layer4-steps8.json').stat().st_mtime == before[1]
    assert 'epoch   1' not in r.stdout   # no training epoch ran again

def test_bad_config_file_key(tmp_path):
    (tmp_path/'c.yaml').write_text('modle: minilm\n')
    r = clvq('run', '--config', tmp_path/'c.yaml', '--out', tmp_path, check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("clvq: error: unknown setting(s) ['modle']"), r.stderr

def test_config_file_and_flags(tmp_path):
    (tmp_path/'c.toml').write_text('limit = 5\nfinetune = false\nlayers = [2, 4]\n[train]\nmax_epochs = 9\n')
    clvq('extract', '--config', tmp_path/'c.toml', '--out', tmp_path/'o', '--limit', '4')
    assert json.loads((tmp_path/'o'/'config.json').read_text())['limit'] == 4   # the flag beats the file
    assert json.loads((tmp_path/'o'/'extract.json').read_text())['stores']['train']['texts'] == 4

@pytest.mark.parametrize('args, message', [
    (['run', '--config', '/nonexistent/c.toml'], '/nonexistent/c.toml does not exist'),
    (['run', '--set', 'train.lr=fast'], "train.lr = 'fast'"),
    (['run', '--set', 'clvq.num_code=8'], 'num_code'),
    (['evaluate'], 'run `clvq extract --out'),
    (['quality'], 'holds no finished run'),
    (['extract', '--model', 'no-such-model-xyz'], 'no-such-model-xyz'),
    (['finetune', '--classifier', '/nonexistent/my-classifier'], "unknown model '/nonexistent/my-classifier'"),
    (['extract', '--task', 'sentimnt'], "unknown task 'sentimnt'"),
    (['extract', '--task', 'file', '--data', '/nonexistent/data.csv'], '/nonexistent/data.csv'),
    (['extract', '--layers', '2', '9', '--no-finetune', '--limit', '4'], 'layer'),
    (['train'], 'run `clvq extract --out'),
    (['extract', '--word-split', 'punctuation'], "word_split 'punctuation' is unknown"),
    (['extract', '--data-config', 'plain_text'], 'use them with --task hub --data OWNER/NAME'),
    (['finetune', '--prompt'], 'minilm (bert) is not a decoder-only model'),
    (['finetune', '--label-words', ' bad', ' good'], 'which is off: add --prompt'),
    (['finetune', '--prompt', '--model', 'smollm2', '--prompt-template', 'Sentiment:'], 'must hold the placeholder {text} once'),
    (['finetune', '--prompt', '--model', 'smollm2', '--label-words', ' unwatchable', ' good'], "' unwatchable' ('Ġunw' + 'atch' + 'able') are several tokens"),
    (['finetune', '--prompt', '--model', 'smollm2', '--label-words', ' bad', ' good', ' meh'], "do not match the task's 2 classes"),
])
def test_errors_are_one_line(tmp_path, capsys, args, message):
    "Each bad input stops before any work, so the command's `main` runs in this process (the console script's own exit path: `test_bad_config_file_key`)."
    try: status = main([*args[:1], '--out', str(tmp_path), *args[1:]])
    except SystemExit as e: status = e.code
    err = capsys.readouterr().err
    assert status == 2, (status, err[-2000:])
    last = err.strip().splitlines()[-1]
    assert last.startswith('clvq: error:') and message in last and 'Traceback' not in err, err[-2000:]

def test_corpus_markup_is_escaped(tmp_path):
    "A corpus whose words hold markup and quotes, through `clvq run` (tiny BERT): the report and the attribution view show them as text."
    import csv
    from clvq_nb.testing import one_word_task, tiny_bert
    texts, labels = one_word_task(200, seed=3)
    hostile = ['<script>alert(1)</script>', '"quoted"', '<b>bold</b>', "it's&amp;"]
    texts = [f"{t} {' '.join(hostile)}" for t in texts]  # every sentence holds each, so they reach the top words and the outcome grid
    with open(tmp_path/'corpus.csv', 'w', newline='') as f: csv.writer(f).writerows([('text', 'label'), *zip(texts, labels)])
    out = tmp_path/'run'
    r = subprocess.run(['clvq', 'run', '--out', out, '--model', tiny_bert(), '--task', 'file', '--data', tmp_path/'corpus.csv', '--layers', '1', '2',
                        '--epochs', '1', '--codes', '8', '--folds', '2', '--ig-steps', '2', '--clouds', '4', '--grid', '2'],
                       capture_output=True, text=True, env={**ENV, 'CLVQ_CACHE': str(tmp_path/'cache')}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    page = (out/'report.html').read_text()
    for raw in hostile: assert raw not in page, raw
    assert '&lt;script&gt;alert(1)&lt;/script&gt;' in page and ('&quot;quoted&quot;' in page or '&#34;quoted&#34;' in page)
    from clvq_nb.extract import ActivationStore
    from clvq_nb.faithfulness import show_attributions, word_attributions
    from clvq_nb.models import load_model
    store = ActivationStore(out/'stores'/'test')
    model, tok = load_model(json.loads((out/'finetune.json').read_text())['finetuned'], num_labels=2, device='cpu')
    wa = word_attributions(model, tok, store.texts[:8], 1, steps=2, progress=False)
    view = ''.join(show_attributions(*wa.sentence(i)) for i in range(8))
    for raw in hostile: assert raw not in view, raw
    assert '&lt;script&gt;alert(1)&lt;/script&gt;' in view and '&quot;quoted&quot;' in view

def test_your_own_file_with_its_own_columns(tmp_path):
    "A CSV whose columns are not `text` / `label`, with named labels: the flags name them; a wrong name lists the columns."
    f = tmp_path/'reviews.csv'
    f.write_text('stars,review\n' + ''.join(f"{5 if i % 2 else 1},a {'good' if i % 2 else 'bad'} film number {i}\n" for i in range(200)))
    own = ['--task', 'file', '--data', f, '--label-col', 'stars', '--no-finetune', '--limit', '40', '--layers', '2', '4']
    clvq('extract', '--out', tmp_path/'o', '--text-col', 'review', '--set', 'label_names.1=negative', '--set', 'label_names.5=positive', *own)
    meta = json.loads((tmp_path/'o'/'stores'/'test'/'metadata.json').read_text())
    assert meta['label_names'] == ['negative', 'positive'] and meta['num_sentences'] == 20
    r = clvq('extract', '--out', tmp_path/'o2', '--text-col', 'body', *own, check=False)
    assert r.returncode == 2 and "no column 'body'" in r.stderr and 'columns found: stars, review' in r.stderr, r.stderr

def test_hub_dataset_and_word_split(tmp_path):
    "A dataset in the hub's layout (a local copy: no network), its configuration and splits from a config file and flags, words split by the tokenizer."
    import datasets
    copy = tmp_path/'imdb-copy'; (copy/'plain').mkdir(parents=True)
    feats = datasets.Features({'review': datasets.Value('string'), 'sentiment': datasets.ClassLabel(names=['neg', 'pos'])})
    for split, n in (('train', 60), ('held_out', 20)):
        datasets.Dataset.from_dict({'review': [f"a {'good' if i % 2 else 'bad'} film, number {i}." for i in range(n)], 'sentiment': [i % 2 for i in range(n)]},
                                   features=feats).to_parquet(copy/'plain'/f'{split}.parquet')
    (copy/'README.md').write_text('---\nconfigs:\n- config_name: plain\n  data_files:\n'
                                  + ''.join(f'  - split: {s}\n    path: plain/{s}.parquet\n' for s in ('train', 'held_out')) + '---\n')
    (tmp_path/'c.toml').write_text(f'task = "hub"\ndata = "{copy}"\ndata_config = "plain"\ntext_col = "review"\nlabel_col = "sentiment"\nword_split = "pretokenizer"\n')
    r = subprocess.run(['clvq', 'extract', '--config', tmp_path/'c.toml', '--out', tmp_path/'o', '--set', 'data_splits.test=held_out',
                        '--no-finetune', '--limit', '20', '--layers', '2', '4'], capture_output=True, text=True, timeout=900,
                       env={**ENV, 'HF_DATASETS_CACHE': str(tmp_path/'hf-cache')})
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path/'o'/'config.json').read_text())['data_splits'] == {'test': 'held_out'}
    from clvq_nb.extract import ActivationStore
    test = ActivationStore(tmp_path/'o'/'stores'/'test')
    assert test.label_names == ['neg', 'pos'] and test.word_split == 'pretokenizer' and len(test) == 20
    assert test.sentence_words(0)[-5:] == ['film', ',', 'number', test.texts[0].split()[-1][:-1], '.']   # the text's own punctuation, apart

def test_hub_id_offline_is_one_line(tmp_path):
    "Without the hub (offline mode: what no internet gives, without the retries), a hub id is one message, before any model is loaded."
    r = subprocess.run(['clvq', 'run', '--task', 'hub', '--data', 'stanfordnlp/imdb', '--out', tmp_path/'o'], capture_output=True, text=True, timeout=300,
                       env={**ENV, 'HF_HUB_OFFLINE': '1'})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[-1].startswith("clvq: error: could not load 'stanfordnlp/imdb' from the Hugging Face hub") and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path/'o').exists()

def test_prompt_run(tmp_path):
    "`clvq run --prompt` on a tiny random LLaMA and a corpus of your own: the prompt's record, stores of the texts' own words, every stage."
    import csv
    from clvq_nb.testing import one_word_task, tiny_llama
    texts, labels = one_word_task(200, seed=4)
    with open(tmp_path/'corpus.csv', 'w', newline='') as f: csv.writer(f).writerows([('text', 'label'), *zip(texts, labels)])
    out, template = tmp_path/'run', 'Verdict on: {text}\nOverall:'
    r = subprocess.run(['clvq', 'run', '--out', out, '--model', tiny_llama(), '--prompt', '--task', 'file', '--data', tmp_path/'corpus.csv',
                        '--prompt-template', template, '--label-words', ' terrible', ' excellent', '--layers', '1', '2',
                        '--epochs', '1', '--codes', '8', '--folds', '2', '--ig-steps', '2', '--clouds', '2', '--grid', '1'],
                       capture_output=True, text=True, env={**ENV, 'CLVQ_CACHE': str(tmp_path/'cache')}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    ft = json.loads((out/'finetune.json').read_text())
    assert ft['prompt'] == dict(template=template, label_words=[' terrible', ' excellent']) and 0 <= ft['test_accuracy'] <= 1
    m = json.loads((out/'metrics.json').read_text())
    assert m['classifier'] == {k: ft[k] for k in ('validation_accuracy', 'test_accuracy')} and math.isfinite(m['reconstruction']['fvu'])
    from clvq_nb.extract import ActivationStore
    store = ActivationStore(out/'stores'/'test')
    assert store.metadata['fingerprint']['model']['cls'] == 'PromptClassifier' and set(store.preds) <= {0, 1}
    assert [store.sentence_words(i) for i in range(len(store))] == [t.split() for t in store.texts]  # no word of the template
    assert (out/'report.html').exists() and 'classifier test accuracy' in r.stdout
