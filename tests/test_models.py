"""GPT, BERT and the encoder-decoder: shapes, masks doing their job, configs, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_lib.attention import MultiHeadAttention
from course_lib.blocks import DecoderBlock, EncoderBlock
from course_lib.models import (
    GPT,
    BertConfig,
    BertEncoder,
    BertForClassification,
    BertForMLM,
    EncoderDecoder,
    GPTConfig,
    Seq2SeqConfig,
)


def _ids(B, T, V, seed=0):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, block_size=12, n_layers=2, n_heads=4, d_model=16)).eval()


@pytest.fixture
def seq2seq():
    torch.manual_seed(0)
    return EncoderDecoder(
        Seq2SeqConfig(src_vocab_size=20, tgt_vocab_size=25, max_len=10, n_layers=2, n_heads=2, d_model=16)
    ).eval()


# --------------------------------------------------------------------------- GPT


def test_gpt_shapes_loss_and_building_blocks(gpt):
    ids = _ids(3, 12, 30)
    logits = gpt(ids)
    assert logits.shape == (3, 12, 30)
    targets = _ids(3, 12, 30, seed=1)
    logits2, loss = gpt(ids, targets=targets)
    torch.testing.assert_close(logits2, logits)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 30), targets.reshape(-1)))
    assert all(isinstance(b, EncoderBlock) and b.norm_first for b in gpt.blocks)
    assert all(isinstance(b.attn, MultiHeadAttention) for b in gpt.blocks)
    assert gpt.lm_head.weight is gpt.tok_emb.weight  # tied


def test_gpt_loss_ignores_minus_100(gpt):
    ids, targets = _ids(2, 6, 30), _ids(2, 6, 30, seed=1)
    targets[:, :3] = -100
    logits, loss = gpt(ids, targets)
    expected = F.cross_entropy(logits[:, 3:].reshape(-1, 30), targets[:, 3:].reshape(-1))
    torch.testing.assert_close(loss, expected)


def test_gpt_is_causal(gpt):
    """Changing token t changes no logits before t (and does change logits from t on)."""
    ids = _ids(2, 12, 30)
    changed = ids.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 30
    with torch.no_grad():
        a, b = gpt(ids), gpt(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-4)


def test_gpt_rejects_sequences_longer_than_block_size(gpt):
    with pytest.raises(ValueError, match=r"T=13.*block_size is 12"):
        gpt(_ids(1, 13, 30))
    caches = gpt.new_kv_caches()
    gpt(_ids(1, 10, 30), kv_caches=caches)
    with pytest.raises(ValueError, match=r"T=3 tokens \(\+10 cached\).*block_size is 12"):
        gpt(_ids(1, 3, 30), kv_caches=caches)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(4, dtype=torch.long), r"shape \(B, T\)"),
        (torch.zeros(1, 4), "integer token ids"),
        (torch.zeros(1, 0, dtype=torch.long), "no tokens"),
        (torch.tensor([[1, 30]]), r"must lie in \[0, 30\).*found 30"),
        (torch.tensor([[1, -1]]), r"found -1"),
    ],
)
def test_gpt_rejects_bad_ids(gpt, bad, match):
    with pytest.raises(ValueError, match=match):
        gpt(bad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_model=30, n_heads=4), "not divisible by n_heads"),
        (dict(n_layers=0), "n_layers must be a positive int"),
        (dict(dropout=1.0), "dropout"),
        (dict(activation="swish"), "activation"),
        (dict(d_mlp=-1), "d_mlp must be a positive int"),
    ],
)
@pytest.mark.parametrize(
    "config_cls, sizes",
    [
        (GPTConfig, dict(vocab_size=10, block_size=8)),
        (BertConfig, dict(vocab_size=10, max_len=8)),
        (Seq2SeqConfig, dict(src_vocab_size=10, tgt_vocab_size=10, max_len=8)),
    ],
)
def test_config_validation(config_cls, sizes, kwargs, match):
    """The checks every model config shares (models._check_config), for each config."""
    base = dict(sizes, n_layers=1, n_heads=2, d_model=8)
    assert config_cls(**base).d_mlp == 32  # the default: 4 * d_model
    with pytest.raises(ValueError, match=match):
        config_cls(**{**base, **kwargs})


def test_gpt_untied_and_biasless_variants():
    config = GPTConfig(vocab_size=10, block_size=8, n_layers=1, n_heads=2, d_model=8, tie_weights=False, bias=False)
    model = GPT(config)
    assert model.lm_head.weight is not model.tok_emb.weight
    assert model.blocks[0].attn.W_Q.bias is None and model.blocks[0].mlp.up.bias is None
    assert model(_ids(2, 8, 10)).shape == (2, 8, 10)


def test_gpt_dropout_only_in_training_mode():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layers=1, n_heads=2, d_model=8, dropout=0.5))
    ids = _ids(2, 8, 10)
    model.train()
    assert not torch.allclose(model(ids), model(ids))
    model.eval()
    torch.testing.assert_close(model(ids), model(ids))


# --------------------------------------------------------------------------- BERT


@pytest.fixture
def bert_config():
    return BertConfig(vocab_size=40, max_len=16, n_layers=2, n_heads=2, d_model=16)


def test_bert_encoder_shapes_post_norm_and_bidirectional(bert_config):
    torch.manual_seed(0)
    encoder = BertEncoder(bert_config).eval()
    assert all(isinstance(b, EncoderBlock) and not b.norm_first for b in encoder.blocks)
    assert encoder.blocks[0].ln1.eps == 1e-12
    ids = _ids(2, 9, 40)
    with torch.no_grad():
        hidden = encoder(ids)
        changed = ids.clone()
        changed[:, -1] = (changed[:, -1] + 1) % 40
        hidden2 = encoder(changed)
    assert hidden.shape == (2, 9, 16)
    assert not torch.allclose(hidden[:, 0], hidden2[:, 0], atol=1e-4), "BERT sees the future (no causal mask)"


def test_bert_heads_shapes(bert_config):
    torch.manual_seed(0)
    mlm = BertForMLM(bert_config).eval()
    ids = _ids(3, 7, 40)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 5:] = 0
    assert mlm(ids, attention_mask=mask).shape == (3, 7, 40)
    clf = BertForClassification(BertEncoder(bert_config), n_classes=4).eval()
    assert clf(ids, attention_mask=mask).shape == (3, 4)


def test_bert_mlm_head_is_tied_to_word_embeddings(bert_config):
    torch.manual_seed(0)
    mlm = BertForMLM(bert_config)
    logits = mlm(_ids(1, 5, 40))
    logits.sum().backward()
    assert mlm.encoder.tok_emb.weight.grad is not None
    V, D = 40, 16  # no second (V, D) matrix: transform (D*D + D), its LayerNorm (2D), output bias (V)
    head = D * D + D + 2 * D + V
    assert sum(p.numel() for p in mlm.parameters()) == sum(p.numel() for p in mlm.encoder.parameters()) + head


def test_bert_classifier_reads_cls_position(bert_config):
    """Only position 0's final hidden state reaches the classifier."""
    torch.manual_seed(0)
    clf = BertForClassification(BertEncoder(bert_config), n_classes=3).eval()
    hidden = {}
    clf.encoder.register_forward_hook(lambda m, i, out: hidden.setdefault("h", out))
    ids = _ids(2, 6, 40)
    with torch.no_grad():
        logits = clf(ids)
        expected = clf.classifier(torch.tanh(clf.pooler(hidden["h"][:, 0])))
    torch.testing.assert_close(logits, expected)


