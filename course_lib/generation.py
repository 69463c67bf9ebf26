"""Turning next-token logits into text: sampling, the generation loop, the KV cache.

A language model gives, for every prefix, logits over the vocabulary for the next token. To
generate we repeat::

    logits = model(ids)[:, -1, :]          # (B, V) scores for the next token
    next   = sample_next_token(logits)     # (B,)
    ids    = concat(ids, next)             # (B, T + 1)

Sampling knobs (applied in this order, as Hugging Face and nanoGPT do):

* ``temperature`` -- divide the logits by T before the softmax: T < 1 sharpens, T > 1 flattens,
  T = 0 is greedy decoding (argmax).
* ``top_k`` -- keep only the k most likely tokens.
* ``top_p`` (nucleus) -- keep the smallest set of most likely tokens whose probability mass is
  at least p.

The KV cache: without it, step t re-runs the model on all t tokens, although the keys and
values of the first t-1 tokens have not changed (a causal model never lets earlier positions
see later ones). With it, each layer keeps the keys and values it has already computed and each
step feeds only the newest token: O(T) work per step instead of O(T^2) for attention and O(T)
times less for everything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from course_lib.softmax import softmax

if TYPE_CHECKING:  # imported only for type hints; models imports nothing from here
    from course_lib.models import GPT, EncoderDecoder

__all__ = [
    "top_k_filter",
    "top_p_filter",
    "sample_next_token",
    "generate",
    "greedy_decode",
]


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        got = f"dtype {logits.dtype}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor of shape (B, V) or (V,), got {got}")
    if logits.dim() not in (1, 2):
        raise ValueError(f"logits must have shape (B, V) or (V,), got {tuple(logits.shape)}")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits in each row, set the others to ``-inf``.

    ``filtered_i = logits_i if logits_i >= (k-th largest logit) else -inf``.
    Ties with the k-th largest value are all kept (no arbitrary choice between equal logits),
    so a row can keep more than k tokens only when logits are exactly equal. ``k >= V`` keeps
    everything. Returns a new tensor of the same shape: (B, V) or (V,).
    """
    _check_logits(logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    V = logits.shape[-1]
    if k >= V:
        return logits.clone()
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1) or (1,)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose total probability >= p.

    Sort the probabilities in decreasing order, ``q_1 >= q_2 >= ...``. Token ``j`` (in sorted
    order) is kept when the mass of the tokens before it is still below p::

        keep_j  <=>  q_1 + ... + q_{j-1} < p

    so the kept set is the shortest prefix with mass >= p, and the most likely token is always
    kept (the mass before it is 0 < p). ``p = 1`` keeps every token with non-zero probability.
    Among exactly equal probabilities the sort order decides which one is inside the nucleus.
    Returns a new tensor of the same shape with the other logits set to ``-inf``.
    """
    _check_logits(logits)
    p = float(p)
    if not 0.0 < p <= 1.0:  # also rejects nan
        raise ValueError(f"p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V) each
    sorted_probs = softmax(sorted_logits, dim=-1)  # (B, V)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # (B, V) exclusive prefix sum
    drop_sorted = mass_before >= p  # (B, V) in sorted order
    drop_sorted[..., 0] = False  # the top token always stays (guards against rounding)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token from logits (B, V) -> LongTensor (B,); logits (V,) -> LongTensor ().

    ``temperature == 0`` is greedy decoding: the argmax, no randomness (top_k/top_p are then
    irrelevant). Otherwise::

        probs = softmax(top_p_filter(top_k_filter(logits / temperature, top_k), top_p))
        next  ~ Categorical(probs)         (torch.multinomial with ``generator``)

    Passing a seeded ``torch.Generator`` makes the draw reproducible.
    """
    _check_logits(logits)
    temperature = float(temperature)
    if not temperature >= 0:  # also rejects nan
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits / temperature  # (B, V)
    if top_k is not None:
        scaled = top_k_filter(scaled, top_k)
    if top_p is not None:
        scaled = top_p_filter(scaled, top_p)
    probs = softmax(scaled, dim=-1)  # (B, V)
    if probs.dim() == 1:
        return torch.multinomial(probs, 1, generator=generator)[0]  # ()
    return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)
