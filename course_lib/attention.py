"""Attention: scores, masks, scaled dot-product and multi-head attention (units 03-05).

Scaled dot-product attention (Vaswani et al. 2017, eq. 1)::

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

    Q (..., T_q, d_k)   one query per position that asks a question
    K (..., T_k, d_k)   one key per position that may answer
    V (..., T_k, d_v)   what each position passes on when it is chosen

Row ``i`` of ``softmax(Q K^T / sqrt(d_k))`` is a probability distribution over
the ``T_k`` keys: how much query ``i`` attends to each key. The softmax runs
over the KEY axis (the last one), so each query's weights sum to 1.

Masks (same convention as ``torch.nn.functional.scaled_dot_product_attention``):

* a **bool** mask says who may attend to whom: ``True`` = "may attend",
  ``False`` = "blocked"; blocked scores are replaced by a huge negative
  number before the softmax, so they get weight 0;
* a **float** mask is *added* to the scores (0 = keep, ``-inf`` = blocked,
  other values act as a bias).

Masks broadcast against the scores ``(..., T_q, T_k)`` the way NumPy does,
but a mask may never make the result larger: each of its dimensions must be
1 or equal to the matching dimension of the scores. Anything else (or an
integer mask, which is ambiguous) is a ``ValueError``.

A query whose every key is blocked (a "fully masked row", e.g. a padding
query in a padded batch combined with a causal mask) gets all-zero weights
and a zero output, never ``nan``; its gradients are zero too.

PyTorch's ``nn.MultiheadAttention`` uses the OPPOSITE bool convention for its
``attn_mask`` and ``key_padding_mask`` (True = NOT allowed): convert with
``~mask`` when comparing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "attention_scores",
    "causal_mask",
    "padding_mask",
    "combine_masks",
    "scaled_dot_product_attention",
    "split_heads",
    "merge_heads",
    "SelfAttentionHead",
    "MultiHeadAttention",
    "KVCache",
]


# --------------------------------------------------------------------------
# Input checks (shared by everything below)
# --------------------------------------------------------------------------


def _check_qk(q: Tensor, k: Tensor) -> None:
    if q.dim() < 2 or k.dim() < 2:
        raise ValueError(
            f"q and k need at least 2 dims (..., T, d_k), got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q has d_k={q.shape[-1]} but k has d_k={k.shape[-1]}")
    if q.shape[:-2] != k.shape[:-2]:
        raise ValueError(
            f"q and k must have the same leading (batch/head) dims, got q {tuple(q.shape)} "
            f"and k {tuple(k.shape)}"
        )


def _check_kv(k: Tensor, v: Tensor) -> None:
    if v.dim() < 2:
        raise ValueError(f"v needs at least 2 dims (..., T_k, d_v), got {tuple(v.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k has T_k={k.shape[-2]} keys but v has {v.shape[-2]} values; "
            "every key needs exactly one value"
        )
    if k.shape[:-2] != v.shape[:-2]:
        raise ValueError(
            f"k and v must have the same leading (batch/head) dims, got k {tuple(k.shape)} "
            f"and v {tuple(v.shape)}"
        )


def _check_mask(mask: Tensor, scores_shape: torch.Size) -> None:
    """A mask must be bool or float and broadcast to the scores without enlarging them."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ValueError(
            f"mask must be bool (True = may attend) or float (additive, 0 or -inf), "
            f"got dtype {mask.dtype}; for a 0/1 mask use mask.bool()"
        )
    fits = mask.dim() <= len(scores_shape) and all(
        m == 1 or m == s for m, s in zip(reversed(mask.shape), reversed(scores_shape))
    )
    if not fits:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}, which does not broadcast to the attention "
            f"scores of shape {tuple(scores_shape)} (..., T_q, T_k); each mask dim must be 1 "
            "or equal to the matching scores dim"
        )


# --------------------------------------------------------------------------
# Scores and masks
# --------------------------------------------------------------------------


