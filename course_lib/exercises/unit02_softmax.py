"""Exercises of unit 02: softmax & sampling.

Each exercise lists the mistakes learners really make, as runnable buggy variants, so the check can
name them ("your output matches softmax without subtracting the max: exp(1000) overflows to inf").
"""

from __future__ import annotations

import math

import torch

from .. import softmax as S
from .core import Alternative, Case, Exercise, Forbidden, GeneratorSeed, KnownMistake, Property
from .registry import register
from .core import randn as _randn, draw_seed as _seed  # shared case helpers

NOTEBOOK = "02_softmax_sampling"

SOFTMAX_BUILTINS = Forbidden(
    "a built-in softmax (torch.softmax, F.softmax, Tensor.softmax)",
    ("torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax", "torch.special.softmax",
     "torch.log_softmax", "torch.nn.functional.log_softmax", "torch.Tensor.log_softmax", "torch._softmax"),
    "this exercise asks you to build softmax from exp, max and sum",
)
LOSS_BUILTINS = Forbidden(
    "a built-in loss (F.cross_entropy, F.nll_loss, nn.CrossEntropyLoss)",
    ("torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss", "torch.nn.CrossEntropyLoss",
     "torch.nn.NLLLoss"),
    "this exercise asks you to compute the loss from log-probabilities yourself",
)
SAMPLING_BUILTINS = Forbidden(
    "a built-in sampler (torch.multinomial, torch.distributions.Categorical)",
    ("torch.multinomial", "torch.Tensor.multinomial", "torch.distributions.Categorical"),
    "this exercise asks you to turn one uniform number per row into a token yourself",
)


def _rows_sum_to_one(case, out, derived) -> bool:
    """Summed in float64; the tolerance allows float32 rounding at logits of 1e4 (exp(x - logsumexp(x)))."""
    dim = case.kwargs.get("dim", -1)
    return bool(torch.allclose(out.double().sum(dim=dim), torch.ones((), dtype=torch.float64), atol=2e-3))


# ---------------------------------------------------------------------------------------------------
# 02.stable_softmax
# ---------------------------------------------------------------------------------------------------


def softmax_no_max(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_wrong_axis(x, dim=-1):
    return S.softmax(x, dim=0)  # dim=0 hard-coded


def softmax_global_max(x, dim=-1):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=dim, keepdim=True)


def softmax_global_sum(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum()


def softmax_max_without_keepdim(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim))  # (..) broadcasts against the wrong axis (runs when the shapes allow it)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_sum_without_keepdim(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim)


def softmax_unshifted_sum(x, dim=-1):
    m = x.amax(dim=dim, keepdim=True)
    return torch.exp(x - m) / torch.exp(x).sum(dim=dim, keepdim=True)  # shifted on top, not below


def softmax_returns_log(x, dim=-1):
    return S.log_softmax(x, dim=dim)


def softmax_dim_ignored(x, dim=-1):
    return S.softmax(x, dim=-1)


def _finite_where_reference_is(case, out, derived) -> bool:
    """Diagnostic, so in float64: the output has no nan/inf where the exact softmax has none."""
    x = case.args[0].double()
    exact = torch.exp(x - x.amax(dim=case.kwargs.get("dim", -1), keepdim=True))
    return bool(torch.isfinite(out.double()).all()) if bool(torch.isfinite(exact).all()) else True


def _softmax_cases(gen, hidden):
    n = 3 if hidden else 1
    cases = [Case((torch.tensor([1.0, 2.0, 3.0]),), {}, "basic", "a vector of 3 logits")]
    for _ in range(n):
        cases.append(Case((_randn(gen, 4, 6),), {}, "basic", "a batch of 4 rows"))
    cases.append(Case((_randn(gen, 5, 3),), {"dim": 0}, "axis", "dim=0: normalise each column"))
    cases.append(Case((_randn(gen, 2, 3, 4),), {"dim": 1}, "axis", "a 3-D tensor with dim=1"))
    if hidden:
        cases.append(Case((_randn(gen, 3, 7, 5, scale=3.0),), {"dim": -2}, "axis", "dim=-2"))
    # square: a max or sum without keepdim=True broadcasts against the wrong axis and still runs
    for n in [4] + ([6] if hidden else []):
        cases.append(Case((_randn(gen, n, n, scale=2.0),), {}, "basic", f"a square ({n}, {n}) batch"))
    big = torch.stack([_randn(gen, 5, scale=5.0) + 1000.0, _randn(gen, 5, scale=5.0) - 50.0])
    cases.append(Case((big,), {}, "large", "logits near 1000 (overflow)"))
    # rows spanning -1000 .. +1000: subtracting the min (or the mean) overflows just like no shift at all
    span = torch.stack([torch.linspace(-1000.0, 1000.0, 5), _randn(gen, 5, scale=400.0)])
    cases.append(Case((span,), {}, "large", "rows spanning -1000 to +1000"))
    # one row near 0, one near -100: without the row's own max, exp lands on float32's inexact subnormals
    low = torch.stack([_randn(gen, 6), _randn(gen, 6, scale=1.5) - 99.0])
    cases.append(Case((low,), {}, "large", "a row near 0 and a row near -100 (exp underflows)"))
    if hidden:
        cases.append(Case((_randn(gen, 8, 50, scale=400.0),), {}, "large", "logits of size ~1000"))
        cases.append(Case((torch.tensor([[1e4, -1e4, 0.0]]),), {}, "large", "logits of +-1e4"))
    # float64 in, float64 out (a .float() would lose it); drawn last so the cases above are unchanged
    cases.append(Case((_randn(gen, 3, 5).double(),), {}, "basic", "a float64 batch: the result stays float64"))
    return cases


def softmax_via_logsumexp(x, dim=-1):
    return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))


