"""The transformer block: LayerNorm, MLP, encoder and decoder blocks (unit 07).

A block reads from and writes to the *residual stream* ``x`` (B, T, D)::

    pre-norm  (GPT-2, most modern models; ``norm_first=True``)
        x = x + Attention(LN1(x))
        x = x + MLP(LN2(x))

    post-norm (the original paper, BERT; ``norm_first=False``)
        x = LN1(x + Attention(x))
        x = LN2(x + MLP(x))

Attention moves information *between* positions; the MLP processes each
position on its own. A decoder block (encoder-decoder models) has a third
sub-layer between them: cross-attention from the decoder positions to the
encoder output ("memory").

GPT-style models are a stack of ``EncoderBlock`` used with a causal mask:
"encoder" here only means "no cross-attention".

The blocks equal ``torch.nn.TransformerEncoderLayer`` / ``TransformerDecoderLayer``
(``batch_first=True``) once their weights are copied; ``tests/test_blocks.py``
proves it for both norm placements and with masks.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.attention import KVCache, MultiHeadAttention

__all__ = [
    "layer_norm",
    "LayerNorm",
    "gelu",
    "gelu_new",
    "ACTIVATIONS",
    "MLP",
    "EncoderBlock",
    "DecoderBlock",
]


# --------------------------------------------------------------------------
# LayerNorm
# --------------------------------------------------------------------------


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalise each position's feature vector, then scale and shift.

    ::

        mu      = mean_i x_i                     (over the last axis, D features)
        sigma^2 = mean_i (x_i - mu)^2            biased: divide by D, not D - 1
        y       = (x - mu) / sqrt(sigma^2 + eps) * weight + bias

    ``eps`` sits INSIDE the square root (as in PyTorch and the LayerNorm
    paper); it only matters when a vector is nearly constant.
    """
    D = x.shape[-1]
    if weight.shape != (D,) or bias.shape != (D,):
        raise ValueError(
            f"weight and bias must have shape ({D},) to match x {tuple(x.shape)}, "
            f"got {tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    mu = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
    x_hat = (x - mu) / torch.sqrt(var + eps)  # (..., D) mean 0, variance ~1
    return x_hat * weight + bias


class LayerNorm(nn.Module):
    """``layer_norm`` with learnable ``weight`` (gamma, starts at 1) and ``bias`` (beta, starts at 0)."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(
                f"x must have last dim d_model={self.weight.shape[0]}, got shape {tuple(x.shape)}"
            )
        # Same math as ``layer_norm`` above (tests/test_blocks.py proves them equal), but PyTorch's fused
        # kernel: the step-by-step version launches five kernels forward and more backward, which cost
        # about a fifth of a small GPT's training step on a CPU (bench/train_char_gpt.py).
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


# --------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------


def gelu(x: Tensor) -> Tensor:
    """Exact GELU: ``x * Phi(x)`` with Phi the standard normal CDF, ``Phi(x) = (1 + erf(x / sqrt 2)) / 2``."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_new(x: Tensor) -> Tensor:
    """The tanh approximation of GELU used by GPT-2 ("gelu_new" in Hugging Face).

    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
    """
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _fast_gelu_tanh(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


# What the MLP applies. ``gelu`` and ``gelu_new`` above spell out the math; the modules use PyTorch's
# fused kernels for the same functions (equal to 1e-6, tests/test_blocks.py), which keeps training fast.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _fast_gelu_tanh,
    "gelu_tanh": _fast_gelu_tanh,
    "relu": torch.relu,
}


def _activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}")
    return ACTIVATIONS[activation]


