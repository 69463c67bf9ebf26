"""Relative position bias (T5, Raffel et al. 2020, section 2.1): positions as a learned bias on the scores.

Unit 06 gave every token its absolute position (a sinusoidal or learned vector added to the embedding).
T5 adds no position vectors at all. Instead, each attention score gets a learned number that depends only
on how far the key is from the query, one number per head::

    scores[h, i, j] = q_i . k_j  +  b[h, bucket(j - i)]          (H, T_q, T_k)

``j - i`` is the relative position ("key minus query"): -1 is the previous token, +2 two tokens ahead.
Distances are grouped into ``num_buckets`` buckets: small distances each get their own bucket, larger ones
share logarithmically wider buckets, and everything at ``max_distance`` or beyond shares the last one
(the model rarely needs to tell 90 tokens from 91)::

    n = |j - i| (encoder) or max(i - j, 0) (decoder: keys ahead are masked anyway)
    exact buckets      n < max_exact                 -> bucket n        (max_exact = half of the buckets)
    log-spaced buckets n >= max_exact                -> max_exact + floor( log(n / max_exact)
                                                                           / log(max_distance / max_exact)
                                                                           * (buckets - max_exact) )
                                                        capped at buckets - 1

In the **encoder** (bidirectional) half of the buckets are for keys to the LEFT of the query (and the
query itself) and the other half, offset by ``num_buckets // 2``, for keys to the RIGHT: "two words before"
and "two words after" are different buckets with different biases. In the **decoder** (causal) a query
never sees keys to its right, so all buckets describe the past.

The bias table is tiny (``num_buckets x n_heads``). T5 computes the bias once, in the first layer, and every
later layer of the same stack adds that same tensor (cross-attention gets none).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["relative_positions", "relative_position_bucket", "RelativePositionBias"]


def _check_bucket_sizes(num_buckets: int, max_distance: int, bidirectional: bool) -> None:
    for name, value in (("num_buckets", num_buckets), ("max_distance", max_distance)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    per_side = num_buckets // 2 if bidirectional else num_buckets
    if per_side < 2:
        raise ValueError(
            f"num_buckets={num_buckets} is too small: each direction needs at least 2 buckets "
            f"(at least {4 if bidirectional else 2} buckets when bidirectional={bidirectional})"
        )
    if max_distance <= per_side // 2:
        raise ValueError(
            f"max_distance={max_distance} must be larger than the number of exact buckets "
            f"({per_side // 2}); otherwise the log-spaced buckets cover nothing"
        )


def relative_positions(T_q: int, T_k: int, offset: int = 0, device=None) -> Tensor:
    """The matrix of relative positions ``j - i`` (key minus query), shape (T_q, T_k), int64.

    ``offset`` is the absolute position of the first query (used when the queries are the last tokens of a
    longer sequence, e.g. while decoding one token at a time)::

        relative_positions(3, 3) = [[ 0,  1,  2],
                                    [-1,  0,  1],
                                    [-2, -1,  0]]
    """
    for name, value in (("T_q", T_q), ("T_k", T_k), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    query = torch.arange(offset, offset + T_q, dtype=torch.long, device=device)[:, None]  # (T_q, 1)
    key = torch.arange(T_k, dtype=torch.long, device=device)[None, :]  # (1, T_k)
    return key - query  # (T_q, T_k)


def relative_position_bucket(
    relative_position: Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> Tensor:
    """The bucket (an int64 in ``[0, num_buckets)``) of every relative position ``j - i``.

    relative_position: an integer tensor of any shape (e.g. ``relative_positions(T_q, T_k)``); the result
    has the same shape. See the module docstring for the formula; with T5's defaults (32 buckets, max
    distance 128, bidirectional) distances 0..7 get buckets 0..7 to the left and 16..23 to the right,
    distances 8..127 share buckets 8..15 (24..31), and 128 or more the last one.
    """
    if not isinstance(relative_position, Tensor) or relative_position.dtype.is_floating_point or \
            relative_position.dtype == torch.bool:
        what = relative_position.dtype if isinstance(relative_position, Tensor) else type(relative_position).__name__
        raise ValueError(f"relative_position must be an integer tensor (key - query), got {what}")
    _check_bucket_sizes(num_buckets, max_distance, bidirectional)
    relative_position = relative_position.long()
    if bidirectional:
        num_buckets //= 2  # one half for each direction
        side = (relative_position > 0).long() * num_buckets  # keys to the right: the upper half
        n = relative_position.abs()  # distance, >= 0
    else:
        side = torch.zeros_like(relative_position)
        n = (-relative_position).clamp(min=0)  # how far back the key is; keys ahead count as 0
    max_exact = num_buckets // 2
    is_small = n < max_exact  # exact buckets: one per distance
    # log-spaced buckets for max_exact <= n; n.clamp(min=1) only keeps log() finite where is_small anyway
    log_ratio = torch.log(n.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()  # floor for the non-negative values used
    large = large.clamp(max=num_buckets - 1)  # everything at max_distance or beyond: the last bucket
    return side + torch.where(is_small, n, large)


class RelativePositionBias(nn.Module):
    """A learned bias per head and bucket, turned into a bias on the attention scores.

    ``weight`` (num_buckets, n_heads). ``forward(T_q, T_k, offset=0)`` returns the bias (1, H, T_q, T_k)::

        bias[0, h, i, j] = weight[bucket(j - i), h]

    The leading 1 lets it broadcast over the batch. ``bidirectional=True`` for an encoder, ``False`` for a
    decoder's causal self-attention.
    """

    def __init__(self, n_heads: int, num_buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        _check_bucket_sizes(num_buckets, max_distance, bidirectional)
        self.n_heads, self.num_buckets, self.max_distance = n_heads, num_buckets, max_distance
        self.bidirectional = bidirectional
        self.weight = nn.Parameter(torch.zeros(num_buckets, n_heads))  # (buckets, H)

    def buckets(self, T_q: int, T_k: int, offset: int = 0) -> Tensor:
        """The bucket of each (query, key) pair, (T_q, T_k)."""
        rel = relative_positions(T_q, T_k, offset, device=self.weight.device)  # (T_q, T_k)
        return relative_position_bucket(rel, self.bidirectional, self.num_buckets, self.max_distance)

    def forward(self, T_q: int, T_k: int, offset: int = 0) -> Tensor:
        table = self.weight[self.buckets(T_q, T_k, offset)]  # (T_q, T_k, H)
        return table.permute(2, 0, 1).unsqueeze(0)  # (1, H, T_q, T_k)

    def extra_repr(self) -> str:
        return (f"n_heads={self.n_heads}, num_buckets={self.num_buckets}, max_distance={self.max_distance}, "
                f"bidirectional={self.bidirectional}")
