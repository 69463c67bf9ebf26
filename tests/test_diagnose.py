"""What a wrong output shows (``course_lib.exercises.diagnose``): each pattern is named for the wrong answers
it describes, on the inline check and through the grader's by-value path, and never for others.

The exercises here are synthetic (never registered). Each table row is a wrong answer a learner writes and
the one pattern name it must get; the "never" rows are wrong answers that no pattern describes, which must
stay unnamed rather than get a name that sounds right. A last test proves every pattern is exercised here,
so a new pattern cannot land without its own rows.
"""

from __future__ import annotations

import pytest
import torch

from course_lib.exercises import Case, Exercise, KnownMistake, run_local
from course_lib.exercises import diagnose as D
from course_lib.exercises.core import FAILED, PASSED, PARTIAL, randn

from .by_value import grade_by_value

PATHS = pytest.mark.parametrize("path", ["inline", "grader"])


def grade(ex, fn, path):
    if path == "inline":
        return run_local(ex, fn)
    return grade_by_value(ex, fn, hidden=True, seed=4242, allow_reference=False)


# -- a softmax over the last axis ------------------------------------------------------------------


def softmax(x):
    """exp(x - max) / sum exp(x - max), over the last axis"""
    e = (x - x.amax(dim=-1, keepdim=True)).exp()
    return e / e.sum(dim=-1, keepdim=True)


def _softmax_cases(gen, hidden):
    cs = [Case((randn(gen, 3, 5),), note="3 rows of 5"), Case((randn(gen, 2, 4, 6),), group="3d", note="(2, 4, 6)"),
          Case((randn(gen, 4, 4),), group="square", note="4 rows of 4")]
    if hidden:
        cs += [Case((randn(gen, 5, 3),)), Case((randn(gen, 3, 2, 7),), group="3d"),
               Case((randn(gen, 6, 6),), group="square")]
    return cs


SOFTMAX = Exercise("99.diag_softmax", "99_test", "softmax", 3, "softmax", softmax, _softmax_cases, forbid_reference=False)


def _big_cases(gen, hidden):
    cs = [Case((randn(gen, 3, 5),), note="3 rows of 5"), Case((randn(gen, 2, 6, scale=1000.0),), group="big",
                                                               note="logits near +-1000")]
    if hidden:
        cs += [Case((randn(gen, 4, 3),)), Case((randn(gen, 3, 4, scale=1000.0),), group="big")]
    return cs


BIG_SOFTMAX = Exercise("99.diag_big_softmax", "99_test", "softmax", 2, "softmax", softmax, _big_cases, forbid_reference=False)


def _naive(x):
    e = x.exp()
    return e / e.sum(-1, keepdim=True)


SOFTMAX_ROWS = [
    ("sum over axis 0", lambda x: (x - x.amax(0, keepdim=True)).exp() / (x - x.amax(0, keepdim=True)).exp().sum(0, keepdim=True),
     "normalised over the wrong axis"),
    ("no division", lambda x: (x - x.amax(-1, keepdim=True)).exp(), "not normalised"),
    ("log-softmax", lambda x: torch.log_softmax(x, -1), "an elementwise function too many"),
    ("times 2", lambda x: softmax(x) * 2, "scaled by a constant"),
    ("plus 0.1", lambda x: softmax(x) + 0.1, "off by a constant"),
    ("returns x", lambda x: x, "returns an input unchanged"),
    ("zeros", lambda x: torch.zeros_like(x), "the same value everywhere"),
    ("extra axis", lambda x: softmax(x).unsqueeze(0), "an extra size-1 axis"),
    ("flattened", lambda x: softmax(x).flatten(), "right values, wrong shape"),
    ("transposed", lambda x: softmax(x).transpose(-1, -2), "axes in the wrong order"),
    ("reversed rows", lambda x: softmax(x).flip(-1), "reversed along an axis"),
    ("float64", lambda x: softmax(x.double()), "right values, wrong dtype"),
    ("numpy", lambda x: softmax(x).numpy(), "wrong type"),
    ("list of rows", lambda x: list(softmax(x)), "wrong type"),
    ("per-row factor", lambda x: softmax(x) * (1 + torch.arange(x.shape[-2], dtype=x.dtype)).unsqueeze(-1),
     "not normalised"),
    ("row 0 everywhere", lambda x: softmax(x)[..., :1, :].expand_as(x).clone(), "the same along an axis"),
    ("a small epsilon", lambda x: softmax(x) * (1 - 1e-3) + 1e-3 / x.shape[-1], "nearly right"),
    ("sums to 2", lambda x: softmax(x) + softmax(x).roll(1, -1) ** 2, "does not sum to 1"),
]


