"""Tests of the tests: every exercise's checks catch what they claim to catch, and pass what is right.

For every registered exercise:

* the reference and every alternative pass, on the public and the hidden cases, inline (``run_local``)
  and through the grader's by-value path (``tests/by_value.py``: inputs encoded as the grader encodes
  them, the function run by the worker's ``evaluate``, outputs and inputs decoded and judged in the
  grader's code);
* every known mistake is caught and *named* on the public cases alone (inline) and on the hidden ones
  (through the grader); at least three mistakes and two alternatives per exercise;
* every hidden case group has a public case in the same group, and a mistake that fails a hidden case of
  group g fails a public case of group g (so the grader never punishes what the inline check passed);
* each property's ``fires_for`` is exactly the set of mistakes whose public outputs fail it (and no
  other mistake fails it on the hidden cases);
* the reference leaves its inputs unchanged, and a variant of the reference that changes an input is
  caught with a message naming that argument.

Results are cached per (exercise, function, cases) so that the many checks share the runs.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest
import torch

from .by_value import grade_by_value, learner_class
from course_lib.exercises import all_exercises, get, run_local
from course_lib.exercises.core import (FORBIDDEN, NOT_ATTEMPTED, PASSED, Call, GeneratorSeed, ModuleInputs, compare,
                                       changed_input, parameter_names)

EXERCISES = all_exercises()
IDS = [ex.id for ex in EXERCISES]
BY_ID = {ex.id: ex for ex in EXERCISES}
HIDDEN_SEED = 12345

MISTAKES = [(ex.id, m.name) for ex in EXERCISES for m in ex.mistakes]
ALTERNATIVES = [(ex.id, a.name) for ex in EXERCISES for a in ex.alternatives]


def _mistake(ex_id, name):
    return next(m for m in BY_ID[ex_id].mistakes if m.name == name)


def _alternative(ex_id, name):
    return next(a for a in BY_ID[ex_id].alternatives if a.name == name)


def _fn(ex_id: str, which: str, name: str):
    ex = BY_ID[ex_id]
    if which == "reference":
        return ex.reference
    return (_mistake if which == "mistake" else _alternative)(ex_id, name).fn


@functools.lru_cache(maxsize=None)
def inline(ex_id: str, which: str, name: str = "", hidden: bool = False):
    """``run_local`` of the reference, a mistake or an alternative (cached)."""
    ex = BY_ID[ex_id]
    return run_local(ex, _fn(ex_id, which, name), seed=HIDDEN_SEED if hidden else 0, hidden=hidden,
                     allow_reference=True)


@functools.lru_cache(maxsize=None)
def graded(ex_id: str, which: str, name: str = "", hidden: bool = True):
    """The same through the grader's by-value path (cached)."""
    return grade_by_value(BY_ID[ex_id], _fn(ex_id, which, name), hidden=hidden, seed=HIDDEN_SEED)


@functools.lru_cache(maxsize=None)
def cases(ex_id: str, hidden: bool):
    return BY_ID[ex_id].cases(HIDDEN_SEED if hidden else 0, hidden=hidden)


@functools.lru_cache(maxsize=None)
def reference_outputs(ex_id: str, hidden: bool):
    ex = BY_ID[ex_id]
    return [ex.expected(Call(c.args, c.kwargs, i)) for i, c in enumerate(cases(ex_id, hidden))]


@functools.lru_cache(maxsize=None)
def failing_groups(ex_id: str, mistake: str, hidden: bool) -> frozenset:
    """The case groups in which the mistake's output differs from the reference's (or it raises)."""
    ex = BY_ID[ex_id]
    fn = _mistake(ex_id, mistake).fn
    out = set()
    for i, (c, want) in enumerate(zip(cases(ex_id, hidden), reference_outputs(ex_id, hidden))):
        try:
            got = ex.invoke(fn, Call(c.args, c.kwargs, i))
        except Exception:  # noqa: BLE001 - a crash fails the case
            out.add(c.group)
            continue
        if compare(want, got, ex.atol, ex.rtol, ex.check_dtype, exact_types=ex.exact_types,
                   tensor_numbers=ex.allow_tensor_numbers) is not None:
            out.add(c.group)
    return frozenset(out)


def _stub(*args, **kwargs):
    raise NotImplementedError("exercise: replace this line with your code")


