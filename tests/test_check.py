"""The inline check and the judge: what a learner reads, and that it never raises into the notebook.

Most tests use small synthetic exercises defined here (never registered), so that the framework's rules
are tested independently of the course's exercises: side effects, exact types, when a known mistake may
be named, what a failure message says, bad input to ``check`` and how the check box looks. Several run
the same learner inline and through the grader's by-value path (``tests/by_value.py``).
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
import torch

from course_lib.exercises import (Alternative, Case, Exercise, KnownMistake, ModuleInputs, Property, check,
                                  compare, run_local)
from course_lib.exercises.check import _STYLE, METADATA_KEY, CheckResult, message_html
from course_lib.exercises.core import FAILED, PASSED, randn

from .by_value import grade_by_value


# ---------------------------------------------------------------------------------------------------
# Synthetic exercises
# ---------------------------------------------------------------------------------------------------


def double(x, scale=2.0):
    """x * scale"""
    return x * scale


def _double_cases(gen, hidden):
    cs = [Case((randn(gen, 3, 4),), note="a batch of 3 rows"),
          Case((randn(gen, 5),), group="vector", note="a vector of 5"),
          Case((randn(gen, 2, 3, scale=1000.0),), group="big", note="values near +-1000")]
    if hidden:
        cs += [Case((randn(gen, 4, 2),)), Case((randn(gen, 7),), group="vector"),
               Case((randn(gen, 3, 3, scale=1000.0),), group="big")]
    return cs


def plus_one(x, scale=2.0):
    return x * scale + 1


def log_then_double(x, scale=2.0):
    return torch.log(x) * scale  # nan wherever x < 0


def all_nan(x, scale=2.0):
    return torch.full_like(x, float("nan"))


def inf_where_positive(x, scale=2.0):
    return torch.where(x > 0, torch.full_like(x, float("inf")), x * scale)


DOUBLE = Exercise(
    id="99.double", notebook="99_synthetic", function="double", points=2, title="Double it",
    reference=double, make_cases=_double_cases,
    mistakes=[KnownMistake("nan everywhere", "your output is nan everywhere: check for a division by zero", all_nan),
              KnownMistake("inf where positive", "your output is inf where x > 0: something overflows", inf_where_positive),
              KnownMistake("log first", "you take a log first: log(x) is nan for negative x", log_then_double),
              KnownMistake("plus one", "you add 1 after scaling: the task asks for x * scale only", plus_one)],
    alternatives=[Alternative("x + x", lambda x, scale=2.0: x + x * (scale - 1))],
)


def count_positive(x):
    """How many entries of x are > 0 (an int)."""
    return int((x > 0).sum())


def _count_cases(gen, hidden):
    return [Case((randn(gen, 4, 5),), note="a 4x5 tensor"), Case((randn(gen, 7),), group="vector")]


COUNT = Exercise(id="99.count_positive", notebook="99_synthetic", function="count_positive", points=1,
                 title="Count", reference=count_positive, make_cases=_count_cases)


def push(x, cache):
    """Append x to the list ``cache`` (allowed: ``mutates=("cache",)``) and return 2 x."""
    cache.append(x.clone())
    return x * 2


def _push_cases(gen, hidden):
    return [Case((randn(gen, 3), [randn(gen, 3)]), note="a cache with one entry")]


PUSH = Exercise(id="99.push", notebook="99_synthetic", function="push", points=1, title="Push",
                reference=push, make_cases=_push_cases, mutates=("cache",))


def total_of(xs):
    """The sum of a list of tensors (the list must stay as given)."""
    return sum(x.sum() for x in xs)


def _total_cases(gen, hidden):
    return [Case(([randn(gen, 3), randn(gen, 2)],), note="two tensors")]


TOTAL = Exercise(id="99.total_of", notebook="99_synthetic", function="total_of", points=1, title="Total",
                 reference=total_of, make_cases=_total_cases)


class Scale(torch.nn.Module):
    """y = x * w (a module exercise)."""

    def __init__(self, d: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * self.w


def _scale_cases(gen, hidden):
    return [Case((ModuleInputs({"d": 4}, {"w": randn(gen, 4)}, (randn(gen, 2, 4),)),), note="a batch of 2")]


SCALE = Exercise(id="99.Scale", notebook="99_synthetic", function="Scale", points=1, title="Scale",
                 reference=Scale, make_cases=_scale_cases, kind="module")


def _prop(i):
    return Property(f"rule {i}", f"the output must follow rule number {i}", lambda case, out, derived: False)


MANY_PROPS = Exercise(id="99.many", notebook="99_synthetic", function="double", points=1, title="Many",
                      reference=double, make_cases=_double_cases, properties=[_prop(i) for i in range(7)])

BOTH_PATHS = pytest.mark.parametrize("path", ["inline", "grader"])


def grade(ex, fn, path, **kw):
    """The learner's report inline (public cases) or through the grader (hidden cases)."""
    if path == "inline":
        return run_local(ex, fn, **kw)
    return grade_by_value(ex, fn, hidden=True, allow_reference=kw.get("allow_reference", False))


