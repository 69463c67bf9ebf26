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

from contextlib import contextmanager
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


def _check_input_ids(input_ids: torch.Tensor, name: str = "input_ids") -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        got = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"{name} must be a LongTensor of shape (B, T) with T >= 1, got {got}")
    if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {input_ids.dtype}")


@contextmanager
def _eval_mode(model: torch.nn.Module):
    """Eval mode (no dropout) and no gradients inside the block; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def generate(
    model: "GPT",
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Extend ``input_ids`` (B, T) by ``max_new_tokens`` sampled tokens -> (B, T + max_new_tokens).

    Each step samples with :func:`sample_next_token` from the logits at the last position.
    Runs in eval mode under ``torch.no_grad()`` (the model's mode is restored afterwards).

    Without the cache (``use_cache=False``) every step runs the model on the last
    ``block_size`` tokens (the context is cropped: positions beyond ``block_size`` have no
    position embedding).

    With the cache, the first step runs the whole prompt and fills one KV cache per block; each
    later step feeds only the newest token, at position ``len(cache)``. This is exact as long as
    the whole sequence fits in ``block_size``. Once it no longer fits the window has to slide:
    every token moves to a new position, so the cached keys and values (computed from the old
    positions) are stale. From then on we fall back to the uncached computation on the cropped
    window, which keeps the output token-for-token equal to ``use_cache=False``.
    """
    _check_input_ids(input_ids)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    block_size = model.config.block_size
    ids = input_ids
    caches = None
    with _eval_mode(model):
        for _ in range(max_new_tokens):
            if use_cache and ids.shape[1] <= block_size:
                if caches is None:  # first step: run the whole prompt, filling the caches
                    caches = model.new_kv_caches()
                    logits = model(ids, kv_caches=caches)  # (B, T, V)
                else:  # later steps: only the newest token; the cache holds the rest
                    logits = model(ids[:, -1:], kv_caches=caches)  # (B, 1, V)
            else:  # no cache, or the sequence outgrew block_size: crop and recompute
                caches = None
                logits = model(ids[:, -block_size:])  # (B, <=block_size, V)
            next_token = sample_next_token(
                logits[:, -1, :], temperature, top_k=top_k, top_p=top_p, generator=generator
            )  # (B,)
            ids = torch.cat([ids, next_token[:, None]], dim=1)  # (B, T + 1)
    return ids


def greedy_decode(
    model: "EncoderDecoder",
    src_ids: torch.Tensor,
    max_len: int,
    bos_id: int | None = None,
    eos_id: int | None = None,
    src_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Translate greedily: encode once, then pick the argmax target token one step at a time.

    Returns LongTensor (B, L) with ``L <= max_len``: column 0 is ``bos_id``, then the chosen
    tokens. A row that has produced ``eos_id`` is finished: its later columns are ``pad_id``
    (from the model's config). Decoding stops as soon as every row is finished, or when the
    output reaches ``max_len`` tokens (``bos`` included). ``bos_id``/``eos_id`` default to
    the model config's. The decoder re-reads the whole target prefix each step (no KV cache:
    targets are short here).
    """
    _check_input_ids(src_ids, "src_ids")
    config = model.config
    bos_id = config.bos_id if bos_id is None else bos_id
    eos_id = config.eos_id if eos_id is None else eos_id
    if isinstance(max_len, bool) or not isinstance(max_len, int) or not 1 <= max_len <= config.max_len:
        raise ValueError(f"max_len must be an int in [1, {config.max_len}] (the model's max_len), got {max_len!r}")
    if src_mask is None:
        src_mask = src_ids != config.pad_id  # (B, S)
    B = src_ids.shape[0]
    out = torch.full((B, 1), bos_id, dtype=torch.long, device=src_ids.device)  # (B, 1)
    finished = torch.zeros(B, dtype=torch.bool, device=src_ids.device)  # (B,)
    with _eval_mode(model):
        memory = model.encode(src_ids, src_mask)  # (B, S, D)
        while out.shape[1] < max_len and not bool(finished.all()):
            logits = model.decode(out, memory, src_mask)  # (B, t, V)
            next_token = logits[:, -1, :].argmax(dim=-1)  # (B,)
            next_token = torch.where(finished, config.pad_id, next_token)
            out = torch.cat([out, next_token[:, None]], dim=1)  # (B, t + 1)
            finished |= next_token == eos_id
    return out
