"""Exercises of unit 03: attention.

Three exercises build one attention head from the inside out:

* ``03.attention_scores``             ``q @ k^T / sqrt(d_k)``
* ``03.scaled_dot_product_attention`` ``softmax(q k^T / sqrt(d_k)) @ v``
* ``03.SelfAttentionHead``            an ``nn.Module`` with W_Q, W_K, W_V, W_O that returns delta E

Each lists the mistakes learners really make as runnable buggy variants, so the check can name them
("your output matches attention with the softmax taken over the query axis instead of the key axis").
"""

from __future__ import annotations

import math

import torch

from .. import attention as A
from .. import softmax as S
from .core import Alternative, Case, Exercise, Forbidden, KnownMistake, ModuleInputs, Property
from .registry import register
from .core import randn as _randn  # shared case helpers

NOTEBOOK = "03_attention"

ATTENTION_BUILTINS = Forbidden(
    "a built-in attention (F.scaled_dot_product_attention, nn.MultiheadAttention)",
    ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention",
     "torch.nn.functional.multi_head_attention_forward"),
    "this exercise asks you to build attention from matrix products and a softmax",
)


# ---------------------------------------------------------------------------------------------------
# 03.attention_scores
# ---------------------------------------------------------------------------------------------------


def scores_unscaled(q, k):
    return q @ k.transpose(-2, -1)


def scores_scaled_by_dk(q, k):
    return q @ k.transpose(-2, -1) / q.shape[-1]


def scores_keys_not_transposed(q, k):
    return q @ k / math.sqrt(q.shape[-1])


def scores_scaled_by_sqrt_tk(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(k.shape[-2])


def scores_queries_keys_swapped(q, k):
    return k @ q.transpose(-2, -1) / math.sqrt(q.shape[-1])


def scores_scaled_by_sqrt_tq(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-2])


def scores_multiplied(q, k):
    return q @ k.transpose(-2, -1) * math.sqrt(q.shape[-1])


def scores_softmax_applied(q, k):
    return S.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)


def scores_einsum(q, k):
    return torch.einsum("...id,...jd->...ij", q, k) / q.shape[-1] ** 0.5


def scores_scale_queries_first(q, k):
    return (q / math.sqrt(k.shape[-1])) @ k.mT


def _qk_cases(gen, hidden):
    """Query/key pairs; ``T_k == d_k`` in the "square keys" group so that ``q @ k`` runs too."""
    cases = [Case((_randn(gen, 3, 4), _randn(gen, 5, 4)), {}, "basic", "one sequence: 3 queries, 5 keys, d_k=4")]
    shapes = [((2, 4, 8), (2, 6, 8))] + ([((3, 7, 16), (3, 5, 16)), ((1, 10, 32), (1, 12, 32))] if hidden else [])
    for sq, sk in shapes:
        cases.append(Case((_randn(gen, *sq), _randn(gen, *sk)), {}, "batched",
                          f"a batch: q {sq}, k {sk}"))
    cases.append(Case((_randn(gen, 2, 2, 3, 6), _randn(gen, 2, 2, 4, 6)), {}, "batched",
                      "(batch, head) dims: q (2, 2, 3, 6), k (2, 2, 4, 6)"))
    square = [(3, 5)] + ([(6, 8), (2, 4)] if hidden else [])
    for tq, d in square:
        cases.append(Case((_randn(gen, 2, tq, d), _randn(gen, 2, d, d)), {}, "square keys",
                          f"T_k equals d_k = {d}"))
    # a batch of one sequence: the axis of size 1 stays (a .squeeze() drops it); drawn last
    cases.append(Case((_randn(gen, 1, 3, 4), _randn(gen, 1, 5, 4)), {}, "batched",
                      "a batch of one: q (1, 3, 4), k (1, 5, 4), scores (1, 3, 5)"))
    return cases


def scores_float64(q, k):
    return A.attention_scores(q.double(), k.double())


def scores_shape_one(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[1])  # shape[1] is d_k only for 2-D inputs


