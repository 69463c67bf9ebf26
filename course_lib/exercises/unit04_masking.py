"""Exercises of unit 04: masking.

Masks are where attention code goes quietly wrong: a mask applied after the softmax, blocked scores set
to 0 instead of -inf, the wrong triangle, a padding mask on the queries instead of the keys. Each of
those is a known mistake below, so the check can name it.

Convention (course_lib.attention): a bool mask holds True where a query MAY attend to a key.
"""

from __future__ import annotations

import torch

from .. import attention as A
from ..softmax import softmax
from .core import Case, Exercise, Forbidden, GeneratorSeed, KnownMistake, Property  # noqa: F401
from .registry import register
from .core import randn as _randn  # shared case helpers

NOTEBOOK = "04_masking"

ATTENTION_BUILTINS = Forbidden(
    "a ready-made attention (F.scaled_dot_product_attention, nn.MultiheadAttention or course_lib's)",
    ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention",
     "torch.nn.functional.multi_head_attention_forward", "course_lib.attention.scaled_dot_product_attention",
     "course_lib.attention.MultiHeadAttention", "course_lib.attention.SelfAttentionHead"),
    "this exercise asks you to apply the mask to the scores yourself (attention_scores and softmax are fine)",
)


def _attention_mask(gen, B, T, min_len=1, left=False):
    """A (B, T) 0/1 attention mask with random lengths in [min_len, T] (1 = real token)."""
    lengths = torch.randint(min_len, T + 1, (B,), generator=gen)
    lengths[0] = T  # one full row
    am = (torch.arange(T)[None, :] < lengths[:, None]).long()  # right padding
    return am.flip(-1) if left else am


# ---------------------------------------------------------------------------------------------------
# 04.causal_mask
# ---------------------------------------------------------------------------------------------------


def causal_upper(T):
    return torch.ones(T, T, dtype=torch.bool).triu()


def causal_no_diagonal(T):
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1)


def causal_inverted(T):
    return torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)


def causal_as_numbers(T):
    return torch.ones(T, T).tril()


def causal_additive(T):
    return torch.zeros(T, T).masked_fill(~A.causal_mask(T), float("-inf"))


def _causal_cases(gen, hidden):
    sizes = [4, 1, 6] + ([2, 3, 9, 16, 33] if hidden else [])
    return [Case((T,), {}, "small" if T <= 6 else "large", f"T={T}") for T in sizes]


def _diagonal_on(case, out, derived) -> bool:
    return bool(out.diagonal().all())


CAUSAL_MASK = Exercise(
    id="04.causal_mask", notebook=NOTEBOOK, function="causal_mask", points=2,
    title="The causal mask", minutes=5,
    reference=A.causal_mask, make_cases=_causal_cases,
    properties=[Property("every position sees itself",
                         "the diagonal must be True: token i may always attend to itself", _diagonal_on)],
    mistakes=[
        KnownMistake("upper triangle instead of lower",
                     "Your mask is True above the diagonal: query i would see keys j >= i, the future. "
                     "Row i (the query) may see columns j <= i: use torch.tril, not torch.triu.",
                     causal_upper),
        KnownMistake("diagonal excluded",
                     "Your mask blocks the diagonal, so a token cannot attend to itself (and token 0 sees "
                     "nothing at all). Keep the diagonal: torch.tril(ones) with the default diagonal=0.",
                     causal_no_diagonal),
        KnownMistake("True marks the blocked keys",
                     "Your mask is True on the future keys, the ones to block. The course (and "
                     "F.scaled_dot_product_attention) uses True = 'may attend': invert it (~mask) or use "
                     "torch.tril. (PyTorch's nn.MultiheadAttention uses the opposite convention.)",
                     causal_inverted),
        KnownMistake("0/1 numbers instead of bool",
                     "Your mask has the right pattern but holds the numbers 0 and 1. Return a bool tensor "
                     "(dtype=torch.bool): a float mask means something else (it is ADDED to the scores).",
                     causal_as_numbers),
        KnownMistake("additive float mask",
                     "You return the additive form (0 and -inf). That is how the mask is used inside "
                     "attention, but this function should return the bool mask (True = may attend).",
                     causal_additive),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 04.masked_attention
# ---------------------------------------------------------------------------------------------------


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor):
    """Attention with a bool mask applied to the scores BEFORE the softmax.

    q (..., T_q, d), k (..., T_k, d), v (..., T_k, d_v), mask bool broadcastable to (..., T_q, T_k)
    (True = may attend) -> (out (..., T_q, d_v), weights (..., T_q, T_k)).

        weights = softmax(q k^T / sqrt(d) with blocked scores set to -inf)
        out     = weights v

    A query whose keys are ALL blocked gets zero weights and a zero output (softmax of a row of -inf
    would be 0/0 = nan).
    """
    scores = A.attention_scores(q, k)  # (..., T_q, T_k)
    scores = scores.masked_fill(~mask, float("-inf"))  # blocked -> -inf, before the softmax
    weights = softmax(scores, dim=-1)  # (..., T_q, T_k); a row of -inf gives nan
    has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1): False for a fully masked row
    weights = weights.masked_fill(~has_key, 0.0)  # nan rows -> 0
    return weights @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)


