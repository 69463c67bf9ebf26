"""The inline check: what a learner reads, and that it never raises into the notebook."""

import torch

from course_lib.exercises import check, compare
from course_lib.exercises.check import METADATA_KEY


def good_softmax(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def test_pass_shows_points_and_metadata():
    r = check("02.stable_softmax", good_softmax)
    assert r.passed
    data, meta = r._repr_mimebundle_()
    assert "Passed" in data["text/html"] and "3/3 points" in data["text/plain"]
    assert meta[METADATA_KEY] == {"exercise": "02.stable_softmax", "status": "passed", "points": 3.0, "max": 3.0}


def test_stub_is_not_attempted_and_does_not_raise():
    def stub(x, dim=-1):
        raise NotImplementedError("exercise 02.stable_softmax: replace this line with your code")

    r = check("02.stable_softmax", stub)
    assert r.status == "not_attempted"
    assert "Not attempted yet" in r.html() and "not attempted" in r.text()


def test_wrong_shape_shows_expected_and_got():
    r = check("02.stable_softmax", lambda x, dim=-1: good_softmax(x, dim).sum(dim))
    assert r.status in ("failed", "partial")
    assert "has shape" in r.text() and "expected" in r.text()


def test_wrong_dtype_shows_expected_and_got():
    r = check("02.stable_softmax", lambda x, dim=-1: good_softmax(x.double(), dim))
    assert "dtype torch.float64, expected torch.float32" in r.text()


def test_wrong_values_show_first_index_and_error_size():
    r = check("02.stable_softmax", lambda x, dim=-1: good_softmax(x, dim) + 0.01)
    t = r.text()
    assert "first at index [0]" in t and "largest error 0.01" in t


def test_named_mistake_and_learner_traceback():
    def no_max(x, dim=-1):
        e = torch.exp(x)
        return e / e.sum(dim=dim, keepdim=True)

    r = check("02.stable_softmax", no_max)
    assert r.report.mistake == "no max subtraction"
    assert "Known mistake: no max subtraction" in r.html()

    def broken(x, dim=-1):
        return x.nonexistent_method()

    r = check("02.stable_softmax", broken)
    assert r.status == "error"
    assert "in broken" in r.report.traceback and "AttributeError" in r.report.traceback
    assert "core.py" not in r.report.traceback  # the learner's frames only


def test_check_never_raises_on_bad_use():
    assert check("99.nope", good_softmax).status == "error"
    assert "unknown exercise id" in check("99.nope", good_softmax).text()
    assert check("02.stable_softmax", None).status == "error"
    assert check("02.stable_softmax", 42).status == "error"

    def exits(x, dim=-1):
        raise SystemExit(3)

    assert check("02.stable_softmax", exits).status == "error"


def test_html_escapes_learner_text():
    def evil(x, dim=-1):
        raise ValueError("<script>alert(1)</script>")

    assert "<script>" not in check("02.stable_softmax", evil).html()


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