class MLP(nn.Module):
    """Position-wise feed-forward network: ``down(act(up(x)))``.

    up: (B, T, D) -> (B, T, d_mlp), act elementwise, down: -> (B, T, D).
    ``d_mlp`` defaults to 4 * d_model, as in the paper and GPT. Dropout (if
    any) is applied to the hidden activations, as in ``nn.TransformerEncoderLayer``.
    """

    def __init__(
        self,
        d_model: int,
        d_mlp: int | None = None,
        activation: str | Callable[[Tensor], Tensor] = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        d_mlp = 4 * d_model if d_mlp is None else d_mlp
        self.d_model, self.d_mlp = d_model, d_mlp
        self.up = nn.Linear(d_model, d_mlp, bias=bias)
        self.act = _activation(activation)
        self.down = nn.Linear(d_mlp, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"x must have last dim d_model={self.d_model}, got shape {tuple(x.shape)}")
        h = self.act(self.up(x))  # (B, T, d_mlp)
        return self.down(self.dropout(h))  # (B, T, D)


# --------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------


class EncoderBlock(nn.Module):
    """Self-attention + MLP, each wrapped in a residual connection and a LayerNorm.

    ``norm_first=True`` (pre-norm)::

        x = x + dropout(attn(ln1(x), mask))
        x = x + dropout(mlp(ln2(x)))

    ``norm_first=False`` (post-norm)::

        x = ln1(x + dropout(attn(x, mask)))
        x = ln2(x + dropout(mlp(x)))

    x (B, T, D) -> (B, T, D). ``mask`` as for ``MultiHeadAttention`` (bool True =
    may attend, or additive float; e.g. ``causal_mask(T)`` for a GPT block, or
    ``padding_mask(attention_mask)`` for BERT). ``kv_cache``: see
    ``MultiHeadAttention`` (used by GPT generation).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_mlp: int | None = None,
        norm_first: bool = True,
        dropout: float = 0.0,
        activation: str | Callable[[Tensor], Tensor] = "gelu",
        eps: float = 1e-5,
        bias: bool = True,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout)
        self.mlp = MLP(d_model, d_mlp, activation=activation, bias=bias, dropout=dropout)
        self.ln1 = LayerNorm(d_model, eps=eps)
        self.ln2 = LayerNorm(d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, kv_cache: KVCache | None = None) -> Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attn(self.ln1(x), mask=mask, kv_cache=kv_cache))  # (B, T, D)
            x = x + self.dropout(self.mlp(self.ln2(x)))
        else:
            x = self.ln1(x + self.dropout(self.attn(x, mask=mask, kv_cache=kv_cache)))
            x = self.ln2(x + self.dropout(self.mlp(x)))
        return x


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to the encoder output, MLP.

    ``norm_first=True`` (pre-norm)::

        x = x + dropout(self_attn(ln1(x), self_mask))
        x = x + dropout(cross_attn(ln2(x), memory, memory_mask))
        x = x + dropout(mlp(ln3(x)))

    ``norm_first=False`` (post-norm, the original paper)::

        x = ln1(x + dropout(self_attn(x, self_mask)))
        x = ln2(x + dropout(cross_attn(x, memory, memory_mask)))
        x = ln3(x + dropout(mlp(x)))

    x (B, T, D), memory (B, S, D) -> (B, T, D). ``self_mask`` is usually
    ``causal_mask(T)`` (combined with target padding); ``memory_mask``
    usually ``padding_mask(src_attention_mask)`` (B, 1, 1, S). The memory is
    used as it is (the encoder's final LayerNorm has already been applied).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_mlp: int | None = None,
        norm_first: bool = True,
        dropout: float = 0.0,
        activation: str | Callable[[Tensor], Tensor] = "gelu",
        eps: float = 1e-5,
        bias: bool = True,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout)
        self.mlp = MLP(d_model, d_mlp, activation=activation, bias=bias, dropout=dropout)
        self.ln1 = LayerNorm(d_model, eps=eps)
        self.ln2 = LayerNorm(d_model, eps=eps)
        self.ln3 = LayerNorm(d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> Tensor:
        drop = self.dropout
        if self.norm_first:
            x = x + drop(self.self_attn(self.ln1(x), mask=self_mask, kv_cache=kv_cache))  # (B, T, D)
            x = x + drop(self.cross_attn(self.ln2(x), memory, mask=memory_mask))
            x = x + drop(self.mlp(self.ln3(x)))
        else:
            x = self.ln1(x + drop(self.self_attn(x, mask=self_mask, kv_cache=kv_cache)))
            x = self.ln2(x + drop(self.cross_attn(x, memory, mask=memory_mask)))
            x = self.ln3(x + drop(self.mlp(x)))
        return x