def attention_scores(q: Tensor, k: Tensor, scale: bool = True) -> Tensor:
    """Dot product of every query with every key: ``q @ k^T / sqrt(d_k)``.

    q (..., T_q, d_k), k (..., T_k, d_k) -> scores (..., T_q, T_k).

    Why ``sqrt(d_k)``: if the entries of q and k are independent with mean 0
    and variance 1, their dot product has variance ``d_k``; dividing by
    ``sqrt(d_k)`` brings it back to 1, so the softmax does not saturate.

    (We scale ``q`` before the product rather than the scores after it: the
    same number up to rounding, but ``T_q * d_k`` multiplications instead of
    ``T_q * T_k``.)
    """
    _check_qk(q, k)
    if scale:
        q = q * (1.0 / math.sqrt(q.shape[-1]))
    return q @ k.transpose(-2, -1)  # (..., T_q, T_k)


def causal_mask(T: int, device=None, offset: int = 0) -> Tensor:
    """Bool ``(T, T + offset)`` mask, True on and below the (shifted) diagonal.

    Query ``i`` may attend to key ``j`` iff ``j <= i + offset``: a position sees
    itself and the past, never the future. ``offset`` is the number of earlier
    positions already in a KV cache: with ``offset`` cached tokens the ``T`` new
    queries sit at absolute positions ``offset .. offset + T - 1``.

    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    if T < 0 or offset < 0:
        raise ValueError(f"T and offset must be >= 0, got T={T}, offset={offset}")
    return torch.ones(T, T + offset, dtype=torch.bool, device=device).tril(diagonal=offset)


def padding_mask(lengths_or_ids: Tensor, pad_id: int | None = None, T: int | None = None) -> Tensor:
    """Key mask ``(B, 1, 1, T)`` that blocks padding tokens (True = real token).

    Accepts one of:

    * an attention mask ``(B, T)`` of 0/1 or bool, 1 = real token (Hugging
      Face's convention) -- the usual case;
    * token ids ``(B, T)`` together with ``pad_id``: real where ``ids != pad_id``;
    * lengths ``(B,)`` (the number of real tokens at the start of each row),
      padded to ``T`` positions (default ``max(lengths)``).

    The two singleton axes let it broadcast against scores ``(B, H, T_q, T_k)``:
    the same keys are blocked for every head and every query.
    """
    x = torch.as_tensor(lengths_or_ids)
    if pad_id is not None:
        if x.dim() != 2:
            raise ValueError(f"token ids must have shape (B, T), got {tuple(x.shape)}")
        keep = x != pad_id  # (B, T)
    elif x.dim() == 1:
        if x.dtype == torch.bool or x.is_floating_point():
            raise ValueError(f"lengths must be an integer tensor (B,), got dtype {x.dtype}")
        n = int(x.max().item()) if T is None else T
        if x.numel() and (x.min() < 0 or x.max() > n):
            raise ValueError(f"lengths must lie in [0, T={n}], got {x.tolist()}")
        keep = torch.arange(n, device=x.device) < x[:, None]  # (B, T)
    elif x.dim() == 2:
        if x.dtype != torch.bool and not bool(((x == 0) | (x == 1)).all()):
            raise ValueError(
                "attention mask (B, T) must contain only 0 and 1 (1 = real token); "
                "for token ids pass pad_id=..."
            )
        keep = x.bool()  # (B, T)
    else:
        raise ValueError(
            f"padding_mask expects an attention mask or ids (B, T) or lengths (B,), got {tuple(x.shape)}"
        )
    return keep[:, None, None, :]  # (B, 1, 1, T)


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of bool masks (broadcasting), e.g. causal AND padding.

    ``None`` entries are skipped; with no mask at all the result is ``None``
    ("attend everywhere"). A key is allowed only if every mask allows it.

    >>> combine_masks(causal_mask(4), padding_mask(torch.tensor([[1, 1, 1, 0]]))).shape
    torch.Size([1, 1, 4, 4])
    """
    result = None
    for i, m in enumerate(masks):
        if m is None:
            continue
        if not isinstance(m, Tensor) or m.dtype != torch.bool:
            what = m.dtype if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"combine_masks takes bool masks (True = may attend); mask {i} is {what}")
        if result is None:
            result = m
            continue
        try:
            torch.broadcast_shapes(result.shape, m.shape)
        except RuntimeError:
            raise ValueError(
                f"mask {i} has shape {tuple(m.shape)}, which does not broadcast with "
                f"the previous masks' shape {tuple(result.shape)}"
            ) from None
        result = result & m
    return result


