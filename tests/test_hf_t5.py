"""The course T5 computes exactly what Hugging Face's T5ForConditionalGeneration computes.

Tiny random configs are built here (no download): copy the weights with t5_from_hf, then compare the
logits on a padded batch to 1e-5 and the greedy continuation token for token (20 steps). Both
feed-forward variants (T5's ReLU, T5 v1.1's gated GELU), tied and untied output layers.
"""

from __future__ import annotations

import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import T5Config as HFT5Config  # noqa: E402
from transformers import T5ForConditionalGeneration  # noqa: E402

from course_lib.models import T5, T5Config, t5_from_hf  # noqa: E402
from course_lib.relative_position import RelativePositionBias, relative_position_bucket, relative_positions  # noqa: E402
from course_lib.t5 import T5LayerNorm, rms_norm  # noqa: E402

ATOL = RTOL = 1e-5
VOCAB = 99


def _tiny_t5(seed: int = 0, untie_head: bool = False, **overrides) -> T5ForConditionalGeneration:
    """A random T5 small enough for CI; buckets and max_distance small so that the log-spaced buckets and the
    last ("max_distance or more") bucket are all used by 30-token inputs."""
    torch.manual_seed(seed)
    kwargs = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                  relative_attention_num_buckets=8, relative_attention_max_distance=12, dropout_rate=0.0,
                  decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    kwargs.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = T5ForConditionalGeneration(HFT5Config(**kwargs, attn_implementation="eager")).eval()
    with torch.no_grad():  # non-trivial norm weights, so copying them is tested too
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.2 * torch.randn_like(p))
        if untie_head:  # a separate output matrix (T5 v1.1 checkpoints have one)
            model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, kwargs["d_model"]))
    return model


def _padded_batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (3, 30), generator=g)
    attention_mask = torch.ones(3, 30, dtype=torch.long)
    attention_mask[1, 20:] = 0  # row 1: 20 real tokens, then padding
    attention_mask[2, 5:] = 0  # row 2: 5 real tokens
    ids = ids.masked_fill(attention_mask == 0, 0)  # pad id 0
    decoder_input_ids = torch.randint(0, VOCAB, (3, 25), generator=g)
    decoder_input_ids[:, 0] = 0  # T5 starts from the pad token
    return ids, attention_mask, decoder_input_ids


CONFIGS = {
    # original T5: ReLU feed-forward, output layer tied to the embedding and rescaled by d_model^-0.5
    "relu-tied": dict(feed_forward_proj="relu"),
    # T5 v1.1: gated-GELU, not rescaled (transformers >= 5 still shares the matrix in memory)
    "gated-gelu-untied": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "gated-gelu-tied": dict(feed_forward_proj="gated-gelu"),
    "relu-untied": dict(feed_forward_proj="relu", tie_word_embeddings=False),
    # a separate lm_head matrix, 3 decoder layers for 2 encoder layers, heads of d_kv != d_model / n_heads
    "separate-head-deeper-decoder": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                         num_decoder_layers=3, d_kv=6, untie_head=True),
    # T5's default buckets (32, max distance 128) and larger weights: larger logits, same tolerance
    "default-buckets-large-init": dict(relative_attention_num_buckets=32, relative_attention_max_distance=128,
                                       initializer_factor=3.0),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_t5_logits_match_hugging_face(name):
    overrides = dict(CONFIGS[name])
    hf = _tiny_t5(**overrides)
    ours = t5_from_hf(hf)
    assert isinstance(ours, T5) and not ours.training
    tied = hf.lm_head.weight.data_ptr() == hf.shared.weight.data_ptr()
    assert ours.config.tie_weights == tied
    assert (ours.lm_head.weight.data_ptr() == ours.shared.weight.data_ptr()) == tied
    ids, attention_mask, dec = _padded_batch()
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=attention_mask, decoder_input_ids=dec).logits  # (3, 25, V)
        got = ours(ids, dec, attention_mask=attention_mask)
    assert got.shape == (3, 25, VOCAB)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)


