"""Units 07 and 08: the exercise references agree with independent implementations (torch, Hugging Face)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import params
from course_lib.attention import causal_mask
from course_lib.blocks import EncoderBlock
from course_lib.exercises import unit07_transformer_block as ref07
from course_lib.exercises import unit08_encoder_bert as ref08
from course_lib.models import BertConfig, BertEncoder, BertForClassification


def _random_block(D=16, H=4, seed=0):
    torch.manual_seed(seed)
    block = EncoderBlock(D, H, norm_first=True).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for lin in (block.attn.W_Q, block.attn.W_K, block.attn.W_V, block.attn.W_O):
            lin.bias.zero_()  # the explicit-weight attention has no biases
    return block


def _explicit(block):
    a, m = block.attn, block.mlp
    return ((block.ln1.weight, block.ln1.bias), (a.W_Q.weight.T, a.W_K.weight.T, a.W_V.weight.T, a.W_O.weight.T),
            (block.ln2.weight, block.ln2.bias), (m.up.weight.T, m.up.bias, m.down.weight.T, m.down.bias))


# ---------------------------------------------------------------------------------------------------
# unit 07
# ---------------------------------------------------------------------------------------------------


def test_layer_norm_reference_matches_torch():
    x = torch.randn(3, 5, 8) * 4 + 2
    w, b = torch.randn(8), torch.randn(8)
    for eps in (1e-5, 0.1):
        want = F.layer_norm(x, (8,), w, b, eps)
        torch.testing.assert_close(ref07.LAYER_NORM.reference(x, w, b, eps), want, atol=1e-5, rtol=1e-5)


def test_mlp_reference_matches_linear_layers():
    torch.manual_seed(0)
    up, down = nn.Linear(6, 24), nn.Linear(24, 6)
    x = torch.randn(2, 4, 6)
    want = down(F.gelu(up(x)))
    got = ref07.mlp(x, up.weight.T, up.bias, down.weight.T, down.bias)
    torch.testing.assert_close(got, want)


def test_mlp_rejects_mismatched_weights():
    with pytest.raises(ValueError, match="W_up"):
        ref07.mlp(torch.randn(2, 6), torch.randn(5, 24), torch.randn(24), torch.randn(24, 6), torch.randn(6))


def test_self_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    D, H, T = 16, 4, 5
    mha = nn.MultiheadAttention(D, H, bias=False, batch_first=True).eval()
    W_Q, W_K, W_V = mha.in_proj_weight.detach().chunk(3)
    x = torch.randn(2, T, D)
    want, _ = mha(x, x, x, attn_mask=~causal_mask(T), need_weights=False)  # torch: True = blocked
    got = ref07.self_attention(x, W_Q.T, W_K.T, W_V.T, mha.out_proj.weight.detach().T, H, mask=causal_mask(T))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_block_matches_encoder_block_and_torch_layer(causal):
    D, H, T = 16, 4, 6
    block = _random_block(D, H)
    layer = nn.TransformerEncoderLayer(D, H, dim_feedforward=4 * D, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True).eval()
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([block.attn.W_Q.weight, block.attn.W_K.weight,
                                                        block.attn.W_V.weight]))
        layer.self_attn.in_proj_bias.zero_()
        layer.self_attn.out_proj.weight.copy_(block.attn.W_O.weight)
        layer.self_attn.out_proj.bias.zero_()
        for ours, theirs in ((block.mlp.up, layer.linear1), (block.mlp.down, layer.linear2),
                             (block.ln1, layer.norm1), (block.ln2, layer.norm2)):
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
    x = torch.randn(2, T, D)
    mask = causal_mask(T) if causal else None
    with torch.no_grad():
        got = ref07.transformer_block(x, *_explicit(block), H, mask=mask)
        torch.testing.assert_close(got, block(x, mask=mask), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got, layer(x, src_mask=None if mask is None else ~mask), atol=1e-5, rtol=1e-5)


def test_every_block_mistake_differs_from_the_reference():
    block = _random_block()
    x, mask = torch.randn(2, 6, 16), causal_mask(6)
    want = ref07.transformer_block(x, *_explicit(block), 4, mask=mask)
    for m in ref07.TRANSFORMER_BLOCK.mistakes:
        got = m.fn(x, *_explicit(block), 4, mask=mask)
        assert not torch.allclose(got, want, atol=1e-3), m.name


def test_count_by_category_reproduces_gpt3():
    counts = ref07.COUNT_BY_CATEGORY.reference(96, 12288, 96, 128, 49152, 50257)
    assert counts["total"] == 175_181_291_520
    assert counts["up_projection"] == 57_982_058_496
    assert set(counts) == set(params.CATEGORIES) | {"total"}


# ---------------------------------------------------------------------------------------------------
# unit 08
# ---------------------------------------------------------------------------------------------------


def _padded_batch(B=64, T=24, V=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (B, T), generator=g)
    ids[:, 0] = 1
    ids[:, T - 4] = 2
    ids[:, T - 3:] = 0
    return ids


def test_mask_tokens_follows_the_bert_rule_statistically():
    ids = _padded_batch(B=2000)
    before = ids.clone()
    masked, labels = ref08.mask_tokens(ids, 40, 3, (0, 1, 2), torch.Generator().manual_seed(0))
    assert torch.equal(ids, before), "input_ids must not be modified"
    words = ids > 2
    selected = labels != -100
    assert not (selected & ~words).any(), "special tokens are never selected"
    assert torch.equal(labels[selected], ids[selected]), "labels are the original ids"
    assert torch.equal(masked[~selected], ids[~selected]), "unselected tokens are unchanged"
    rate = selected.sum() / words.sum()
    assert abs(rate - 0.15) < 0.01
    n = selected.sum()
    frac_mask = ((masked == 3) & selected).sum() / n
    frac_same = ((masked == ids) & selected).sum() / n
    assert abs(frac_mask - 0.8) < 0.02
    assert abs(frac_same - (0.1 + 0.1 / 40)) < 0.02  # kept, or a random token that equals the original


def test_mask_tokens_is_determined_by_the_generator():
    ids = _padded_batch()
    a = ref08.mask_tokens(ids, 40, 3, (0, 1, 2), torch.Generator().manual_seed(5))
    b = ref08.mask_tokens(ids, 40, 3, (0, 1, 2), torch.Generator().manual_seed(5))
    c = ref08.mask_tokens(ids, 40, 3, (0, 1, 2), torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_mlm_loss_matches_torch_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11) * 5
    labels = torch.randint(0, 11, (3, 7))
    labels[torch.rand(3, 7) < 0.6] = -100
    labels[0, 1] = 4  # at least one target
    want = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(ref08.mlm_loss(logits, labels), want)


def test_classifier_head_matches_bert_for_classification():
    torch.manual_seed(0)
    encoder = BertEncoder(BertConfig(vocab_size=30, max_len=10, n_layers=1, n_heads=2, d_model=8)).eval()
    model = BertForClassification(encoder, n_classes=3).eval()
    ids = torch.randint(3, 30, (4, 6))
    attention = torch.ones_like(ids)
    attention[1, 4:] = 0
    with torch.no_grad():
        hidden = encoder(ids, attention)
        got = ref08.classifier_head(hidden, model.pooler.weight.T, model.pooler.bias, model.classifier.weight.T,
                                    model.classifier.bias)
        torch.testing.assert_close(got, model(ids, attention))


def test_classifier_head_matches_hugging_face_pooler():
    modeling_bert = pytest.importorskip("transformers.models.bert.modeling_bert")
    from transformers import BertConfig as HFBertConfig

    torch.manual_seed(0)
    pooler = modeling_bert.BertPooler(HFBertConfig(hidden_size=8)).eval()
    classifier = nn.Linear(8, 2)
    hidden = torch.randn(3, 5, 8)
    with torch.no_grad():
        want = classifier(pooler(hidden))
        got = ref08.classifier_head(hidden, pooler.dense.weight.T, pooler.dense.bias, classifier.weight.T,
                                    classifier.bias)
    torch.testing.assert_close(got, want)