def scores_empirical_std(q, k):
    s = q @ k.transpose(-2, -1)
    return s / s.std()  # the scores' own standard deviation, not sqrt(d_k)


def scores_sqrt_len(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(len(q))  # len(q) is q.shape[0]

def scores_power_precedence(q, k):
    return q @ k.transpose(-2, -1) / q.shape[-1] ** 1 / 2  # ** binds first: (d_k ** 1) / 2


ATTENTION_SCORES = Exercise(
    id="03.attention_scores", notebook=NOTEBOOK, function="attention_scores", points=3,
    title="Attention scores q k^T / sqrt(d_k)", minutes=10,
    reference=A.attention_scores, make_cases=_qk_cases, atol=1e-5, rtol=1e-4,
    alternatives=[Alternative("einsum", scores_einsum), Alternative("queries scaled first, k.mT", scores_scale_queries_first)],
    forbidden=[ATTENTION_BUILTINS],
    mistakes=[
        KnownMistake("no scaling",
                     "Your scores are q @ k^T without the 1/sqrt(d_k). Their variance grows like d_k, which "
                     "pushes the softmax into saturation; divide by math.sqrt(d_k) with d_k = q.shape[-1].",
                     scores_unscaled),
        KnownMistake("scaled by d_k instead of sqrt(d_k)",
                     "You divide by d_k (or by sqrt(d_k) twice). The dot product of two d_k-dimensional vectors with unit-variance "
                     "entries has variance d_k, i.e. standard deviation sqrt(d_k): divide by math.sqrt(d_k).",
                     scores_scaled_by_dk),
        KnownMistake("keys not transposed",
                     "You multiply q @ k. Each score is the dot product of a query row with a key row, so the "
                     "keys must be transposed: q @ k.transpose(-2, -1) (k.T only works for 2-D tensors).",
                     scores_keys_not_transposed),
        KnownMistake("scaled by sqrt(T_k) instead of sqrt(d_k)",
                     "You divide by the square root of the number of keys, k.shape[-2]. The scale comes from "
                     "the length of the vectors being dotted: d_k = q.shape[-1].",
                     scores_scaled_by_sqrt_tk),
        KnownMistake("queries and keys swapped",
                     "Your scores are k @ q^T, shape (T_k, T_q): the transpose of what is asked. Row i must hold "
                     "query i's score against every key: q @ k.transpose(-2, -1).",
                     scores_queries_keys_swapped),
        KnownMistake("scaled by sqrt(T_q) instead of sqrt(d_k)",
                     "You divide by the square root of the number of queries, q.shape[-2]. The scale is the length "
                     "of the vectors being dotted: d_k = q.shape[-1].",
                     scores_scaled_by_sqrt_tq),
        KnownMistake("multiplied by sqrt(d_k)",
                     "You multiply the scores by sqrt(d_k). Divide: q @ k.transpose(-2, -1) / math.sqrt(d_k) "
                     "brings their variance back to 1.",
                     scores_multiplied),
        KnownMistake("softmax applied",
                     "Your output rows sum to one: you took the softmax. This exercise asks for the scaled scores "
                     "themselves; the softmax comes in Exercise 03.2.",
                     scores_softmax_applied),
        KnownMistake("float64 instead of float32",
                     "Your output is float64 (double). "
                     "The expected result is float32, like the inputs: do not call .double() or build tensors with "
                     "dtype=torch.float64 / from numpy (numpy's default is float64); if you converted on purpose, "
                     "convert back with .float().",
                     scores_float64),
        KnownMistake("d_k ** 1/2 read as (d_k ** 1) / 2",
                     "Your scores are divided by 2 d_k: in Python `d ** 1/2` means (d ** 1) / 2 because ** binds "
                     "before / (and `d ** -1/2` means (1 / d) / 2). Write d_k ** 0.5, d_k ** (1/2) or "
                     "math.sqrt(d_k).",
                     scores_power_precedence),
        KnownMistake("q.shape[1] instead of q.shape[-1]",
                     "You take d_k = q.shape[1]. That is d_k only for a 2-D q; with a batch axis q.shape[1] is the "
                     "number of queries (and with heads, the number of heads). d_k is always the LAST axis: "
                     "q.shape[-1].",
                     scores_shape_one),
        KnownMistake("divided by the scores' own standard deviation",
                     "You divide by scores.std(), measured on this input. The scale is a fixed number that depends "
                     "only on the vectors' length: 1 / sqrt(d_k) with d_k = q.shape[-1], the same for every input.",
                     scores_empirical_std),
        KnownMistake("sqrt(len(q)) instead of sqrt(d_k)",
                     "You divide by sqrt(len(q)). len(q) is q.shape[0]: the number of queries for a 2-D q, the "
                     "batch size for a batch. d_k is the last axis: math.sqrt(q.shape[-1]).",
                     scores_sqrt_len),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 03.scaled_dot_product_attention
# ---------------------------------------------------------------------------------------------------


def sdpa_unscaled(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def sdpa_scaled_by_dk(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1) @ v


def sdpa_softmax_over_queries(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-2) @ v


def sdpa_weights_not_applied(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)


def sdpa_no_softmax(q, k, v):
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])) @ v


def sdpa_keys_not_transposed(q, k, v):
    return S.softmax(q @ k / math.sqrt(q.shape[-1]), dim=-1) @ v


def sdpa_scaled_after_softmax(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1), dim=-1) / math.sqrt(q.shape[-1]) @ v


