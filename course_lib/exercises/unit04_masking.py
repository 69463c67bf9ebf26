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
import math

from .core import Alternative, Case, Exercise, Forbidden, GeneratorSeed, KnownMistake, Property  # noqa: F401
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
    if B > 1 and T > min_len:
        lengths[-1] = min(int(lengths[-1]), T - 1)  # and at least one padded row, whatever the seed
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


def causal_one_future_token(T):
    return torch.ones(T, T, dtype=torch.bool).tril(diagonal=1)


def causal_as_integers(T):
    return torch.ones(T, T, dtype=torch.long).tril()


# correct, written differently
def causal_by_comparison(T):
    i = torch.arange(T)
    return i[None, :] <= i[:, None]  # (T, T): key index <= query index


def causal_not_upper(T):
    return ~torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)


def causal_loop(T):
    m = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        m[i, : i + 1] = True
    return m


def _causal_cases(gen, hidden):
    sizes = [4, 1, 6, 9] + ([2, 3, 16, 33] if hidden else [])
    return [Case((T,), {}, "small" if T <= 6 else "large", f"T={T}") for T in sizes]


def _diagonal_on(case, out, derived) -> bool:
    if out.dtype != torch.bool:
        return True  # a number mask is reported by its dtype, not as a missing diagonal
    return bool(out.diagonal().all())


CAUSAL_MASK = Exercise(
    id="04.causal_mask", notebook=NOTEBOOK, function="causal_mask", points=2,
    title="The causal mask", minutes=5,
    reference=A.causal_mask, make_cases=_causal_cases,
    properties=[Property("every position sees itself",
                         "the diagonal must be True: token i may always attend to itself", _diagonal_on,
                         fires_for=("diagonal excluded", "True marks the blocked keys"))],
    alternatives=[Alternative("index comparison j <= i", causal_by_comparison),
                  Alternative("NOT the strict upper triangle", causal_not_upper),
                  Alternative("a loop over the rows", causal_loop)],
    mistakes=[
        KnownMistake("upper triangle instead of lower",
                     "Your mask is True above the diagonal: query i would see keys j >= i, the future. "
                     "Row i (the query) may see columns j <= i: use torch.tril, not torch.triu.",
                     causal_upper),
        KnownMistake("diagonal excluded",
                     "Your mask blocks the diagonal, so a token cannot attend to itself (and token 0 sees "
                     "nothing at all). Keep the diagonal: torch.tril(ones) with the default diagonal=0.",
                     causal_no_diagonal),
        KnownMistake("one future token visible",
                     "Your mask is True one step above the diagonal too (tril(diagonal=1)): query i sees "
                     "key i + 1, the very token it has to predict. Use the default diagonal=0.",
                     causal_one_future_token),
        KnownMistake("True marks the blocked keys",
                     "Your mask is True on the future keys, the ones to block. The course (and "
                     "F.scaled_dot_product_attention) uses True = 'may attend': invert it (~mask) or use "
                     "torch.tril. (PyTorch's nn.MultiheadAttention uses the opposite convention.)",
                     causal_inverted),
        KnownMistake("0/1 numbers instead of bool",
                     "Your mask has the right pattern but holds the float numbers 0. and 1. Return a bool "
                     "tensor (dtype=torch.bool): a float mask means something else (it is ADDED to the "
                     "scores).",
                     causal_as_numbers),
        KnownMistake("0/1 integers instead of bool",
                     "Your mask has the right pattern but holds the integers 0 and 1. Return a bool tensor: "
                     "torch.ones(T, T, dtype=torch.bool).tril(), or .bool() at the end.",
                     causal_as_integers),
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


def attention_mask_added(q, k, v, mask):
    weights = softmax(A.attention_scores(q, k) + mask, dim=-1)  # True -> +1, False -> +0: nothing blocked
    return weights @ v, weights


def attention_finite_fill(q, k, v, mask):
    scores = A.attention_scores(q, k).masked_fill(~mask, torch.finfo(q.dtype).min)  # or -1e9
    weights = softmax(scores, dim=-1)  # a fully masked row: all scores equal -> uniform, not zero
    return weights @ v, weights


def attention_unscaled(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf"))  # no / sqrt(d)
    weights = _zero_dead_rows(softmax(scores, dim=-1), mask)
    return weights @ v, weights


def attention_softmax_over_queries(q, k, v, mask):
    scores = A.attention_scores(q, k).masked_fill(~mask, float("-inf"))
    weights = _zero_dead_rows(softmax(scores, dim=-2), mask)  # normalised over the queries
    return weights @ v, weights


# correct, written differently
def attention_where_nan_to_num(q, k, v, mask):
    scores = torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(q.shape[-1])
    scores = torch.where(mask, scores, torch.tensor(float("-inf")))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)  # 0/0 rows -> 0
    return weights @ v, weights


def attention_exp_times_mask(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True)) * mask  # blocked keys contribute 0
    weights = e / e.sum(dim=-1, keepdim=True).clamp_min(1e-30)  # a row with no key: 0 / tiny = 0
    return weights @ v, weights


def attention_additive_mask(q, k, v, mask):
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))  # 0 / -inf
    weights = softmax(A.attention_scores(q, k) + additive, dim=-1)
    weights = torch.where(mask.any(dim=-1, keepdim=True), weights, torch.zeros(()))
    return weights @ v, weights