@PATHS
@pytest.mark.parametrize("what,fn,name", SOFTMAX_ROWS, ids=[r[0] for r in SOFTMAX_ROWS])
def test_softmax_wrong_answers_get_the_pattern_they_show(what, fn, name, path):
    r = grade(SOFTMAX, fn, path)
    assert r.status in (FAILED, PARTIAL), (r.status, r.message)
    assert r.mistake == name and r.diagnosed, (r.mistake, r.mistake_message, r.message)
    assert r.mistake_message and "\n" not in r.mistake_message


@PATHS
def test_nan_on_the_big_cases_only_is_said_and_the_other_cases_pass(path):
    r = grade(BIG_SOFTMAX, _naive, path)
    assert r.status == PARTIAL and r.mistake == "nan or inf in the output", (r.mistake, r.message)
    assert "where the expected output is finite" in r.mistake_message


@PATHS
def test_a_pattern_with_nan_on_other_cases_says_both(path):
    def wrong_axis_naive(x):
        e = x.exp()
        return e / e.sum(0, keepdim=True)

    r = grade(BIG_SOFTMAX, wrong_axis_naive, path)
    assert r.mistake == "normalised over the wrong axis", (r.mistake, r.message)
    assert "besides, on case" in r.mistake_message and "nan or inf" in r.mistake_message


# -- a linear map ----------------------------------------------------------------------------------


def linear(x, W):
    """x @ W"""
    return x @ W


LINEAR = Exercise("99.diag_linear", "99_test", "linear", 2, "linear", linear,
                  lambda gen, hidden: [Case((randn(gen, 4, 3), randn(gen, 3, 5))),
                                       Case((randn(gen, 2, 6, 3), randn(gen, 3, 4)), group="batched")],
                  forbid_reference=False)

LINEAR_ROWS = [
    ("columns scaled", lambda x, W: (x @ W) / W.norm(dim=0), "scaled per slice"),
    ("row 0 everywhere", lambda x, W: (x[..., :1, :] @ W).expand(*x.shape[:-1], W.shape[-1]).clone(),
     "the same along an axis"),
    ("tanh", lambda x, W: torch.tanh(x @ W), "an elementwise function too many"),
    ("bias twice", lambda x, W: x @ W + W[0], "off by the same vector everywhere"),
    ("W transposed product", lambda x, W: (W.T @ x.transpose(-1, -2)), "axes in the wrong order"),
]


@PATHS
@pytest.mark.parametrize("what,fn,name", LINEAR_ROWS, ids=[r[0] for r in LINEAR_ROWS])
def test_linear_wrong_answers_get_the_pattern_they_show(what, fn, name, path):
    r = grade(LINEAR, fn, path)
    assert r.mistake == name and r.diagnosed, (r.mistake, r.mistake_message, r.message)


@PATHS
def test_nan_on_some_cases_comes_before_nearly_right_on_the_others(path):
    r = grade(BIG_SOFTMAX, lambda x: _naive(x + 1e-3 * torch.sin(x)), path)
    assert r.mistake == "nan or inf in the output", (r.mistake, r.mistake_message)
    assert r.mistake_message.startswith("On case") and "nearly" not in r.mistake_message


# -- a causal mask ---------------------------------------------------------------------------------


def causal(T):
    """True above the diagonal (the future, hidden)"""
    return torch.ones(T, T, dtype=torch.bool).triu(1)


MASK = Exercise("99.diag_mask", "99_test", "causal", 2, "mask", causal,
                lambda gen, hidden: [Case((T,), group="small" if T < 5 else "large") for T in
                                     ((3, 5, 8) if hidden else (4, 6))], forbid_reference=False)

MASK_ROWS = [
    ("inverted", lambda T: ~torch.ones(T, T, dtype=torch.bool).triu(1), "mask inverted"),
    ("diagonal included", lambda T: torch.ones(T, T, dtype=torch.bool).triu(0), "wrong only on the diagonal"),
    ("transposed", lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1), "axes in the wrong order"),
    ("as floats", lambda T: torch.ones(T, T).triu(1), "right values, wrong dtype"),
    ("only the first future", lambda T: torch.ones(T, T, dtype=torch.bool).triu(1) & ~torch.ones(T, T, dtype=torch.bool).triu(2),
     "wrong only above the diagonal"),
]