# ---------------------------------------------------------------------------------------------------
# Side effects
# ---------------------------------------------------------------------------------------------------


@BOTH_PATHS
def test_an_input_changed_in_place_fails_and_is_named(path):
    def in_place(x, scale=2.0):
        x *= scale
        return x.clone()

    r = grade(DOUBLE, in_place, path)
    assert r.status == FAILED and r.points == 0
    assert "your function changed `x` in place" in r.message and "`x -= m`" in r.message
    assert grade(DOUBLE, lambda x, scale=2.0: x * scale, path).status == PASSED


@BOTH_PATHS
def test_a_list_argument_changed_is_named_with_where(path):
    def appends(xs):
        xs.append(torch.zeros(1))
        return sum(x.sum() for x in xs)

    def edits_an_item(xs):
        xs[1].zero_()
        return xs[0].sum()

    r = grade(TOTAL, appends, path)
    assert r.status != PASSED and "changed the list `xs` it was given" in r.message
    r = grade(TOTAL, edits_an_item, path)
    assert r.status != PASSED and "changed `xs` (at `xs[1]`) in place" in r.message


@BOTH_PATHS
def test_arguments_listed_in_mutates_may_change_the_others_not(path):
    assert grade(PUSH, push, path, allow_reference=True).status == PASSED

    def also_changes_x(x, cache):
        cache.append(x.clone())
        out = x * 2
        x.zero_()
        return out

    r = grade(PUSH, also_changes_x, path)
    assert r.status != PASSED and "changed `x` in place" in r.message


@BOTH_PATHS
def test_a_module_that_changes_its_forward_input_is_named(path):
    class InPlace(torch.nn.Module):
        def __init__(self, d):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(d))

        def forward(self, x):
            return x.mul_(self.w)

    r = grade(SCALE, InPlace, path)
    assert r.status != PASSED and "changed `x` in place" in r.message
    assert grade(SCALE, Scale, path, allow_reference=True).status == PASSED


def test_a_bitwise_change_counts_even_when_values_compare_equal():
    def negative_zero(x, scale=2.0):
        out = x * scale
        x[x == 0] = -0.0
        x.view(-1)[0] = x.view(-1)[0].item()  # same value: not a change
        return out

    assert run_local(DOUBLE, negative_zero).status == PASSED

    def flips_a_nan_payload(x, scale=2.0):
        out = x * scale
        x.view(-1)[0] = x.view(-1)[0] + 1e-3  # a tiny change is a change
        return out

    assert "changed `x`" in run_local(DOUBLE, flips_a_nan_payload).message


# ---------------------------------------------------------------------------------------------------
# Exact types
# ---------------------------------------------------------------------------------------------------