def sdpa_scaled_by_sqrt_dv(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1) / math.sqrt(v.shape[-1]), dim=-1) @ v


def sdpa_multiplied(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1) * math.sqrt(q.shape[-1]), dim=-1) @ v


def sdpa_scaled_by_sqrt_tk(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1) / math.sqrt(k.shape[-2]), dim=-1) @ v


def sdpa_keys_as_values(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ k


def sdpa_softmax_dim_one(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=1) @ v  # dim=1 hard-coded


def sdpa_scaled_twice(q, k, v):
    return A.scaled_dot_product_attention(q, k, v) / math.sqrt(q.shape[-1])  # the output divided too


def sdpa_unstable_softmax(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    e = torch.exp(scores)  # overflows once a score passes ~88.7
    return (e / e.sum(dim=-1, keepdim=True)) @ v


def sdpa_scaled_by_sqrt_tq(q, k, v):
    return S.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-2]), dim=-1) @ v


def sdpa_returns_weights_too(q, k, v):
    return A.scaled_dot_product_attention(q, k, v, return_weights=True)  # (output, weights)

def sdpa_einsum(q, k, v):
    scores = torch.einsum("...id,...jd->...ij", q, k) / math.sqrt(q.shape[-1])
    w = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    w = w / w.sum(dim=-1, keepdim=True)  # softmax over the keys, by hand
    return torch.einsum("...ij,...jd->...id", w, v)


def sdpa_scaled_queries(q, k, v):
    return torch.nn.functional.softmax((q / math.sqrt(q.size(-1))) @ k.mT, dim=-1) @ v