@PATHS
@pytest.mark.parametrize("what,fn,name", MASK_ROWS, ids=[r[0] for r in MASK_ROWS])
def test_mask_wrong_answers_get_the_pattern_they_show(what, fn, name, path):
    r = grade(MASK, fn, path)
    assert r.mistake == name and r.diagnosed, (r.mistake, r.mistake_message, r.message)


# -- integer ids -----------------------------------------------------------------------------------


def shift(ids, bos):
    """[bos, ids[:-1]] along the last axis"""
    return torch.cat([torch.full_like(ids[..., :1], bos), ids[..., :-1]], dim=-1)


def _id_cases(gen, hidden):
    n = 3 if hidden else 2
    return [Case((torch.randint(3, 20, (2, 5 + i), generator=gen), 1), group="g" + str(i % 2)) for i in range(n)]


IDS = Exercise("99.diag_ids", "99_test", "shift", 2, "ids", shift, _id_cases, forbid_reference=False)

IDS_ROWS = [
    ("plus one", lambda ids, bos: shift(ids, bos) + 1, "off by a constant"),
    ("bos 0", lambda ids, bos: shift(ids, 0), "a value replaced by another"),
    ("float ids", lambda ids, bos: shift(ids, bos).float(), "right values, wrong dtype"),
    ("sorted", lambda ids, bos: shift(ids, bos).sort(dim=-1).values, "right values, wrong order"),
    ("returns the ids", lambda ids, bos: ids, "returns an input unchanged"),
    ("one too long", lambda ids, bos: torch.cat([torch.full_like(ids[..., :1], bos), ids], dim=-1),
     "one too many along an axis"),
]


@PATHS
@pytest.mark.parametrize("what,fn,name", IDS_ROWS, ids=[r[0] for r in IDS_ROWS])
def test_id_wrong_answers_get_the_pattern_they_show(what, fn, name, path):
    r = grade(IDS, fn, path)
    assert r.mistake == name and r.diagnosed, (r.mistake, r.mistake_message, r.message)


def _bos_and_5_swapped(ids, bos):
    out = shift(ids, bos)
    return torch.where(out == bos, 5, torch.where(out == 5, bos, out))


@PATHS
def test_values_replaced_differently_on_each_case_are_listed_per_case(path):
    ex = Exercise("99.diag_ids5", "99_test", "shift", 2, "ids", shift,
                  lambda gen, hidden: [Case((torch.tensor([[5, 7, 9, 11]]), 1)), Case((torch.tensor([[8, 7, 9, 11]]), 1),
                                                                                      group="b")],
                  forbid_reference=False)
    r = grade(ex, _bos_and_5_swapped, path)
    assert r.mistake == "values replaced by others", (r.mistake, r.mistake_message)
    assert "1 and 5 swapped (case 1)" in r.mistake_message and "1 -> 5 (case 2)" in r.mistake_message


def test_one_too_long_says_which_part_is_right():
    r = run_local(IDS, lambda ids, bos: torch.cat([torch.full_like(ids[..., :1], bos), ids], dim=-1))
    assert "your first" in r.mistake_message and "are exactly the expected ones" in r.mistake_message


# -- a mean (a number) -----------------------------------------------------------------------------


def mean_square(x):
    """mean of x**2 (a 0-d tensor)"""
    return (x * x).mean()


def _number_cases(gen, hidden):
    sizes = (3, 5, 7, 9) if hidden else (4, 6, 10)
    return [Case((randn(gen, n) + 1,), group=f"n{n}") for n in sizes]


NUMBER = Exercise("99.diag_number", "99_test", "mean_square", 2, "number", mean_square, _number_cases, forbid_reference=False)

NUMBER_ROWS = [
    ("sum", lambda x: (x * x).sum(), "scaled by a size of the input"),
    ("negative", lambda x: -(x * x).mean(), "the negative"),
    ("twice", lambda x: 2 * (x * x).mean(), "scaled by a constant"),
]


