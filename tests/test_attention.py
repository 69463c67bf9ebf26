"""course_lib.attention against PyTorch: F.scaled_dot_product_attention and nn.MultiheadAttention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import (
    KVCache,
    MultiHeadAttention,
    SelfAttentionHead,
    attention_scores,
    causal_mask,
    combine_masks,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    split_heads,
)
from course_lib.softmax import softmax as course_softmax

B, H, T, DK = 2, 3, 5, 8


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def qkv():
    return randn(B, H, T, DK, seed=1), randn(B, H, T, DK, seed=2), randn(B, H, T, DK, seed=3)


def close(a, b, atol=1e-5):
    torch.testing.assert_close(a, b, rtol=0, atol=atol)


# --------------------------------------------------------------------------- scores


def test_attention_scores_is_scaled_q_k_transpose(qkv):
    q, k, _ = qkv
    expected = torch.einsum("bhqd,bhkd->bhqk", q, k)
    close(attention_scores(q, k, scale=False), expected)
    close(attention_scores(q, k), expected / math.sqrt(DK))


# --------------------------------------------------------------------------- masks


def test_causal_mask_is_lower_triangular():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert m[i, j] == (j <= i)


def test_causal_mask_with_offset_is_the_bottom_rows_of_a_bigger_mask():
    assert torch.equal(causal_mask(2, offset=3), causal_mask(5)[3:])
    assert causal_mask(1, offset=4).all()


def test_padding_mask_from_attention_mask_ids_and_lengths():
    am = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    expected = am.bool()[:, None, None, :]
    for m in (
        padding_mask(am),
        padding_mask(am.bool()),
        padding_mask(torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]]), pad_id=0),
        padding_mask(torch.tensor([3, 2]), T=4),
    ):
        assert m.shape == (2, 1, 1, 4) and m.dtype == torch.bool
        assert torch.equal(m, expected)
    assert padding_mask(torch.tensor([3, 2])).shape == (2, 1, 1, 3)  # T defaults to max length


def test_padding_mask_rejects_ambiguous_input():
    with pytest.raises(ValueError, match="only 0 and 1"):
        padding_mask(torch.tensor([[5, 6, 0]]))  # ids without pad_id
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=2\]"):
        padding_mask(torch.tensor([3, 1]), T=2)


def test_combine_masks_is_logical_and_with_broadcasting():
    pad = padding_mask(torch.tensor([[1, 1, 0], [1, 1, 1]]))  # (2, 1, 1, 3)
    m = combine_masks(causal_mask(3), pad, None)
    assert m.shape == (2, 1, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                assert m[b, 0, i, j] == (j <= i and bool(pad[b, 0, 0, j]))
    assert combine_masks(None, None) is None
    assert combine_masks(causal_mask(3)) is not None


def test_combine_masks_rejects_float_and_mismatched_masks():
    with pytest.raises(ValueError, match="bool masks"):
        combine_masks(causal_mask(3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        combine_masks(causal_mask(3), causal_mask(4))


# --------------------------------------------------------------------------- scaled dot-product attention


def _masks():
    g = torch.Generator().manual_seed(7)
    rand_bool = torch.rand(B, 1, T, T, generator=g) > 0.4
    rand_bool[..., 0] = True  # every query keeps at least one key
    return {
        "none": None,
        "causal": causal_mask(T),
        "random_bool_per_batch": rand_bool,
        "per_head_bool": torch.rand(B, H, T, T, generator=g) > 0.3,
        "padding": padding_mask(torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])),
        "additive_bias": torch.randn(T, T, generator=g),
        "additive_-inf": torch.zeros(T, T).masked_fill(~causal_mask(T), float("-inf")),
    }


@pytest.mark.parametrize("name", list(_masks()))
def test_sdpa_equals_torch(qkv, name):
    q, k, v = qkv
    mask = _masks()[name]
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert w.shape == (B, H, T, T)
    rows = w.sum(-1)
    close(rows[rows > 0], torch.ones_like(rows[rows > 0]))


def test_sdpa_causal_equals_torch_is_causal(qkv):
    q, k, v = qkv
    close(scaled_dot_product_attention(q, k, v, mask=causal_mask(T)),
          F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_sdpa_rectangular_and_different_value_size():
    q, k, v = randn(2, 3, 4, seed=1), randn(2, 7, 4, seed=2), randn(2, 7, 6, seed=3)
    mask = torch.rand(3, 7, generator=torch.Generator().manual_seed(0)) > 0.3
    mask[:, 0] = True
    out = scaled_dot_product_attention(q, k, v, mask=mask)
    assert out.shape == (2, 3, 6)
    close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@pytest.mark.parametrize("name", ["none", "causal", "additive_bias"])
def test_sdpa_gradients_equal_torch(qkv, name):
    mask = _masks()[name]
    ours = [t.clone().requires_grad_() for t in qkv]
    ref = [t.clone().requires_grad_() for t in qkv]
    g = randn(B, H, T, DK, seed=9)
    (scaled_dot_product_attention(*ours, mask=mask) * g).sum().backward()
    (F.scaled_dot_product_attention(*ref, attn_mask=mask) * g).sum().backward()
    for a, b in zip(ours, ref):
        close(a.grad, b.grad)


@pytest.mark.parametrize("name", ["none", "causal", "random_bool_per_batch"])
def test_sdpa_equals_textbook_formula_with_course_softmax(qkv, name):
    """The fused torch.softmax inside attention computes the course's own softmax."""
    q, k, v = qkv
    mask = _masks()[name]
    scores = q @ k.transpose(-2, -1) / math.sqrt(DK)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = course_softmax(scores, dim=-1)
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    close(w, weights, atol=1e-6)
    close(out, weights @ v)


