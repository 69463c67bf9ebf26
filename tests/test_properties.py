"""Properties of attention and blocks on random small shapes (hypothesis).

Each property is something the course teaches:
- causality: with a causal mask, changing future tokens never changes earlier outputs;
- attention without positions is permutation equivariant (it is "a set operation");
- softmax rows are probability distributions;
- the examples of a batch never influence each other.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.attention import MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention
from course_lib.blocks import EncoderBlock
from course_lib.softmax import softmax

SETTINGS = settings(max_examples=25, deadline=None, database=None)
ATOL = 1e-5

seeds = st.integers(0, 2**31 - 1)
lengths = st.integers(2, 9)
batches = st.integers(1, 3)
heads = st.sampled_from([1, 2, 4])
head_sizes = st.sampled_from([2, 4, 8])


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def block(d_model, n_heads, seed, norm_first=True):
    torch.manual_seed(seed)
    return EncoderBlock(d_model, n_heads, norm_first=norm_first).eval()


# --------------------------------------------------------------------------- causality


@SETTINGS
@given(B=batches, T=lengths, H=heads, dh=head_sizes, seed=seeds, norm_first=st.booleans(), data=st.data())
def test_causal_block_never_looks_ahead(B, T, H, dh, seed, norm_first, data):
    t = data.draw(st.integers(1, T - 1), label="first changed position")
    model = block(H * dh, H, seed, norm_first)
    x = randn(B, T, H * dh, seed=seed)
    x_changed = x.clone()
    x_changed[:, t:] = randn(B, T - t, H * dh, seed=seed + 1) * 5
    with torch.no_grad():
        out, out_changed = model(x, mask=causal_mask(T)), model(x_changed, mask=causal_mask(T))
    torch.testing.assert_close(out[:, :t], out_changed[:, :t], rtol=0, atol=ATOL)
    if norm_first or H * dh > 2:
        # the future itself did change (a post-norm block of width 2 ends in a LayerNorm whose
        # output can only be +-(1, -1) scaled: a changed input may legitimately give the same output)
        assert not torch.allclose(out[:, t:], out_changed[:, t:])


@SETTINGS
@given(B=batches, T=lengths, d=head_sizes, seed=seeds, data=st.data())
def test_causal_attention_gradient_never_flows_from_the_past_to_the_future(B, T, d, seed, data):
    """d out[:, i] / d (k, v)[:, j] == 0 for j > i."""
    i = data.draw(st.integers(0, T - 2), label="query position")
    q, k, v = (randn(B, T, d, seed=seed + n).requires_grad_() for n in range(3))
    out = scaled_dot_product_attention(q, k, v, mask=causal_mask(T))
    out[:, i].sum().backward()
    assert torch.equal(k.grad[:, i + 1:], torch.zeros_like(k.grad[:, i + 1:]))
    assert torch.equal(v.grad[:, i + 1:], torch.zeros_like(v.grad[:, i + 1:]))
    assert v.grad[:, : i + 1].abs().sum() > 0


# --------------------------------------------------------------------------- permutation equivariance


@SETTINGS
@given(B=batches, T=lengths, H=heads, dh=head_sizes, seed=seeds, data=st.data())
def test_attention_without_positions_is_permutation_equivariant(B, T, H, dh, seed, data):
    perm = torch.tensor(data.draw(st.permutations(range(T)), label="permutation"))
    torch.manual_seed(seed)
    mha = MultiHeadAttention(H * dh, H).eval()
    x = randn(B, T, H * dh, seed=seed)
    with torch.no_grad():
        torch.testing.assert_close(mha(x[:, perm]), mha(x)[:, perm], rtol=0, atol=ATOL)
        # a whole block (no positional information anywhere) too
        blk = block(H * dh, H, seed)
        torch.testing.assert_close(blk(x[:, perm]), blk(x)[:, perm], rtol=0, atol=ATOL)


@SETTINGS
@given(T_q=lengths, T_k=lengths, d=head_sizes, seed=seeds, data=st.data())
def test_attention_output_ignores_the_order_of_key_value_pairs(T_q, T_k, d, seed, data):
    perm = torch.tensor(data.draw(st.permutations(range(T_k)), label="permutation"))
    q, k, v = randn(2, T_q, d, seed=seed), randn(2, T_k, d, seed=seed + 1), randn(2, T_k, d, seed=seed + 2)
    torch.testing.assert_close(scaled_dot_product_attention(q, k[:, perm], v[:, perm]),
                               scaled_dot_product_attention(q, k, v), rtol=0, atol=ATOL)


# --------------------------------------------------------------------------- softmax rows


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    scale=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
    seed=seeds,
    data=st.data(),
)
def test_softmax_rows_are_distributions(shape, scale, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    p = softmax(randn(*shape, seed=seed) * scale, dim=dim)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    torch.testing.assert_close(p.sum(dim), torch.ones(p.sum(dim).shape), rtol=0, atol=1e-5)


@SETTINGS
@given(B=batches, T=lengths, d=head_sizes, seed=seeds)
def test_attention_weights_are_distributions_even_with_random_masks(B, T, d, seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, T, T, generator=g) > 0.5  # some rows may be fully masked
    q, k, v = (randn(B, T, d, seed=seed + n) for n in range(3))
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
    assert torch.isfinite(out).all()
    rows = w.sum(-1)
    has_key = mask.any(-1)
    torch.testing.assert_close(rows[has_key], torch.ones(int(has_key.sum())), rtol=0, atol=1e-5)
    assert torch.equal(rows[~has_key], torch.zeros(int((~has_key).sum())))
    assert torch.equal(w[~mask], torch.zeros(int((~mask).sum())))  # blocked keys get exactly 0


# --------------------------------------------------------------------------- batch independence


@SETTINGS
@given(B=st.integers(2, 4), T=lengths, H=heads, dh=head_sizes, seed=seeds, norm_first=st.booleans(), data=st.data())
def test_batch_examples_do_not_influence_each_other(B, T, H, dh, seed, norm_first, data):
    lengths_ = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B), label="lengths"))
    mask = padding_mask(lengths_, T=T)  # (B, 1, 1, T)
    model = block(H * dh, H, seed, norm_first)
    x = randn(B, T, H * dh, seed=seed)
    with torch.no_grad():
        together = model(x, mask=mask)
        for b in range(B):
            alone = model(x[b:b + 1], mask=mask[b:b + 1])
            torch.testing.assert_close(alone, together[b:b + 1], rtol=0, atol=ATOL)


@SETTINGS
@given(B=st.integers(2, 4), T=lengths, H=heads, dh=head_sizes, seed=seeds, data=st.data())
def test_padding_tokens_do_not_change_real_outputs(B, T, H, dh, seed, data):
    """Whatever sits in the padded positions, the real positions' outputs are the same."""
    n_real = data.draw(st.integers(1, T), label="real length")
    model = block(H * dh, H, seed)
    x = randn(1, T, H * dh, seed=seed)
    junk = x.clone()
    junk[:, n_real:] = randn(1, T - n_real, H * dh, seed=seed + 1) * 10
    mask = padding_mask(torch.tensor([n_real]), T=T)
    with torch.no_grad():
        torch.testing.assert_close(model(junk, mask=mask)[:, :n_real], model(x, mask=mask)[:, :n_real],
                                   rtol=0, atol=ATOL)
