"""Tests of the tests for unit 10's T5 exercises (10.relative_position_bucket, 10.t5_attention), beyond tests/test_exercises.py:
right answers written differently pass on public and hidden cases, every known mistake is told apart from
the others, and the public cases catch whatever the hidden ones catch, group by group."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.exercises import get, run_local
from course_lib.exercises.core import PASSED, compare
from course_lib.exercises import unit10_t5 as t5ex

EX = get("10.relative_position_bucket")
ATT = get("10.t5_attention")
BOTH = [EX, ATT]
SEEDS = [0, 1, 2, 3, 12345]


def vectorised_float64(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """A learner's version: float64, torch.floor, log2 (the ratio of logs does not depend on the base)."""
    rel = relative_position.to(torch.int64)
    per_side = num_buckets // 2 if bidirectional else num_buckets
    offset = torch.where(rel > 0, per_side, 0) if bidirectional else torch.zeros_like(rel)
    n = rel.abs() if bidirectional else torch.clamp(-rel, min=0)
    exact = per_side // 2
    steps = torch.floor(torch.log2(n.double().clamp(min=1) / exact) / math.log2(max_distance / exact)
                        * (per_side - exact)).to(torch.int64)
    log_bucket = torch.minimum(exact + steps, torch.tensor(per_side - 1))
    return offset + torch.where(n < exact, n, log_bucket)