@BOTH_PATHS
def test_a_promised_int_must_be_an_int(path):
    assert grade(COUNT, count_positive, path, allow_reference=True).status == PASSED
    r = grade(COUNT, lambda x: float((x > 0).sum()), path)
    assert r.status == FAILED and "should be an int, got float" in r.message
    r = grade(COUNT, lambda x: (x > 0).sum(), path)
    assert r.status == FAILED and "should be an int (a Python number), got Tensor of shape ()" in r.message
    assert "`.item()`" in r.message
    r = grade(COUNT, lambda x: np.int64((x > 0).sum()), path)
    assert r.status == FAILED and "should be an int, got int64" in r.message


def test_exercises_can_opt_in_to_looser_number_types():
    from dataclasses import replace

    assert run_local(replace(COUNT, allow_tensor_numbers=True), lambda x: (x > 0).sum()).status == PASSED
    assert run_local(replace(COUNT, exact_types=False), lambda x: float((x > 0).sum())).status == PASSED
    assert run_local(replace(COUNT, exact_types=False), lambda x: float((x > 0).sum()) + 1).status == FAILED


def test_compare_is_exact_about_types_and_dtypes():
    assert compare(3, 3.0).text == "output should be an int, got float (3); use `int(...)` or integer operations (`//`)"
    assert compare(3.0, 3).kind == "type"
    assert compare(3, True).kind == "type"
    assert compare(0.5, 0.5 + 1e-9) is None
    assert compare(torch.ones(2, dtype=torch.bool), torch.ones(2)).kind == "dtype"
    assert compare(torch.ones(2, dtype=torch.long), torch.ones(2)).kind == "dtype"
    assert compare({"a": 1, "b": 2}, {"a": 1, "b": 2}) is None
    assert compare({"a": 1, "b": 2}, {"a": 1, "b": 2.0}).where == "['b']"
    assert "missing ['b']" in compare({"a": 1, "b": 2}, {"a": 1}).text


def test_compare_rejects_subclasses_and_lists():
    class Sneaky(torch.Tensor):
        def __eq__(self, other):
            return True

    exp = torch.ones(3)
    assert compare(exp, exp.clone().as_subclass(Sneaky)).kind == "type"
    assert compare(exp, [1.0, 1.0, 1.0]).kind == "type"
    assert compare(exp, torch.tensor([1.0, float("nan"), 1.0])).kind == "values"
    assert compare(exp, torch.ones(3)) is None
    assert compare((exp, 2), (torch.ones(3), 2)) is None
    assert compare((exp, 2), (torch.ones(3), 3)).where == "[1]"


# ---------------------------------------------------------------------------------------------------
# A named mistake is never a lie
# ---------------------------------------------------------------------------------------------------


@BOTH_PATHS
def test_a_mistake_matched_on_every_case_is_named(path):
    r = grade(DOUBLE, lambda x, scale=2.0: x * scale + 1, path)
    assert r.mistake == "plus one" and "add 1" in r.mistake_message


@BOTH_PATHS
def test_nan_to_nan_and_inf_to_inf_are_no_evidence(path):
    # nan everywhere, like the mistake "nan everywhere": not evidence for that mistake; what the output shows
    # (nan where the expected output is finite) is said as such
    r = grade(DOUBLE, lambda x, scale=2.0: x / 0 * 0, path)
    assert r.status == FAILED and r.mistake == "nan or inf in the output" and r.diagnosed
    r = grade(DOUBLE, inf_where_positive, path)  # equal to the mistake, but only at its inf positions
    assert r.status == FAILED and r.mistake == "nan or inf in the output" and r.diagnosed
    assert "inf at" in r.mistake_message


@BOTH_PATHS
def test_a_mistake_must_match_wherever_its_output_is_finite(path):
    # log first: equal where x > 0; where the mistake is nan the learner may differ
    r = grade(DOUBLE, lambda x, scale=2.0: torch.where(x > 0, torch.log(x.abs()) * scale, torch.zeros_like(x)), path)
    assert r.mistake == "log first"
    # equal where x > 0 on the first case only: not the same bug
    def only_first(x, scale=2.0):
        out = torch.log(x.abs()) * scale
        return out if x.dim() == 2 and x.abs().max() < 100 else out + 1

    r = grade(DOUBLE, only_first, path)
    assert r.status == FAILED and r.mistake is None