class _StubModule(torch.nn.Module):
    """A learner's class that is still a stub (it may not inherit course_lib's reference: forbidden)."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        raise NotImplementedError("exercise: replace this line with your code")

    def forward(self, *args, **kwargs):
        raise NotImplementedError("exercise: replace this line with your code")


# ---------------------------------------------------------------------------------------------------
# What every exercise must have
# ---------------------------------------------------------------------------------------------------


def test_there_are_exercises_in_every_unit_file():
    assert len(EXERCISES) >= 4
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_exercise_has_known_mistakes(ex):
    assert len(ex.mistakes) >= 3, f"{ex.id} needs at least three known mistakes"
    names = [m.name for m in ex.mistakes]
    assert len(set(names)) == len(names), f"{ex.id}: duplicate mistake names"
    for m in ex.mistakes:
        assert len(m.message) > 30, f"{ex.id}: mistake {m.name!r} needs a message that explains the fix"


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_exercise_has_alternatives(ex):
    assert len(ex.alternatives) >= 2, f"{ex.id} needs at least two correct alternatives written differently"
    names = [a.name for a in ex.alternatives]
    assert len(set(names)) == len(names), f"{ex.id}: duplicate alternative names"
    assert all(a.fn is not ex.reference for a in ex.alternatives)


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_declared_names_exist(ex):
    """``fires_for`` names known mistakes, ``mutates`` names parameters of the reference."""
    mistakes = {m.name for m in ex.mistakes}
    for p in ex.properties:
        unknown = set(p.fires_for) - mistakes
        assert not unknown, f"{ex.id}: property {p.name!r} fires_for unknown mistakes {sorted(unknown)}"
    unknown = set(ex.mutates) - set(parameter_names(ex))
    assert not unknown, f"{ex.id}: mutates names {sorted(unknown)}, not parameters of the reference"


# ---------------------------------------------------------------------------------------------------
# Right answers pass, inline and in the grader
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["inline", "grader"])
@pytest.mark.parametrize("hidden", [False, True], ids=["public", "hidden"])
@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_reference_passes(ex, hidden, path):
    report = (inline if path == "inline" else graded)(ex.id, "reference", "", hidden)
    assert report.status == PASSED, report.message
    assert report.points == ex.points


@pytest.mark.parametrize("path", ["inline", "grader"])
@pytest.mark.parametrize("hidden", [False, True], ids=["public", "hidden"])
@pytest.mark.parametrize("ex_id,name", ALTERNATIVES, ids=[f"{e}:{n}" for e, n in ALTERNATIVES])
def test_alternative_passes(ex_id, name, hidden, path):
    report = (inline if path == "inline" else graded)(ex_id, "alternative", name, hidden)
    assert report.status == PASSED, f"{ex_id}: the correct alternative {name!r} fails: {report.message}"
    assert report.points == BY_ID[ex_id].points


MODULE_ALTERNATIVES = [(e, n) for e, n in ALTERNATIVES if BY_ID[e].kind == "module"]


@pytest.mark.parametrize("path", ["inline", "grader"])
@pytest.mark.parametrize("ex_id,name", MODULE_ALTERNATIVES, ids=[f"{e}:{n}" for e, n in MODULE_ALTERNATIVES])
def test_module_alternative_passes_as_the_learners_own_class(ex_id, name, path):
    """A module alternative subclasses the reference; rebuilt on the notebook's own class (its __init__, this
    forward, no tie to the reference) and graded without the reference's privileges, it passes too."""
    ex = BY_ID[ex_id]
    cls = learner_class(ex, _alternative(ex_id, name).fn.forward)
    assert not issubclass(cls, ex.reference)
    report = (run_local(ex, cls, seed=HIDDEN_SEED, hidden=True) if path == "inline"
              else grade_by_value(ex, cls, hidden=True, seed=HIDDEN_SEED, allow_reference=False))
    assert report.status == PASSED, f"{ex_id}: {name!r} as a learner's class fails: {report.message}"


# ---------------------------------------------------------------------------------------------------
# Wrong answers are caught and named
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["inline public", "grader hidden"])
@pytest.mark.parametrize("ex_id,name", MISTAKES, ids=[f"{e}:{n}" for e, n in MISTAKES])
def test_known_mistake_is_caught_and_named(ex_id, name, path):
    ex = BY_ID[ex_id]
    report = inline(ex_id, "mistake", name, False) if path == "inline public" else \
        graded(ex_id, "mistake", name, True)
    assert report.status != PASSED, f"{name!r} passes the {path} checks of {ex_id}"
    assert report.points < ex.points
    assert report.mistake == name, (
        f"{ex_id}: output of {name!r} was named {report.mistake!r} ({path}); message: {report.message}")


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_every_hidden_group_has_a_public_case(ex):
    public = {c.group for c in cases(ex.id, False)}
    hidden = {c.group for c in cases(ex.id, True)}
    assert hidden <= public, f"{ex.id}: hidden groups without a public case: {sorted(hidden - public)}"


@pytest.mark.parametrize("ex_id,name", MISTAKES, ids=[f"{e}:{n}" for e, n in MISTAKES])
def test_public_cases_show_every_hazard_the_hidden_ones_test(ex_id, name):
    """A mistake failing a hidden case of group g fails a public case of group g."""
    hidden, public = failing_groups(ex_id, name, True), failing_groups(ex_id, name, False)
    assert public, f"{ex_id}: {name!r} fails no public case"
    assert hidden <= public, (f"{ex_id}: {name!r} fails hidden cases of {sorted(hidden - public)} but no public "
                              f"case of those groups")