# --------------------------------------------------------------------------
# Scaled dot-product attention
# --------------------------------------------------------------------------


def _apply_mask(scores: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Add a bool or additive mask to ``scores`` (in place) before the softmax.

    Returns the masked scores and ``has_key`` (``(..., T_q, 1)`` bool, broadcastable):
    False for a query whose every key is blocked.

    A bool mask is first turned into an additive one (0 where allowed, a huge
    negative number where blocked); that costs one pass over the (usually
    small, e.g. (T, T) or (B, 1, 1, T)) mask, and adding it is cheaper in the
    backward pass than ``masked_fill`` on the big (..., T_q, T_k) scores.

    Blocked entries get ``finfo.min`` (the most negative finite float), not
    ``-inf``: after the softmax subtracts the row maximum, ``exp`` of it is
    exactly 0, so normal rows are unchanged, while a fully blocked row becomes
    a harmless uniform distribution instead of ``-inf - (-inf) = nan``. The
    caller then zeroes those rows.
    """
    lowest = torch.finfo(scores.dtype).min
    if mask.dtype == torch.bool:
        has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q or 1, 1)
        additive = torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device)
        additive.masked_fill_(~mask, lowest)  # 0 = keep, finfo.min = blocked
    else:
        has_key = (mask != float("-inf")).any(dim=-1, keepdim=True)
        additive = mask.to(scores.dtype).clamp(min=lowest)  # -inf -> finfo.min
    # In place is safe: the scores are a fresh matmul result that autograd does not need.
    return scores.add_(additive), has_key  # (..., T_q, T_k)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    return_weights: bool = False,
    dropout_p: float = 0.0,
) -> Tensor | tuple[Tensor, Tensor]:
    """``softmax(q k^T / sqrt(d_k)) v``, the blocked scores set to -inf before the softmax.

    q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v) -> out (..., T_q, d_v)
    and, when ``return_weights``, the attention weights (..., T_q, T_k).

    mask: bool (True = may attend) or additive float, broadcastable to
    (..., T_q, T_k) (see the module docstring). Fully masked rows give zero
    weights and a zero output. ``dropout_p`` drops attention weights (pass 0
    at evaluation time); equals ``F.scaled_dot_product_attention``.

    About the softmax: this uses ``torch.softmax``, which computes exactly the
    course's ``course_lib.softmax.softmax`` (max-subtracted exp, divided by the
    sum; ``tests/test_softmax.py`` proves they agree to 1e-6 on every axis)
    but in one fused kernel whose backward pass needs only its output. The
    step-by-step version makes several extra passes over the big
    ``(..., T_q, T_k)`` scores and autograd keeps each intermediate for the
    backward pass; on the benchmark (``bench/attention.py``, B=8, H=8, T=512)
    that made forward+backward about twice as slow, against about 1.2x the
    time of PyTorch's fused ``F.scaled_dot_product_attention`` with ``torch.softmax``.
    """
    _check_qk(q, k)
    _check_kv(k, v)
    scores = attention_scores(q, k)  # (..., T_q, T_k)
    has_key = None
    if mask is not None:
        _check_mask(mask, scores.shape)
        scores, has_key = _apply_mask(scores, mask)
    weights = torch.softmax(scores, dim=-1)  # (..., T_q, T_k), rows sum to 1
    if has_key is not None and not bool(has_key.all()):
        weights = weights.masked_fill(~has_key, 0.0)  # fully masked rows -> 0
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    out = dropped @ v  # (..., T_q, d_v)
    return (out, weights) if return_weights else out


# --------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, T, D) -> (B, H, T, D/H): cut the feature axis into ``n_heads`` chunks.

    ``view`` cuts D into (H, Dh), then ``transpose`` moves the head axis in
    front of time so every head is an independent (T, Dh) problem. Reshaping
    straight to (B, H, T, Dh) without the transpose would also "work" (same
    number of elements) but would mix tokens and heads.
    """
    if x.dim() != 3:
        raise ValueError(f"x must have shape (B, T, D), got {tuple(x.shape)}")
    B, T, D = x.shape
    if n_heads <= 0 or D % n_heads != 0:
        raise ValueError(f"d_model={D} is not divisible by n_heads={n_heads}")
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)  # (B, H, T, Dh)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, Dh) -> (B, T, H*Dh): the inverse of ``split_heads``."""
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, H, T, Dh), got {tuple(x.shape)}")
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, D)