def test_sdpa_dropout_drops_weights_but_returns_the_pattern(qkv):
    torch.manual_seed(0)
    out, w = scaled_dot_product_attention(*qkv, return_weights=True, dropout_p=0.5)
    ref_out, ref_w = scaled_dot_product_attention(*qkv, return_weights=True)
    assert torch.equal(w, ref_w)
    assert not torch.allclose(out, ref_out)


def test_weights_softmax_runs_over_keys():
    """Each query's weights sum to one; the key axis is the last one."""
    q, k, v = randn(1, 3, 4, seed=1), randn(1, 6, 4, seed=2), randn(1, 6, 2, seed=3)
    _, w = scaled_dot_product_attention(q, k, v, return_weights=True)
    assert w.shape == (1, 3, 6)
    close(w.sum(-1), torch.ones(1, 3))
    close(w, torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1))


def _fully_masked():
    bool_mask = causal_mask(T).expand(B, 1, T, T).clone()
    bool_mask[0, 0, 2] = False  # query 2 of batch 0 may see nothing
    bool_mask[1, 0, 0] = False
    additive = torch.zeros(B, 1, T, T).masked_fill(~bool_mask, float("-inf"))
    return bool_mask, additive


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_fully_masked_rows_give_zeros_not_nan(qkv, kind):
    bool_mask, additive = _fully_masked()
    mask = bool_mask if kind == "bool" else additive
    q, k, v = (t.clone().requires_grad_() for t in qkv)
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert torch.equal(out[0, :, 2], torch.zeros(H, DK)) and torch.equal(w[0, :, 2], torch.zeros(H, T))
    assert torch.equal(out[1, :, 0], torch.zeros(H, DK))
    # the other rows are untouched: equal to torch, which also zeroes such rows
    close(out, F.scaled_dot_product_attention(*qkv, attn_mask=bool_mask))
    (out * randn(B, H, T, DK, seed=4)).sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[0, :, 2], torch.zeros(H, DK))  # a zero output has zero gradient


def test_unmasked_scores_of_1e4_stay_finite():
    q = torch.full((1, 2, 4), 100.0)
    k = torch.tensor([[[100.0] * 4, [-100.0] * 4]])
    out = scaled_dot_product_attention(q, k, randn(1, 2, 3))
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- bad input


def test_d_k_mismatch_message():
    with pytest.raises(ValueError, match="q has d_k=64 but k has d_k=32"):
        scaled_dot_product_attention(torch.zeros(2, 5, 64), torch.zeros(2, 5, 32), torch.zeros(2, 5, 32))


def test_k_v_length_mismatch():
    with pytest.raises(ValueError, match="k has T_k=5 keys but v has 4 values"):
        scaled_dot_product_attention(torch.zeros(2, 3, 8), torch.zeros(2, 5, 8), torch.zeros(2, 4, 8))


def test_batch_dims_must_match():
    with pytest.raises(ValueError, match="same leading"):
        scaled_dot_product_attention(torch.zeros(2, 3, 8), torch.zeros(3, 3, 8), torch.zeros(3, 3, 8))


@pytest.mark.parametrize(
    "mask",
    [torch.ones(T, T, dtype=torch.long), torch.ones(T, T, dtype=torch.int32), torch.ones(T, T, dtype=torch.uint8)],
)
def test_integer_mask_is_rejected(qkv, mask):
    with pytest.raises(ValueError, match=r"mask must be bool .* got dtype torch\.(int64|int32|uint8)"):
        scaled_dot_product_attention(*qkv, mask=mask)


