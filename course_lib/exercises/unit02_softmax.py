"""Exercises of unit 02: softmax & sampling.

Each exercise lists the mistakes learners really make, as runnable buggy variants, so the check can
name them ("your output matches softmax without subtracting the max: exp(1000) overflows to inf").
"""

from __future__ import annotations

import torch

from .. import softmax as S
from .core import Case, Exercise, Forbidden, GeneratorSeed, KnownMistake, Property
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
    dim = case.kwargs.get("dim", -1)
    return bool(torch.allclose(out.sum(dim=dim), torch.ones(()), atol=1e-5))


# ---------------------------------------------------------------------------------------------------
# 02.stable_softmax
# ---------------------------------------------------------------------------------------------------


def softmax_no_max(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_wrong_axis(x, dim=-1):
    other = 0 if (dim % x.dim()) != 0 else x.dim() - 1
    return S.softmax(x, dim=other)


def softmax_global_max(x, dim=-1):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=dim, keepdim=True)


def softmax_global_sum(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum()


def _softmax_cases(gen, hidden):
    n = 3 if hidden else 1
    cases = [Case((torch.tensor([1.0, 2.0, 3.0]),), {}, "basic", "a vector of 3 logits")]
    for _ in range(n):
        cases.append(Case((_randn(gen, 4, 6),), {}, "basic", "a batch of 4 rows"))
    cases.append(Case((_randn(gen, 5, 3),), {"dim": 0}, "axis", "dim=0: normalise each column"))
    cases.append(Case((_randn(gen, 2, 3, 4),), {"dim": 1}, "axis", "a 3-D tensor with dim=1"))
    if hidden:
        cases.append(Case((_randn(gen, 3, 7, 5, scale=3.0),), {"dim": -2}, "axis", "dim=-2"))
    big = torch.stack([_randn(gen, 5, scale=5.0) + 1000.0, _randn(gen, 5, scale=5.0) - 50.0])
    cases.append(Case((big,), {}, "large", "logits near 1000 (overflow)"))
    if hidden:
        cases.append(Case((_randn(gen, 8, 50, scale=400.0),), {}, "large", "logits of size ~1000"))
        cases.append(Case((torch.tensor([[1e4, -1e4, 0.0]]),), {}, "large", "logits of +-1e4"))
    return cases


STABLE_SOFTMAX = Exercise(
    id="02.stable_softmax", notebook=NOTEBOOK, function="stable_softmax", points=3,
    title="Numerically stable softmax", minutes=10,
    reference=S.softmax, make_cases=_softmax_cases, atol=1e-6, rtol=1e-5,
    forbidden=[SOFTMAX_BUILTINS],
    properties=[Property("rows sum to one", "the probabilities along `dim` should add up to 1",
                         _rows_sum_to_one)],
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


def _temperature_cases(gen, hidden):
    temps = [0.5, 2.0] + ([0.1, 1.0, 5.0] if hidden else [])
    cases = []
    for t in temps:
        cases.append(Case((_randn(gen, 3, 8, scale=2.0), t), {}, "temperatures", f"temperature {t}"))
    cases.append(Case((_randn(gen, 2, 4, 10), 0.7), {}, "batched", "a (2, 4, 10) batch, temperature 0.7"))
    return cases


TEMPERATURE = Exercise(
    id="02.softmax_with_temperature", notebook=NOTEBOOK, function="softmax_with_temperature", points=2,
    title="Softmax with a temperature", minutes=5,
    reference=S.softmax_with_temperature, make_cases=_temperature_cases, atol=1e-6, rtol=1e-5,
    properties=[Property("rows sum to one", "probabilities over the vocabulary should add up to 1",
                         _rows_sum_to_one)],
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


def sample_unnormalised(logits, temperature, generator):
    weights = torch.exp(logits / temperature)  # not divided by the sum
    u = torch.rand(weights.shape[0], generator=generator)
    idx = (weights.cumsum(dim=-1) <= u.unsqueeze(-1)).sum(dim=-1)
    return idx.clamp(max=weights.shape[-1] - 1)


def _sampling_cases(gen, hidden):
    cases = []
    n = 4 if hidden else 2
    for i in range(n):
        logits = _randn(gen, 64, 6, scale=1.5)
        t = [1.0, 0.5, 2.0, 1.3][i]
        seed = _seed(gen)
        cases.append(Case((logits, t, GeneratorSeed(seed)), {}, "sampling", f"64 rows, temperature {t}"))
    logits = _randn(gen, 32, 50, scale=0.5) + 4 * torch.eye(32, 50)
    seed = _seed(gen)
    cases.append(Case((logits, 0.8, GeneratorSeed(seed)), {}, "large vocabulary", "32 rows, vocabulary 50"))
    return cases


def _in_range(case, out, derived) -> bool:
    V = case.args[0].shape[-1]
    return bool(((out >= 0) & (out < V)).all())


SAMPLE = Exercise(
    id="02.sample_next_token", notebook=NOTEBOOK, function="sample_next_token", points=3,
    title="Sampling the next token with a generator", minutes=15,
    reference=sample_next_token, make_cases=_sampling_cases, forbidden=[SAMPLING_BUILTINS],
    properties=[Property("token ids in range", "every token id must lie in [0, V)", _in_range)],
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
    return cases


CROSS_ENTROPY = Exercise(
    id="02.cross_entropy", notebook=NOTEBOOK, function="cross_entropy", points=3,
    title="Cross-entropy loss", minutes=10,
    reference=S.cross_entropy, make_cases=_ce_cases, atol=1e-4, rtol=1e-5,
    forbidden=[LOSS_BUILTINS],
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
        KnownMistake("most likely class instead of the target",
                     "You take the log-probability of the most likely class; use the target's: "
                     "logp.gather(-1, targets.unsqueeze(-1)) or logp[range(N), targets].",
                     ce_argmax),
    ],
)

register(STABLE_SOFTMAX, TEMPERATURE, SAMPLE, CROSS_ENTROPY)