def _qkv_cases(gen, hidden):
    cases = [Case((_randn(gen, 3, 4), _randn(gen, 5, 4), _randn(gen, 5, 2)), {}, "basic",
                  "one sequence: 3 queries, 5 keys/values, d_k=4, d_v=2")]
    shapes = [(2, 4, 6, 8, 3)] + ([(3, 7, 5, 16, 4), (2, 12, 12, 32, 32)] if hidden else [])
    for B, tq, tk, dk, dv in shapes:
        cases.append(Case((_randn(gen, B, tq, dk), _randn(gen, B, tk, dk), _randn(gen, B, tk, dv)), {}, "batched",
                          f"a batch: q ({B}, {tq}, {dk}), k ({B}, {tk}, {dk}), v ({B}, {tk}, {dv})"))
    cases.append(Case((_randn(gen, 2, 2, 3, 6), _randn(gen, 2, 2, 4, 6), _randn(gen, 2, 2, 4, 5)), {}, "batched",
                      "(batch, head) dims: q (2, 2, 3, 6)"))
    square = [(4, 5)] + ([(3, 8)] if hidden else [])
    for tq, d in square:
        cases.append(Case((_randn(gen, 1, tq, d), _randn(gen, 1, d, d), _randn(gen, 1, d, 3)), {}, "square keys",
                          f"T_k equals d_k = {d}"))
    scale = 6.0
    cases.append(Case((_randn(gen, 2, 4, 8, scale=scale), _randn(gen, 2, 6, 8, scale=scale), _randn(gen, 2, 6, 3)),
                      {}, "large scores", "large queries and keys (a peaked softmax)"))
    # scores in the hundreds: a softmax without the max subtraction overflows (exp(89) is inf in float32)
    big = 12.0
    cases.append(Case((_randn(gen, 1, 3, 8, scale=big), _randn(gen, 1, 5, 8, scale=big), _randn(gen, 1, 5, 2)),
                      {}, "large scores", "scores in the hundreds (exp overflows without the max)"))
    # two scores of 88.4 per row: each exp(88.4) ~ 2.5e38 is finite, their sum overflows float32 (max 3.4e38)
    q = torch.tensor([[[10.0, 0, 0, 0], [0, 10.0, 0, 0]]])  # (1, 2, 4): 10 * k / sqrt(4) = 5 k
    k = torch.tensor([[[17.68, 0.2, 0, 0], [17.68, -0.4, 0, 0], [0.6, 17.68, 0, 0], [-0.4, 17.68, 0, 0]]])
    cases.append(Case((q, k, _randn(gen, 1, 4, 3)), {}, "large scores",
                      "two scores of 88.4 per row (each exp finite, their sum is not)"))
    return cases


def _within_value_range(case, out, derived) -> bool:
    """Each output is a weighted AVERAGE of the values: it lies between their min and max."""
    v = case.args[2]
    lo = v.amin(dim=-2, keepdim=True) - 1e-4  # (..., 1, d_v)
    hi = v.amax(dim=-2, keepdim=True) + 1e-4
    return bool(((out >= lo) & (out <= hi) | ~torch.isfinite(out)).all())  # nan and inf: the 'finite' property


def _attention_finite(case, out, derived) -> bool:
    return bool(torch.isfinite(out).all())


def _permute_keys(case):
    q, k, v = case.args
    return [Case((q, k.flip(-2), v.flip(-2)), {}, case.group, "keys and values in reverse order")]


def _key_order_irrelevant(case, out, derived) -> bool:
    return bool(torch.allclose(derived[0], out, atol=1e-5, rtol=1e-4, equal_nan=True))


def sdpa_float64(q, k, v):
    return A.scaled_dot_product_attention(q.double(), k.double(), v.double())