@pytest.mark.parametrize(
    "shape",
    [(T, T + 1), (T - 1, T), (B + 1, 1, T, T), (1, H + 1, T, T), (7, B, H, T, T), (B, T)],
)
def test_wrong_mask_shape_is_rejected(qkv, shape):
    with pytest.raises(ValueError, match=r"mask has shape .* does not broadcast to the attention scores"):
        scaled_dot_product_attention(*qkv, mask=torch.ones(shape, dtype=torch.bool))


def test_mha_rejects_bad_configuration_and_inputs():
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=4"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="d_model=10 is not divisible by n_heads=4"):
        split_heads(torch.zeros(1, 2, 10), 4)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"x_q must have shape \(B, T, d_model=8\)"):
        mha(torch.zeros(1, 3, 6))
    with pytest.raises(ValueError, match="batch size"):
        mha(torch.zeros(2, 3, 8), torch.zeros(1, 3, 8))
    with pytest.raises(ValueError, match="mask must have shape"):
        mha(torch.zeros(1, 3, 8), mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="only supported for self-attention"):
        mha(torch.zeros(1, 3, 8), torch.zeros(1, 4, 8), kv_cache=KVCache())


# --------------------------------------------------------------------------- heads


def test_split_merge_round_trip_and_head_contents():
    x = randn(2, 5, 12)
    s = split_heads(x, 3)
    assert s.shape == (2, 3, 5, 4)
    assert torch.equal(merge_heads(s), x)
    for h in range(3):  # head h owns features h*4 .. h*4+3 of every token
        assert torch.equal(s[:, h], x[:, :, h * 4:(h + 1) * 4])


def test_reshape_without_transpose_mixes_tokens():
    x = randn(2, 5, 12)
    wrong = x.reshape(2, 3, 5, 4)  # same number of elements, wrong meaning
    assert not torch.equal(wrong, split_heads(x, 3))
    assert not torch.equal(wrong[:, 1], x[:, :, 4:8])


# --------------------------------------------------------------------------- multi-head vs torch


def copy_from_torch(mine: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    """nn.MultiheadAttention stores W_Q, W_K, W_V stacked in in_proj_weight (3D, D)."""
    with torch.no_grad():
        for lin, w in zip((mine.W_Q, mine.W_K, mine.W_V), ref.in_proj_weight.chunk(3)):
            lin.weight.copy_(w)
        mine.W_O.weight.copy_(ref.out_proj.weight)
        if ref.in_proj_bias is not None:
            for lin, b in zip((mine.W_Q, mine.W_K, mine.W_V), ref.in_proj_bias.chunk(3)):
                lin.bias.copy_(b)
            mine.W_O.bias.copy_(ref.out_proj.bias)


D, NH = 12, 3


def _pair(bias=True, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(D, NH, bias=bias, batch_first=True).eval()
    if bias:
        with torch.no_grad():  # torch starts biases at 0; make them count
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    mine = MultiHeadAttention(D, NH, bias=bias).eval()
    copy_from_torch(mine, ref)
    return mine, ref


KEEP = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])  # 1 = real token


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("masks", ["none", "causal", "padding", "causal+padding", "additive"])
def test_mha_self_attention_equals_torch(bias, masks):
    mine, ref = _pair(bias)
    x = randn(2, 6, D, seed=5)
    causal = causal_mask(6) if "causal" in masks else None
    pad = padding_mask(KEEP) if "padding" in masks else None
    ours_mask = combine_masks(causal, pad)
    ref_kwargs = {}
    if causal is not None:
        ref_kwargs["attn_mask"] = ~causal  # torch: True = NOT allowed
    if pad is not None:
        ref_kwargs["key_padding_mask"] = KEEP == 0
    if masks == "additive":
        ours_mask = randn(6, 6, seed=11)
        ref_kwargs["attn_mask"] = ours_mask
    out, w = mine(x, mask=ours_mask, return_weights=True)
    ref_out, ref_w = ref(x, x, x, need_weights=True, average_attn_weights=False, **ref_kwargs)
    close(out, ref_out)
    close(w, ref_w)
    assert torch.equal(mine.last_weights, w.detach())


@pytest.mark.parametrize("with_padding", [False, True])
def test_mha_cross_attention_equals_torch(with_padding):
    mine, ref = _pair()
    x_q, memory = randn(2, 4, D, seed=1), randn(2, 6, D, seed=2)
    mask = padding_mask(KEEP) if with_padding else None
    out, w = mine(x_q, memory, mask=mask, return_weights=True)
    ref_out, ref_w = ref(x_q, memory, memory, key_padding_mask=(KEEP == 0) if with_padding else None,
                         average_attn_weights=False)
    assert out.shape == (2, 4, D) and w.shape == (2, NH, 4, 6)
    close(out, ref_out)
    close(w, ref_w)