@PATHS
@pytest.mark.parametrize("what,fn,name", NUMBER_ROWS, ids=[r[0] for r in NUMBER_ROWS])
def test_number_wrong_answers_get_the_pattern_they_show(what, fn, name, path):
    r = grade(NUMBER, fn, path)
    assert r.mistake == name and r.diagnosed, (r.mistake, r.mistake_message, r.message)


def test_a_sum_for_a_mean_names_the_input_size():
    r = run_local(NUMBER, lambda x: (x * x).sum())
    assert "times n, n being axis 0 of `x`" in r.mistake_message, r.mistake_message


def test_one_wrong_id_in_a_0d_output_shows_no_pattern():
    # a sampler that is wrong only on its single-row (0-d) case: one id for another is no pattern
    pick = Exercise("99.diag_pick", "99_test", "pick", 1, "pick", lambda x: x.argmax(-1),
                    lambda gen, hidden: [Case((randn(gen, 4, 6),)), Case((randn(gen, 6),), group="row")],
                    forbid_reference=False)
    r = run_local(pick, lambda x: x.argmax(-1) if x.dim() == 2 else (x.argmax(-1) + 1) % 6)
    assert r.status == "partial" and r.mistake is None, (r.mistake, r.mistake_message)


def test_one_number_off_is_no_evidence_of_a_constant_shift():
    # any two numbers differ by a constant and have a ratio: one case shows no pattern
    one = Exercise("99.diag_one_number", "99_test", "mean_square", 1, "number", mean_square,
                   lambda gen, hidden: [Case((randn(gen, 5) + 1,))], forbid_reference=False)
    r = run_local(one, lambda x: (x * x).mean() + 0.37)
    assert r.status == FAILED and r.mistake is None, r.mistake


# -- a pair of outputs -----------------------------------------------------------------------------


def top2(x):
    """(values, indices) of the 2 largest along the last axis"""
    v, i = x.topk(2, dim=-1)
    return v, i


PAIR = Exercise("99.diag_pair", "99_test", "top2", 2, "pair", top2,
                lambda gen, hidden: [Case((randn(gen, 3, 6),)), Case((randn(gen, 5),), group="vector")],
                forbid_reference=False)


@PATHS
def test_tuple_items_swapped(path):
    r = grade(PAIR, lambda x: top2(x)[::-1], path)
    assert r.mistake == "tuple items in the wrong order", (r.mistake, r.message)


@PATHS
def test_a_list_for_the_promised_tuple_is_a_wrong_type(path):
    r = grade(PAIR, lambda x: list(top2(x)), path)
    assert r.status == FAILED and r.mistake == "wrong type" and "should be a tuple" in r.mistake_message


@PATHS
def test_a_tuple_for_one_tensor_says_which_item_to_return(path):
    r = grade(SOFTMAX, lambda x: (softmax(x), x), path)
    assert r.status == FAILED and "item [0] has the expected shape" in r.message, r.message
    assert "torch.stack" not in r.message


# -- a sum of inputs --------------------------------------------------------------------------------


def add_positions(x, pe):
    """x (B, T, D) + pe[:T] (pe is (max_len, D))"""
    return x + pe[: x.shape[1]]


RESID = Exercise("99.diag_resid", "99_test", "add_positions", 2, "sum", add_positions,
                 lambda gen, hidden: [Case((randn(gen, 2, 4, 6), randn(gen, 10, 6))),
                                      Case((randn(gen, 3, 5, 8), randn(gen, 16, 8)), group="b")],
                 forbid_reference=False)

RESID_ROWS = [
    ("positions alone", lambda x, pe: pe[: x.shape[1]].expand_as(x).clone(), "an input left out"),
    ("positions twice", lambda x, pe: x + 2 * pe[: x.shape[1]], "an input added once too often"),
    ("x twice", lambda x, pe: 2 * x + pe[: x.shape[1]], "an input added once too often"),
    ("nothing kept", lambda x, pe: x[:, :0], "an empty output"),
]


@PATHS
@pytest.mark.parametrize("what,fn,name", RESID_ROWS, ids=[r[0] for r in RESID_ROWS])
def test_sum_wrong_answers_get_the_pattern_they_show(what, fn, name, path):
    r = grade(RESID, fn, path)
    assert r.mistake == name and r.diagnosed, (r.mistake, r.mistake_message, r.message)