def test_bert_validation(bert_config):
    encoder = BertEncoder(bert_config)
    with pytest.raises(ValueError, match=r"T=17.*max_len is 16"):
        encoder(_ids(1, 17, 40))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        encoder(_ids(2, 5, 40), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="token_type_ids must have shape"):
        encoder(_ids(2, 5, 40), token_type_ids=torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"pad_id=40 must be a token id"):
        BertConfig(vocab_size=40, max_len=16, n_layers=1, n_heads=2, d_model=16, pad_id=40)
    with pytest.raises(ValueError, match="n_classes"):
        BertForClassification(encoder, 0)


# --------------------------------------------------------------------------- encoder-decoder


def test_seq2seq_shapes_and_blocks(seq2seq):
    src, tgt = _ids(3, 7, 20), _ids(3, 5, 25)
    logits = seq2seq(src, tgt)
    assert logits.shape == (3, 5, 25)
    assert all(isinstance(b, DecoderBlock) for b in seq2seq.decoder_blocks)
    memory = seq2seq.encode(src)
    assert memory.shape == (3, 7, 16)
    torch.testing.assert_close(seq2seq.decode(tgt, memory, src != 0), logits)
    weights = seq2seq.cross_attention_weights()
    assert len(weights) == 2 and weights[0].shape == (3, 2, 5, 7)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(3, 2, 5))


def test_seq2seq_decoder_is_causal(seq2seq):
    src, tgt = _ids(2, 6, 20, seed=1), _ids(2, 8, 25, seed=2)
    changed = tgt.clone()
    changed[:, 5:] = (changed[:, 5:] + 3) % 25
    with torch.no_grad():
        a, b = seq2seq(src, tgt), seq2seq(src, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-4)


def test_seq2seq_cross_attention_reads_the_source(seq2seq):
    src = torch.randint(3, 20, (2, 6), generator=torch.Generator().manual_seed(1))  # no padding (0)
    tgt = _ids(2, 4, 25, seed=2)
    changed = src.clone()
    changed[:, 2] = 3 + (changed[:, 2] - 3 + 5) % 17  # another non-pad token
    with torch.no_grad():
        a, b = seq2seq(src, tgt), seq2seq(changed, tgt)
    assert not torch.allclose(a, b, atol=1e-4), "every target position should react to the source"
    assert not torch.allclose(a[:, 0], b[:, 0], atol=1e-4), "even the first target position (only <bos> before it)"


def test_seq2seq_source_padding_is_ignored(seq2seq):
    src = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 4, 3, 0]])
    tgt = _ids(2, 4, 25)
    other_padding = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], dim=1)  # more pad tokens
    with torch.no_grad():
        a, b = seq2seq(src, tgt), seq2seq(other_padding, tgt)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    weights = seq2seq.cross_attention_weights()[0]  # (B, H, T, S)
    assert (weights[0, :, :, 3:] == 0).all() and (weights[1, :, :, 4:] == 0).all()


def test_seq2seq_validation(seq2seq):
    with pytest.raises(ValueError, match=r"src_ids has T=11.*max_len is 10"):
        seq2seq(_ids(1, 11, 20), _ids(1, 3, 25))
    with pytest.raises(ValueError, match="memory must have shape"):
        seq2seq.decode(_ids(2, 3, 25), torch.zeros(3, 4, 16))
    with pytest.raises(ValueError, match=r"eos_id=9 must be a token id in \[0, tgt_vocab_size=5\)"):
        Seq2SeqConfig(src_vocab_size=5, tgt_vocab_size=5, max_len=4, n_layers=1, n_heads=1, d_model=8, eos_id=9)
    with pytest.raises(ValueError, match="must be even"):
        Seq2SeqConfig(src_vocab_size=5, tgt_vocab_size=5, max_len=4, n_layers=1, n_heads=1, d_model=7)

