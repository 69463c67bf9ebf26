"""course_lib.positional: sinusoidal table (vs an independent numpy formula), offset rotation,
learned embeddings and rotary embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    apply_rotary,
    offset_rotation,
    sinusoidal_encoding,
)


def numpy_pe(n_positions: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    """The paper's formula, column by column: column j uses pair index i = j // 2,
    sin for even j and cos for odd j."""
    pe = np.zeros((n_positions, d_model))
    for j in range(d_model):
        i = j // 2
        angle = np.arange(n_positions) / np.power(base, 2 * i / d_model)
        pe[:, j] = np.sin(angle) if j % 2 == 0 else np.cos(angle)
    return pe


# --------------------------------------------------------------------------- sinusoidal


@pytest.mark.parametrize("n, d", [(1, 2), (7, 4), (50, 16), (300, 64), (2048, 10)])
def test_sinusoidal_equals_the_paper_formula(n, d):
    expected = numpy_pe(n, d)
    got64 = sinusoidal_encoding(n, d, dtype=torch.float64)
    np.testing.assert_allclose(got64.numpy(), expected, rtol=0, atol=1e-10)
    got32 = sinusoidal_encoding(n, d)
    assert got32.dtype == torch.float32 and got32.shape == (n, d)
    np.testing.assert_allclose(got32.numpy(), expected, rtol=0, atol=1e-6)


def test_sinusoidal_is_interleaved_not_concatenated():
    pe = sinusoidal_encoding(10, 8)
    p = torch.arange(10.0)
    torch.testing.assert_close(pe[:, 0], torch.sin(p))  # i = 0: w = 1
    torch.testing.assert_close(pe[:, 1], torch.cos(p))
    torch.testing.assert_close(pe[:, 2], torch.sin(p / 10000 ** (2 / 8)))
    assert not torch.allclose(pe[:, 1], pe[:, 4])  # a [sin..., cos...] layout would have cos(p) at column 4
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * 4))


def test_sinusoidal_other_base_and_long_sequences():
    np.testing.assert_allclose(sinusoidal_encoding(20, 6, base=100.0, dtype=torch.float64).numpy(),
                               numpy_pe(20, 6, base=100.0), atol=1e-10)
    long = sinusoidal_encoding(20000, 32)
    assert long.shape == (20000, 32) and torch.isfinite(long).all() and long.abs().max() <= 1
    assert sinusoidal_encoding(0, 4).shape == (0, 4)


@pytest.mark.parametrize("d", [1, 3, 7, 0, -2])
def test_sinusoidal_rejects_odd_d_model(d):
    with pytest.raises(ValueError, match=f"d_model must be a positive even number.*d_model={d}"):
        sinusoidal_encoding(5, d)


def test_sinusoidal_module_matches_table():
    pe = SinusoidalPositionalEncoding(30, 8)
    torch.testing.assert_close(pe(12), sinusoidal_encoding(12, 8))
    pos = torch.tensor([[3, 4], [29, 0]])
    torch.testing.assert_close(pe(pos), sinusoidal_encoding(30, 8)[pos])
    assert list(pe.parameters()) == []
    with pytest.raises(ValueError, match="T=31 exceeds max_len=30"):
        pe(31)


# --------------------------------------------------------------------------- offset rotation


@pytest.mark.parametrize("d", [2, 8, 64])
@pytest.mark.parametrize("k", [1, 5, 37])
def test_offset_rotation_moves_every_position_by_k(k, d):
    pe = sinusoidal_encoding(200, d, dtype=torch.float64)
    R = offset_rotation(k, d, dtype=torch.float64)
    assert R.shape == (d, d)
    # the same matrix works for every p: PE[p + k] = R_k @ PE[p]
    torch.testing.assert_close(pe[k:], pe[:-k] @ R.T, rtol=0, atol=1e-9)
    torch.testing.assert_close(R @ pe[10], pe[10 + k], rtol=0, atol=1e-9)


def test_offset_rotation_is_a_rotation_that_composes():
    d = 16
    R3, R4, R7 = (offset_rotation(k, d, dtype=torch.float64) for k in (3, 4, 7))
    eye = torch.eye(d, dtype=torch.float64)
    torch.testing.assert_close(R3 @ R3.T, eye)  # orthogonal
    torch.testing.assert_close(R3 @ R4, R7)  # moving 3 then 4 = moving 7
    torch.testing.assert_close(offset_rotation(0, d, dtype=torch.float64), eye)
    torch.testing.assert_close(offset_rotation(-3, d, dtype=torch.float64), R3.T)  # moving back


def test_offset_rotation_float32_default():
    R = offset_rotation(2, 8)
    assert R.dtype == torch.float32
    pe = sinusoidal_encoding(20, 8)
    torch.testing.assert_close(pe[2:], pe[:-2] @ R.T, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="even"):
        offset_rotation(1, 5)


# --------------------------------------------------------------------------- learned


def test_learned_embedding_rows_and_positions():
    torch.manual_seed(0)
    emb = LearnedPositionalEmbedding(10, 4)
    assert emb.weight.shape == (10, 4)
    assert torch.equal(emb(6), emb.weight[:6])
    pos = torch.tensor([[0, 9], [3, 3]])
    out = emb(pos)
    assert out.shape == (2, 2, 4) and torch.equal(out[1, 0], emb.weight[3])
    emb(5).sum().backward()
    assert emb.weight.grad[:5].eq(1).all() and emb.weight.grad[5:].eq(0).all()


def test_learned_embedding_rejects_too_long_sequences():
    emb = LearnedPositionalEmbedding(10, 4)
    assert emb(10).shape == (10, 4)
    with pytest.raises(ValueError, match="T=11 exceeds max_len=10"):
        emb(11)
    with pytest.raises(ValueError, match=r"positions must lie in \[0, max_len=10\)"):
        emb(torch.tensor([3, 10]))
    with pytest.raises(ValueError, match=r"positions must lie in \[0, max_len=10\)"):
        emb(torch.tensor([-1]))
    with pytest.raises(ValueError, match="integer tensor"):
        emb(torch.tensor([1.0]))


# --------------------------------------------------------------------------- rotary


def complex_rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Independent formulation: each pair (a, b) is the complex number a + ib, multiplied by e^{i p w}."""
    Dh = x.shape[-1]
    w = base ** (-torch.arange(0, Dh, 2, dtype=torch.float64) / Dh)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], Dh // 2, 2).contiguous())
    z = z * torch.polar(torch.ones((), dtype=torch.float64), positions.double()[:, None] * w)
    return torch.view_as_real(z).reshape(x.shape).to(x.dtype)