def _masked_attention_cases(gen, hidden):
    cases = []
    # causal: one sequence, then a batch
    for B, T, d in ([(1, 4, 3), (2, 5, 4)] + ([(3, 9, 8), (2, 16, 4)] if hidden else [])):
        q, k, v = (_randn(gen, B, T, d) for _ in range(3))
        cases.append(Case((q, k, v, A.causal_mask(T)), {}, "causal", f"causal mask, (B, T, d) = {(B, T, d)}"))
    # padding: a (B, 1, 1, T) key mask with heads, then a (B, 1, T) one on 3-D inputs
    B, H, T, d = (4, 3, 10, 8) if hidden else (2, 2, 5, 4)
    q, k, v = (_randn(gen, B, H, T, d) for _ in range(3))
    am = _attention_mask(gen, B, T, min_len=2)
    cases.append(Case((q, k, v, A.padding_mask(am)), {}, "padding",
                      f"padding mask (B, 1, 1, T), q of shape {(B, H, T, d)}"))
    B, T, d = (3, 7, 5) if hidden else (2, 4, 3)
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


def _dead_rows_are_zero(case, out, derived) -> bool:
    q, k, v, mask = case.args
    dead = ~torch.broadcast_to(mask, out[1].shape).any(dim=-1)  # (..., T_q): queries that see nothing
    return bool((out[1][dead] == 0).all() and (out[0][dead] == 0).all())


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
                 _rows_sum_to_one_or_zero,
                 fires_for=("mask applied after the softmax", "softmax over the query axis")),
        # (a nan output can never be NAMED as a mistake: nan == nan is no evidence; this property says it)
        Property("a query that sees nothing gets zeros",
                 "a query whose mask row is all False must get a row of zero weights and a zero output: not "
                 "nan (softmax of a row of -inf is 0/0; zero those rows, mask.any(dim=-1, keepdim=True) "
                 "finds them) and not a uniform row (what a finite fill such as finfo.min or -1e9 gives)",
                 _dead_rows_are_zero,
                 fires_for=("finite fill: fully masked rows are uniform", "mask inverted", "mask ignored",
                            "bool mask added to the scores")),
        Property("no peeking", "with a causal mask, changing the LAST key and value must not change the "
                               "outputs of the earlier positions", _no_peeking, _change_the_future,
                 fires_for=("mask applied after the softmax", "0 instead of -inf", "mask inverted",
                            "mask ignored", "bool mask added to the scores")),
    ],
    alternatives=[
        Alternative("einsum, torch.where and nan_to_num", attention_where_nan_to_num),
        Alternative("exp times the mask, divided by the sum", attention_exp_times_mask),
        Alternative("an additive 0/-inf mask", attention_additive_mask),
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
        KnownMistake("bool mask added to the scores",
                     "You add the bool mask to the scores: True counts as 1 and False as 0, so every score "
                     "just moves up by 1 or 0 and no key is blocked. A bool mask says WHICH scores to "
                     "replace: scores.masked_fill(~mask, float('-inf')).",
                     attention_mask_added),
        KnownMistake("mask inverted",
                     "You block where the mask is True. In this course True means 'may attend': fill "
                     "where ~mask, i.e. scores.masked_fill(~mask, float('-inf')).",
                     attention_inverted_mask),
        KnownMistake("finite fill: fully masked rows are uniform",
                     "You fill the blocked scores with a large finite number (finfo.min or -1e9) instead "
                     "of -inf. Partly masked rows come out right, but in a row where EVERY key is blocked "
                     "all scores are equal, so the softmax returns a uniform row and the query gets the "
                     "mean of the values. The task asks for a row of zeros there: fill with -inf and zero "
                     "those rows (mask.any(dim=-1, keepdim=True) finds them).",
                     attention_finite_fill),
        KnownMistake("scores not scaled by sqrt(d)",
                     "Your scores are q k^T without the division by sqrt(d) (d = q.shape[-1]), so every "
                     "pattern comes out too sharp. attention_scores(q, k) already divides; if you compute "
                     "q @ k.transpose(-2, -1) yourself, divide by math.sqrt(d).",
                     attention_unscaled),
        KnownMistake("softmax over the query axis",
                     "You take the softmax over dim=-2, the queries, so each COLUMN sums to one. Every "
                     "query needs a distribution over the keys: softmax(scores, dim=-1).",
                     attention_softmax_over_queries),
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


def padding_as_floats(attention_mask):
    return attention_mask.float()[:, None, None, :]


def padding_one_axis(attention_mask):
    return attention_mask.bool()[:, None, :]  # (B, 1, T)


def padding_expanded(attention_mask):
    B, T = attention_mask.shape
    return attention_mask.bool()[:, None, None, :].expand(B, 1, T, T)


# correct, written differently
def padding_compare(attention_mask):
    return attention_mask[:, None, None, :] == 1


def padding_unsqueeze(attention_mask):
    return attention_mask.unsqueeze(1).unsqueeze(2) != 0


def padding_view(attention_mask):
    B, T = attention_mask.shape
    return attention_mask.view(B, 1, 1, T).to(torch.bool)


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
    alternatives=[Alternative("compare with 1 after indexing with None", padding_compare),
                  Alternative("unsqueeze twice, then != 0", padding_unsqueeze),
                  Alternative("view(B, 1, 1, T).to(torch.bool)", padding_view)],
    mistakes=[
        KnownMistake("True marks the padding",
                     "Your mask is True on the padding tokens. True must mean 'real token, may be attended "
                     "to': attention_mask.bool(), not attention_mask == 0.",
                     padding_inverted),
        KnownMistake("missing broadcast axes",
                     "Your mask has shape (B, T). Against scores of shape (B, H, T_q, T_k) it would line up "
                     "with the wrong axes (or fail). Add a head axis and a query axis: mask[:, None, None, :].",
                     padding_no_axes),
        KnownMistake("one broadcast axis missing",
                     "Your mask has shape (B, 1, T): enough for 3-D scores (B, T_q, T_k), but against the "
                     "4-D scores (B, H, T_q, T_k) of multi-head attention its batch axis would meet the "
                     "heads. Add both 1-axes: mask[:, None, None, :] gives (B, 1, 1, T).",
                     padding_one_axis),
        KnownMistake("padding blocks queries instead of keys",
                     "Your mask has shape (B, 1, T, 1): it blocks the padding QUERIES (rows) and lets every "
                     "query attend to the padding KEYS. Padding must be hidden as a key: mask[:, None, None, :].",
                     padding_on_queries),
        KnownMistake("expanded over the queries",
                     "Your mask is already expanded to (B, 1, T, T). The values are right, but the task asks "
                     "for the (B, 1, 1, T) key mask: leave the query axis at size 1 and let broadcasting do "
                     "the rest (no copy, and it fits any number of queries).",
                     padding_expanded),
        KnownMistake("0/1 numbers instead of bool",
                     "Your mask has the right shape and pattern but holds the integers 0 and 1 of the "
                     "attention mask. Convert with .bool(): a number mask would be ADDED to the scores.",
                     padding_as_numbers),
        KnownMistake("0/1 floats instead of bool",
                     "Your mask has the right shape and pattern but holds the floats 0. and 1. Return a "
                     "bool mask (.bool()): a float mask would be ADDED to the scores.",
                     padding_as_floats),
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


def combined_padding_only(attention_mask):
    B, T = attention_mask.shape
    return A.padding_mask(attention_mask).expand(B, 1, T, T).clone()


def combined_no_head_axis(attention_mask):
    T = attention_mask.shape[-1]
    return A.causal_mask(T) & attention_mask.bool()[:, None, :]  # (B, T, T)


def combined_as_numbers(attention_mask):
    T = attention_mask.shape[-1]
    return torch.ones(T, T).tril() * attention_mask[:, None, None, :]  # float 0/1


def combined_no_diagonal(attention_mask):
    T = attention_mask.shape[-1]
    return causal_no_diagonal(T) & A.padding_mask(attention_mask)


def combined_padding_inverted(attention_mask):
    T = attention_mask.shape[-1]
    return A.causal_mask(T) & (attention_mask == 0)[:, None, None, :]


# correct, written differently
def combined_by_comparison(attention_mask):
    B, T = attention_mask.shape
    i = torch.arange(T)
    causal = i[None, :] <= i[:, None]  # (T, T)
    return torch.logical_and(causal[None, None], attention_mask[:, None, None, :] == 1)


def combined_loop(attention_mask):
    B, T = attention_mask.shape
    out = torch.zeros(B, 1, T, T, dtype=torch.bool)
    for b in range(B):
        for i in range(T):
            for j in range(i + 1):
                out[b, 0, i, j] = bool(attention_mask[b, j])
    return out


def _combined_cases(gen, hidden):
    cases = [Case((torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),), {}, "right padding", "2 rows, T=4")]
    for B, T in ([(3, 5)] + ([(4, 8), (6, 13)] if hidden else [])):
        cases.append(Case((_attention_mask(gen, B, T),), {}, "right padding", f"(B, T) = {(B, T)}"))
    cases.append(Case((torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]),), {}, "left padding", "left padding, T=5"))
    for B, T in ([(2, 5)] + ([(5, 7)] if hidden else [])):
        cases.append(Case((_attention_mask(gen, B, T, min_len=2, left=True),), {}, "left padding",
                          f"left padding, (B, T) = {(B, T)}"))
    return cases