def test_all_cases_decide_not_just_the_first_failing_one():
    def plus_one_on_matrices_only(x, scale=2.0):
        return x * scale + 1 if x.dim() == 2 else x * scale - 1

    r = run_local(DOUBLE, plus_one_on_matrices_only)
    assert r.details[0].startswith("case 1") and "differs" in r.details[0]
    # it matches "plus one" on case 1 but not on case 2; what each case shows (a constant offset, +1 here and
    # -1 there) may be said, with its own numbers
    assert r.mistake != "plus one" and (r.mistake is None or r.diagnosed)
    assert r.mistake is None or "with its own numbers" in r.mistake_message


def test_properties_report_which_fail_and_fires_for_is_declared():
    p = Property("p", "message", lambda case, out, derived: True, fires_for=("plus one",))
    assert p.fires_for == ("plus one",)
    r = run_local(MANY_PROPS, double, allow_reference=True)
    assert r.failed_properties == [f"rule {i}" for i in range(7)]


# ---------------------------------------------------------------------------------------------------
# When no mistake matches, the message still helps
# ---------------------------------------------------------------------------------------------------


def test_failure_message_compares_with_the_expected_output_and_names_the_case():
    def breaks_on_big_values(x, scale=2.0):
        return torch.where(x.abs() > 100, torch.zeros_like(x), x * scale)

    r = run_local(DOUBLE, breaks_on_big_values)
    lines = r.message.split("\n")
    assert lines[0].startswith("case 3 (values near +-1000): output differs at")
    assert lines[1].startswith("your output: shape (2, 3), float32, range [") and ", sum " in lines[1]
    assert lines[2].startswith("expected output: shape (2, 3), float32, range [")
    assert "the other 2 cases pass" in lines


def test_every_failing_property_is_listed_none_cut_off():
    r = run_local(MANY_PROPS, lambda x, scale=2.0: x * 3)
    text = CheckResult(r, "Many").text()
    for i in range(7):
        assert f"property 'rule {i}' fails: the output must follow rule number {i}" in r.message
        assert f"rule number {i}" in text and f"rule number {i}" in CheckResult(r).html()


def test_shape_and_dtype_failures_show_both_outputs():
    r = run_local(DOUBLE, lambda x, scale=2.0: (x * scale).double())
    assert "dtype torch.float64, expected torch.float32" in r.message
    assert "your output: shape (3, 4), float64" in r.message and "expected output: shape (3, 4), float32" in r.message


# ---------------------------------------------------------------------------------------------------
# Bad input to check(): one clear line, never an exception
# ---------------------------------------------------------------------------------------------------