def _zero_dead_rows(weights, mask):
    return weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)


def attention_mask_after_softmax(q, k, v, mask):
    weights = softmax(A.attention_scores(q, k), dim=-1) * mask  # zeros after the softmax
    return weights @ v, weights


def attention_zero_instead_of_inf(q, k, v, mask):
    scores = A.attention_scores(q, k).masked_fill(~mask, 0.0)  # same as multiplying the scores by the mask
    weights = _zero_dead_rows(softmax(scores, dim=-1), mask)
    return weights @ v, weights


def attention_inverted_mask(q, k, v, mask):
    return masked_attention(q, k, v, ~mask)


def attention_nan_rows(q, k, v, mask):
    scores = A.attention_scores(q, k).masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)  # fully masked rows stay nan
    return weights @ v, weights


def attention_no_mask(q, k, v, mask):
    weights = softmax(A.attention_scores(q, k), dim=-1)
    return weights @ v, weights


def _masked_attention_cases(gen, hidden):
    cases = []
    # causal: one sequence, then a batch
    for B, T, d in ([(1, 4, 3), (2, 5, 4)] + ([(3, 9, 8), (2, 16, 4)] if hidden else [])):
        q, k, v = (_randn(gen, B, T, d) for _ in range(3))
        cases.append(Case((q, k, v, A.causal_mask(T)), {}, "causal", f"causal mask, (B, T, d) = {(B, T, d)}"))
    # padding: a (B, 1, 1, T) key mask with heads, then a (B, 1, T) one
    B, H, T, d = (4, 3, 10, 8) if hidden else (2, 2, 5, 4)
    q, k, v = (_randn(gen, B, H, T, d) for _ in range(3))
    am = _attention_mask(gen, B, T, min_len=2)
    cases.append(Case((q, k, v, A.padding_mask(am)), {}, "padding",
                      f"padding mask (B, 1, 1, T), q of shape {(B, H, T, d)}"))
    if hidden:
        B, T, d = 3, 7, 5
        q, k, v = (_randn(gen, B, T, d) for _ in range(3))
        cases.append(Case((q, k, v, A.padding_mask(_attention_mask(gen, B, T))[:, 0]), {}, "padding",
                          "padding mask (B, 1, T) on 3-D inputs"))
    # causal AND left padding: the padding queries at the start see no key at all
    for B, T, d in ([(2, 5, 4)] + ([(3, 8, 6)] if hidden else [])):
        q, k, v = (_randn(gen, B, T, d) for _ in range(3))
        am = _attention_mask(gen, B, T, min_len=2, left=True)
        am[-1, :2] = 0  # at least one fully masked row
        mask = A.combine_masks(A.causal_mask(T), A.padding_mask(am)[:, 0])  # (B, T, T)
        cases.append(Case((q, k, v, mask), {}, "fully masked rows",
                          "causal AND left padding: some queries may attend to nothing"))
    return cases


