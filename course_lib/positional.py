"""Positional information (unit 06): sinusoidal, learned and rotary.

Attention by itself is blind to order: permute the tokens and the outputs are
permuted the same way (``tests/test_properties.py`` proves it). A model
therefore needs to be *told* where each token is.

Sinusoidal encoding (Vaswani et al. 2017, section 3.5), added to the token
embeddings::

    PE[p, 2i]   = sin(p * w_i)
    PE[p, 2i+1] = cos(p * w_i)        w_i = 1 / base^(2i / d_model)

Sine and cosine are INTERLEAVED (even column sin, odd column cos), as in the
paper. Each pair (2i, 2i+1) is a point on a circle turning at angular speed
``w_i``, from one turn per 2*pi positions (i = 0) down to one turn per
``2*pi*base`` positions. Moving ``k`` positions forward turns every circle by
the fixed angle ``k * w_i``, whatever ``p`` is, so ``PE[p + k]`` is a fixed
linear function (a rotation, ``offset_rotation(k, d_model)``) of ``PE[p]``;
that is why the authors hoped the model could "attend by relative position".

Rotary embeddings (RoPE, Su et al. 2021) use the same circles differently:
instead of adding a vector, they *rotate* each query and key by its
position's angles. Then ``q_p . k_m`` depends only on ``m - p``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "sinusoidal_encoding",
    "offset_rotation",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "rotary_frequencies",
    "apply_rotary",
]


def _check_even(d: int, name: str = "d_model") -> None:
    if d <= 0 or d % 2 != 0:
        raise ValueError(f"{name} must be a positive even number (sin/cos pairs), got {name}={d}")


def _frequencies(d: int, base: float) -> Tensor:
    """w_i = base^(-2i/d) for i = 0 .. d/2 - 1, in float64.  (d/2,)"""
    two_i = torch.arange(0, d, 2, dtype=torch.float64)  # 0, 2, 4, ..., d-2
    return base ** (-two_i / d)


def sinusoidal_encoding(
    n_positions: int, d_model: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The fixed sinusoidal table ``PE`` of shape (n_positions, d_model).

    ``PE[p, 2i] = sin(p / base^(2i/d))``, ``PE[p, 2i+1] = cos(p / base^(2i/d))``.

    Computed in float64 (angles like 5000 * 1.0 lose digits in float32) and
    returned as ``dtype``. Works for any length; ValueError on an odd d_model.
    """
    _check_even(d_model)
    if n_positions < 0:
        raise ValueError(f"n_positions must be >= 0, got {n_positions}")
    p = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    angles = p * _frequencies(d_model, base)[None, :]  # (P, D/2)
    pe = torch.empty(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)  # even columns
    pe[:, 1::2] = torch.cos(angles)  # odd columns
    return pe.to(dtype)


