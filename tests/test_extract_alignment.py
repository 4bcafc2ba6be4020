"Word alignment and aggregation of clvq_nb.extract against a slow per-token reference built on the tokenizer's own `word_ids()`."
import numpy as np, pytest, torch
from transformers import AutoTokenizer
from clvq_nb.assets import fetch
from clvq_nb.extract import encode_words, plan_words, token_rows, aggregate

VOCAB = ['the', 'film', 'unbelievably', 'naïve', 'café', '😀', '!', "isn't", 'ok', '\u200b', 'Zürich', '—', 'overwrought-ish',
         'a', 'of', 'antidisestablishmentarianism', '...', '12.5%', 'déjà', 'vu']

@pytest.fixture(scope='module')
def tok(): return AutoTokenizer.from_pretrained(fetch('minilm', verbose=False))

def reference(tok, words:list, max_length:int, how:str) -> list:
    "Per text, per kept word: the first/last/mean content position of its subwords, by per-token loops over word_ids()."
    out = []
    for ws in words:
        enc = tok(ws, is_split_into_words=True, truncation=True, max_length=max_length)
        full = tok(ws, is_split_into_words=True)
        n_tok = [sum(1 for w in full.word_ids() if w == i) for i in range(len(ws))]
        pos = {}
        for p, w in enumerate(x for x in enc.word_ids() if x is not None):
            pos.setdefault(w, []).append(p)
        kept = [w for w in sorted(pos) if len(pos[w]) == n_tok[w]]  # all subwords fit
        out.append([{'first': pos[w][0], 'last': pos[w][-1], 'mean': np.mean(pos[w])}[how] for w in kept])
    return out

@pytest.mark.parametrize('how', ['first', 'last', 'mean'])
@pytest.mark.parametrize('side', ['right', 'left'])
def test_rows_match_reference(tok, how, side):
    rng = np.random.default_rng(0)
    words = [list(rng.choice(VOCAB, rng.integers(1, 30))) for _ in range(60)]
    tok.padding_side, max_length = side, 24
    plan = plan_words(tok, words, max_length)
    enc, tw, pos = encode_words(tok, words, max_length)
    rows = token_rows(tw, pos, plan['use'])
    hidden = torch.as_tensor(np.where(pos >= 0, pos, 0), dtype=torch.float64)[None, :, :, None]  # vector = content position
    got = aggregate(hidden, torch.as_tensor(rows), how)[0, :, 0].numpy()
    want = reference(tok, words, max_length, how)
    assert [len(w) for w in want] == plan['n_kept'].tolist()
    np.testing.assert_allclose(got, np.concatenate(want))
