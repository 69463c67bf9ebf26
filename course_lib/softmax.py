"""Softmax and the losses built on it (unit 02).

The softmax turns a vector of real numbers ("logits") into a probability
distribution::

    softmax(x)_i = exp(x_i) / sum_j exp(x_j)

Written like that it overflows: ``exp(1e4)`` is ``inf`` in float32 (anything
above about 88.7 is), and ``inf / inf`` is ``nan``. The fix is the identity

    softmax(x) = softmax(x - c)    for any constant c,

because ``exp(x_i - c) / sum_j exp(x_j - c) = exp(-c) exp(x_i) / (exp(-c) sum_j exp(x_j))``.
Choosing ``c = max_j x_j`` makes every exponent <= 0, so every ``exp`` lies
in (0, 1] and the largest one is exactly 1: no overflow, and the sum is >= 1
so there is no division by zero either.

``log_softmax`` uses the same shift::

    log softmax(x)_i = (x_i - c) - log sum_j exp(x_j - c)

which is more accurate than ``log(softmax(x))`` (that one gives ``-inf`` as
soon as a probability underflows to 0).

Every function here works over any axis ``dim`` and equals its PyTorch
counterpart (``torch.softmax``, ``torch.log_softmax``, ``F.cross_entropy``);
``tests/test_softmax.py`` proves it.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "softmax",
    "log_softmax",
    "softmax_with_temperature",
    "cross_entropy",
    "perplexity",
]


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim``.

    ``softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)`` with ``m = max_j x_j``.

    Finite for logits as large as 1e4 (or as small as -1e4). A slice that is
    entirely ``-inf`` has no probability mass to share and gives ``nan``,
    exactly like ``torch.softmax``; attention handles such "fully masked"
    rows itself (see ``course_lib.attention``).
    """
    m = x.amax(dim=dim, keepdim=True)  # (..., 1, ...) the largest logit
    e = torch.exp(x - m)  # every exponent <= 0, so 0 < e <= 1
    return e / e.sum(dim=dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable log-softmax along ``dim``.

    ``log_softmax(x)_i = (x_i - m) - log sum_j exp(x_j - m)``, ``m = max_j x_j``.
    """
    shifted = x - x.amax(dim=dim, keepdim=True)
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def softmax_with_temperature(logits: Tensor, temperature: float, dim: int = -1) -> Tensor:
    """``softmax(logits / temperature)``.

    A temperature above 1 flattens the distribution (more random samples),
    below 1 sharpens it; as it goes to 0 the distribution approaches a one-hot
    vector on the argmax (greedy decoding, which ``course_lib.generation``
    handles as the special case ``temperature=0``).
    """
    t = float(temperature)
    if not t > 0:  # also rejects nan
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return softmax(logits / t, dim=dim)


def _flatten_for_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Check shapes and flatten ``(B, T, V)``/``(B, T)`` to ``(N, V)``/``(N,)``."""
    if logits.dim() not in (2, 3):
        raise ValueError(
            f"logits must have shape (N, V) or (B, T, V), got {tuple(logits.shape)}"
        )
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have shape {tuple(logits.shape[:-1])} to match logits "
            f"{tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"targets must be an integer tensor of class ids, got dtype {targets.dtype}")
    return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long()


def cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

    ``loss = -(1/|S|) sum_{n in S} log_softmax(logits_n)[targets_n]``

    where ``S`` is the set of positions whose target is not ``ignore_index``
    (padding). Shapes: logits ``(N, V)`` with targets ``(N,)``, or logits
    ``(B, T, V)`` with targets ``(B, T)`` (a language model's output; note
    that ``F.cross_entropy`` wants ``(B, V, T)`` for that case, here the
    vocabulary stays last). Equals ``F.cross_entropy(..., reduction="mean")``.
    When every target is ignored the mean is over nothing and the result is
    ``nan``, as in PyTorch.
    """
    flat_logits, flat_targets = _flatten_for_loss(logits, targets)  # (N, V), (N,)
    V = flat_logits.shape[-1]
    keep = flat_targets != ignore_index  # (N,) bool
    kept = flat_targets[keep]
    if kept.numel() and (kept.min() < 0 or kept.max() >= V):
        bad = kept[(kept < 0) | (kept >= V)][0].item()
        raise ValueError(
            f"targets must lie in [0, {V}) (vocabulary size {V}) or equal "
            f"ignore_index={ignore_index}, found {bad}"
        )
    logp = log_softmax(flat_logits, dim=-1)  # (N, V)
    safe_targets = torch.where(keep, flat_targets, 0)  # any valid id; masked out below
    nll = -logp.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)  # (N,)
    nll = nll * keep  # ignored positions contribute 0
    return nll.sum() / keep.sum()


def perplexity(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """``exp(cross_entropy)``: the effective number of equally likely choices.

    A model that spreads its probability uniformly over ``V`` tokens has
    perplexity ``V``; a perfect model has perplexity 1.
    """
    return torch.exp(cross_entropy(logits, targets, ignore_index=ignore_index))