def softmax_moved_axis(x, dim=-1):
    y = x.movedim(dim, -1)  # the axis to normalise, last
    e = torch.exp(y - y.max(dim=-1, keepdim=True).values)
    return (e / e.sum(dim=-1, keepdim=True)).movedim(-1, dim)


def softmax_float64(x, dim=-1):
    return S.softmax(x.double(), dim=dim)


def softmax_logits_clamped(x, dim=-1):
    z = x.clamp(-80.0, 80.0)  # "so that exp cannot overflow"
    return torch.exp(z) / torch.exp(z).sum(dim=dim, keepdim=True)


def softmax_plus_one_below(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / (e.sum(dim=dim, keepdim=True) + 1.0)


def softmax_max_over_last_axis(x, dim=-1):
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))  # the max over the LAST axis, the sum over `dim`
    return e / e.sum(dim=dim, keepdim=True)

def softmax_divided_by_max(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.amax(dim=dim, keepdim=True)


STABLE_SOFTMAX = Exercise(
    id="02.stable_softmax", notebook=NOTEBOOK, function="stable_softmax", points=3,
    title="Numerically stable softmax", minutes=10,
    # rtol: exp(x - logsumexp(x)) is a valid answer; at logits of 1e4 float32 rounding costs it ~1e-3
    alternatives=[Alternative("exp(x - logsumexp(x))", softmax_via_logsumexp),
                  Alternative("axis moved last, max(...).values", softmax_moved_axis)],
    reference=S.softmax, make_cases=_softmax_cases, atol=1e-6, rtol=2e-3,
    forbidden=[SOFTMAX_BUILTINS],
    properties=[
        Property("rows sum to one", "the probabilities along `dim` should add up to 1", _rows_sum_to_one,
                 fires_for=("1 added to the denominator", "dim ignored (always the last axis)",
                            "divided by the max instead of the sum", "max over the whole tensor",
                            "max subtracted in the numerator only", "no max subtraction",
                            "returns the log-softmax", "softmax over the wrong axis",
                            "sum over the whole tensor", "sum without keepdim")),
        Property("finite", "your output has nan or inf where every probability is finite: an exp overflowed "
                 "(inf / inf) or a whole slice underflowed to 0 (0 / 0). Subtract each slice's OWN maximum along "
                 "`dim` (not the min, the mean or the whole tensor's max): every exponent is then <= 0 and the "
                 "largest term is exactly 1",
                 _finite_where_reference_is,
                 fires_for=("no max subtraction", "max over the whole tensor",
                            "max subtracted in the numerator only")),
    ],
    mistakes=[
        KnownMistake("no max subtraction",
                     "You compute exp(x) directly. For logits near 1000 exp overflows to inf and inf/inf "
                     "is nan. Subtract the maximum along `dim` first: softmax(x) = softmax(x - max(x)).",
                     softmax_no_max),
        KnownMistake("softmax over the wrong axis",
                     "Your probabilities sum to one along a different axis than `dim`. Pass `dim=dim` "
                     "(and keepdim=True) to both the max and the sum.",
                     softmax_wrong_axis),
        KnownMistake("max over the whole tensor",
                     "You subtract the maximum of the whole tensor, not of each row. A row far below the "
                     "global maximum underflows to all zeros and 0/0 gives nan. Take the max along `dim`.",
                     softmax_global_max),
        KnownMistake("sum over the whole tensor",
                     "You divide by the sum of the whole tensor, so the rows no longer sum to one each. "
                     "Sum along `dim` with keepdim=True.",
                     softmax_global_sum),
        KnownMistake("max without keepdim",
                     "You subtract x.max(dim=dim) without keepdim=True: the maxima lose their axis and broadcast "
                     "against the wrong one (on a square input each entry gets another row's maximum). Use "
                     "x.amax(dim=dim, keepdim=True).",
                     softmax_max_without_keepdim),
        KnownMistake("sum without keepdim",
                     "You divide by e.sum(dim=dim) without keepdim=True: the sums broadcast against the wrong axis, "
                     "so the slices do not sum to one. Use e.sum(dim=dim, keepdim=True).",
                     softmax_sum_without_keepdim),
        KnownMistake("max subtracted in the numerator only",
                     "You subtract the max in exp(x - m) but divide by sum(exp(x)) without it: both must be "
                     "shifted by the same m, exp(x - m) / sum(exp(x - m)).",
                     softmax_unshifted_sum),
        KnownMistake("returns the log-softmax",
                     "Your output is the LOG of the probabilities (x - max - log sum exp): all entries are <= 0. "
                     "Return the probabilities themselves: exp(x - max) / sum(exp(x - max)).",
                     softmax_returns_log),
        KnownMistake("dim ignored (always the last axis)",
                     "You normalise over the last axis whatever `dim` says. Use `dim=dim` in the max and the sum.",
                     softmax_dim_ignored),
        KnownMistake("float64 instead of float32",
                     "Your output is float64 (double). "
                     "The expected result is float32, like the inputs: do not call .double() or build tensors with "
                     "dtype=torch.float64 / from numpy (numpy's default is float64); if you converted on purpose, "
                     "convert back with .float().",
                     softmax_float64),
        KnownMistake("divided by the max instead of the sum",
                     "Your largest probability is exactly 1 and the rows add up to more than 1: you divided the "
                     "exponentials by their maximum. Divide by their SUM along `dim` (keepdim=True), so that "
                     "the probabilities add up to 1.",
                     softmax_divided_by_max),
        KnownMistake("logits clamped instead of shifted",
                     "You clamp the logits (e.g. to [-80, 80]) so that exp cannot overflow. Clamping changes the "
                     "values: 1000 and 990 both become 80, so their probabilities come out equal. Shift instead: "
                     "softmax(x) = softmax(x - max(x)) is exact.",
                     softmax_logits_clamped),
        KnownMistake("1 added to the denominator",
                     "You divide by sum + 1. The probabilities are exp(x - m) divided by their sum alone, so that "
                     "they add up to exactly 1.",
                     softmax_plus_one_below),
        KnownMistake("max over the last axis, sum over `dim`",
                     "You subtract the maximum over the LAST axis but sum over `dim`. For dim != -1 the shift then "
                     "varies along `dim` and changes the result. Take the max over the same axis as the sum: "
                     "x.amax(dim=dim, keepdim=True).",
                     softmax_max_over_last_axis),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 02.softmax_with_temperature
# ---------------------------------------------------------------------------------------------------


def temperature_multiplied(logits, temperature):
    return S.softmax(logits * temperature, dim=-1)


def temperature_on_probs(logits, temperature):
    return S.softmax(logits, dim=-1) / temperature


def temperature_ignored(logits, temperature):
    return S.softmax(logits, dim=-1)


def temperature_wrong_axis(logits, temperature):
    return S.softmax(logits / temperature, dim=0)


def temperature_power_not_renormalised(logits, temperature):
    return S.softmax(logits, dim=-1) ** (1.0 / temperature)


def temperature_squared(logits, temperature):
    return S.softmax(logits / temperature ** 2, dim=-1)


def temperature_unstable(logits, temperature):
    e = torch.exp(logits / temperature)  # overflows once logits / T > 88.7
    return e / e.sum(dim=-1, keepdim=True)


def _temperature_cases(gen, hidden):
    temps = [0.5, 2.0] + ([0.1, 1.0, 5.0] if hidden else [])
    cases = []
    for t in temps:
        cases.append(Case((_randn(gen, 3, 8, scale=2.0), t), {}, "temperatures", f"temperature {t}"))
    cases.append(Case((_randn(gen, 2, 4, 10), 0.7), {}, "batched", "a (2, 4, 10) batch, temperature 0.7"))
    # a low temperature multiplies the logits: 5 / 0.05 = 100 > 88.7, exp overflows without the max trick
    for t in [0.05] + ([0.02] if hidden else []):
        cases.append(Case((_randn(gen, 4, 6, scale=3.0) + 2.0, t), {}, "low temperature",
                          f"temperature {t}: logits / T reach the hundreds"))
        cases.append(Case((_randn(gen, 3, 5, scale=1.5 * t) - 100.0 * t, t), {}, "low temperature",
                          f"temperature {t}: logits / T near -100 (exp underflows)"))
    # rows of very different size at a low temperature: shifting by the max of the whole tensor (not each row's)
    # leaves the small row at exp(-1200) = 0 everywhere, 0 / 0; and a single row of logits, shape (1, V)
    rows = torch.stack([_randn(gen, 6, scale=0.5), _randn(gen, 6, scale=0.5) + 12.0])
    cases.append(Case((rows, 0.05), {}, "low temperature", "temperature 0.05, one row near 0 and one near 12"))
    cases.append(Case((_randn(gen, 1, 7, scale=2.0), 0.8), {}, "batched",
                      "one row of logits (1, 7): the result is (1, 7)"))
    return cases


def temperature_power_renormalised(logits, temperature):
    q = S.softmax(logits, dim=-1) ** (1.0 / temperature)  # proportional to exp(logits / T)
    return q / q.sum(dim=-1, keepdim=True)


def temperature_times_inverse(logits, temperature):
    z = logits * (1.0 / temperature)
    return torch.exp(z - torch.logsumexp(z, dim=-1, keepdim=True))


def temperature_float64(logits, temperature):
    return S.softmax_with_temperature(logits.double(), temperature)


def temperature_square_root(logits, temperature):
    return S.softmax_with_temperature(logits, math.sqrt(temperature))


def temperature_numerator_only(logits, temperature):
    z = logits - logits.amax(dim=-1, keepdim=True)
    return torch.exp(z / temperature) / torch.exp(z).sum(dim=-1, keepdim=True)  # T missing below


def temperature_dim_one(logits, temperature):
    return S.softmax(logits / temperature, dim=1)  # dim=1 hard-coded


def temperature_greedy_when_cold(logits, temperature):
    if temperature < 1:
        return (logits == logits.amax(dim=-1, keepdim=True)).float()  # one-hot of the argmax
    return S.softmax(logits / temperature, dim=-1)


def temperature_clamped(logits, temperature):
    return S.softmax(logits / max(temperature, 0.1), dim=-1)  # "avoid dividing by a tiny number"


def temperature_global_sum(logits, temperature):
    e = torch.exp(logits / temperature)
    return e / e.sum()

def temperature_log_probs(logits, temperature):
    z = logits / temperature
    return z - torch.logsumexp(z, dim=-1, keepdim=True)


TEMPERATURE = Exercise(
    id="02.softmax_with_temperature", notebook=NOTEBOOK, function="softmax_with_temperature", points=2,
    title="Softmax with a temperature", minutes=5,
    alternatives=[Alternative("p ** (1/T), renormalised", temperature_power_renormalised),
                  Alternative("times 1/T, log-sum-exp", temperature_times_inverse)],
    reference=S.softmax_with_temperature, make_cases=_temperature_cases, atol=1e-6, rtol=1e-5,
    properties=[
        Property("rows sum to one", "probabilities over the vocabulary should add up to 1", _rows_sum_to_one,
                 fires_for=("log-probabilities instead of probabilities", "no max subtraction",
                            "probabilities raised to 1/T, not renormalised", "softmax over dim=1",
                            "softmax over the wrong axis", "sum over the whole tensor",
                            "temperature applied to probabilities", "temperature in the numerator only")),
        Property("finite", "your output has nan or inf: at a low temperature logits / T reach the hundreds and "
                 "exp overflows (exp(89) is inf in float32). Use a stable softmax: subtract each row's maximum of "
                 "logits / T first",
                 _finite_where_reference_is, fires_for=("no max subtraction", "sum over the whole tensor")),
    ],
    mistakes=[
        KnownMistake("temperature multiplied instead of divided",
                     "You multiply the logits by the temperature. Divide them: a high temperature must "
                     "flatten the distribution (logits / T shrink towards 0).",
                     temperature_multiplied),
        KnownMistake("temperature applied to probabilities",
                     "You divide the probabilities by the temperature after the softmax, so they no longer "
                     "sum to one. Divide the logits, then take the softmax.",
                     temperature_on_probs),
        KnownMistake("temperature ignored",
                     "Your output does not depend on the temperature: softmax(logits / temperature).",
                     temperature_ignored),
        KnownMistake("softmax over the wrong axis",
                     "Your probabilities sum to one down the first axis. Each row (the last axis, one entry per "
                     "vocabulary token) is one distribution: softmax(..., dim=-1).",
                     temperature_wrong_axis),
        KnownMistake("probabilities raised to 1/T, not renormalised",
                     "You raise the probabilities to the power 1/T. That is the right shape (p ** (1/T) is "
                     "proportional to softmax(logits / T)) but the rows no longer sum to one: divide by their sum, "
                     "or simply take softmax(logits / T).",
                     temperature_power_not_renormalised),
        KnownMistake("temperature squared",
                     "You divide the logits by T twice (T ** 2). Divide once: softmax(logits / temperature).",
                     temperature_squared),
        KnownMistake("no max subtraction",
                     "You compute exp(logits / T) directly. At a low temperature logits / T reach the hundreds and "
                     "exp overflows (inf / inf = nan). Subtract each row's maximum first, or reuse your stable "
                     "softmax.",
                     temperature_unstable),
        KnownMistake("float64 instead of float32",
                     "Your output is float64 (double). "
                     "The expected result is float32, like the inputs: do not call .double() or build tensors with "
                     "dtype=torch.float64 / from numpy (numpy's default is float64); if you converted on purpose, "
                     "convert back with .float().",
                     temperature_float64),
        KnownMistake("divided by sqrt(T) instead of T",
                     "You divide the logits by the square root of the temperature. The temperature divides the "
                     "logits directly: softmax(logits / T) (the square root belongs to attention's sqrt(d_k)).",
                     temperature_square_root),
        KnownMistake("log-probabilities instead of probabilities",
                     "Your values are negative: you return log-probabilities (log_softmax). The task asks for the "
                     "probabilities themselves, softmax(logits / T), each between 0 and 1.",
                     temperature_log_probs),
        KnownMistake("temperature in the numerator only",
                     "You divide by T in exp(z / T) but not in the sum below it, sum(exp(z)). Both must use the same "
                     "z / T: softmax(logits / T) = exp(z / T) / sum(exp(z / T)).",
                     temperature_numerator_only),
        KnownMistake("softmax over dim=1",
                     "Your softmax runs over dim=1. That is the vocabulary axis only for 2-D logits; for a (B, T, V) "
                     "batch it is the positions. Use dim=-1, the last axis, whatever the number of dimensions.",
                     temperature_dim_one),
        KnownMistake("greedy one-hot below T = 1",
                     "You return a one-hot of the argmax whenever T < 1. A temperature below 1 only SHARPENS the "
                     "distribution; it becomes one-hot only in the limit T -> 0. Compute softmax(logits / T) for "
                     "every T > 0.",
                     temperature_greedy_when_cold),
        KnownMistake("temperature clamped",
                     "You clamp the temperature (max(T, 0.1)), so every T below the limit gives the same "
                     "distribution. Divide by T itself; a stable softmax (subtract the row's max of logits / T) "
                     "handles small temperatures without overflow.",
                     temperature_clamped),
        KnownMistake("sum over the whole tensor",
                     "You divide by the sum over the WHOLE tensor, so no row sums to one (and exp(logits / T) "
                     "overflows at low T). Each row is its own distribution: sum over dim=-1 with keepdim=True, "
                     "after subtracting the row's max.",
                     temperature_global_sum),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 02.sample_next_token
# ---------------------------------------------------------------------------------------------------


def sample_next_token(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Draw one token id per row by inverse-CDF sampling.

    ``p = softmax(logits / T)`` (B, V); one uniform number per row ``u ~ U[0, 1)`` drawn with
    ``torch.rand(B, generator=generator)``; the token is the first index ``i`` whose cumulative
    probability ``p_0 + ... + p_i`` exceeds ``u``. Returns a LongTensor of shape (B,).
    """
    probs = S.softmax_with_temperature(logits, temperature, dim=-1)  # (B, V)
    u = torch.rand(probs.shape[0], generator=generator)  # (B,)
    cdf = probs.cumsum(dim=-1)  # (B, V), last entry ~ 1
    idx = (cdf <= u.unsqueeze(-1)).sum(dim=-1)  # (B,) number of entries not yet past u
    return idx.clamp(max=probs.shape[-1] - 1)  # guard against cdf[-1] = 0.99999 < u


def sample_greedy(logits, temperature, generator):
    return logits.argmax(dim=-1)


def sample_off_by_one(logits, temperature, generator):
    return (sample_next_token(logits, temperature, generator) - 1).clamp(min=0)


def sample_temperature_multiplied(logits, temperature, generator):
    return sample_next_token(logits * temperature * temperature, temperature, generator)


def sample_temperature_ignored(logits, temperature, generator):
    return sample_next_token(logits, 1.0, generator)


def sample_float_ids(logits, temperature, generator):
    return sample_next_token(logits, temperature, generator).float()


def sample_counts_past_u(logits, temperature, generator):
    probs = S.softmax_with_temperature(logits, temperature, dim=-1)  # (B, V)
    u = torch.rand(probs.shape[0], generator=generator)  # (B,)
    return (probs.cumsum(dim=-1) > u.unsqueeze(-1)).sum(dim=-1).clamp(max=probs.shape[-1] - 1)


def sample_one_u_for_all_rows(logits, temperature, generator):
    probs = S.softmax_with_temperature(logits, temperature, dim=-1)  # (B, V)
    u = torch.rand(1, generator=generator)  # ONE number for the whole batch
    return (probs.cumsum(dim=-1) <= u).sum(dim=-1).clamp(max=probs.shape[-1] - 1)


def sample_unnormalised(logits, temperature, generator):
    weights = torch.exp(logits / temperature)  # not divided by the sum
    u = torch.rand(weights.shape[0], generator=generator)
    idx = (weights.cumsum(dim=-1) <= u.unsqueeze(-1)).sum(dim=-1)
    return idx.clamp(max=weights.shape[-1] - 1)


def sample_u_per_entry(logits, temperature, generator):
    probs = S.softmax_with_temperature(logits, temperature, dim=-1)  # (B, V)
    u = torch.rand(probs.shape, generator=generator)  # (B, V): one number per ENTRY
    return (probs.cumsum(dim=-1) <= u).sum(dim=-1).clamp(max=probs.shape[-1] - 1)


def sample_cumsum_over_batch(logits, temperature, generator):
    probs = S.softmax_with_temperature(logits, temperature, dim=-1)  # (B, V)
    u = torch.rand(probs.shape[0], generator=generator)
    return (probs.cumsum(dim=0) <= u.unsqueeze(-1)).sum(dim=-1).clamp(max=probs.shape[-1] - 1)


def sample_one_minus_u(logits, temperature, generator):
    probs = S.softmax_with_temperature(logits, temperature, dim=-1)  # (B, V)
    u = 1.0 - torch.rand(probs.shape[0], generator=generator)  # as uniform as u, but another number
    return (probs.cumsum(dim=-1) <= u.unsqueeze(-1)).sum(dim=-1).clamp(max=probs.shape[-1] - 1)


def sample_extra_draw(logits, temperature, generator):
    torch.rand(1, generator=generator)  # a test draw, which moves the generator on
    return sample_next_token(logits, temperature, generator)


def sample_probabilities_divided(logits, temperature, generator):
    probs = S.softmax(logits, dim=-1) / temperature  # divided after the softmax: no longer sums to one
    u = torch.rand(probs.shape[0], generator=generator)
    return (probs.cumsum(dim=-1) <= u.unsqueeze(-1)).sum(dim=-1).clamp(max=probs.shape[-1] - 1)

def _sampling_cases(gen, hidden):
    """Flat-ish distributions (no token much above 1/2), so that a sample is rarely the argmax: "greedy",
    "ignores the generator" and "the wrong u" give clearly different tokens."""
    cases = []
    n = 4 if hidden else 2
    for i in range(n):
        logits = _randn(gen, 64, 6, scale=1.0)
        t = [1.0, 0.5, 2.0, 1.3][i]
        seed = _seed(gen)
        cases.append(Case((logits, t, GeneratorSeed(seed)), {}, "sampling", f"64 rows, temperature {t}"))
    for B, V in [(32, 50)] + ([(16, 200)] if hidden else []):
        logits = _randn(gen, B, V, scale=0.5) + 1.5 * torch.eye(B, V)
        cases.append(Case((logits, 0.8, GeneratorSeed(_seed(gen))), {}, "large vocabulary",
                          f"{B} rows, vocabulary {V}, temperature 0.8"))
    # one row (B = 1): the result is still a tensor of shape (1,) (a .squeeze() would make it 0-d)
    cases.append(Case((_randn(gen, 1, 6), 1.0, GeneratorSeed(_seed(gen))), {}, "sampling",
                      "a single row (1, 6): one token, shape (1,)"))
    return cases


def _same_seed_same_tokens(case, out, derived) -> bool:
    return bool(torch.equal(torch.as_tensor(derived[0]), torch.as_tensor(out)))


def _call_again(case):
    return [Case(case.args, case.kwargs, case.group, "the same call again, with a fresh generator of the same seed")]


def _in_range(case, out, derived) -> bool:
    V = case.args[0].shape[-1]
    return bool(((out >= 0) & (out < V)).all())


def sample_searchsorted(logits, temperature, generator):
    p = S.softmax(logits / temperature, dim=-1)
    u = torch.rand(p.shape[0], 1, generator=generator)  # (B, 1): the same draws as torch.rand(B)
    return torch.searchsorted(p.cumsum(dim=-1), u, right=True).squeeze(-1).clamp(max=p.shape[-1] - 1)


def sample_loop(logits, temperature, generator):
    p = S.softmax(logits / temperature, dim=-1)
    u = torch.rand(p.shape[0], generator=generator)
    ids = []
    for row, u_b in zip(p, u.tolist()):  # one row at a time
        total, i = 0.0, 0
        for i, p_i in enumerate(row.tolist()):
            total += p_i
            if total > u_b:
                break
        ids.append(i)
    return torch.tensor(ids, dtype=torch.long)


def sample_int32_ids(logits, temperature, generator):
    return sample_next_token(logits, temperature, generator).int()


def sample_kept_column(logits, temperature, generator):
    return sample_next_token(logits, temperature, generator).unsqueeze(-1)


SAMPLE = Exercise(
    id="02.sample_next_token", notebook=NOTEBOOK, function="sample_next_token", points=3,
    title="Sampling the next token with a generator", minutes=15,
    alternatives=[Alternative("torch.searchsorted", sample_searchsorted),
                  Alternative("a Python loop per row", sample_loop)],
    reference=sample_next_token, make_cases=_sampling_cases, forbidden=[SAMPLING_BUILTINS],
    properties=[
        Property("token ids in range", "every token id must lie in [0, V)", _in_range),
        Property("same seed, same tokens",
                 "called twice with generators of the same seed, your function returned different tokens: it "
                 "draws random numbers from somewhere other than `generator` (PyTorch's global random state, numpy "
                 "or Python's random module). Draw only with the generator: u = torch.rand(B, generator=generator)",
                 _same_seed_same_tokens, _call_again, fires_for=("ignores the generator",)),
    ],
    mistakes=[
        KnownMistake("greedy instead of sampling",
                     "You return the most likely token. Sampling draws u = torch.rand(B, generator=generator) "
                     "and picks the first token whose cumulative probability exceeds u.",
                     sample_greedy),
        KnownMistake("off by one",
                     "Your ids are one too small: you return the last index whose cumulative probability "
                     "is still below u, not the first one that exceeds it.",
                     sample_off_by_one),
        KnownMistake("temperature multiplied instead of divided",
                     "You sample from softmax(logits * T). Divide the logits by the temperature.",
                     sample_temperature_multiplied),
        KnownMistake("probabilities not normalised",
                     "You accumulate exp(logits / T) without dividing by their sum, so the cumulative sum "
                     "is not a CDF that ends at 1. Take the softmax first.",
                     sample_unnormalised),
        KnownMistake("one u for all rows",
                     "You draw ONE uniform number for the whole batch, so every row uses the same u. Draw one per "
                     "row: u = torch.rand(B, generator=generator).",
                     sample_one_u_for_all_rows),
        KnownMistake("temperature ignored",
                     "You sample from softmax(logits), whatever the temperature. Divide the logits by it first: "
                     "softmax(logits / temperature).",
                     sample_temperature_ignored),
        KnownMistake("token ids as floats",
                     "Your token ids are floats (a sum of a float mask). Token ids index the vocabulary: return a "
                     "LongTensor, e.g. (cdf <= u[:, None]).sum(dim=-1) of a bool tensor, or .long().",
                     sample_float_ids),
        KnownMistake("counted the entries past u",
                     "You count the cumulative probabilities that EXCEED u. The token is the number of entries that "
                     "are still <= u (the first index past u): (cdf <= u.unsqueeze(-1)).sum(dim=-1).",
                     sample_counts_past_u),
        KnownMistake("token ids as int32",
                     "Your token ids are int32 (.int() or dtype=torch.int). Token ids in PyTorch are int64 "
                     "(torch.long): indexing an embedding and the loss expect them; use .long().",
                     sample_int32_ids),
        KnownMistake("shape (B, 1) instead of (B,)",
                     "Your output has shape (B, 1): one column too many (it comes from torch.rand(B, 1) or "
                     "from searchsorted on a (B, 1) tensor). Return one id per row, shape (B,): .squeeze(-1).",
                     sample_kept_column),
        KnownMistake("one u per vocabulary entry",
                     "You draw a (B, V) tensor of uniform numbers, one per entry. Inverse-CDF sampling compares the "
                     "whole cumulative row with ONE number per row: u = torch.rand(B, generator=generator), then "
                     "(cdf <= u.unsqueeze(-1)).sum(dim=-1).",
                     sample_u_per_entry),
        KnownMistake("cumulative sum over the batch",
                     "You take the cumulative sum over dim=0, down the batch. The CDF of each row runs along the "
                     "vocabulary: probs.cumsum(dim=-1).",
                     sample_cumsum_over_batch),
        KnownMistake("1 - u instead of u",
                     "You use 1 - u (walking the CDF from the last token does the same). That is just as uniform, "
                     "but it picks other tokens than everybody else: so that "
                     "samples are comparable (and gradeable), the task fixes the rule: u = torch.rand(B, "
                     "generator=generator) and the first token whose cumulative probability exceeds u.",
                     sample_one_minus_u),
        KnownMistake("an extra draw before u",
                     "Your function draws from the generator once more before u (a test torch.rand(...) call, "
                     "say), so u comes from a later part of the stream than everybody else's. So that samples are "
                     "comparable (and gradeable), draw exactly u = torch.rand(B, generator=generator) and nothing "
                     "else.",
                     sample_extra_draw),
        KnownMistake("probabilities divided by the temperature",
                     "You divide the probabilities by T after the softmax, so they no longer sum to one and the CDF "
                     "is wrong. Divide the LOGITS: softmax(logits / T).",
                     sample_probabilities_divided),
    ],
)


# ---------------------------------------------------------------------------------------------------
# 02.cross_entropy
# ---------------------------------------------------------------------------------------------------


def ce_no_log(logits, targets):
    p = S.softmax(logits, dim=-1)
    return -p.gather(-1, targets.unsqueeze(-1)).mean()


def ce_sum(logits, targets):
    logp = S.log_softmax(logits, dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).sum()


def ce_log_of_softmax_unstable(logits, targets):
    e = torch.exp(logits)
    p = e / e.sum(dim=-1, keepdim=True)
    return -torch.log(p.gather(-1, targets.unsqueeze(-1))).mean()


def ce_wrong_sign(logits, targets):
    logp = S.log_softmax(logits, dim=-1)
    return logp.gather(-1, targets.unsqueeze(-1)).mean()


def ce_all_columns(logits, targets):
    logp = S.log_softmax(logits, dim=-1)
    return -logp[:, targets].mean()  # (N, N): every row's log-probability of EVERY example's target


def ce_log2(logits, targets):
    logp = S.log_softmax(logits, dim=-1)
    return -(logp.gather(-1, targets.unsqueeze(-1)) / math.log(2)).mean()


def ce_max_not_added_back(logits, targets):
    m = logits.amax(dim=-1, keepdim=True)
    logp = logits - torch.log(torch.exp(logits - m).sum(dim=-1, keepdim=True))  # should also subtract m
    return -logp.gather(-1, targets.unsqueeze(-1)).mean()


def ce_lse_wrong_axis(logits, targets):
    logp = logits - torch.logsumexp(logits, dim=0, keepdim=True)
    return -logp.gather(-1, targets.unsqueeze(-1)).mean()


def ce_targets_ignored(logits, targets):
    return -S.log_softmax(logits, dim=-1).mean()


def ce_log_of_stable_softmax(logits, targets):
    p = S.softmax(logits, dim=-1)  # stable, but a tiny probability underflows towards 0
    return -torch.log(p.gather(-1, targets.unsqueeze(-1))).mean()


def ce_argmax(logits, targets):
    logp = S.log_softmax(logits, dim=-1)
    return -logp.max(dim=-1).values.mean()


def _ce_cases(gen, hidden):
    cases = []
    shapes = [(4, 5), (16, 10)] + ([(64, 100), (7, 3)] if hidden else [])
    for n, v in shapes:
        cases.append(Case((_randn(gen, n, v, scale=2.0), torch.randint(0, v, (n,), generator=gen)), {},
                          "basic", f"{n} examples, {v} classes"))
    n, v = (32, 20) if hidden else (6, 8)
    cases.append(Case((_randn(gen, n, v, scale=300.0), torch.randint(0, v, (n,), generator=gen)), {},
                      "large logits", "logits of size ~1000"))
    # every logit near -100: exp underflows to float32's tiny "subnormal" numbers, exact only after the shift
    for n, v in [(5, 6)] + ([(12, 9)] if hidden else []):
        cases.append(Case((_randn(gen, n, v) - 100.0, torch.randint(0, v, (n,), generator=gen)), {},
                          "large logits", "logits near -100 (exp underflows)"))
    # targets ~100 below their row's maximum: p(target) ~ e^-100 is too small for float32's precision
    for n, v in [(4, 5)] + ([(10, 7)] if hidden else []):
        logits = _randn(gen, n, v)
        targets = torch.randint(0, v, (n,), generator=gen)
        logits[torch.arange(n), targets] -= 100.0
        cases.append(Case((logits, targets), {}, "large logits", "targets about 100 below the row's largest logit"))
    return cases


def ce_mean_over_table(logits, targets):
    logp = S.log_softmax(logits, dim=-1)
    one_hot = (targets.unsqueeze(-1) == torch.arange(logits.shape[-1])).float()  # (N, V)
    return -(one_hot * logp).mean()  # divided by N * V, not by N


def ce_naive_logsumexp(logits, targets):
    lse = torch.log(torch.exp(logits).sum(dim=-1))  # exp overflows for logits near 1000
    return (lse - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)).mean()


def ce_rows_by_target(logits, targets):
    return -S.log_softmax(logits, dim=-1)[targets].mean()  # picks ROWS numbered by the targets


def ce_lse_missing(logits, targets):
    shifted = logits - logits.amax(dim=-1, keepdim=True)  # the max subtracted, the log-sum-exp forgotten
    return -shifted.gather(-1, targets.unsqueeze(-1)).mean()

def ce_one_hot(logits, targets):
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return -(torch.nn.functional.one_hot(targets, logits.shape[-1]) * logp).sum(dim=-1).mean()


def ce_loop(logits, targets):
    total = torch.zeros(())
    for row, t in zip(logits, targets):
        m = row.max()
        total = total + (m + torch.log(torch.exp(row - m).sum()) - row[t])  # -log p_t
    return total / len(targets)


def ce_float64(logits, targets):
    return S.cross_entropy(logits.double(), targets)


def ce_per_example(logits, targets):
    picked = logits.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,)
    return torch.logsumexp(logits, dim=-1) - picked  # (N,): the mean is missing


def ce_shape_one(logits, targets):
    return S.cross_entropy(logits, targets).reshape(1)


CROSS_ENTROPY = Exercise(
    id="02.cross_entropy", notebook=NOTEBOOK, function="cross_entropy", points=3,
    title="Cross-entropy loss", minutes=10,
    alternatives=[Alternative("one-hot targets times log-softmax", ce_one_hot),
                  Alternative("a loop over the examples", ce_loop)],
    reference=S.cross_entropy, make_cases=_ce_cases, atol=1e-4, rtol=1e-5,
    forbidden=[LOSS_BUILTINS],
    properties=[
        Property("finite", "your loss is nan or inf although every logit is finite: an exp overflowed, or a "
                 "probability underflowed to 0 before the log. Use the log-softmax identity "
                 "log p_i = (x_i - m) - log sum_j exp(x_j - m) with m the row's maximum",
                 lambda case, out, derived: bool(torch.isfinite(torch.as_tensor(out, dtype=torch.float64)).all()),
                 fires_for=("log of an unstable softmax", "log of a softmax", "log-sum-exp without the max")),
    ],
    mistakes=[
        KnownMistake("log missing",
                     "You average the probability of the target, not its log. The loss is "
                     "-mean(log p[target]).", ce_no_log),
        KnownMistake("sum instead of mean",
                     "Your loss is the sum over examples; the convention (and F.cross_entropy) is the mean.",
                     ce_sum),
        KnownMistake("log of an unstable softmax",
                     "You take log(softmax(x)) with a softmax that overflows for large logits (nan or inf). "
                     "Use the log-softmax identity: log p_i = (x_i - m) - log sum_j exp(x_j - m).",
                     ce_log_of_softmax_unstable),
        KnownMistake("wrong sign",
                     "Your loss is negative: it is the mean log-probability. Cross-entropy is its negative.",
                     ce_wrong_sign),
        KnownMistake("logp[:, targets] instead of logp[range(N), targets]",
                     "You index logp[:, targets], an (N, N) table: every example's log-probability of EVERY "
                     "example's target. Pick one entry per row: logp[torch.arange(N), targets] (or "
                     "logp.gather(-1, targets.unsqueeze(-1))).",
                     ce_all_columns),
        KnownMistake("log base 2",
                     "Your loss is in bits (log2). Cross-entropy in PyTorch, and in this course, uses the natural "
                     "log (nats): torch.log, or the log-softmax identity.",
                     ce_log2),
        KnownMistake("max not added back",
                     "Your log-softmax is x - log(sum(exp(x - m))): the shift m is missing. "
                     "log p_i = (x_i - m) - log sum_j exp(x_j - m).",
                     ce_max_not_added_back),
        KnownMistake("log-sum-exp over the wrong axis",
                     "Your log-sum-exp runs over the examples (dim=0). Each example's distribution is over the "
                     "classes: dim=-1.",
                     ce_lse_wrong_axis),
        KnownMistake("targets ignored (mean of all log-probabilities)",
                     "You average the log-probabilities of every class. The loss uses only each example's target: "
                     "-mean_n logp[n, targets[n]].",
                     ce_targets_ignored),
        KnownMistake("log of a softmax",
                     "You take log(softmax(x)). Even a stable softmax rounds a tiny probability (e^-100) to a "
                     "subnormal number or to 0, and log(0) = -inf. Compute the log-probabilities directly: "
                     "log p_i = (x_i - m) - log sum_j exp(x_j - m).",
                     ce_log_of_stable_softmax),
        KnownMistake("most likely class instead of the target",
                     "You take the log-probability of the most likely class; use the target's: "
                     "logp.gather(-1, targets.unsqueeze(-1)) or logp[range(N), targets].",
                     ce_argmax),
        KnownMistake("float64 instead of float32",
                     "Your output is float64 (double). "
                     "The expected result is float32, like the inputs: do not call .double() or build tensors with "
                     "dtype=torch.float64 / from numpy (numpy's default is float64); if you converted on purpose, "
                     "convert back with .float().",
                     ce_float64),
        KnownMistake("one loss per example, mean missing",
                     "You return N numbers, one loss per example. The loss is ONE number: the mean over the "
                     "examples, (...).mean(), a tensor of shape ().",
                     ce_per_example),
        KnownMistake("shape (1,) instead of a scalar",
                     "Your loss has shape (1,) (from keepdim=True or a reshape). The loss is a 0-d tensor, "
                     "shape (): take the mean without keepdim, or .squeeze() it.",
                     ce_shape_one),
        KnownMistake("mean over the whole (N, V) table",
                     "You average one_hot * logp over ALL N * V entries, which divides the loss by V as well. Sum "
                     "over the classes first, then average over the examples: -(one_hot * logp).sum(dim=-1).mean().",
                     ce_mean_over_table),
        KnownMistake("log-sum-exp without the max",
                     "You compute log(sum(exp(logits))) directly; for logits near 1000 exp overflows to inf. Shift "
                     "first: log sum exp(x) = m + log sum exp(x - m) with m the row's maximum (torch.logsumexp does "
                     "exactly this).",
                     ce_naive_logsumexp),
        KnownMistake("logp[targets] (rows) instead of logp[range(N), targets]",
                     "You index logp[targets]: that picks whole ROWS numbered by the targets. Pick one entry per "
                     "row, the target's column: logp[torch.arange(N), targets] or "
                     "logp.gather(-1, targets.unsqueeze(-1)).",
                     ce_rows_by_target),
        KnownMistake("log-sum-exp missing",
                     "Your log-probabilities are x - max(x): the shift is there, the normaliser is not. "
                     "log p_i = (x_i - m) - log sum_j exp(x_j - m).",
                     ce_lse_missing),
    ],
)


# ---------------------------------------------------------------------------------------------------
# Forgetting the generator (issue 11, 3.): during a graded call PyTorch's global random state is seeded
# from the call (course_lib.exercises.rng), the same inline and in the grader, so drawing from it gives
# known tokens, and the mistake can be named.
# ---------------------------------------------------------------------------------------------------


def sample_ignores_generator(logits, temperature, generator):
    return sample_next_token(logits, temperature, None)  # torch.rand(B): PyTorch's global random state


def sample_seeded_inside(logits, temperature, generator):
    # torch.Generator().manual_seed(0), torch.manual_seed(0) + torch.rand(B) and generator.manual_seed(0) all
    # draw the same numbers: the stream of seed 0
    return sample_next_token(logits, temperature, torch.Generator().manual_seed(0))


SAMPLE.mistakes = tuple(SAMPLE.mistakes) + (
    KnownMistake("ignores the generator",
                 "Your u does not come from `generator`: torch.rand(B) without `generator=generator` draws from "
                 "PyTorch's global random state, so your tokens are not the ones everybody else (and the check) "
                 "gets, and the same seed does not give the same tokens twice. Pass `generator=generator` to every "
                 "random call: u = torch.rand(B, generator=generator).",
                 sample_ignores_generator),
    KnownMistake("seeded with 0 inside the function",
                 "Your u comes from a random stream seeded with 0 inside your function (torch.manual_seed(0), a new "
                 "torch.Generator().manual_seed(0), or generator.manual_seed(0)), so every call draws the same "
                 "numbers whatever generator it is given. The caller seeds the generator: use it as it is, and pass "
                 "`generator=generator` to every random call: u = torch.rand(B, generator=generator).",
                 sample_seeded_inside),
)

register(STABLE_SOFTMAX, TEMPERATURE, SAMPLE, CROSS_ENTROPY)
