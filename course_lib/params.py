"""Counting the parameters of a transformer (the GPT-3 lesson).

Two kinds of count live here.

1. :func:`count_by_category` -- the lesson's **weight-matrix view**. A decoder-only transformer
   with ``L`` layers, residual width ``d = d_model``, ``H`` heads of size ``d_head``, MLP width
   ``d_mlp`` and vocabulary ``V`` has these weight matrices::

       embedding        W_E  (V, d)                          V * d
       query, key,
       value            W_Q, W_K, W_V  per layer (d, H*d_head)   L * d * H * d_head   each
       output           W_O  per layer (H*d_head, d)           L * H * d_head * d
       up_projection    W_up per layer (d, d_mlp)             L * d * d_mlp
       down_projection  W_down per layer (d_mlp, d)           L * d_mlp * d
       unembedding      W_U  (d, V)                          d * V

   Biases, LayerNorm gains/biases and position embeddings are deliberately **not** counted
   (they are < 0.1 % of GPT-3), and embedding and unembedding are counted **separately**, as if
   untied. For GPT-3 175B (96, 12288, 96, 128, 49152, 50257) this gives exactly
   175,181,291,520 weights.

2. :func:`count_gpt_parameters` -- the **exact** number of parameters of the GPT that
   :mod:`course_lib.models` builds (GPT-2 layout: learned positions, biases, LayerNorms,
   tied unembedding counted once). For the GPT-2 small configuration it is 124,439,808, the
   number Hugging Face reports.

:func:`estimate_gpt3_params` sits in between and is what GPT-3's Table 2.1 appears to count:
the weight matrices of (1) with the unembedding **tied** to the embedding (counted once) plus the
learned position embeddings of the 2048-token context. It reproduces every printed size of the
table to within 2 % (the printed sizes are rounded names such as "350M"); see
:data:`GPT3_TABLE` for the one row whose printed head count is inconsistent with its size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn as nn

__all__ = [
    "count_by_category",
    "count_gpt_parameters",
    "estimate_gpt3_params",
    "count_parameters",
    "GPT3Row",
    "GPT3_TABLE",
    "GPT3_VOCAB_SIZE",
    "GPT3_CONTEXT",
    "CATEGORIES",
]

CATEGORIES = (
    "embedding",
    "key",
    "query",
    "value",
    "output",
    "up_projection",
    "down_projection",
    "unembedding",
)

GPT3_VOCAB_SIZE = 50257
GPT3_CONTEXT = 2048


def _check_positive(**sizes: int) -> None:
    """ValueError unless every size is a positive int (bools are rejected too)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
        if value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value}")


def count_by_category(
    n_layers: int,
    d_model: int,
    n_heads: int,
    d_head: int,
    d_mlp: int,
    vocab_size: int,
) -> dict[str, int]:
    """Weights of a decoder-only transformer, by category (the GPT-3 lesson's table).

    Counts weight matrices only (no biases, no LayerNorm, no position embeddings), with the
    embedding and unembedding counted separately::

        embedding = unembedding = V * d_model
        query = key = value = output = n_layers * d_model * (n_heads * d_head)
        up_projection = down_projection = n_layers * d_model * d_mlp
        total = sum of the eight categories

    ``d_model`` need not equal ``n_heads * d_head`` here: W_Q maps d_model -> n_heads * d_head
    and W_O maps back, so the formula is general (T5, for example, has d_model != H * d_head).

    >>> count_by_category(96, 12288, 96, 128, 4 * 12288, 50257)["total"]
    175181291520
    """
    _check_positive(
        n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_head, d_mlp=d_mlp, vocab_size=vocab_size
    )
    d_attn = n_heads * d_head  # width of all heads side by side
    attn_matrix = n_layers * d_model * d_attn  # one of W_Q, W_K, W_V, W_O over all layers
    mlp_matrix = n_layers * d_model * d_mlp  # one of W_up, W_down over all layers
    counts = {
        "embedding": vocab_size * d_model,
        "key": attn_matrix,
        "query": attn_matrix,
        "value": attn_matrix,
        "output": attn_matrix,
        "up_projection": mlp_matrix,
        "down_projection": mlp_matrix,
        "unembedding": d_model * vocab_size,
    }
    counts["total"] = sum(counts.values())
    return counts


