"clvq_nb.faithfulness.integrated_gradients against captum's LayerIntegratedGradients (same hidden state, baseline and Riemann rule)."
import pytest, torch
from transformers import BertConfig, BertForSequenceClassification
from clvq_nb.faithfulness import integrated_gradients

@pytest.mark.parametrize('layer', [0, 2, 3])
def test_matches_captum(layer, captum_ig):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                                     intermediate_size=32, max_position_embeddings=16, pad_token_id=0)).eval()
    ids = torch.tensor([[1, 7, 8, 9, 2, 0], [1, 10, 11, 12, 13, 2]]); mask = (ids > 0).long(); mask[0, 5] = 0
    special = ((ids == 1) | (ids == 2)).long()
    attr, pred, gap = integrated_gradients(model, dict(input_ids=ids, attention_mask=mask), special, layer, steps=24)
    ref = captum_ig(model, dict(input_ids=ids, attention_mask=mask), ids.masked_fill(mask.bool() & ~special.bool(), 0), layer, pred, 24)
    torch.testing.assert_close(attr, ref * mask, rtol=1e-4, atol=1e-5)