CAUSAL_PADDING_MASK = Exercise(
    id="04.causal_padding_mask", notebook=NOTEBOOK, function="causal_padding_mask", points=2,
    title="Combining the causal and the padding mask", minutes=5,
    reference=causal_padding_mask, make_cases=_combined_cases,
    alternatives=[Alternative("index comparison and torch.logical_and", combined_by_comparison),
                  Alternative("a loop over batch, queries and keys", combined_loop)],
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
        KnownMistake("diagonal excluded",
                     "Your causal part blocks the diagonal (tril(diagonal=-1)): a token may always attend "
                     "to itself. Use the default diagonal=0.",
                     combined_no_diagonal),
        KnownMistake("True marks the padding",
                     "Your padding part is True on the padding tokens (attention_mask == 0). True must mean "
                     "'a real token that may be attended to': attention_mask.bool().",
                     combined_padding_inverted),
        KnownMistake("padding ignored",
                     "Your mask is the causal mask alone: padding keys are still visible. AND it with the "
                     "padding mask of shape (B, 1, 1, T).",
                     combined_causal_only),
        KnownMistake("causal part forgotten",
                     "Your mask is the padding mask alone (expanded over the queries): every query still "
                     "sees the future. AND it with the causal mask (T, T).",
                     combined_padding_only),
        KnownMistake("no head axis",
                     "Your mask has shape (B, T, T): right for one head, but the task asks for (B, 1, T, T) "
                     "so that it broadcasts over the heads of (B, H, T, T) scores. Use the (B, 1, 1, T) "
                     "padding mask: attention_mask.bool()[:, None, None, :].",
                     combined_no_head_axis),
        KnownMistake("0/1 numbers instead of bool",
                     "Your mask has the right pattern but holds the numbers 0 and 1. Combine bool masks "
                     "with & (and .bool() the attention mask): the result must have dtype torch.bool.",
                     combined_as_numbers),
    ],
)

register(CAUSAL_MASK, MASKED_ATTENTION, PADDING_MASK, CAUSAL_PADDING_MASK)