def _rows_sum_to_one_or_zero(case, out, derived) -> bool:
    w = out[1]
    s = w.sum(dim=-1)
    return bool(((s - 1).abs() < 1e-4).logical_or(s.abs() < 1e-6).all())


def _change_the_future(case):
    """Same causal case with the last key and value replaced: earlier outputs must not move."""
    q, k, v, mask = case.args
    if mask.dim() != 2 or not torch.equal(mask, A.causal_mask(mask.shape[-1])):
        return []
    g = torch.Generator().manual_seed(4)
    k2, v2 = k.clone(), v.clone()
    k2[..., -1, :] = torch.randn(k2[..., -1, :].shape, generator=g) * 3
    v2[..., -1, :] = torch.randn(v2[..., -1, :].shape, generator=g) * 3
    return [Case((q, k2, v2, mask), {}, case.group, "future changed")]


def _no_peeking(case, out, derived) -> bool:
    if not derived:
        return True
    return bool(torch.allclose(out[0][..., :-1, :], derived[0][0][..., :-1, :], atol=1e-5))


MASKED_ATTENTION = Exercise(
    id="04.masked_attention", notebook=NOTEBOOK, function="masked_attention", points=4,
    title="Attention with a mask", minutes=15,
    reference=masked_attention, make_cases=_masked_attention_cases, forbidden=[ATTENTION_BUILTINS],
    properties=[
        Property("weights sum to one (or zero)",
                 "every row of weights must sum to 1, or to 0 for a query that may attend to nothing",
                 _rows_sum_to_one_or_zero),
        Property("no peeking", "with a causal mask, changing the LAST key and value must not change the "
                               "outputs of the earlier positions", _no_peeking, _change_the_future),
    ],
    mistakes=[
        KnownMistake("mask applied after the softmax",
                     "You zero the blocked weights AFTER the softmax, so each row no longer sums to one "
                     "(and the blocked keys still shrank the allowed weights through the denominator). "
                     "Set the blocked SCORES to -inf before the softmax: scores.masked_fill(~mask, "
                     "float('-inf')).",
                     attention_mask_after_softmax),
        KnownMistake("0 instead of -inf",
                     "You set the blocked scores to 0 (or multiplied the scores by the mask). exp(0) = 1, "
                     "so blocked keys still get weight. Use -inf: exp(-inf) = 0.",
                     attention_zero_instead_of_inf),
        KnownMistake("mask inverted",
                     "You block where the mask is True. In this course True means 'may attend': fill "
                     "where ~mask, i.e. scores.masked_fill(~mask, float('-inf')).",
                     attention_inverted_mask),
        KnownMistake("fully masked rows give nan",
                     "A query that may attend to no key gets a row of -inf, and softmax gives 0/0 = nan. "
                     "Set those rows' weights to 0 (find them with mask.any(dim=-1, keepdim=True)).",
                     attention_nan_rows),
        KnownMistake("mask ignored",
                     "Your output does not depend on the mask at all: apply it to the scores before the "
                     "softmax.",
                     attention_no_mask),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 04.padding_mask
# ---------------------------------------------------------------------------------------------------


def padding_inverted(attention_mask):
    return (attention_mask == 0)[:, None, None, :]


def padding_no_axes(attention_mask):
    return attention_mask.bool()


def padding_on_queries(attention_mask):
    return attention_mask.bool()[:, None, :, None]


def padding_as_numbers(attention_mask):
    return attention_mask[:, None, None, :]


def _padding_cases(gen, hidden):
    cases = [Case((torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),), {}, "right padding", "2 rows, T=5")]
    for B, T in ([(3, 6)] + ([(5, 12), (8, 3)] if hidden else [])):
        cases.append(Case((_attention_mask(gen, B, T),), {}, "right padding", f"(B, T) = {(B, T)}"))
    for B, T in ([(2, 4)] + ([(4, 9)] if hidden else [])):
        cases.append(Case((_attention_mask(gen, B, T, left=True),), {}, "left padding",
                          f"left padding, (B, T) = {(B, T)}"))
    return cases


PADDING_MASK = Exercise(
    id="04.padding_mask", notebook=NOTEBOOK, function="padding_mask", points=2,
    title="A padding mask that broadcasts", minutes=5,
    reference=A.padding_mask, make_cases=_padding_cases,
    mistakes=[
        KnownMistake("True marks the padding",
                     "Your mask is True on the padding tokens. True must mean 'real token, may be attended "
                     "to': attention_mask.bool(), not attention_mask == 0.",
                     padding_inverted),
        KnownMistake("missing broadcast axes",
                     "Your mask has shape (B, T). Against scores of shape (B, H, T_q, T_k) it would line up "
                     "with the wrong axes (or fail). Add a head axis and a query axis: mask[:, None, None, :].",
                     padding_no_axes),
        KnownMistake("padding blocks queries instead of keys",
                     "Your mask has shape (B, 1, T, 1): it blocks the padding QUERIES (rows) and lets every "
                     "query attend to the padding KEYS. Padding must be hidden as a key: mask[:, None, None, :].",
                     padding_on_queries),
        KnownMistake("0/1 numbers instead of bool",
                     "Your mask has the right shape and pattern but is not bool. Convert with .bool(): a "
                     "float mask would be ADDED to the scores.",
                     padding_as_numbers),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 04.causal_padding_mask
# ---------------------------------------------------------------------------------------------------


def causal_padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Causal AND padding: (B, T) 0/1 -> bool (B, 1, T, T).

    ``mask[b, 0, i, j]`` is True iff j <= i and token j of sequence b is real.
    """
    T = attention_mask.shape[-1]
    return A.combine_masks(A.causal_mask(T), A.padding_mask(attention_mask))  # (B, 1, T, T)


def combined_with_or(attention_mask):
    T = attention_mask.shape[-1]
    return A.causal_mask(T) | A.padding_mask(attention_mask)


def combined_padding_on_queries(attention_mask):
    T = attention_mask.shape[-1]
    return A.causal_mask(T) & attention_mask.bool()[:, None, :, None]


def combined_upper(attention_mask):
    T = attention_mask.shape[-1]
    return causal_upper(T) & A.padding_mask(attention_mask)


def combined_causal_only(attention_mask):
    B, T = attention_mask.shape
    return A.causal_mask(T).expand(B, 1, T, T).clone()


def _combined_cases(gen, hidden):
    cases = [Case((torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),), {}, "right padding", "2 rows, T=4")]
    for B, T in ([(3, 5)] + ([(4, 8), (6, 13)] if hidden else [])):
        cases.append(Case((_attention_mask(gen, B, T),), {}, "right padding", f"(B, T) = {(B, T)}"))
    for B, T in ([(2, 5)] + ([(5, 7)] if hidden else [])):
        cases.append(Case((_attention_mask(gen, B, T, min_len=2, left=True),), {}, "left padding",
                          f"left padding, (B, T) = {(B, T)}"))
    return cases


CAUSAL_PADDING_MASK = Exercise(
    id="04.causal_padding_mask", notebook=NOTEBOOK, function="causal_padding_mask", points=2,
    title="Combining the causal and the padding mask", minutes=5,
    reference=causal_padding_mask, make_cases=_combined_cases,
    mistakes=[
        KnownMistake("OR instead of AND",
                     "You combine the masks with OR, so a key is visible if EITHER mask allows it: the "
                     "future of real tokens leaks in. A key is allowed only if every mask allows it: use &.",
                     combined_with_or),
        KnownMistake("padding blocks queries instead of keys",
                     "Your padding part has shape (B, 1, T, 1): it blanks the padding queries' rows instead "
                     "of hiding the padding keys (columns). Use attention_mask.bool()[:, None, None, :].",
                     combined_padding_on_queries),
        KnownMistake("upper triangle instead of lower",
                     "Your causal part lets each query see the FUTURE (torch.triu). Use torch.tril.",
                     combined_upper),
        KnownMistake("padding ignored",
                     "Your mask is the causal mask alone: padding keys are still visible. AND it with the "
                     "padding mask of shape (B, 1, 1, T).",
                     combined_causal_only),
    ],
)

register(CAUSAL_MASK, MASKED_ATTENTION, PADDING_MASK, CAUSAL_PADDING_MASK)
