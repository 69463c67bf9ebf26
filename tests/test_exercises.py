"""Tests of the tests: every exercise's checks catch what they claim to catch.

For every registered exercise: the reference passes (public and hidden cases), a stub is "not
attempted", every known mistake is caught *and named* on the public and the hidden cases, and an exercise
without known mistakes fails this suite.
"""

import pytest
import torch

from course_lib.exercises import all_exercises, run_local
from course_lib.exercises.core import FORBIDDEN, NOT_ATTEMPTED, PASSED, GeneratorSeed, ModuleInputs, compare

EXERCISES = all_exercises()
IDS = [ex.id for ex in EXERCISES]
HIDDEN_SEED = 12345


def _stub(*args, **kwargs):
    raise NotImplementedError("exercise: replace this line with your code")


def _stub_module(reference_cls):
    """What a learner's stub class is: the reference's parameters, and a forward that raises."""

    class Stub(reference_cls):
        def forward(self, *args, **kwargs):
            raise NotImplementedError("exercise: replace this line with your code")

    return Stub


def test_there_are_exercises_in_every_unit_file():
    assert len(EXERCISES) >= 4
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_exercise_has_known_mistakes(ex):
    assert len(ex.mistakes) >= 2, f"{ex.id} needs at least two known mistakes"
    names = [m.name for m in ex.mistakes]
    assert len(set(names)) == len(names), f"{ex.id}: duplicate mistake names"
    for m in ex.mistakes:
        assert len(m.message) > 30, f"{ex.id}: mistake {m.name!r} needs a message that explains the fix"


@pytest.mark.parametrize("hidden", [False, True], ids=["public", "hidden"])
@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_reference_passes(ex, hidden):
    report = run_local(ex, ex.reference, seed=HIDDEN_SEED if hidden else 0, hidden=hidden, allow_reference=True)
    assert report.status == PASSED, report.message
    assert report.points == ex.points


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_hidden_cases_are_more_than_public_ones(ex):
    assert len(ex.cases(HIDDEN_SEED, hidden=True)) > len(ex.cases(0, hidden=False))


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_stub_is_not_attempted(ex):
    stub = _stub_module(ex.reference) if ex.kind == "module" else _stub
    report = run_local(ex, stub)
    assert report.status == NOT_ATTEMPTED
    assert report.points == 0


@pytest.mark.parametrize("hidden", [False, True], ids=["public", "hidden"])
@pytest.mark.parametrize(
    "ex,mistake", [(ex, m) for ex in EXERCISES for m in ex.mistakes],
    ids=[f"{ex.id}:{m.name}" for ex in EXERCISES for m in ex.mistakes],
)
def test_known_mistake_is_caught_and_named(ex, mistake, hidden):
    report = run_local(ex, mistake.fn, seed=HIDDEN_SEED if hidden else 0, hidden=hidden, allow_reference=True)
    assert report.status != PASSED, f"{mistake.name!r} passes the checks of {ex.id}"
    assert report.points < ex.points
    assert report.mistake == mistake.name, (
        f"{ex.id}: output of {mistake.name!r} was named {report.mistake!r}; message: {report.message}")


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_public_cases_are_seeded(ex):
    a, b = ex.cases(0), ex.cases(0)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert compare(_plain(x.args), _plain(y.args)) is None
        assert compare(_plain(x.kwargs), _plain(y.kwargs)) is None


def _plain(value):
    """Case arguments as nested tuples of tensors and numbers (ModuleInputs and dicts unpacked)."""
    if isinstance(value, ModuleInputs):
        return (_plain(value.init), _plain(value.state), _plain(value.args))
    if isinstance(value, GeneratorSeed):
        return ("generator", value.seed)
    if isinstance(value, dict):
        return tuple((k, _plain(value[k])) for k in sorted(value))
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    return value


def test_calling_the_reference_is_reported_as_forbidden():
    ex = next(e for e in EXERCISES if e.kind == "function")
    report = run_local(ex, lambda *a, **k: ex.reference(*a, **k))
    assert report.status == FORBIDDEN
    assert "reference" in report.message


def test_forbidden_builtin_is_caught_even_through_an_alias():
    from course_lib.exercises import get

    ex = get("02.stable_softmax")
    sm = torch.softmax

    def sneaky(x, dim=-1):
        return sm(x, dim)

    report = run_local(ex, sneaky)
    assert report.status == FORBIDDEN
    assert "softmax" in report.message


def test_exercise_without_mistakes_would_fail_the_suite():
    from dataclasses import replace

    ex = replace(next(iter(EXERCISES)), mistakes=())
    with pytest.raises(AssertionError):
        test_exercise_has_known_mistakes(ex)