SDPA = Exercise(
    id="03.scaled_dot_product_attention", notebook=NOTEBOOK, function="scaled_dot_product_attention", points=4,
    title="Scaled dot-product attention", minutes=15,
    reference=A.scaled_dot_product_attention, make_cases=_qkv_cases, atol=1e-5, rtol=1e-4,
    alternatives=[Alternative("einsum and a softmax by hand", sdpa_einsum),
                  Alternative("queries scaled first, F.softmax", sdpa_scaled_queries)],
    forbidden=[ATTENTION_BUILTINS],
    properties=[
        Property("outputs are averages of the values",
                 "every output should be a weighted average of the value vectors (weights >= 0 that sum to 1 "
                 "over the keys), so each coordinate lies between the smallest and largest value",
                 _within_value_range,
                 fires_for=("divided by sqrt(d_k) after the softmax", "keys used as values",
                            "output divided by sqrt(d_k) as well", "returns (output, weights)",
                            "softmax missing", "softmax over dim=1", "softmax over the query axis",
                            "softmax without the max subtraction", "weights not applied to the values")),
        Property("finite",
                 "your output has nan or inf although every input is finite: exp of a large score overflowed "
                 "(exp(89) is inf in float32, inf / inf = nan). Subtract each row's maximum score before the exp "
                 "(a stable softmax), or use torch.softmax",
                 _attention_finite, fires_for=("returns (output, weights)",
                                               "softmax without the max subtraction")),
        Property("order of the keys does not matter",
                 "reordering the keys together with their values should not change the output: attention "
                 "treats the keys as a set",
                 _key_order_irrelevant, _permute_keys,
                 fires_for=("keys not transposed", "returns (output, weights)",
                            "weights not applied to the values")),
    ],
    mistakes=[
        KnownMistake("no scaling",
                     "You take softmax(q @ k^T) without dividing by sqrt(d_k). For large d_k the scores get "
                     "large and the softmax saturates (almost one-hot). Divide the scores by math.sqrt(d_k).",
                     sdpa_unscaled),
        KnownMistake("scaled by d_k instead of sqrt(d_k)",
                     "You divide the scores by d_k. The scores' standard deviation is sqrt(d_k), so that is "
                     "what brings them back to unit variance: divide by math.sqrt(d_k).",
                     sdpa_scaled_by_dk),
        KnownMistake("softmax over the query axis",
                     "Your softmax normalises over the queries (dim=-2). Each query needs a probability "
                     "distribution over the KEYS, so take the softmax over the last axis (dim=-1).",
                     sdpa_softmax_over_queries),
        KnownMistake("weights not applied to the values",
                     "You return the attention weights (..., T_q, T_k). The output is their weighted sum of the "
                     "values: weights @ v, shape (..., T_q, d_v).",
                     sdpa_weights_not_applied),
        KnownMistake("softmax missing",
                     "You multiply the raw scores with v. Turn each row of scores into weights that are >= 0 "
                     "and sum to 1 with a softmax over the keys first.",
                     sdpa_no_softmax),
        KnownMistake("keys not transposed",
                     "You multiply q @ k. Each score is the dot product of a query row with a key row, so "
                     "transpose the keys: q @ k.transpose(-2, -1).",
                     sdpa_keys_not_transposed),
        KnownMistake("divided by sqrt(d_k) after the softmax",
                     "You divide by sqrt(d_k) AFTER the softmax (or the output): the weights then sum to "
                     "1/sqrt(d_k), and the scaling never reaches the softmax, which is where it matters. Divide the "
                     "scores: softmax(q @ k^T / sqrt(d_k)) @ v.",
                     sdpa_scaled_after_softmax),
        KnownMistake("scaled by sqrt(d_v) instead of sqrt(d_k)",
                     "You divide by the square root of the VALUES' width, v.shape[-1]. The scale belongs to the dot "
                     "products of queries with keys: d_k = q.shape[-1].",
                     sdpa_scaled_by_sqrt_dv),
        KnownMistake("multiplied by sqrt(d_k)",
                     "You multiply the scores by sqrt(d_k): the softmax gets sharper instead of tamer. Divide.",
                     sdpa_multiplied),
        KnownMistake("scaled by sqrt(T_k) instead of sqrt(d_k)",
                     "You divide by the square root of the number of keys, k.shape[-2]. The scale comes from the "
                     "length of the vectors being dotted: d_k = q.shape[-1].",
                     sdpa_scaled_by_sqrt_tk),
        KnownMistake("keys used as values",
                     "You take the weighted sum of the KEYS. The keys only decide the weights; what is passed on "
                     "is the values: weights @ v.",
                     sdpa_keys_as_values),
        KnownMistake("float64 instead of float32",
                     "Your output is float64 (double). "
                     "The expected result is float32, like the inputs: do not call .double() or build tensors with "
                     "dtype=torch.float64 / from numpy (numpy's default is float64); if you converted on purpose, "
                     "convert back with .float().",
                     sdpa_float64),
        KnownMistake("softmax over dim=1",
                     "Your softmax runs over dim=1. That is the key axis only for a 2-D input; for a batch "
                     "(B, T_q, T_k) dim=1 is the QUERY axis, with heads it is the heads. Use dim=-1, the keys, "
                     "whatever the number of dimensions.",
                     sdpa_softmax_dim_one),
        KnownMistake("output divided by sqrt(d_k) as well",
                     "You divide by sqrt(d_k) twice: the scores (right) and the output (wrong). Only the scores are "
                     "scaled; the output is softmax(q k^T / sqrt(d_k)) @ v.",
                     sdpa_scaled_twice),
        KnownMistake("softmax without the max subtraction",
                     "Your softmax computes exp(scores) directly. Scores in the hundreds overflow (exp(89) is inf in "
                     "float32) and inf / inf = nan. Subtract each row's maximum first (your stable softmax of unit "
                     "02), or use torch.softmax.",
                     sdpa_unstable_softmax),
        KnownMistake("scaled by sqrt(T_q) instead of sqrt(d_k)",
                     "You divide by the square root of the number of queries, q.shape[-2]. The scale comes from the "
                     "length of the vectors being dotted: d_k = q.shape[-1].",
                     sdpa_scaled_by_sqrt_tq),
        KnownMistake("returns (output, weights)",
                     "You return a pair (output, weights). The exercise asks for the output alone, "
                     "weights @ v of shape (..., T_q, d_v): return just that tensor.",
                     sdpa_returns_weights_too),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 03.SelfAttentionHead (a module)
# ---------------------------------------------------------------------------------------------------


class HeadNoScaling(A.SelfAttentionHead):
    def forward(self, x):
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)
        return self.W_O(S.softmax(q @ k.transpose(-2, -1), dim=-1) @ v)


class HeadSoftmaxOverQueries(A.SelfAttentionHead):
    def forward(self, x):
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)
        return self.W_O(S.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_head), dim=-2) @ v)