@pytest.mark.parametrize("ex", [ex for ex in EXERCISES if ex.properties],
                         ids=[ex.id for ex in EXERCISES if ex.properties])
def test_fires_for_is_exactly_the_mistakes_failing_each_property(ex):
    for prop in ex.properties:
        public = {m.name for m in ex.mistakes if prop.name in inline(ex.id, "mistake", m.name, False).failed_properties}
        hidden = {m.name for m in ex.mistakes if prop.name in graded(ex.id, "mistake", m.name, True).failed_properties}
        assert public == set(prop.fires_for), (
            f"{ex.id}: property {prop.name!r} fails for {sorted(public)}, fires_for says {sorted(prop.fires_for)}")
        assert hidden <= set(prop.fires_for), (
            f"{ex.id}: in the grader, property {prop.name!r} also fails for {sorted(hidden - set(prop.fires_for))}")


# ---------------------------------------------------------------------------------------------------
# Side effects
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_reference_leaves_its_inputs_unchanged(ex):
    """Checked on every call of the reference's runs above (public and hidden, inline and in the grader)."""
    for path in (inline, graded):
        for hidden in (False, True):
            report = path(ex.id, "reference", "", hidden)
            changed = [d for d in report.details if "your function changed" in d]
            assert not changed, f"{ex.id}: the reference changes its inputs: {changed[0]}"
    call = ex.plan(cases(ex.id, False))[0]
    kept: list = []
    ex.invoke(ex.reference, call, keep_inputs=kept)
    assert changed_input(ex, call, kept[0]) is None


def _first_mutable(ex, call):
    """(parameter name, how to change it) of the first argument the exercise does not allow to change."""
    names = parameter_names(ex)
    args = call.args[0].args if ex.kind == "module" else call.args
    for i, a in enumerate(args):
        name = names[i] if i < len(names) else None
        if name is None or name in ex.mutates:
            continue
        if isinstance(a, torch.Tensor) and a.numel():
            return i, name
        if isinstance(a, (list, dict)):
            return i, name
    return None, None


def _mutate(value):
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool:
            value.logical_not_()
        else:
            value.add_(1)
    elif isinstance(value, list):
        value.append(0)
    elif isinstance(value, dict):
        value["__added__"] = 0


def _mutating_reference(ex, index):
    """The reference, plus one in-place change of argument ``index`` after computing its output."""
    if ex.kind == "module":
        class Mutating(ex.reference):
            def forward(self, *args):
                out = super().forward(*args)
                out = out.clone() if isinstance(out, torch.Tensor) else out
                _mutate(args[index])
                return out

        return Mutating

    sig = __import__("inspect").signature(ex.reference)

    def mutating(*args, **kwargs):
        out = ex.reference(*args, **kwargs)
        out = out.clone() if isinstance(out, torch.Tensor) else out
        _mutate(args[index])
        return out

    mutating.__signature__ = sig
    return mutating


@pytest.mark.parametrize("path", ["inline", "grader"])
@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_a_mutating_reference_is_caught_and_names_the_argument(ex, path):
    call = ex.plan(cases(ex.id, False))[0]
    index, name = _first_mutable(ex, call)
    if name is None:
        pytest.skip(f"{ex.id} takes no tensor, list or dict argument it may not change")
    fn = _mutating_reference(ex, index)
    report = (run_local(ex, fn, allow_reference=True) if path == "inline"
              else grade_by_value(ex, fn, hidden=True, seed=HIDDEN_SEED))
    assert report.status != PASSED and report.points < ex.points
    assert f"changed `{name}`" in report.message or f"changed the list `{name}`" in report.message \
        or f"changed the dict `{name}`" in report.message, report.message


# ---------------------------------------------------------------------------------------------------
# The rest
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_hidden_cases_are_more_than_public_ones(ex):
    assert len(cases(ex.id, True)) > len(cases(ex.id, False))


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_stub_is_not_attempted(ex):
    stub = _StubModule if ex.kind == "module" else _stub
    report = run_local(ex, stub)
    assert report.status == NOT_ATTEMPTED
    assert report.points == 0


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
    ex = get("02.stable_softmax")
    sm = torch.softmax

    def sneaky(x, dim=-1):
        return sm(x, dim)

    report = run_local(ex, sneaky)
    assert report.status == FORBIDDEN
    assert "softmax" in report.message


def test_exercise_without_mistakes_or_alternatives_would_fail_the_suite():
    ex = next(iter(EXERCISES))
    with pytest.raises(AssertionError):
        test_exercise_has_known_mistakes(replace(ex, mistakes=ex.mistakes[:2]))
    with pytest.raises(AssertionError):
        test_exercise_has_alternatives(replace(ex, alternatives=ex.alternatives[:1]))