def offset_rotation(
    k: int, d_model: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The (D, D) matrix ``R_k`` with ``PE[p + k] = R_k @ PE[p]`` for EVERY p.

    (For row vectors: ``PE[p + k] = PE[p] @ R_k.T``, i.e. ``pe[k:] == pe[:-k] @ R.T``.)

    Block diagonal, one 2x2 rotation per sin/cos pair, angle ``a = k * w_i``::

        [sin(x + a)]   [ cos a   sin a] [sin x]
        [cos(x + a)] = [-sin a   cos a] [cos x]

    by the angle-addition formulas. ``R_k`` does not depend on ``p``.
    """
    _check_even(d_model)
    a = k * _frequencies(d_model, base)  # (D/2,) one angle per pair
    cos, sin = torch.cos(a), torch.sin(a)
    R = torch.zeros(d_model, d_model, dtype=torch.float64)
    idx = torch.arange(0, d_model, 2)
    R[idx, idx] = cos
    R[idx, idx + 1] = sin
    R[idx + 1, idx] = -sin
    R[idx + 1, idx + 1] = cos
    return R.to(dtype)


def _positions(T_or_positions: int | Tensor, max_len: int) -> Tensor:
    """Turn ``T`` (meaning positions 0..T-1) or an explicit position tensor into positions."""
    if isinstance(T_or_positions, Tensor):
        pos = T_or_positions
        if pos.dtype.is_floating_point or pos.dtype == torch.bool:
            raise ValueError(f"positions must be an integer tensor, got dtype {pos.dtype}")
        if pos.numel() and (pos.min() < 0 or pos.max() >= max_len):
            raise ValueError(
                f"positions must lie in [0, max_len={max_len}), got min {pos.min().item()} "
                f"and max {pos.max().item()}"
            )
        return pos
    T = int(T_or_positions)
    if T < 0:
        raise ValueError(f"sequence length T must be >= 0, got {T}")
    if T > max_len:
        raise ValueError(f"sequence length T={T} exceeds max_len={max_len}")
    return torch.arange(T)


class SinusoidalPositionalEncoding(nn.Module):
    """The sinusoidal table as a module (a buffer, no parameters).

    forward(T) -> (T, D) rows 0..T-1, or forward(positions (...)) -> (..., D).
    """

    def __init__(self, max_len: int, d_model: int, base: float = 10000.0):
        super().__init__()
        self.max_len = max_len
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model, base), persistent=False)

    def forward(self, T_or_positions: int | Tensor) -> Tensor:
        pos = _positions(T_or_positions, self.max_len).to(self.pe.device)
        return self.pe[pos]  # (T, D) or (..., D)


class LearnedPositionalEmbedding(nn.Module):
    """One learned vector per position, as in GPT-2 and BERT: a (max_len, D) table.

    forward(T) -> (T, D) rows 0..T-1, or forward(positions (...)) -> (..., D).
    Unlike the sinusoidal table it cannot extrapolate: T > max_len is a ValueError.
    """

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def forward(self, T_or_positions: int | Tensor) -> Tensor:
        pos = _positions(T_or_positions, self.max_len).to(self.weight.device)
        return self.weight[pos]  # (T, D) or (..., D)


def rotary_frequencies(d_head: int, base: float = 10000.0) -> Tensor:
    """Angular speed of each rotary pair, ``w_i = base^(-2i/d_head)`` (d_head/2,), float64."""
    _check_even(d_head, "d_head")
    return _frequencies(d_head, base)


def apply_rotary(x: Tensor, positions: Tensor | None = None, base: float = 10000.0) -> Tensor:
    """Rotate each pair (x[2i], x[2i+1]) of every vector by the angle ``p * w_i``.

    x (..., T, Dh) queries or keys; positions (T,) integers (default 0..T-1).
    Returns the same shape. For a pair ``(a, b)`` and angle ``t``::

        a' = a cos t - b sin t
        b' = a sin t + b cos t

    Because rotations compose (``R_p^T R_m = R_{m-p}``), after rotating q at
    position p and k at position m, ``q' . k' = q . R_{m-p} k``: the score depends
    on the content and the relative offset only. Pairs are interleaved, like
    the columns of ``sinusoidal_encoding``.
    """
    T, Dh = x.shape[-2], x.shape[-1]
    w = rotary_frequencies(Dh, base)  # (Dh/2,)
    if positions is None:
        positions = torch.arange(T)
    if positions.shape != (T,):
        raise ValueError(f"positions must have shape (T,) = ({T},) to match x {tuple(x.shape)}, got {tuple(positions.shape)}")
    angles = positions.to(torch.float64)[:, None] * w[None, :]  # (T, Dh/2)
    cos = torch.cos(angles).to(x.dtype).to(x.device)
    sin = torch.sin(angles).to(x.dtype).to(x.device)
    a, b = x[..., 0::2], x[..., 1::2]  # (..., T, Dh/2) each
    rotated = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)  # (..., T, Dh/2, 2)
    return rotated.flatten(-2)  # (..., T, Dh), pairs interleaved again