class HeadWithoutOutput(A.SelfAttentionHead):
    def forward(self, x):
        return A.scaled_dot_product_attention(self.W_Q(x), self.W_K(x), self.W_V(x))


class HeadReturnsUpdatedStream(A.SelfAttentionHead):
    def forward(self, x):
        return x + A.SelfAttentionHead.forward(self, x)


class HeadQueriesKeysSwapped(A.SelfAttentionHead):
    def forward(self, x):
        return self.W_O(A.scaled_dot_product_attention(self.W_K(x), self.W_Q(x), self.W_V(x)))


class HeadValuesFromKeys(A.SelfAttentionHead):
    def forward(self, x):
        k = self.W_K(x)
        return self.W_O(A.scaled_dot_product_attention(self.W_Q(x), k, k))


class HeadScaledByDModel(A.SelfAttentionHead):
    def forward(self, x):
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)
        return self.W_O(S.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_model), dim=-1) @ v)


class HeadSoftmaxOverBatch(A.SelfAttentionHead):
    def forward(self, x):
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)
        return self.W_O(S.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_head), dim=0) @ v)


class HeadMultiplied(A.SelfAttentionHead):
    def forward(self, x):
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)
        return self.W_O(S.softmax(q @ k.transpose(-2, -1) * math.sqrt(self.d_head), dim=-1) @ v)


class HeadQueriesAsKeys(A.SelfAttentionHead):
    def forward(self, x):
        q = self.W_Q(x)
        return self.W_O(A.scaled_dot_product_attention(q, q, self.W_V(x)))


class HeadScaledByDHead(A.SelfAttentionHead):
    def forward(self, x):
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)
        return self.W_O(S.softmax(q @ k.transpose(-2, -1) / self.d_head, dim=-1) @ v)


class HeadQueriesAsValues(A.SelfAttentionHead):
    def forward(self, x):
        q = self.W_Q(x)
        return self.W_O(A.scaled_dot_product_attention(q, self.W_K(x), q))


class HeadInputAsValues(A.SelfAttentionHead):
    def forward(self, x):
        q, k = self.W_Q(x), self.W_K(x)
        return A.scaled_dot_product_attention(q, k, x)  # W_V and W_O skipped: the values are x itself