def test_an_input_left_out_says_which_and_how_it_was_fitted():
    r = run_local(RESID, lambda x, pe: x)  # returns x: "returns an input unchanged" comes first
    assert r.mistake == "returns an input unchanged"
    r = run_local(RESID, lambda x, pe: x + 2 * pe[: x.shape[1]])
    assert "plus `pe` (its first 4 rows) broadcast over the batch" in r.mistake_message, r.mistake_message


# -- the other patterns ----------------------------------------------------------------------------


def row_sums(x):
    """sum over the last axis, keeping it (shape (..., 1))"""
    return x.sum(dim=-1, keepdim=True)


KEEP = Exercise("99.diag_keep", "99_test", "row_sums", 1, "keep", row_sums,
                lambda gen, hidden: [Case((randn(gen, 3, 4),)), Case((randn(gen, 2, 5),), group="b")],
                forbid_reference=False)


def _last_column_noise(x, W):
    out = x @ W
    out[..., -1] = torch.sin(11 * out[..., -1]) + 3
    return out


def _first_copied(ids, bos):
    out = shift(ids, bos)
    out[..., 0] = ids[..., 0]
    return out


def _zeroes_its_input(x, W):
    out = x @ W
    x.zero_()
    return out


EXTRA_ROWS = [
    (PAIR, "three items", lambda x: top2(x) + (x,), "wrong items"),
    (KEEP, "keepdim forgotten", lambda x: x.sum(dim=-1), "a missing size-1 axis"),
    (IDS, "one too short", lambda ids, bos: shift(ids, bos)[..., :-1], "one too few along an axis"),
    (MASK, "the past hidden too", lambda T: ~torch.eye(T, dtype=torch.bool), "wrong only below the diagonal"),
    (IDS, "first id kept", _first_copied, "wrong only at the first position"),
    (LINEAR, "last column noise", _last_column_noise, "wrong only at the last position"),
    (LINEAR, "negated", lambda x, W: -(x @ W), "the negative"),
    (LINEAR, "zeroes its input", _zeroes_its_input, "changes an input in place"),
]


@PATHS
@pytest.mark.parametrize("ex,what,fn,name", EXTRA_ROWS, ids=[r[1] for r in EXTRA_ROWS])
def test_other_wrong_answers_get_the_pattern_they_show(ex, what, fn, name, path):
    r = grade(ex, fn, path)
    assert r.mistake == name and r.diagnosed, (r.mistake, r.mistake_message, r.message)


@PATHS
def test_a_pattern_on_some_cases_says_what_the_others_raised(path):
    def keepdim_forgotten(x):  # broadcasts on square inputs only, raises on the others
        e = x.exp()
        return e / e.sum(-1)

    r = grade(SOFTMAX, keepdim_forgotten, path)
    assert r.mistake == "does not sum to 1" and "raised RuntimeError" in r.mistake_message, r.mistake_message


# -- errors ----------------------------------------------------------------------------------------

import numpy as np  # noqa: E402


def _if_positive(x, W):
    if x @ W > 0:
        return x @ W
    return x @ W


ERROR_ROWS = [
    (SOFTMAX, "max without .values", lambda x: (x - x.max(-1, keepdim=True)).exp(), "a (values, indices) pair used as a tensor"),
    (SOFTMAX, "topk past the axis", lambda x: x.topk(x.shape[-1] + 2, dim=-1).values, "top-k of more than the axis holds"),
    (LINEAR, "a course function refuses", lambda x, W: __import__("course_lib.attention").attention.split_heads(x @ W, 3),
     "an input the course's function refuses"),
    (LINEAR, "torch.dot on a batch", lambda x, W: torch.dot(x, W), "a 1-D-only function on a batch"),
    (LINEAR, "operands swapped", lambda x, W: W @ x, "a matrix product of shapes that do not fit"),
    (SOFTMAX, "a vector one too long", lambda x: x.exp() / torch.ones(x.shape[-1] + 1), "shapes that do not broadcast"),
    (LINEAR, "stacked pieces", lambda x, W: torch.stack([x, x @ W]), "tensors of different sizes joined"),
    (LINEAR, "view after transpose", lambda x, W: (x @ W).transpose(-1, -2).view(-1), "view of a non-contiguous tensor"),
    (LINEAR, "reshape to a made-up size", lambda x, W: (x @ W).reshape(7, -1, 3), "a reshape to another number of elements"),
    (SOFTMAX, "axis 2 of a matrix", lambda x: x.softmax(dim=x.dim()), "an axis the tensor does not have"),
    (IDS, "index past the end", lambda ids, bos: ids[:, ids.shape[1]], "an index past the end"),
    (IDS, "float index", lambda ids, bos: ids[:, ids[0].float()], "float or wrong-kind indices"),
    (LINEAR, "float64 weights", lambda x, W: x @ W.double(), "dtypes that do not fit together"),
    (LINEAR, "if on a tensor", _if_positive, "a tensor used as a True/False"),
    (LINEAR, "numpy inside", lambda x, W: torch.cat([x @ W, np.zeros((1, W.shape[1]), dtype=np.float32)]),
     "a numpy value in torch code"),
]