def test_apply_rotary_equals_complex_multiplication():
    x = torch.randn(2, 3, 9, 8)
    torch.testing.assert_close(apply_rotary(x), complex_rotary(x, torch.arange(9)), rtol=0, atol=1e-5)
    pos = torch.tensor([4, 0, 100, 7, 7, 1, 2, 3, 50])
    torch.testing.assert_close(apply_rotary(x, pos), complex_rotary(x, pos), rtol=0, atol=1e-5)


def test_apply_rotary_keeps_norms_and_position_zero():
    x = torch.randn(4, 6, 16)
    y = apply_rotary(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, 0], x[:, 0])
    assert not torch.allclose(y[:, 1], x[:, 1])


@pytest.mark.parametrize("shift", [1, 7, 123])
def test_rotary_scores_depend_only_on_relative_offset(shift):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(16, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    for p, m in [(0, 0), (2, 5), (9, 3), (40, 41)]:
        def score(pq, pk):
            rq = apply_rotary(q[None], torch.tensor([pq]))[0]
            rk = apply_rotary(k[None], torch.tensor([pk]))[0]
            return rq @ rk
        torch.testing.assert_close(score(p, m), score(p + shift, m + shift), rtol=0, atol=1e-10)
    # ... but it does depend on the offset itself
    a = apply_rotary(q[None], torch.tensor([0]))[0] @ apply_rotary(k[None], torch.tensor([1]))[0]
    b = apply_rotary(q[None], torch.tensor([0]))[0] @ apply_rotary(k[None], torch.tensor([2]))[0]
    assert not torch.isclose(a, b)


def test_rotary_rejects_bad_input():
    with pytest.raises(ValueError, match="d_head must be a positive even number"):
        apply_rotary(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"positions must have shape \(T,\) = \(3,\)"):
        apply_rotary(torch.zeros(3, 4), torch.arange(4))