def good_softmax(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def test_pass_shows_points_and_metadata():
    r = check("02.stable_softmax", good_softmax)
    assert r.passed
    data, meta = r._repr_mimebundle_()
    assert "Passed" in data["text/html"] and "/3 points" in data["text/plain"]
    assert meta[METADATA_KEY] == {"exercise": "02.stable_softmax", "status": "passed", "points": 3.0, "max": 3.0}


def test_stub_is_not_attempted_and_does_not_raise():
    def stub(x, dim=-1):
        raise NotImplementedError("exercise 02.stable_softmax: replace this line with your code")

    r = check("02.stable_softmax", stub)
    assert r.status == "not_attempted"
    assert "Not attempted yet" in r.html() and "not attempted" in r.text()


def test_learner_traceback_shows_only_their_frames():
    def broken(x, dim=-1):
        return x.nonexistent_method()

    r = check("02.stable_softmax", broken)
    assert r.status == "error"
    assert "in broken" in r.report.traceback and "AttributeError" in r.report.traceback
    assert "core.py" not in r.report.traceback  # the learner's frames only
    assert r.report.message.startswith("every case raised AttributeError")


def _one_line(r):
    assert r.status in ("error", "failed") and r.report.points == 0
    assert "\n" not in r.report.message, r.report.message
    return r.report.message


def test_check_never_raises_on_bad_use():
    assert "did you mean 02.stable_softmax?" in _one_line(check("02.stable_softmaxx", good_softmax))
    assert "takes the exercise id first" in _one_line(check(good_softmax))
    assert "pass your function to check()" in _one_line(check("02.stable_softmax", None))
    assert "got int" in _one_line(check("02.stable_softmax", 42))
    assert "not the result of calling it; got Tensor of shape (3,)" in _one_line(
        check("02.stable_softmax", good_softmax(torch.ones(3))))

    def exits(x, dim=-1):
        raise SystemExit(3)

    assert check("02.stable_softmax", exits).status == "error"


def test_wrong_signature_is_one_line_inline_and_in_the_grader():
    def no_dim(x):
        return good_softmax(x)

    msg = _one_line(check("02.stable_softmax", no_dim))
    assert "`stable_softmax(x)` cannot be called" in msg and "`stable_softmax(x, dim=-1)`" in msg
    from course_lib.exercises import get

    r = grade_by_value(get("02.stable_softmax"), no_dim, hidden=True, allow_reference=False)
    assert r.status == "error" and r.points == 0 and "\n" not in r.message
    assert "cannot be called" in r.message and "`stable_softmax(x, dim=-1)`" in r.message


@BOTH_PATHS
@pytest.mark.parametrize("fn,text", [
    (lambda x, scale=2.0: [v * scale for v in x], "got list of 3 tensors (combined with `torch.stack`"),
    (lambda x, scale=2.0: None, "got None (your function returned nothing: did you forget `return`?)"),
    (lambda x, scale=2.0: (v for v in x), "got generator (your function uses `yield`"),
    (lambda x, scale=2.0: (x * scale).numpy(), "got ndarray"),
], ids=["list of tensors", "None", "generator", "numpy"])
def test_wrong_kinds_of_output_get_one_clear_line(fn, text, path):
    r = grade(DOUBLE, fn, path)
    assert r.status == FAILED and r.points == 0
    assert text in r.message and "\n" not in r.message, r.message


def test_a_generator_function_is_refused_before_it_runs():
    def gen(x, dim=-1):
        yield good_softmax(x, dim)

    assert "is a generator function (it uses `yield`)" in _one_line(check("02.stable_softmax", gen))


def test_html_escapes_learner_text():
    def evil(x, dim=-1):
        raise ValueError("<script>alert(1)</script>")

    assert "<script>" not in check("02.stable_softmax", evil).html()


# ---------------------------------------------------------------------------------------------------
# How the check box looks
# ---------------------------------------------------------------------------------------------------

# Code points that browsers draw as emoji by default (Unicode's Emoji_Presentation, BMP part)
_EMOJI = set(map(chr, [0x231A, 0x231B, *range(0x23E9, 0x23F4), 0x23F8, 0x23F9, 0x23FA, 0x25FD, 0x25FE, 0x2614,
                       0x2615, *range(0x2648, 0x2654), 0x267F, 0x2693, 0x26A1, 0x26AA, 0x26AB, 0x26BD, 0x26BE,
                       0x26C4, 0x26C5, 0x26CE, 0x26D4, 0x26EA, 0x26F2, 0x26F3, 0x26F5, 0x26FA, 0x26FD, 0x2705,
                       0x270A, 0x270B, 0x2728, 0x274C, 0x274E, 0x2753, 0x2754, 0x2755, 0x2757, 0x2795, 0x2796,
                       0x2797, 0x27B0, 0x27BF, 0x2B1B, 0x2B1C, 0x2B50, 0x2B55]))


def test_icons_are_plain_characters_not_emoji():
    for status, (_, _, icon, _) in _STYLE.items():
        assert len(icon) == 1 and icon not in _EMOJI and ord(icon) < 0x10000, status
        unicodedata.name(icon)
    assert _STYLE["forbidden"][2].isascii()


def test_singular_and_plural():
    one = Exercise(id="99.one", notebook="99_synthetic", function="double", points=1, title="One",
                   reference=double, make_cases=lambda g, h: [Case((torch.ones(2),))],
                   properties=[Property("finite", "finite", lambda c, o, d: bool(torch.isfinite(o).all()))])
    assert run_local(one, double, allow_reference=True).message == "the 1 case passes and 1 property holds"
    two = run_local(DOUBLE, double, allow_reference=True).message
    assert two == "all 3 cases pass"


def test_code_in_messages_is_rendered_and_id_and_title_are_apart():
    assert message_html("use `x = x - m` <b>\nnext") == "use <code>x = x - m</code> &lt;b&gt;<br>next"
    r = check("02.stable_softmax", lambda x, dim=-1: None)
    html = r.html()
    assert "<code>return</code>" in html
    assert '<code class="course-check-id">02.stable_softmax</code> &middot; <span class="course-check-title">' in html
    assert r.text().startswith("[failed] 02.stable_softmax (")


def test_grader_feedback_renders_code_too():
    from course_lib.grading.report import _exercise_html

    e = {"exercise": "99.double", "title": "Double", "status": "failed", "points": 0, "max": 2,
         "message": "your function changed `x` in place\nsecond line", "mistake": "m",
         "mistake_message": "use `torch.where`", "details": []}
    out = _exercise_html(e)
    assert "<code>x</code>" in out and "<br>second line" in out and "<code>torch.where</code>" in out


def test_a_property_with_nothing_to_look_at_is_not_checked_rather_than_diagnosed():
    """A function that raises on every case gives properties no output: their diagnostic messages
    ("draws from the global random state") would name a mistake the learner did not make."""
    from course_lib.exercises import registry
    from course_lib.exercises.core import run_local

    registry.load_all()
    ex = registry.get("02.sample_next_token")
    assert ex.properties

    def raises(logits, temperature, generator):
        raise ValueError("oops")

    for hidden in (False, True):
        report = run_local(ex, raises, hidden=hidden)
        lines = [d for d in report.details if d.startswith("property ")]
        assert len(lines) == len(ex.properties)
        assert all(line.endswith("not checked: no case returned an output") for line in lines), lines
        assert not any(p.message in "\n".join(report.details + [report.message]) for p in ex.properties)


@BOTH_PATHS
def test_a_mistake_written_in_another_order_is_named_up_to_rounding(path):
    # "plus one" computed so that it rounds differently (off by ~3x the tolerance): still that mistake
    r = grade(DOUBLE, lambda x, scale=2.0: (x * scale + 1) * (1 + 3e-4), path)
    assert r.mistake == "plus one" and not r.diagnosed, (r.mistake, r.message)


def test_rounding_slack_never_names_a_mistake_close_to_the_right_answer():
    near = Exercise("99.near", "99_test", "double", 2, "double", double, _double_cases, forbid_reference=False,
                    mistakes=[KnownMistake("tiny offset", "you add 1e-4", lambda x, scale=2.0: x * scale + 1e-4)])
    # wrong (beyond the tolerance) but within the slack of both the right answer and the mistake
    r = run_local(near, lambda x, scale=2.0: x * scale * (1 + 5e-4))
    assert r.status != PASSED and r.mistake != "tiny offset", (r.mistake, r.message)
    assert run_local(near, lambda x, scale=2.0: x * scale + 1e-4).mistake == "tiny offset"


@BOTH_PATHS
def test_a_known_mistake_with_nan_of_its_own_is_named_and_the_nan_said(path):
    # "plus one" wherever the output is finite, nan elsewhere (a second bug): the mistake is named, the nan said
    r = grade(DOUBLE, lambda x, scale=2.0: torch.where(x > 0.8, torch.full_like(x, float("nan")), x * scale + 1), path)
    assert r.mistake == "plus one" and not r.diagnosed, (r.mistake, r.message)
    assert "Besides, your output has nan or inf" in r.mistake_message
    # nan everywhere is still no evidence for any mistake
    r = grade(DOUBLE, lambda x, scale=2.0: torch.full_like(x, float("nan")), path)
    assert r.mistake != "plus one"