@PATHS
@pytest.mark.parametrize("ex,what,fn,name", ERROR_ROWS, ids=[r[1] for r in ERROR_ROWS])
def test_errors_get_what_they_mean(ex, what, fn, name, path):
    r = grade(ex, fn, path)
    assert r.status in ("error", "failed", "partial") and r.mistake == name and r.diagnosed, (r.mistake, r.message)
    assert "your code raised" in r.mistake_message


# -- what must stay unnamed ------------------------------------------------------------------------


NEVER_ROWS = [
    (SOFTMAX, "noise", lambda x: softmax(x + 0.3 * torch.sin(7 * x))),
    (SOFTMAX, "squared and renormalised", lambda x: softmax(x) ** 2 / (softmax(x) ** 2).sum(-1, keepdim=True)),
    (SOFTMAX, "temperature 2", lambda x: softmax(x / 2)),
    (NUMBER, "median", lambda x: (x * x).median()),
    (IDS, "random ids", lambda ids, bos: torch.randint(0, 30, ids.shape, generator=torch.Generator().manual_seed(1))),
]


@PATHS
@pytest.mark.parametrize("ex,what,fn", NEVER_ROWS, ids=[r[1] for r in NEVER_ROWS])
def test_a_wrong_answer_no_pattern_describes_stays_unnamed(ex, what, fn, path):
    r = grade(ex, fn, path)
    assert r.status != PASSED and r.mistake is None, (r.mistake, r.mistake_message)


def test_right_answers_get_no_diagnosis():
    for ex, fn in ((SOFTMAX, torch.nn.functional.softmax), (MASK, causal), (IDS, shift), (NUMBER, mean_square)):
        g = (lambda x: fn(x, dim=-1)) if fn is torch.nn.functional.softmax else fn
        r = run_local(ex, g, allow_reference=True)
        assert r.status == PASSED and r.mistake is None and not r.diagnosed


def test_a_known_mistake_comes_before_any_pattern():
    ex = Exercise("99.diag_known", "99_test", "softmax", 3, "softmax", softmax, _softmax_cases,
                  mistakes=[KnownMistake("doubled", "you multiply by 2", lambda x: softmax(x) * 2)],
                  forbid_reference=False)
    r = run_local(ex, lambda x: 2 * softmax(x))
    assert r.mistake == "doubled" and not r.diagnosed


def test_a_scale_factor_names_the_size_it_equals():
    def scores(q, k):
        """q @ k^T / sqrt(d)"""
        return q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5

    ex = Exercise("99.diag_scores", "99_test", "scores", 2, "scores", scores,
                  lambda gen, hidden: [Case((randn(gen, 3, 8), randn(gen, 5, 8))),
                                       Case((randn(gen, 2, 16), randn(gen, 4, 16)), group="wide")],
                  forbid_reference=False)
    r = run_local(ex, lambda q, k: q @ k.T / q.shape[-1])
    assert r.mistake == "scaled by a constant", r.mistake
    assert "(= 1/sqrt(8), 8 being axis 1 of `q`)" in r.mistake_message, r.mistake_message


# -- every pattern has rows here -------------------------------------------------------------------


def test_every_pattern_is_tested_here():
    rows = (SOFTMAX_ROWS, MASK_ROWS, IDS_ROWS, NUMBER_ROWS, LINEAR_ROWS, EXTRA_ROWS, ERROR_ROWS, RESID_ROWS)
    tested = {row[-1] for table in rows for row in table}
    tested |= {"nan or inf in the output", "tuple items in the wrong order", "wrong type", "values replaced by others"}
    assert tested <= D.NAMES, sorted(tested - D.NAMES)
    assert not D.NAMES - tested, f"patterns without a test row: {sorted(D.NAMES - tested)}"