def estimate_gpt3_params(
    n_layers: int,
    d_model: int,
    n_heads: int,
    d_head: int,
    d_mlp: int | None = None,
    vocab_size: int = GPT3_VOCAB_SIZE,
    n_ctx: int = GPT3_CONTEXT,
) -> int:
    """The count GPT-3's Table 2.1 appears to use (an approximation; see the module docstring).

        estimate = total - unembedding      (tied: W_U = W_E^T is one matrix)
                   + n_ctx * d_model        (learned position embeddings)

    Biases and LayerNorms (about 13 * d_model per layer) are still left out. ``d_mlp`` defaults
    to ``4 * d_model`` as in GPT-3.
    """
    if d_mlp is None:
        d_mlp = 4 * d_model if isinstance(d_model, int) else d_model
    _check_positive(n_ctx=n_ctx)
    counts = count_by_category(n_layers, d_model, n_heads, d_head, d_mlp, vocab_size)
    return counts["total"] - counts["unembedding"] + n_ctx * d_model


def count_gpt_parameters(
    vocab_size: int,
    block_size: int,
    n_layers: int,
    d_model: int,
    n_heads: int,
    d_mlp: int | None = None,
    bias: bool = True,
    tie_weights: bool = True,
) -> int:
    """Exact parameter count of :class:`course_lib.models.GPT` (GPT-2 layout), by formula.

    Per block (pre-norm)::

        ln1, ln2            2 * (2 * d)                 gain and bias each
        W_Q, W_K, W_V, W_O  4 * d * d  (+ 4 * d biases)
        MLP                 d * d_mlp + d_mlp * d  (+ d_mlp + d biases)

    plus the token embedding ``V * d``, the learned positions ``block_size * d``, the final
    LayerNorm ``2 * d`` and, only when not tied, the unembedding ``d * V`` (no bias).
    Here the heads must tile the residual stream: ``d_model % n_heads == 0``, else ValueError.
    LayerNorm keeps its bias even when ``bias=False`` (the course's LayerNorm always has one).
    """
    if d_mlp is None:
        d_mlp = 4 * d_model if isinstance(d_model, int) else d_model
    _check_positive(
        vocab_size=vocab_size, block_size=block_size, n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_mlp=d_mlp
    )
    if d_model % n_heads != 0:
        raise ValueError(
            f"d_model={d_model} is not divisible by n_heads={n_heads}: a GPT block needs "
            f"d_model == n_heads * d_head"
        )
    d = d_model
    attention = 4 * d * d + (4 * d if bias else 0)
    mlp = 2 * d * d_mlp + ((d_mlp + d) if bias else 0)
    norms = 2 * (2 * d)
    per_block = attention + mlp + norms
    embeddings = vocab_size * d + block_size * d
    unembedding = 0 if tie_weights else d * vocab_size
    return embeddings + n_layers * per_block + 2 * d + unembedding


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module``; a shared (tied) tensor is counted once.

    ``module.parameters()`` already yields each Parameter object once, which is what makes tied
    embeddings count once.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class GPT3Row(NamedTuple):
    """One row of GPT-3 Table 2.1 (Brown et al., 2020), as printed."""

    name: str
    n_params: int  # the printed size, e.g. "125M" -> 125_000_000
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int


# GPT-3 Table 2.1, transcribed as printed. Two rows do not satisfy d_model == n_heads * d_head:
#   * GPT-3 XL: 24 heads * 128 = 3072 != 2048. The printed 1.3B matches attention of width 2048
#     (e.g. 16 heads of 128): with 24 heads of 128 the estimate would be 1.52B, 16 % too large.
#   * GPT-3 13B: d_model is printed as 5140, but 40 heads * 128 = 5120 (5140 looks like a typo).
#     The estimate is within 1.2 % of 13.0B either way.
# count_by_category does not need the equality, so the rows are kept exactly as printed.
GPT3_TABLE: tuple[GPT3Row, ...] = (
    GPT3Row("GPT-3 Small", 125_000_000, 12, 768, 12, 64),
    GPT3Row("GPT-3 Medium", 350_000_000, 24, 1024, 16, 64),
    GPT3Row("GPT-3 Large", 760_000_000, 24, 1536, 16, 96),
    GPT3Row("GPT-3 XL", 1_300_000_000, 24, 2048, 24, 128),
    GPT3Row("GPT-3 2.7B", 2_700_000_000, 32, 2560, 32, 80),
    GPT3Row("GPT-3 6.7B", 6_700_000_000, 32, 4096, 32, 128),
    GPT3Row("GPT-3 13B", 13_000_000_000, 40, 5140, 40, 128),
    GPT3Row("GPT-3 175B", 175_000_000_000, 96, 12288, 96, 128),
)