def _check_stream(name: str, x: Tensor, d_model: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"{name} must have shape (B, T, d_model={d_model}), got {tuple(x.shape)}")


class SelfAttentionHead(nn.Module):
    """One attention head, written out with its own four matrices.

    ::

        q = x W_Q,  k = x W_K,  v = x W_V          (B, T, d_head) each
        z = softmax(q k^T / sqrt(d_head), masked) v (B, T, d_head); masked: blocked scores -> -inf
        delta = z W_O                               (B, T, d_model)

    The head returns ``delta``, the update it adds to the residual stream.
    """

    def __init__(self, d_model: int, d_head: int, bias: bool = False):
        super().__init__()
        self.d_model, self.d_head = d_model, d_head
        self.W_Q = nn.Linear(d_model, d_head, bias=bias)
        self.W_K = nn.Linear(d_model, d_head, bias=bias)
        self.W_V = nn.Linear(d_model, d_head, bias=bias)
        self.W_O = nn.Linear(d_head, d_model, bias=bias)
        self.last_weights: Tensor | None = None

    def forward(self, x: Tensor, mask: Tensor | None = None, return_weights: bool = False):
        _check_stream("x", x, self.d_model)
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)  # (B, T, d_head)
        z, weights = scaled_dot_product_attention(q, k, v, mask=mask, return_weights=True)
        self.last_weights = weights.detach()  # (B, T, T)
        delta = self.W_O(z)  # (B, T, d_model)
        return (delta, weights) if return_weights else delta