class HeadReturnsWeightsToo(A.SelfAttentionHead):
    def forward(self, x):
        return A.SelfAttentionHead.forward(self, x, return_weights=True)  # (delta, weights)


class HeadCausal(A.SelfAttentionHead):
    def forward(self, x):
        return A.SelfAttentionHead.forward(self, x, mask=A.causal_mask(x.shape[-2]))


class HeadOutputScaled(A.SelfAttentionHead):
    def forward(self, x):
        return A.SelfAttentionHead.forward(self, x) / math.sqrt(self.d_head)

class HeadOutputMapFirst(A.SelfAttentionHead):
    """W_O applied to the values before the weighted sum: the same numbers (both maps are linear)."""

    def forward(self, x):
        q, k = self.W_Q(x), self.W_K(x)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_head), dim=-1)  # (B, T, T)
        return weights @ self.W_O(self.W_V(x))


class HeadEinsum(A.SelfAttentionHead):
    """The weights used as matrices, with einsum (nn.Linear stores W as (out, in): x W^T)."""

    def forward(self, x):
        q = torch.einsum("btm,hm->bth", x, self.W_Q.weight)
        k = torch.einsum("btm,hm->bth", x, self.W_K.weight)
        v = torch.einsum("btm,hm->bth", x, self.W_V.weight)
        weights = torch.softmax(torch.einsum("bih,bjh->bij", q, k) / math.sqrt(q.shape[-1]), dim=-1)
        return torch.einsum("bij,bjh,mh->bim", weights, v, self.W_O.weight)


def _head_state(gen, d_model: int, d_head: int) -> dict:
    """A state_dict for ``SelfAttentionHead(d_model, d_head)`` drawn from ``gen`` only."""
    ref = A.SelfAttentionHead(d_model, d_head)
    state = {}
    for name, p in ref.state_dict().items():
        fan_in = p.shape[1]
        state[name] = _randn(gen, *p.shape, scale=1.0 / math.sqrt(fan_in))  # (out, in), like nn.Linear
    return state


def _head_cases(gen, hidden):
    sizes = [(1, 4, 8, 4), (2, 6, 12, 3)] + ([(3, 9, 16, 8), (2, 16, 32, 4), (1, 5, 6, 6)] if hidden else [])
    cases = []
    for B, T, d_model, d_head in sizes:
        state = _head_state(gen, d_model, d_head)
        x = _randn(gen, B, T, d_model)
        cases.append(Case((ModuleInputs(dict(d_model=d_model, d_head=d_head), state, (x,)),), {},
                          "basic" if B * T <= 12 else "larger",
                          f"x ({B}, {T}, {d_model}), d_head={d_head}"))
    if not hidden:
        cases[-1] = Case(cases[-1].args, {}, "larger", cases[-1].note)
    return cases


def _reverse_tokens(case):
    spec = case.args[0]
    (x,) = spec.args
    return [Case((ModuleInputs(spec.init, spec.state, (x.flip(-2),)),), {}, case.group, "tokens in reverse order")]


def _permutation_equivariant(case, out, derived) -> bool:
    return bool(torch.allclose(derived[0], out.flip(-2), atol=1e-5, rtol=1e-4))