def bucketize_thresholds(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """A learner's version: the distances where the log part steps up, e * (max_distance / e) ** (k / (B - e)),
    rounded up, then torch.bucketize: integer thresholds instead of a floored logarithm per distance."""
    rel = relative_position.long()
    per_side = num_buckets // 2 if bidirectional else num_buckets
    exact = per_side // 2
    n = rel.abs() if bidirectional else (-rel).clamp(min=0)
    steps = per_side - exact
    edges = torch.tensor([math.ceil(exact * (max_distance / exact) ** (k / steps)) for k in range(1, steps)])
    bucket = torch.where(n < exact, n, (exact + torch.bucketize(n, edges, right=True)).clamp(max=per_side - 1))
    return bucket + (rel > 0).long() * per_side if bidirectional else bucket


RIGHT = [a.fn for a in EX.alternatives] + [vectorised_float64, bucketize_thresholds]


@pytest.mark.parametrize("ex", BOTH, ids=lambda e: e.id)
def test_the_exercise_has_alternatives_and_enough_mistakes(ex):
    assert len(ex.alternatives) >= 2 and len(ex.mistakes) >= 3


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alt", ATT.alternatives, ids=lambda a: a.name)
def test_attention_alternatives_pass(alt, seed):
    for hidden in (False, True):
        report = run_local(ATT, alt.fn, seed=seed, hidden=hidden)
        assert report.status == PASSED, (alt.name, hidden, report.message)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fn", RIGHT, ids=lambda f: f.__name__)
def test_right_answers_written_differently_pass(fn, seed):
    for hidden in (False, True):
        report = run_local(EX, fn, seed=seed, hidden=hidden)
        assert report.status == PASSED, (fn.__name__, hidden, report.message)


def _outputs(fn, cases):
    return [fn(*c.args, **c.kwargs) for c in cases]


@pytest.mark.parametrize("ex", BOTH, ids=lambda e: e.id)
def test_every_mistake_is_told_apart_from_every_other(ex):
    cases = ex.cases(hidden=False)
    outs = {m.name: _outputs(m.fn, cases) for m in ex.mistakes}
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert any(compare(x, y) is not None for x, y in zip(outs[a], outs[b])), (a, b)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ex", BOTH, ids=lambda e: e.id)
def test_public_cases_catch_what_hidden_cases_catch_group_by_group(ex, seed):
    public, hidden = ex.cases(hidden=False), ex.cases(seed=seed, hidden=True)
    ref = ex.reference
    assert {c.group for c in hidden} == {c.group for c in public}
    for m in ex.mistakes:
        for group in {c.group for c in hidden}:
            fails_hidden = any(compare(ref(*c.args), m.fn(*c.args)) is not None for c in hidden if c.group == group)
            fails_public = any(compare(ref(*c.args), m.fn(*c.args)) is not None for c in public if c.group == group)
            assert fails_public or not fails_hidden, (m.name, group)


@pytest.mark.parametrize("ex, mistake", [(e, m) for e in BOTH for m in e.mistakes], ids=lambda x: getattr(x, "name", ""))
def test_each_mistake_is_named_by_the_inline_check(ex, mistake):
    report = run_local(ex, mistake.fn, allow_reference=True)
    assert report.status != PASSED and report.mistake == mistake.name, (report.mistake, report.message)


def test_float_output_and_other_wrong_answers_are_explained():
    as_float = run_local(EX, lambda *a: EX.reference(*a).float(), allow_reference=True)
    assert as_float.status != PASSED and "dtype" in as_float.message
    # a sign error in the encoder only is "halves swapped", not "query minus key"
    def encoder_sign_error(rel, bidirectional=True, num_buckets=32, max_distance=128):
        return EX.reference(-rel if bidirectional else rel, bidirectional, num_buckets, max_distance)
    assert run_local(EX, encoder_sign_error, allow_reference=True).mistake == "encoder halves swapped"
    # `n <= max_exact` instead of `<`: still right (distance max_exact gets bucket max_exact either way)
    def less_or_equal(rel, bidirectional=True, num_buckets=32, max_distance=128):
        per_side = num_buckets // 2 if bidirectional else num_buckets
        n = rel.abs() if bidirectional else (-rel).clamp(min=0)
        side = (rel > 0).long() * per_side if bidirectional else 0
        exact = per_side // 2
        big = exact + (torch.log(n.clamp(min=1).float() / exact) / math.log(max_distance / exact)
                       * (per_side - exact)).long()
        return side + torch.where(n <= exact, n, big.clamp(max=per_side - 1))
    assert run_local(EX, less_or_equal).status == PASSED
    # a right half that starts at distance 0 (rel >= 0): one position wrong, and named (a mistake of its own)
    def right_half_includes_zero(rel, bidirectional=True, num_buckets=32, max_distance=128):
        out = EX.reference(rel, bidirectional, num_buckets, max_distance)
        return out + ((rel == 0).long() * (num_buckets // 2) if bidirectional else 0)
    report = run_local(EX, right_half_includes_zero, allow_reference=True)
    assert report.status != PASSED and report.mistake == "j - i = 0 put in the upper half"


def test_input_is_left_unchanged_by_the_reference():
    rel = torch.arange(-20, 21)
    before = rel.clone()
    EX.reference(rel, True, 8, 12)
    assert torch.equal(rel, before)


def test_ready_made_attention_is_forbidden():
    import torch.nn.functional as F

    def sdpa(q, k, v, position_bias, mask=None):
        bias = position_bias if mask is None else position_bias.masked_fill(~mask, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)

    assert run_local(ATT, sdpa).status == "forbidden"


# The log-spaced bucket floors a float. Where its exact value is a whole number (T5's encoder at distance 64:
# ln 8 / ln 16 * 8 = 6) float32 and float64 may round to different sides; the cases leave those distances out.
ROUNDINGS = [t5ex.float64_scale_first, t5ex.float64_log_difference, t5ex.loop_with_math_log, vectorised_float64]


def _log_difference(rel, bidirectional, num_buckets, max_distance, dtype):
    """ln(n) - ln(e) over ln(max_distance) - ln(e), every logarithm taken in ``dtype``."""
    per_side = num_buckets // 2 if bidirectional else num_buckets
    exact = per_side // 2
    n = rel.abs() if bidirectional else (-rel).clamp(min=0)
    N, E, M = (torch.log(torch.as_tensor(v, dtype=dtype)) for v in (n.clamp(min=1), exact, max_distance))
    steps = ((N - E) / (M - E) * (per_side - exact)).floor().long()
    bucket = torch.where(n < exact, n, (exact + steps).clamp(max=per_side - 1))
    return bucket + (rel > 0).long() * per_side if bidirectional else bucket


def float32_log_difference(*args):
    return _log_difference(*args, dtype=torch.float32)


def float64_all_logs_in_tensors(*args):
    return _log_difference(*args, dtype=torch.float64)


ROUNDINGS += [float32_log_difference, float64_all_logs_in_tensors]


@pytest.mark.parametrize("seed", SEEDS)
def test_no_case_sits_on_a_floor_boundary_float32_and_float64_agree_on_every_case(seed):
    for hidden in (False, True):
        for case in EX.cases(seed=seed, hidden=hidden):
            expected = EX.reference(*case.args)
            for fn in ROUNDINGS:
                assert torch.equal(fn(*case.args), expected), (case.note, fn.__name__)


def test_floor_boundaries_are_where_the_float_types_round_apart():
    configs = {(c.args[1], c.args[2], c.args[3]) for c in EX.cases(seed=0, hidden=True)}
    split_somewhere = set()
    for bidirectional, num_buckets, max_distance in configs:
        boundaries = t5ex.floor_boundaries(bidirectional, num_buckets, max_distance)
        rel = -torch.arange(3 * max_distance)  # every distance, in the lower half / the past
        expected = EX.reference(rel, bidirectional, num_buckets, max_distance)
        for fn in ROUNDINGS:
            apart = (fn(rel, bidirectional, num_buckets, max_distance) != expected).nonzero().flatten().tolist()
            assert set(apart) <= set(boundaries), (bidirectional, num_buckets, max_distance, apart)
            split_somewhere |= {(bidirectional, num_buckets, max_distance, d) for d in apart}
    # the hazard is real: without the exclusion a float64 answer would lose points at T5's distance 64
    assert (True, 32, 128, 64) in split_somewhere
    assert t5ex.floor_boundaries(True, 32, 128) == [16, 32, 64]
    assert t5ex.floor_boundaries(False, 32, 128) == []