class KVCache:
    """Keys and values of the tokens seen so far, for fast autoregressive decoding.

    When a model generates one token at a time, the keys and values of the
    earlier tokens do not change (causal attention: the past never looks at
    the future). So instead of recomputing them every step, keep them here
    and only compute k and v for the new token(s)::

        cache = KVCache()
        k_all, v_all = cache.append(k_new, v_new)   # (B, H, T_so_far, Dh) each

    One cache per attention layer. ``append`` concatenates along time, which
    copies the cache each step (O(T) per step): simple, and fine at the
    course's sizes; production code preallocates a buffer.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None  # (B, H, T_so_far, Dh)
        self.v: Tensor | None = None  # (B, H, T_so_far, Dh)

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def reset(self) -> None:
        """Forget everything (start a new sequence)."""
        self.k = self.v = None

    def append(self, k_new: Tensor, v_new: Tensor) -> tuple[Tensor, Tensor]:
        """Add k_new, v_new (B, H, T_new, Dh) and return all keys and values so far."""
        if k_new.dim() != 4 or k_new.shape != v_new.shape:
            raise ValueError(
                f"k_new and v_new must both have shape (B, H, T_new, Dh), got "
                f"{tuple(k_new.shape)} and {tuple(v_new.shape)}"
            )
        if self.k is None:
            self.k, self.v = k_new, v_new
        else:
            if self.k.shape[:2] != k_new.shape[:2] or self.k.shape[-1] != k_new.shape[-1]:
                raise ValueError(
                    f"cache holds (B, H, T, Dh) = {tuple(self.k.shape)} but the new keys have "
                    f"shape {tuple(k_new.shape)}; B, H and Dh must match"
                )
            self.k = torch.cat([self.k, k_new], dim=-2)  # (B, H, T_so_far, Dh)
            self.v = torch.cat([self.v, v_new], dim=-2)
        return self.k, self.v


class MultiHeadAttention(nn.Module):
    """H heads side by side, each of size d_head = d_model / H.

    ::

        Q = x_q W_Q, K = x_kv W_K, V = x_kv W_V        (B, T, D) each
        split into heads                                (B, H, T, Dh)
        Z_h = Attention(Q_h, K_h, V_h)                  (B, H, T_q, Dh)
        out = concat_h(Z_h) W_O                         (B, T_q, D)

    Each W is one ``nn.Linear(d_model, d_model)``: the H per-head matrices
    (d_model x Dh) stored next to each other, so all heads run in one matmul.

    Self-attention when ``x_kv`` is None; cross-attention otherwise (queries
    from the decoder ``x_q``, keys and values from the encoder output ``x_kv``).

    mask (bool True = may attend, or additive float) may have shape
    (T_q, T_k), (B, T_q, T_k) or 4-D broadcastable to (B, H, T_q, T_k), e.g.
    ``padding_mask(...)`` (B, 1, 1, T_k) or ``causal_mask(T)``.

    kv_cache (self-attention only): the new keys/values are appended to it
    and the queries attend to everything cached so far. With ``T_prev``
    cached tokens and several new ones, pass ``causal_mask(T_new, offset=T_prev)``.

    After each call ``last_weights`` holds the attention pattern
    (B, H, T_q, T_k), detached, for visualisation.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if n_heads <= 0 or d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.dropout = dropout
        self.W_Q = nn.Linear(d_model, d_model, bias=bias)
        self.W_K = nn.Linear(d_model, d_model, bias=bias)
        self.W_V = nn.Linear(d_model, d_model, bias=bias)
        self.W_O = nn.Linear(d_model, d_model, bias=bias)
        self.last_weights: Tensor | None = None

    @staticmethod
    def _head_mask(mask: Tensor | None) -> Tensor | None:
        """Give a 2-D/3-D mask the axes it needs to broadcast over heads."""
        if mask is None or not isinstance(mask, Tensor):
            return mask
        if mask.dim() == 3:
            return mask.unsqueeze(1)  # (B, T_q, T_k) -> (B, 1, T_q, T_k)
        if mask.dim() not in (2, 4):
            raise ValueError(
                f"mask must have shape (T_q, T_k), (B, T_q, T_k) or (B, H, T_q, T_k) "
                f"(1s allowed), got {tuple(mask.shape)}"
            )
        return mask

    def forward(
        self,
        x_q: Tensor,
        x_kv: Tensor | None = None,
        mask: Tensor | None = None,
        kv_cache: KVCache | None = None,
        return_weights: bool = False,
    ):
        """x_q (B, T_q, D), x_kv (B, T_k, D) or None -> out (B, T_q, D) [, weights (B, H, T_q, T_k)]."""
        _check_stream("x_q", x_q, self.d_model)
        if x_kv is None:
            x_kv = x_q  # self-attention
        else:
            if kv_cache is not None:
                raise ValueError("kv_cache is only supported for self-attention (x_kv=None)")
            _check_stream("x_kv", x_kv, self.d_model)
            if x_kv.shape[0] != x_q.shape[0]:
                raise ValueError(
                    f"x_q has batch size {x_q.shape[0]} but x_kv has batch size {x_kv.shape[0]}"
                )
        H = self.n_heads
        q = split_heads(self.W_Q(x_q), H)  # (B, H, T_q, Dh)
        k = split_heads(self.W_K(x_kv), H)  # (B, H, T_k, Dh)
        v = split_heads(self.W_V(x_kv), H)  # (B, H, T_k, Dh)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (B, H, T_cached + T_q, Dh)
        p = self.dropout if self.training else 0.0
        z, weights = scaled_dot_product_attention(
            q, k, v, mask=self._head_mask(mask), return_weights=True, dropout_p=p
        )  # (B, H, T_q, Dh), (B, H, T_q, T_k)
        self.last_weights = weights.detach()
        out = self.W_O(merge_heads(z))  # (B, T_q, D)
        return (out, weights) if return_weights else out