SELF_ATTENTION_HEAD = Exercise(
    id="03.SelfAttentionHead", notebook=NOTEBOOK, function="SelfAttentionHead", points=5,
    title="A single self-attention head (nn.Module)", minutes=20, kind="module",
    reference=A.SelfAttentionHead, make_cases=_head_cases, atol=1e-5, rtol=1e-4,
    alternatives=[Alternative("W_O applied before the weighted sum", HeadOutputMapFirst),
                  Alternative("einsum with the weight matrices", HeadEinsum)],
    forbidden=[ATTENTION_BUILTINS],
    properties=[
        Property("reordering the tokens reorders the output",
                 "self-attention without positions is permutation-equivariant: reversing the tokens of x "
                 "should reverse the rows of the output and change nothing else",
                 _permutation_equivariant, _reverse_tokens,
                 fires_for=("causal mask added", "returns (delta, weights)")),
    ],
    mistakes=[
        KnownMistake("no scaling",
                     "Your head computes softmax(q @ k^T) without the 1/sqrt(d_head). Divide the scores by "
                     "math.sqrt(d_head) before the softmax.",
                     HeadNoScaling),
        KnownMistake("softmax over the query axis",
                     "Your softmax normalises over the queries (dim=-2). Each query's weights over the keys must "
                     "sum to one: softmax over dim=-1.",
                     HeadSoftmaxOverQueries),
        KnownMistake("output projection W_O missing",
                     "You return the weighted sum of values z (B, T, d_head). The head's update to the residual "
                     "stream is W_O applied to it: self.W_O(z), shape (B, T, d_model).",
                     HeadWithoutOutput),
        KnownMistake("returns E + delta E instead of delta E",
                     "You add the input x to the result. The head returns only the update delta E; the residual "
                     "connection (x + delta E) is added by the transformer block (unit 07).",
                     HeadReturnsUpdatedStream),
        KnownMistake("queries and keys swapped",
                     "You use W_K for the queries and W_Q for the keys, which transposes the attention pattern. "
                     "q = self.W_Q(x), k = self.W_K(x).",
                     HeadQueriesKeysSwapped),
        KnownMistake("keys used as values",
                     "You take the weighted sum of the keys. The values come from their own map: v = self.W_V(x).",
                     HeadValuesFromKeys),
        KnownMistake("scaled by sqrt(d_model) instead of sqrt(d_head)",
                     "You divide the scores by sqrt(d_model). The queries and keys live in the head's small space: "
                     "their dot products have d_head terms, so divide by math.sqrt(self.d_head).",
                     HeadScaledByDModel),
        KnownMistake("softmax over the batch axis",
                     "Your softmax runs over dim=0, across the sequences of the batch. Each query's weights over "
                     "the keys of its own sequence must sum to one: dim=-1.",
                     HeadSoftmaxOverBatch),
        KnownMistake("multiplied by sqrt(d_head)",
                     "You multiply the scores by sqrt(d_head). Divide them by it.",
                     HeadMultiplied),
        KnownMistake("scaled by d_head instead of sqrt(d_head)",
                     "You divide the scores by d_head. Their standard deviation is sqrt(d_head): divide by "
                     "math.sqrt(self.d_head).",
                     HeadScaledByDHead),
        KnownMistake("queries used as values",
                     "You take the weighted sum of the queries. The values come from their own map: "
                     "v = self.W_V(x).",
                     HeadQueriesAsValues),
        KnownMistake("queries used as keys",
                     "Your scores are q @ q^T: the keys come from W_Q too. k = self.W_K(x).",
                     HeadQueriesAsKeys),
        KnownMistake("x itself used as the values",
                     "You take the weighted sum of the input x, skipping W_V and W_O. The values are a learned map "
                     "of x, v = self.W_V(x), and the head's output is self.W_O(weights @ v).",
                     HeadInputAsValues),
        KnownMistake("returns (delta, weights)",
                     "Your forward returns a pair (delta, weights). The head returns only its update delta E, shape "
                     "(B, T, d_model); keep the weights in an attribute if you want to look at them.",
                     HeadReturnsWeightsToo),
        KnownMistake("causal mask added",
                     "Your head hides the future (a causal mask). This unit's head attends to every position; masks "
                     "come in unit 04, and a decoder passes one in, it is not built into the head.",
                     HeadCausal),
        KnownMistake("output divided by sqrt(d_head) as well",
                     "You divide the head's output by sqrt(d_head). Only the scores are scaled, before the softmax; "
                     "the output is W_O(weights @ v).",
                     HeadOutputScaled),
    ],
)

register(ATTENTION_SCORES, SDPA, SELF_ATTENTION_HEAD)