def test_the_configs_cover_what_they_claim():
    """Guards the parametrisation: every piece T5 changed is exercised by some config."""
    seen = set()
    for name, overrides in CONFIGS.items():
        ours = t5_from_hf(_tiny_t5(**overrides))
        c = ours.config
        seen.add((c.feed_forward, c.tie_weights, c.scale_output))
    assert {ff for ff, _, _ in seen} == {"relu", "gated-gelu"}
    assert {(tie, scale) for _, tie, scale in seen} >= {(True, True), (True, False), (False, False)}
    # with 8 buckets and max distance 12, 30 tokens reach the exact, the log-spaced and the last bucket of each
    # side; bucket 4 (the right half's "distance 0") is never used: distance 0 always falls in the left half
    b = relative_position_bucket(relative_positions(30, 30), bidirectional=True, num_buckets=8, max_distance=12)
    assert set(b.unique().tolist()) == set(range(8)) - {4}


def test_each_t5_change_matters():
    """The equivalence would be vacuous if a piece could be dropped without changing the logits."""
    hf = _tiny_t5(feed_forward_proj="relu")
    ids, attention_mask, dec = _padded_batch()
    ours = t5_from_hf(hf)
    with torch.no_grad():
        base = ours(ids, dec, attention_mask)
        no_mask = ours(ids, dec, None)
        ours.config.scale_output = False
        unscaled = ours(ids, dec, attention_mask)
        ours.config.scale_output = True
        ours.encoder_bias.weight.zero_()
        no_encoder_bias = ours(ids, dec, attention_mask)
        ours = t5_from_hf(hf)
        ours.decoder_bias.weight.zero_()
        no_decoder_bias = ours(ids, dec, attention_mask)
        ours = t5_from_hf(hf)
        # real tokens must not see padding: other pad ids, same logits
        other_pad = ours(ids.masked_fill(attention_mask == 0, 7), dec, attention_mask)
    for changed in (no_mask, unscaled, no_encoder_bias, no_decoder_bias):
        assert not torch.allclose(changed, base, atol=1e-3)
    torch.testing.assert_close(other_pad, base, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("name, seed", [("relu-tied", 1), ("gated-gelu-untied", 2)])
def test_t5_greedy_decoding_matches_hugging_face(name, seed):
    # larger initial weights than T5's (and a seed where it shows): the continuation then varies instead of
    # repeating one token, so a wrong mask, bias or start token would show
    hf = _tiny_t5(seed=seed, initializer_factor=4.0, **CONFIGS[name])
    ours = t5_from_hf(hf)
    ids, attention_mask, _ = _padded_batch(seed=2)
    hf.generation_config.eos_token_id = None  # 20 tokens whatever they are (no early stop, no eos suppression)
    with torch.no_grad():
        expected = hf.generate(input_ids=ids, attention_mask=attention_mask, max_new_tokens=20, do_sample=False,
                               num_beams=1)
    assert expected.shape == (3, 21) and bool((expected[:, 0] == 0).all())
    assert min(len(set(row[1:].tolist())) for row in expected) >= 5
    got = ours.generate(ids, 20, attention_mask=attention_mask, stop_at_eos=False)
    assert torch.equal(got, expected), (got, expected)


def test_greedy_decoding_stops_at_eos():
    ours = t5_from_hf(_tiny_t5(seed=1, initializer_factor=4.0))
    ids, attention_mask, _ = _padded_batch(seed=2)
    free = ours.generate(ids, 20, attention_mask, stop_at_eos=False)
    eos = int(free[0, 3])  # pretend the 3rd generated token of row 0 is <eos>
    k = free[0, 1:].tolist().index(eos) + 1  # where row 0 first produces it
    ours.config.eos_id = eos
    out = ours.generate(ids, 20, attention_mask)
    row = out[0].tolist()
    assert row[: k + 1] == free[0, : k + 1].tolist()
    assert len(row) > k + 1 and all(t == ours.config.pad_id for t in row[k + 1 :])


def test_t5_parameter_count_matches_hugging_face():
    for overrides in (CONFIGS["relu-tied"], CONFIGS["separate-head-deeper-decoder"]):
        hf = _tiny_t5(**overrides)
        ours = t5_from_hf(hf)
        n_hf = sum(p.numel() for p in hf.parameters())  # shared parameters counted once on both sides
        assert sum(p.numel() for p in ours.parameters()) == n_hf


# --------------------------------------------------------------------------- the pieces on their own


def test_relative_position_bucket_matches_hugging_face():
    from transformers.models.t5.modeling_t5 import T5Attention as HFT5Attention

    rel = torch.arange(-300, 301)[None, :]
    for bidirectional in (True, False):
        for num_buckets, max_distance in ((32, 128), (8, 12), (6, 20), (16, 9)):
            expected = HFT5Attention._relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
            got = relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
            assert torch.equal(got, expected), (bidirectional, num_buckets, max_distance)


def test_relative_position_bucket_by_hand():
    # T5's defaults: 16 buckets per direction, 8 exact, log-spaced up to 128
    b = relative_position_bucket(torch.tensor([0, -1, -7, -8, -12, -127, -128, -1000, 1, 7, 8, 1000]))
    assert b.tolist() == [0, 1, 7, 8, 9, 15, 15, 15, 17, 23, 24, 31]
    causal = relative_position_bucket(torch.tensor([0, -1, -8, -15, -16, -40, -128, 1, 5]), bidirectional=False)
    assert causal.tolist() == [0, 1, 8, 15, 16, 23, 31, 0, 0]  # 32 buckets for the past; keys ahead count as 0


def test_relative_position_bias_module():
    bias = RelativePositionBias(n_heads=3, num_buckets=8, max_distance=12, bidirectional=True)
    with torch.no_grad():
        bias.weight.copy_(torch.arange(24.0).view(8, 3))
    out = bias(4, 6)  # (1, H, T_q, T_k)
    assert out.shape == (1, 3, 4, 6)
    buckets = relative_position_bucket(relative_positions(4, 6), True, 8, 12)
    for h in range(3):
        torch.testing.assert_close(out[0, h], bias.weight[buckets, h])
    # offset: the queries are positions 2..3 of a longer sequence
    torch.testing.assert_close(bias(2, 6, offset=2), out[:, :, 2:])


def test_rms_norm_has_no_mean_and_no_bias():
    x = torch.tensor([[3.0, 3.0, 3.0, 3.0], [1.0, -2.0, 3.0, 0.5]])
    w = torch.tensor([1.0, 2.0, 0.5, 1.0])
    y = rms_norm(x, w, eps=0.0)
    torch.testing.assert_close(y[0], w)  # a constant vector is NOT sent to zero (no mean subtracted)
    rms = x[1].pow(2).mean().sqrt()
    torch.testing.assert_close(y[1], x[1] / rms * w)
    ln = T5LayerNorm(4)
    assert [n for n, _ in ln.named_parameters()] == ["weight"]


# --------------------------------------------------------------------------- bad input


def test_t5_from_hf_rejects_unsupported_feed_forward():
    with pytest.raises(ValueError, match="feed_forward_proj='gated-silu'"):
        t5_from_hf(_tiny_t5(feed_forward_proj="gated-silu"))
    with pytest.raises(ValueError, match="feed_forward_proj='gelu'"):
        t5_from_hf(_tiny_t5(feed_forward_proj="gelu"))
    with pytest.raises(ValueError, match="hf_model"):
        t5_from_hf(torch.nn.Linear(2, 2))


def test_t5_rejects_bad_inputs_with_the_parameter_named():
    ours = t5_from_hf(_tiny_t5())
    ids, attention_mask, dec = _padded_batch()
    with pytest.raises(ValueError, match="input_ids must be a LongTensor of shape"):
        ours(ids[0], dec)
    with pytest.raises(ValueError, match="decoder_input_ids must hold integer"):
        ours(ids, dec.float())
    with pytest.raises(ValueError, match=r"decoder_input_ids must lie in \[0, 99\)"):
        ours(ids, dec + VOCAB)
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        ours(ids, dec, attention_mask[:, :10])
    with pytest.raises(ValueError, match="decoder_input_ids has batch size 2"):
        ours(ids, dec[:2])
    with pytest.raises(ValueError, match="max_new_tokens"):
        ours.generate(ids, -1)
    with pytest.raises(ValueError, match="relative_position must be an integer tensor"):
        relative_position_bucket(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="num_buckets"):
        relative_position_bucket(torch.tensor([1]), True, num_buckets=2)
    with pytest.raises(ValueError, match="feed_forward must be one of"):
        T5Config(vocab_size=10, d_model=8, n_heads=2, n_layers=1, d_ff=16, feed_forward="swiglu")
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=4"):
        T5Config(vocab_size=10, d_model=10, n_heads=4, n_layers=1, d_ff=16)
    with pytest.raises(ValueError, match="pad_id=12"):
        T5Config(vocab_size=10, d_model=8, n_heads=2, n_layers=1, d_ff=16, pad_id=12)