def test_mha_accepts_3d_mask_per_batch():
    mine, ref = _pair()
    x = randn(2, 6, D, seed=3)
    m = torch.rand(2, 6, 6, generator=torch.Generator().manual_seed(0)) > 0.3
    m[..., 0] = True
    ref_mask = (~m).repeat_interleave(NH, dim=0)  # torch wants (B*H, T, T)
    close(mine(x, mask=m), ref(x, x, x, attn_mask=ref_mask)[0])


def test_mha_gradients_equal_torch():
    mine, ref = _pair()
    x1 = randn(2, 6, D, seed=4).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    g = randn(2, 6, D, seed=5)
    (mine(x1, mask=causal_mask(6)) * g).sum().backward()
    (ref(x2, x2, x2, attn_mask=~causal_mask(6))[0] * g).sum().backward()
    close(x1.grad, x2.grad)
    close(mine.W_O.weight.grad, ref.out_proj.weight.grad)
    close(torch.cat([mine.W_Q.weight.grad, mine.W_K.weight.grad, mine.W_V.weight.grad]), ref.in_proj_weight.grad)


def test_mha_dropout_only_in_training():
    mha = MultiHeadAttention(D, NH, dropout=0.5)
    x = randn(2, 6, D)
    mha.eval()
    assert torch.equal(mha(x), mha(x))
    mha.train()
    torch.manual_seed(0)
    a = mha(x)
    assert not torch.allclose(a, mha(x))


def test_mha_is_the_sum_of_its_heads():
    """Concatenating heads then applying W_O == summing each head's own W_O slice."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, NH, bias=False)
    x, dh = randn(2, 6, D), D // NH
    total = torch.zeros(2, 6, D)
    for h in range(NH):
        head = SelfAttentionHead(D, dh)
        rows = slice(h * dh, (h + 1) * dh)
        with torch.no_grad():
            head.W_Q.weight.copy_(mha.W_Q.weight[rows])
            head.W_K.weight.copy_(mha.W_K.weight[rows])
            head.W_V.weight.copy_(mha.W_V.weight[rows])
            head.W_O.weight.copy_(mha.W_O.weight[:, rows])
        total += head(x, mask=causal_mask(6))
    close(total, mha(x, mask=causal_mask(6)))


def test_self_attention_head_equals_formula():
    torch.manual_seed(0)
    head = SelfAttentionHead(D, 5)
    x = randn(2, 6, D)
    q, k, v = x @ head.W_Q.weight.T, x @ head.W_K.weight.T, x @ head.W_V.weight.T
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True) @ head.W_O.weight.T
    delta, w = head(x, mask=causal_mask(6), return_weights=True)
    assert delta.shape == (2, 6, D) and w.shape == (2, 6, 6)
    close(delta, expected)


# --------------------------------------------------------------------------- KV cache


def test_kv_cache_step_by_step_equals_full_causal_attention():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, NH).eval()
    x = randn(2, 7, D, seed=6)
    full = mha(x, mask=causal_mask(7))
    cache = KVCache()
    steps = [mha(x[:, t:t + 1], kv_cache=cache) for t in range(7)]
    assert len(cache) == 7 and cache.k.shape == (2, NH, 7, D // NH)
    close(torch.cat(steps, dim=1), full)


def test_kv_cache_prefill_then_steps():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, NH).eval()
    x = randn(2, 7, D, seed=6)
    full = mha(x, mask=causal_mask(7))
    cache = KVCache()
    parts = [mha(x[:, :3], mask=causal_mask(3), kv_cache=cache)]
    parts.append(mha(x[:, 3:5], mask=causal_mask(2, offset=3), kv_cache=cache))
    parts += [mha(x[:, t:t + 1], kv_cache=cache) for t in (5, 6)]
    close(torch.cat(parts, dim=1), full)


def test_kv_cache_append_and_reset():
    cache = KVCache()
    assert len(cache) == 0
    k1, v1 = randn(1, 2, 3, 4), randn(1, 2, 3, 4, seed=1)
    k, v = cache.append(k1, v1)
    assert torch.equal(k, k1) and torch.equal(v, v1)
    k, v = cache.append(k1[:, :, :1], v1[:, :, :1])
    assert k.shape == (1, 2, 4, 4) and len(cache) == 4 and torch.equal(k[:, :, 3], k1[:, :, 0])
    with pytest.raises(ValueError, match="B, H and Dh must match"):
        cache.append(torch.zeros(1, 3, 1, 4), torch.zeros(1, 3, 1, 4))
    with pytest.raises(ValueError, match="must both have shape"):
        cache.append(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 2, 4))
    cache.reset()
    assert len(cache) == 0
