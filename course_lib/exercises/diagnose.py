"""What a wrong output shows when it matches none of an exercise's known mistakes.

A known mistake (:class:`~course_lib.exercises.core.KnownMistake`) is named when the learner's output
equals a listed wrong version. Many wrong answers are wrong in a way that can be *seen* in the output
without knowing the code behind it: the right numbers times a constant, the right numbers transposed,
a mask that is right except on its diagonal, a probability table that sums to one along the wrong axis.
:func:`diagnose` looks for those patterns, in a fixed order, and names the first one that holds on
**every** failing case (a pattern seen on one case and contradicted on another is not named).

Each pattern is a statement about the outputs only, so a diagnosis is never a guess about the code:
"your output is 0.354 times the expected one (1/sqrt(8); 8 is a size in this case)" is true whatever
line caused it. Non-finite values are never evidence (nan matching nan proves nothing), and every
pattern needs at least one position where it explains a difference.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from .core import Case, ModuleInputs, _fmt_number, compare


@dataclass(frozen=True)
class Diagnosis:
    """A pattern seen in the learner's output: a short ``name`` and the ``message`` that explains it."""

    name: str
    message: str


@dataclass(frozen=True)
class _Seen:
    """One failing case as a pattern sees it: expected ``want``, the learner's ``got``, its inputs."""

    index: int
    case: Case
    want: Any
    got: Any
    names: tuple = ()  # the function's parameter names, for saying which input a size comes from


# One pattern: ``(seen, tol) -> (name, text) or None``; ``text`` describes the first failing case.
Pattern = Callable[["_Seen", "_Tol"], Optional[tuple]]


@dataclass(frozen=True)
class _Tol:
    atol: float
    rtol: float

    def close(self, got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
        """Elementwise ``|got - want| <= atol + rtol * |want|`` in float64 (nan/inf are never close)."""
        g, w = got.double(), want.double()
        return ((g - w).abs() <= self.atol + self.rtol * w.abs()) & torch.isfinite(g) & torch.isfinite(w)


# -- helpers ---------------------------------------------------------------------------------------


def _float_pair(s: _Seen) -> Optional[tuple]:
    """``(want, got)`` as float64 when both are plain floating tensors of the same shape."""
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and w.is_floating_point()
            and g.is_floating_point() and tuple(w.shape) == tuple(g.shape) and w.numel() > 0):
        return None
    return w.detach().double(), g.detach().double()


def _finite_pair(s: _Seen) -> Optional[tuple]:
    """:func:`_float_pair`, only when neither tensor holds nan or inf (patterns of finite numbers)."""
    p = _float_pair(s)
    if p is None or not (bool(torch.isfinite(p[0]).all()) and bool(torch.isfinite(p[1]).all())):
        return None
    return p


def _wrong_positions(w: torch.Tensor, g: torch.Tensor, tol: "_Tol") -> torch.Tensor:
    """Where ``g`` differs from ``w`` as the check compares them (nan matches nan, inf the same inf)."""
    if w.dtype == torch.bool or not w.is_floating_point():
        return g.to(w.dtype) != w
    return ~(tol.close(g, w) | (torch.isnan(w) & torch.isnan(g)) | (torch.isinf(w) & (g == w)))


def _sizes(case: Case, names: tuple = ()) -> list:
    """``(label, n)`` for the integers that size this case: tensor dimensions ("axis 1 of `q`"), int
    arguments ("`k`"), a module's int settings ("`d_model`"); ``names`` are the parameter names."""
    out: list = []

    def visit(v: Any, label: str) -> None:
        if isinstance(v, torch.Tensor):
            out.extend((f"axis {a} of {label}", int(d)) for a, d in enumerate(v.shape))
        elif isinstance(v, bool):
            return
        elif isinstance(v, int):
            out.append((label, v))
        elif isinstance(v, (tuple, list)):
            for i, x in enumerate(v):
                visit(x, f"{label}[{i}]")
        elif isinstance(v, dict):
            for k, x in v.items():
                visit(x, f"{label}[{k!r}]")

    args = case.args
    if len(args) == 1 and isinstance(args[0], ModuleInputs):
        for k, x in args[0].init.items():
            visit(x, f"`{k}`")
        args = args[0].args
    for i, x in enumerate(args):
        visit(x, f"`{names[i]}`" if i < len(names) else f"argument {i + 1}")
    for k, x in case.kwargs.items():
        visit(x, f"`{k}`")
    return [(label, n) for label, n in out if 2 <= n <= 100_000]


_FORMS = (("n", lambda n: n), ("1/n", lambda n: 1 / n), ("sqrt(n)", math.sqrt), ("1/sqrt(n)", lambda n: 1 / math.sqrt(n)))


def _factor_forms(k: float, case: Case, names: tuple = ()) -> list:
    """Every ``(form, label, n)`` such that ``k == form(n)`` for a size ``n`` of the case (labelled)."""
    return [(form, label, n) for label, n in _sizes(case, names) for form, f in _FORMS
            if abs(k - f(n)) <= 1e-4 * abs(f(n))]


def _explain_factor(k: float, case: Case, names: tuple = ()) -> str:
    """``" (= 1/sqrt(8), 8 being axis 1 of `q`)"`` when ``k`` is a simple function of a case size."""
    forms = _factor_forms(k, case, names)
    if not forms:
        return ""
    form, label, n = forms[0]
    return f" (= {form.replace('n', str(n))}, {n} being {label})"


def _axis_list(axes: tuple) -> str:
    return ", ".join(str(a) for a in axes)


# -- patterns of whole outputs ---------------------------------------------------------------------


def _swapped_items(s: _Seen, tol: _Tol) -> Optional[tuple]:
    w, g = s.want, s.got
    if not (isinstance(w, tuple) and isinstance(g, (tuple, list)) and len(w) == len(g) >= 2):
        return None
    for i, j in itertools.combinations(range(len(w)), 2):
        order = list(range(len(w)))
        order[i], order[j] = j, i
        if compare(w[i], w[j], tol.atol, tol.rtol) is None:
            continue  # swapping equal items changes nothing
        if all(compare(w[o], g[p], tol.atol, tol.rtol) is None for p, o in enumerate(order)):
            return ("tuple items in the wrong order",
                    f"your output has the right items, but items [{i}] and [{j}] are swapped: return them in "
                    f"the order the task gives")
    return None


# -- patterns of one tensor (the first part of the output that differs) ---------------------------


def _non_finite(s: _Seen, tol: _Tol) -> Optional[tuple]:
    p = _float_pair(s)
    if p is None:
        return None
    w, g = p
    bad = ~torch.isfinite(g) & torch.isfinite(w)
    n = int(bad.sum())
    if not n:
        return None
    idx = [int(i) for i in bad.nonzero()[0].tolist()]
    what = "nan" if bool(torch.isnan(g[bad]).all()) else "inf" if bool(torch.isinf(g[bad]).all()) else "nan or inf"
    return ("nan or inf in the output",
            f"your output has {what} at {n} of {w.numel()} positions where the expected output is finite (first "
            f"at index {idx}): look for `exp` of a large number, a division by zero (a sum of zeros, such as a row "
            f"whose entries are all masked) or the log of zero")


def _permuted_axes(s: _Seen, tol: _Tol) -> Optional[tuple]:
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and w.dim() >= 2 and w.dim() == g.dim()
            and w.numel() == g.numel() and w.numel() > 1 and w.dim() <= 5):
        return None
    for perm in itertools.permutations(range(w.dim())):
        if list(perm) == list(range(w.dim())):
            continue
        moved = w.permute(perm)
        if tuple(moved.shape) != tuple(g.shape):
            continue
        if tuple(g.shape) == tuple(w.shape) and compare(w, moved.contiguous(), tol.atol, tol.rtol) is None:
            continue  # symmetric along these axes: a permutation would change nothing
        if compare(moved.contiguous(), g, tol.atol, tol.rtol, check_dtype=False) is None:
            swapped = [a for a in range(w.dim()) if perm[a] != a]
            return ("axes in the wrong order",
                    f"your output holds the right values with axes {_axis_list(tuple(swapped))} in another order "
                    f"(yours has shape {tuple(g.shape)}, expected {tuple(w.shape)}): a transpose or permute is "
                    f"missing, extra or over the wrong axes")
    return None


def _reshaped(s: _Seen, tol: _Tol) -> Optional[tuple]:
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and tuple(w.shape) != tuple(g.shape)
            and w.numel() == g.numel() and w.numel() > 0):
        return None
    if compare(w, g.reshape(w.shape), tol.atol, tol.rtol, check_dtype=False) is not None:
        return None
    ws, gs = [d for d in w.shape if d != 1], [d for d in g.shape if d != 1]
    if ws == gs and g.dim() > w.dim():
        return ("an extra size-1 axis",
                f"your output has the right values, with shape {tuple(g.shape)} instead of {tuple(w.shape)}: "
                f"an extra axis of size 1 (a `keepdim=True`, `unsqueeze` or `[:, None]` too many)")
    if ws == gs and g.dim() < w.dim():
        return ("a missing size-1 axis",
                f"your output has the right values, with shape {tuple(g.shape)} instead of {tuple(w.shape)}: "
                f"an axis of size 1 is missing (a `.squeeze()` too many, or `keepdim=True`, `unsqueeze` or "
                f"`[:, None]` missing)")
    return ("right values, wrong shape",
            f"your output has the right values in the right order, with shape {tuple(g.shape)} instead of "
            f"{tuple(w.shape)}: reshape it (or look at a `view`, `flatten` or `reshape`)")


def _one_off_length(s: _Seen, tol: _Tol) -> Optional[tuple]:
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and w.dim() == g.dim() and w.dim() >= 1):
        return None
    diff = [a for a in range(w.dim()) if w.shape[a] != g.shape[a]]
    if len(diff) != 1 or abs(w.shape[diff[0]] - g.shape[diff[0]]) != 1:
        return None
    a = diff[0]
    more = g.shape[a] > w.shape[a]
    n = min(w.shape[a], g.shape[a])
    head = ""
    for start, where in ((0, "first"), (1, "last")):
        long_, short = (g, w) if more else (w, g)
        part = long_.narrow(a, start, n)
        if compare(part, short, tol.atol, tol.rtol, check_dtype=False) is None:
            head = (f"; your {where} {n} are exactly the expected ones" if more else
                    f"; yours are exactly the expected {where} {n}")
            break
    return (f"one {'too many' if more else 'too few'} along an axis",
            f"your output has {g.shape[a]} entries along axis {a}, expected {w.shape[a]} (shape "
            f"{tuple(g.shape)} instead of {tuple(w.shape)}){head}: an off-by-one in a range, slice or count")


def _empty(s: _Seen, tol: _Tol) -> Optional[tuple]:
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and g.numel() == 0 and w.numel() > 0):
        return None
    return ("an empty output",
            f"your output is empty (shape {tuple(g.shape)}, expected {tuple(w.shape)}): a slice or a filter keeps "
            f"nothing; check which axis you slice (the batch axis comes first)")


def _inputs(case: Case, names: tuple) -> list:
    """``(label, tensor)`` of the case's floating tensor inputs (``forward``'s for a module)."""
    args = case.args
    if len(args) == 1 and isinstance(args[0], ModuleInputs):
        args = args[0].args
        names = ()
    out = [(f"`{names[i]}`" if i < len(names) else f"argument {i + 1}", a) for i, a in enumerate(args)]
    out += [(f"`{k}`", v) for k, v in case.kwargs.items()]
    return [(label, a) for label, a in out if type(a) is torch.Tensor and a.is_floating_point() and a.numel() > 1]


def _fitted(a: torch.Tensor, shape: tuple) -> Optional[tuple]:
    """``a`` (or its first rows) broadcast to ``shape``, with how: ``(tensor, " (its first 4 rows)")``."""
    a = a.detach().double()
    if a.dim() > len(shape):
        return None
    tail = shape[len(shape) - a.dim():]
    how = ""
    if a.dim() >= 1 and a.shape[0] > tail[0] and tuple(a.shape[1:]) == tuple(tail[1:]):
        a, how = a[: tail[0]], f" (its first {tail[0]} rows)"
    try:
        return a.expand(*shape), how + (" broadcast over the batch" if a.dim() < len(shape) else "")
    except RuntimeError:
        return None


def _input_term(s: _Seen, tol: _Tol) -> Optional[tuple]:
    """The expected output plus or minus one of the inputs: a term left out, or added once too often."""
    p = _finite_pair(s)
    if p is None:
        return None
    w, g = p
    d = g - w
    for label, a in _inputs(s.case, s.names):
        fit = _fitted(a, tuple(w.shape))
        if fit is None:
            continue
        c, how = fit
        if float(c.abs().max()) <= 10 * tol.atol:
            continue
        for sign, text in ((-1.0, "minus"), (1.0, "plus")):
            if bool(tol.close(d, sign * c).all()):
                what = ("a term is left out (an addition such as a residual `x + ...` or the positions)"
                        if sign < 0 else "this input is added once too often (or added where the task does not add it)")
                return (f"an input {'left out' if sign < 0 else 'added once too often'}",
                        f"your output is the expected one {text} {label}{how}: {what}")
    return None


def _inverted(s: _Seen, tol: _Tol) -> Optional[tuple]:
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and w.dtype == torch.bool
            and tuple(w.shape) == tuple(g.shape) and w.numel() > 0):
        return None
    if g.dtype != torch.bool or not torch.equal(g, ~w):
        return None
    return ("mask inverted",
            "your mask is True exactly where the expected one is False and False where it is True: check what "
            "True means in this task (`~mask`, or `==` for `!=`, `>` for `<=`)")


def _region(s: _Seen, tol: _Tol) -> Optional[tuple]:
    """Right everywhere except on the diagonal, above it or below it (of the last two axes)."""
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and tuple(w.shape) == tuple(g.shape)
            and w.dim() >= 2 and w.shape[-1] == w.shape[-2] and w.shape[-1] >= 2):
        return None
    bad = _wrong_positions(w, g, tol)
    if not bool(bad.any()):
        return None
    n = w.shape[-1]
    rows = torch.arange(n).view(n, 1)
    cols = torch.arange(n).view(1, n)
    for where, region in (("on the diagonal", rows == cols), ("above the diagonal", cols > rows),
                          ("below the diagonal", cols < rows)):
        if not bool((bad & ~region).any()):
            return (f"wrong only {where}",
                    f"your output is right everywhere except {where} of the last two axes (where the row index "
                    f"{'equals' if where == 'on the diagonal' else 'is less than' if 'above' in where else 'is greater than'}"
                    f" the column index): {'check how the entries with row == column are computed (for a triangular mask: `diagonal=`, or `<` for `<=`)' if where == 'on the diagonal' else 'compare the rule for those positions with the task'}")
    return None


def _one_index(s: _Seen, tol: _Tol) -> Optional[tuple]:
    """Right everywhere except at one index (first or last) along one axis."""
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and tuple(w.shape) == tuple(g.shape)
            and w.dim() >= 1 and w.numel() > 1):
        return None
    bad = _wrong_positions(w, g, tol)
    if not bool(bad.any()):
        return None
    for a in range(w.dim()):
        if w.shape[a] < 3:
            continue
        for i, where in ((0, "first"), (w.shape[a] - 1, "last")):
            keep = torch.ones(w.shape[a], dtype=torch.bool)
            keep[i] = False
            if not bool(bad.index_select(a, keep.nonzero().flatten()).any()):
                return (f"wrong only at the {where} position",
                        f"your output is right everywhere except at the {where} index along axis {a} (index {i} "
                        f"of {w.shape[a]}): look at how the {where} position is handled (a shift, a slice or a "
                        f"boundary)")
    return None


def _int_offset(s: _Seen, tol: _Tol) -> Optional[tuple]:
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and tuple(w.shape) == tuple(g.shape)
            and w.numel() >= 2 and not w.is_floating_point() and w.dtype != torch.bool
            and not g.is_floating_point() and g.dtype != torch.bool):
        return None  # one number differs from another by a constant: no evidence
    d = g.long() - w.long()
    c = int(d.reshape(-1)[0])
    if c == 0 or not bool((d == c).all()):
        return None
    return ("off by a constant",
            f"every value of your output is the expected one {'+' if c > 0 else '-'} {abs(c)}"
            f"{': an off-by-one' if abs(c) == 1 else ''}")


def _replacements(s: _Seen) -> Optional[dict]:
    """``{expected value: your value}`` when an integer output differs only where the expected output holds
    one or two values, each position holding such a value replaced the same way; else ``None``."""
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and tuple(w.shape) == tuple(g.shape)
            and w.numel() >= 2 and not w.is_floating_point() and w.dtype != torch.bool
            and not g.is_floating_point()):
        return None  # one number replaced by another is no pattern
    bad = g.long() != w.long()
    if not bool(bad.any()):
        return None
    pairs: dict = {}
    for e, x in zip(w[bad].tolist(), g.long()[bad].tolist()):
        pairs.setdefault(int(e), set()).add(int(x))
    if len(pairs) > 2 or any(len(v) != 1 for v in pairs.values()):
        return None
    # every position holding such a value must be wrong in the same way, or the rule is not "a value for another"
    for e in pairs:
        if bool((w.long() == e).logical_and(~bad).any()):
            return None
    return {e: next(iter(xs)) for e, xs in sorted(pairs.items())}


def _describe_replacements(mapping: dict) -> str:
    (a, b), *rest = mapping.items()
    if rest and rest[0] == (b, a):
        return f"{a} and {b} swapped"
    return ", ".join(f"{e} -> {x}" for e, x in mapping.items())


def _substituted(seen: list, tol: _Tol) -> Optional[tuple]:
    """Integer outputs that differ only where the expected output holds one value (or two), on every failing
    case, each such value always replaced the same way (the replacements may differ between cases)."""
    maps = [_replacements(s) for s in seen]
    if not maps or any(m is None for m in maps):
        return None
    groups: dict = {}
    for s, m in zip(seen, maps):
        groups.setdefault(_describe_replacements(m), []).append(s.index + 1)
    if len(groups) == 1 and len(maps[0]) == 1:
        (e, x), = maps[0].items()
        n = int((seen[0].want.long() == e).sum())
        return ("a value replaced by another",
                f"your output differs from the expected one only where the expected output is {e}: there yours is "
                f"{x} ({n} positions on case {seen[0].index + 1}"
                f"{'' if len(seen) == 1 else f', and the same on each of the {len(seen)} failing cases'}); check "
                f"that value (an id, a fill value or a label)")
    listed = "; ".join(f"{desc} ({_plural_cases(cases)})" for desc, cases in groups.items())
    return ("values replaced by others",
            f"your output differs from the expected one only at positions holding certain values, each replaced "
            f"the same way wherever it appears (expected -> yours): {listed}; check those values (ids, fill values "
            f"or labels)")


def _scaled(s: _Seen, tol: _Tol) -> Optional[tuple]:
    p = _finite_pair(s)
    if p is None:
        return None
    w, g = p
    big = w.abs() > 10 * tol.atol
    if int(big.sum()) < 2:
        return None
    ratios = g[big] / w[big]
    k = float(ratios.median())
    if k == 0 or not math.isfinite(k) or abs(k - 1) <= 10 * tol.rtol:
        return None
    if not bool(tol.close(g, k * w).all()):
        return None
    if abs(k + 1) <= tol.rtol:
        return ("the negative", "your output is exactly the negative of the expected one: a sign is flipped "
                                "(`a - b` for `b - a`, or a minus too many)")
    return ("scaled by a constant",
            f"your output is {_fmt_number(k)} times the expected one at every position"
            f"{_explain_factor(k, s.case, s.names)}: a scale factor is missing, extra or wrong")


def _shifted(s: _Seen, tol: _Tol) -> Optional[tuple]:
    p = _finite_pair(s)
    if p is None:
        return None
    w, g = p
    if w.numel() < 2:
        return None  # any two numbers differ by a constant: no evidence
    d = g - w
    c = float(d.median())
    if abs(c) <= tol.atol + tol.rtol * float(w.abs().max()):
        return None
    if bool(tol.close(g, w + c).all()):
        return ("off by a constant",
                f"your output is the expected one plus {_fmt_number(c)} at every position: a constant is added or "
                f"subtracted once too often (or not at all)")
    if w.dim() >= 2 and w.numel() > w.shape[-1]:
        v = d.reshape(-1, w.shape[-1]).median(dim=0).values
        if float(v.abs().max()) > tol.atol and bool(tol.close(g, w + v).all()):
            return ("off by the same vector everywhere",
                    "each position of your output is off by the same vector (the difference does not depend on the "
                    "position): a term such as a bias is added twice, subtracted or left out")
    return None


def _normalisation(s: _Seen, tol: _Tol) -> Optional[tuple]:
    """The expected output is a probability table along some axis; the learner's is not, or along another."""
    p = _float_pair(s)
    if p is None:
        return None
    w, g = p
    if w.dim() < 1 or bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        return None
    one = 1e-4
    axes = [a for a in range(w.dim()) if w.shape[a] >= 2 and bool(((w.sum(dim=a) - 1).abs() <= one).all())]
    if not axes or not bool(torch.isfinite(g).all()):
        return None
    a = axes[-1]
    g_axes = [b for b in range(g.dim()) if g.shape[b] >= 2 and bool(((g.sum(dim=b) - 1).abs() <= one).all())]
    if a in g_axes:
        return None  # normalised like the expected output: the difference lies elsewhere
    if g_axes and not bool((g < 0).any()):
        return ("normalised over the wrong axis",
                f"your output sums to 1 along axis {g_axes[-1]}, the expected one along axis {a}: the sum (or "
                f"softmax) runs over the wrong axis (`dim=`)")
    sums = g.sum(dim=a)
    lo, hi = float(sums.min()), float(sums.max())
    scale = sums.unsqueeze(a)  # g = w * (its own sum) when it is the expected table, unnormalised
    if bool((g >= 0).all()) and bool(tol.close(g, w * scale).all()):
        return ("not normalised",
                f"your output is proportional to the expected one along axis {a}, but sums to {_fmt_number(lo)}"
                f"{'' if lo == hi else f' to {_fmt_number(hi)}'} there instead of 1: the division by the sum is "
                f"missing or uses another sum")
    return None


def _not_summing_to_one(s: _Seen, tol: _Tol) -> Optional[tuple]:
    """The expected output is a probability table along an axis; the learner's does not sum to 1 there."""
    p = _finite_pair(s)
    if p is None:
        return None
    w, g = p
    if bool((w < 0).any()):
        return None
    axes = [a for a in range(w.dim()) if w.shape[a] >= 2 and bool(((w.sum(dim=a) - 1).abs() <= 1e-4).all())]
    if not axes:
        return None
    a = axes[-1]
    sums = g.sum(dim=a)
    if bool(((sums - 1).abs() <= 1e-4).all()):
        return None
    lo, hi = float(sums.min()), float(sums.max())
    return ("does not sum to 1",
            f"the expected output sums to 1 along axis {a} (a probability distribution); yours sums to "
            f"{_fmt_number(lo)}{'' if lo == hi else f' to {_fmt_number(hi)}'} there"
            f"{' and has negative values' if bool((g < 0).any()) else ''}")


_ELEMENTWISE = (
    ("exp(expected)", "exp", torch.exp), ("log(expected)", "log", torch.log),
    ("expected squared", "square", torch.square), ("sqrt(expected)", "sqrt", torch.sqrt),
    ("abs(expected)", "abs", torch.abs), ("relu(expected)", "relu", torch.relu),
    ("tanh(expected)", "tanh", torch.tanh), ("sigmoid(expected)", "sigmoid", torch.sigmoid),
    ("1 - expected", "1 - x", lambda t: 1 - t), ("1 / expected", "1 / x", torch.reciprocal),
)


def _elementwise(s: _Seen, tol: _Tol) -> Optional[tuple]:
    p = _float_pair(s)
    if p is None:
        return None
    w, g = p
    if w.numel() < 2:
        return None
    for text, op, f in _ELEMENTWISE:
        fw = f(w)
        finite = torch.isfinite(fw)
        # where the function gives -inf/+inf (log 0), the output must be -inf/+inf too or beyond what float32
        # can hold after an exp (|x| > 80: a log-softmax of an underflowed probability); nan only for nan
        ok_inf = torch.where(fw == float("-inf"), g <= -80, torch.where(fw == float("inf"), g >= 80, torch.isnan(g)))
        if int(finite.sum()) < 2 or not bool(tol.close(g, fw)[finite].all()) or not bool(ok_inf[~finite].all()):
            continue
        if not bool((~tol.close(fw, w) & finite).any()):
            continue  # the function changes nothing on these values: no evidence
        return ("an elementwise function too many",
                f"your output is {text} at every position: an extra `{op}` is applied to the right answer, or the "
                f"last step of the computation is another one")
    return None


def _scaled_along(s: _Seen, tol: _Tol) -> Optional[tuple]:
    """The expected output times a factor that varies only along some axes (one factor per slice)."""
    p = _finite_pair(s)
    if p is None:
        return None
    w, g = p
    if w.dim() < 2 or w.dim() > 4:
        return None
    big = w.abs() > 10 * tol.atol
    ratio = torch.where(big, g / torch.where(big, w, torch.ones_like(w)), torch.full_like(w, float("nan")))
    for n_keep in range(1, w.dim()):
        for keep in itertools.combinations(range(w.dim()), n_keep):
            other = tuple(a for a in range(w.dim()) if a not in keep)
            if all(w.shape[a] < 2 for a in other):
                continue
            moved = ratio.permute(*keep, *other).reshape(*[w.shape[a] for a in keep], -1)
            c = moved.nanmedian(dim=-1).values  # one factor per slice
            if bool(torch.isnan(c).any()):
                continue
            shape = [w.shape[a] if a in keep else 1 for a in range(w.dim())]
            c_full = c.reshape(shape)
            if not bool(tol.close(g, w * c_full).all()):
                continue
            lo, hi = float(c.min()), float(c.max())
            if hi - lo <= 10 * tol.rtol * max(abs(hi), abs(lo)):
                return None  # one factor for all: that is "scaled by a constant"
            return ("scaled per slice",
                    f"your output is the expected one times a factor that changes only along axis "
                    f"{_axis_list(keep)} (from {_fmt_number(lo)} to {_fmt_number(hi)}): something you multiply or "
                    f"divide by (a norm, a sum, a count) is computed over the wrong axis, is missing or is extra")
    return None


def _constant_along(s: _Seen, tol: _Tol) -> Optional[tuple]:
    """The same values at every index along an axis where the expected output changes."""
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and tuple(w.shape) == tuple(g.shape)
            and w.dim() >= 2):
        return None
    for a in range(w.dim()):
        if w.shape[a] < 2:
            continue
        first_g, first_w = g.narrow(a, 0, 1), w.narrow(a, 0, 1)
        if torch.equal(g, first_g.expand_as(g)) and not torch.equal(w, first_w.expand_as(w)):
            return ("the same along an axis",
                    f"your output is the same at every index along axis {a}, where the expected one changes: "
                    f"the computation uses one index (such as `[0]`) for all, or broadcasts one slice")
    return None


def _reordered(s: _Seen, tol: _Tol) -> Optional[tuple]:
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and tuple(w.shape) == tuple(g.shape)
            and w.dim() >= 1 and w.numel() > 1 and w.dtype != torch.bool):
        return None
    for a in range(w.dim()):
        if w.shape[a] < 2:
            continue
        if compare(w.flip(a), g, tol.atol, tol.rtol, check_dtype=False) is None:
            return ("reversed along an axis",
                    f"your output is the expected one in reverse order along axis {a}: an order (a sort, a "
                    f"`flip`, `descending=`) is the wrong way round")
    for a in range(w.dim()):  # the values along an axis are right, in another order
        if w.shape[a] < 2:
            continue
        ws, gs = w.sort(dim=a).values, g.to(w.dtype).sort(dim=a).values
        if compare(ws, gs, tol.atol, tol.rtol, check_dtype=False) is None:
            return ("right values, wrong order",
                    f"your output holds the right values along axis {a}, in another order: check how you "
                    f"sort, index or gather")
    return None


def _constant_output(s: _Seen, tol: _Tol) -> Optional[tuple]:
    w, g = s.want, s.got
    if not (type(w) is torch.Tensor and type(g) is torch.Tensor and tuple(w.shape) == tuple(g.shape)
            and w.numel() >= 2):
        return None
    flat = g.reshape(-1)
    if not torch.equal(flat, flat[:1].expand_as(flat)) or torch.equal(w.reshape(-1), w.reshape(-1)[:1].expand_as(flat)):
        return None
    v = flat[0].item()
    return ("the same value everywhere",
            f"every value of your output is {_fmt_number(v) if isinstance(v, float) else v}, whatever the input: "
            f"the result of the computation is overwritten, or never reaches the output")


def _returns_input(s: _Seen, tol: _Tol) -> Optional[tuple]:
    g = s.got
    if type(g) is not torch.Tensor:
        return None
    args = s.case.args
    if len(args) == 1 and isinstance(args[0], ModuleInputs):
        args = args[0].args
    for i, a in enumerate(args):
        if type(a) is torch.Tensor and tuple(a.shape) == tuple(g.shape) and a.dtype == g.dtype and torch.equal(a, g):
            return ("returns an input unchanged",
                    f"your output is exactly argument {i + 1} as it was given: the result of your computation is "
                    f"not what the function returns")
    return None


def _nearly(s: _Seen, tol: _Tol) -> Optional[tuple]:
    p = _finite_pair(s)
    if p is None:
        return None
    w, g = p
    scale = float(w.abs().max()) or 1.0
    err = float((g - w).abs().max())
    if err > 1e-2 * scale:
        return None
    return ("nearly right",
            f"your output is close to the expected one but outside the tolerance (largest error {_fmt_number(err)}, "
            f"against {_fmt_number(tol.atol)} + {_fmt_number(tol.rtol)} x |expected|): a small constant (an epsilon), "
            f"a low precision (float16) or an approximation differs from the task's")


def _scaled_number(seen: list, tol: _Tol) -> Optional[tuple]:
    """Python numbers or 0-d tensors: the negative, one factor shared by every failing case (at least two of
    them), or the same simple function of a size of each case."""
    vals = []
    for s in seen:
        w, g = s.want, s.got
        if type(w) is torch.Tensor and type(g) is torch.Tensor and w.dim() == 0 and g.dim() == 0 \
                and w.is_floating_point() and g.is_floating_point():
            w, g = float(w), float(g)
        if not (isinstance(w, (int, float)) and isinstance(g, (int, float))) or isinstance(w, bool) \
                or isinstance(g, bool) or not (math.isfinite(float(w)) and math.isfinite(float(g))) \
                or abs(float(w)) <= 10 * tol.atol:
            return None
        vals.append((s, float(g) / float(w)))
    ks = [k for _, k in vals]
    if all(abs(k + 1) <= tol.rtol for k in ks):
        return ("the negative", "your result is exactly the negative of the expected one on every failing case: a "
                                "sign is flipped (`a - b` for `b - a`, or a minus too many)")
    if len(ks) < 2 or any(abs(k - 1) <= 1e-3 for k in ks):
        return None
    if all(abs(k - ks[0]) <= 10 * tol.rtol * abs(ks[0]) for k in ks):
        return ("scaled by a constant",
                f"your result is {_fmt_number(ks[0])} times the expected one on every failing case"
                f"{_explain_factor(ks[0], vals[0][0].case, vals[0][0].names)}: a scale "
                f"factor is missing, extra or wrong")
    per_case = [{(form, label) for form, label, _ in _factor_forms(k, s.case, s.names)} for s, k in vals]
    shared = sorted(set.intersection(*per_case)) if per_case else []
    if shared:
        form = shared[0][0]
        labels = [label for f, label in shared if f == form]
        n = next(n for f, lab, n in _factor_forms(ks[0], vals[0][0].case, vals[0][0].names)
                 if (f, lab) == (form, labels[0]))
        which = labels[0] if len(labels) == 1 else " or ".join(labels) + " (equal on these cases)"
        return ("scaled by a size of the input",
                f"on every failing case your result is the expected one times {form}, n being {which} (case "
                f"{vals[0][0].index + 1}: {_fmt_number(ks[0])} = {form.replace('n', str(n))}): a factor of that size "
                f"is missing or extra (a sum where a mean is asked, one item counted where all are, ...)")
    return None


def _numbers_off(seen: list, tol: _Tol) -> Optional[tuple]:
    """Python ints off by the same amount on every failing case."""
    ds = []
    for s in seen:
        if not (isinstance(s.want, int) and isinstance(s.got, int)) or isinstance(s.want, bool):
            return None
        ds.append(s.got - s.want)
    if len(set(ds)) == 1 and ds[0] != 0 and len(ds) >= 2:  # one number off proves nothing
        d = ds[0]
        return ("off by a constant", f"your result is the expected one {'+' if d > 0 else '-'} {abs(d)} on every "
                                     f"case{': an off-by-one' if abs(d) == 1 else ''}")
    return None


# -- errors: what PyTorch's message means -----------------------------------------------------------

#: ``(name, regular expression on "Type: message", what it means)``, most specific first.
ERROR_PATTERNS: tuple = (
    ("a (values, indices) pair used as a tensor", r"return_types\.(max|min|sort|topk|median|mode|kthvalue)",
     "`x.max(dim)` (also `min`, `sort`, `topk`, `median`) returns a pair (values, indices): take `.values` "
     "(or `.indices`), or use `x.amax(dim)`"),
    ("a 1-D-only function on a batch", r"1D tensors expected|Index is supposed to be a vector|"
                                       r"index_select\(\): Index is supposed|inconsistent tensor size",
     "this function (`torch.dot`, `index_select`, ...) takes 1-D tensors only, and the batched cases give it "
     "more axes: use an operation that works on any number of axes (`(a * b).sum(-1)`, `@`, `W[ids]`)"),
    ("top-k of more than the axis holds", r"selected index k out of range",
     "`torch.topk(x, k)` needs `k` at most the size of the axis: a `k` larger than the vocabulary keeps every "
     "token, so use `min(k, x.shape[-1])`"),
    ("a matrix product of shapes that do not fit",
     r"shapes cannot be multiplied|size mismatch|Expected size for first two dimensions of batch2|"
     r"both arguments to matmul need to be at least 1D",
     "a matrix product `a @ b` needs the last axis of `a` to be as long as the second-to-last of `b`: print both "
     "shapes; one side may need a transpose (`.transpose(-2, -1)`), or the operands are in the wrong order"),
    ("shapes that do not broadcast", r"must match the size of tensor b|could not be broadcast|not broadcastable",
     "two tensors whose shapes do not broadcast are combined (elementwise, in the batch axes of a matrix product, or "
     "as indices): print both shapes; a `keepdim=True` or an `unsqueeze` may be missing, the wrong axis reduced, or "
     "the axes reversed (`.T` on more than 2 axes reverses them all: use `.transpose(-2, -1)`)"),
    ("tensors of different sizes joined", r"stack expects each tensor to be equal size|Sizes of tensors must match "
                                          r"except in dimension",
     "`torch.stack` needs tensors of one shape and `torch.cat` the same sizes on every other axis: print the "
     "shapes of the pieces"),
    ("view of a non-contiguous tensor", r"view size is not compatible with input tensor's size and stride",
     "`.view` needs a contiguous tensor and a transposed one is not: use `.reshape(...)`, or "
     "`.contiguous().view(...)`"),
    ("a reshape to another number of elements", r"shape '\[.*\]' is invalid for input of size",
     "a `reshape`/`view` asks for a shape with another number of elements than the tensor has: recompute the "
     "sizes from the tensor's own `.shape`"),
    ("an axis the tensor does not have", r"Dimension out of range",
     "a `dim=` (or an index) names an axis the tensor does not have: count its axes with `.dim()`, and prefer "
     "negative axes (`-1` is the last) so that batched inputs work too"),
    ("an index past the end", r"index -?\d+ is out of bounds|index out of range|out of range in self",
     "an index is past the end of a tensor (or of the wrong kind for that indexing function): print the "
     "largest index and the size of the axis it indexes"),
    ("float or wrong-kind indices", r"tensors used as indices must be|only integer tensors of a single element",
     "indices must be integer (`int64`) or bool tensors: convert with `.long()`"),
    ("dtypes that do not fit together", r"expected scalar type|have the same dtype|expected both vectors to "
                                        r"have same dtype|Found dtype|result type .* can't be cast",
     "an operation mixes dtypes that do not fit (float32 with float64, or with an integer tensor): convert one "
     "side (`.to(x.dtype)`, `.float()`)"),
    ("a tensor used as a True/False", r"Boolean value of Tensor with more than one",
     "`if`, `and`, `or` and `not` need one True/False, but got a tensor of many values: use `&`, `|`, `~` "
     "and `torch.where` for elementwise logic"),
    ("an input the course's function refuses",
     r"^ValueError: .*(mask must be|mask has shape|must have shape \(B|must hold integer|must lie in|"
     r"is not divisible by n_heads|but block_size is|tokens but the model's|must be a LongTensor)",
     "a course_lib function your code calls refused what it was given, and its message says what it expects"),
    ("a numpy value in torch code", r"can't convert np\.ndarray|expected Tensor as element|must be Tensor, not "
                                    r"numpy|not supported for the input types.*numpy",
     "numpy and torch are mixed: compute with torch, or convert with `torch.from_numpy`"),
)


def diagnose_error(errors: list) -> Optional[Diagnosis]:
    """What a PyTorch error means, when every case that raised raised the same kind of error."""
    found = []
    for text in errors:
        hit = next(((name, meaning) for name, rx, meaning in ERROR_PATTERNS if re.search(rx, text)), None)
        if hit is None:
            return None
        found.append(hit)
    if not found or len({name for name, _ in found}) != 1:
        return None
    name, meaning = found[0]
    first = errors[0].strip().splitlines()[0][:300]
    return Diagnosis(name, f"{meaning} (your code raised {first})")


#: Every name a diagnosis can have (the tests prove each one on wrong answers that show it).
NAMES = frozenset({
    "tuple items in the wrong order", "wrong type", "wrong items", "right values, wrong dtype",
    "nan or inf in the output", "mask inverted", "returns an input unchanged", "the same value everywhere",
    "axes in the wrong order", "an extra size-1 axis", "a missing size-1 axis", "right values, wrong shape",
    "one too many along an axis", "one too few along an axis", "off by a constant", "a value replaced by another",
    "values replaced by others",
    "the negative", "scaled by a constant", "scaled by a size of the input", "off by the same vector everywhere",
    "normalised over the wrong axis", "not normalised", "an elementwise function too many", "scaled per slice",
    "the same along an axis", "does not sum to 1", "reversed along an axis", "right values, wrong order",
    "wrong only on the diagonal", "wrong only above the diagonal", "wrong only below the diagonal",
    "wrong only at the first position", "wrong only at the last position", "nearly right",
    "changes an input in place", "an empty output", "an input left out", "an input added once too often",
}) | frozenset(name for name, _, _ in ERROR_PATTERNS)

#: Patterns of one tensor, in the order they are tried (specific before general).
TENSOR_PATTERNS: tuple = (_non_finite, _empty, _inverted, _returns_input, _constant_output, _permuted_axes, _reshaped,
                          _one_off_length, _int_offset, _scaled, _input_term, _shifted, _normalisation,
                          _elementwise, _scaled_along, _constant_along, _not_summing_to_one, _reordered, _region, _one_index,
                          _nearly)
#: Patterns of whole outputs (tuples), tried first.
OUTPUT_PATTERNS: tuple = (_swapped_items,)
#: Patterns that need several cases at once (numbers, where one case proves little).
NUMBER_PATTERNS: tuple = (_numbers_off, _scaled_number, _substituted)


def _part(value: Any, where: str) -> Any:
    from .core import _at

    return _at(value, where) if where else value


def _kind_of_mismatch(m: Any, want: Any, got: Any, tol: _Tol) -> Optional[tuple]:
    """Diagnoses that the comparison itself makes: a wrong type, the wrong items, a dtype alone."""
    if m.kind == "type":
        return "wrong type", f"your {m.text[0].lower()}{m.text[1:]}" if m.text.startswith("output") else m.text
    if m.kind in ("length", "keys"):
        return "wrong items", f"your {m.text}"
    if m.kind == "dtype" and compare(want, got, tol.atol, tol.rtol, check_dtype=False) is None:
        return ("right values, wrong dtype",
                f"your {m.text}; the values are right: convert the result (`.float()`, `.long()`, `.bool()`) or "
                f"keep the dtype the task asks for")
    return None


def diagnose(cases: list, pairs: list, atol: float, rtol: float, check_dtype: bool = True,
             names: tuple = ()) -> Optional[Diagnosis]:
    """The first pattern that explains every failing case, or ``None``.

    ``pairs`` are ``(case index, expected output, learner output)`` of the cases that returned an output;
    the ones whose output is right are skipped.
    """
    tol = _Tol(atol, rtol)
    failing = []
    for i, want, got in pairs:
        m = compare(want, got, tol.atol, tol.rtol, check_dtype=check_dtype)
        if m is not None:
            failing.append((i, want, got, m))
    if not failing:
        return None
    whole = [_Seen(i, cases[i], want, got, tuple(names)) for i, want, got, _ in failing]
    for pattern in OUTPUT_PATTERNS:
        found = _everywhere(pattern, whole, tol)
        if found:
            return found
    if len({m.where for *_, m in failing}) != 1:
        return None
    where = failing[0][3].where
    label = f"output{where}" if where else "output"
    kinds = [_kind_of_mismatch(m, _part(want, where), _part(got, where), tol) for _, want, got, m in failing]
    if all(kinds) and len({k[0] for k in kinds}) == 1:
        tail = "" if len(kinds) == 1 else " (on every failing case)"
        return Diagnosis(kinds[0][0], kinds[0][1] + tail)
    if any(m.kind in ("type", "length", "keys") for *_, m in failing):
        return None
    parts = [_Seen(i, cases[i], _part(want, where), _part(got, where), tuple(names)) for i, want, got, _ in failing]
    found = None
    for pattern in NUMBER_PATTERNS:
        hit = pattern(parts, tol)
        if hit:
            found = Diagnosis(*hit)
            break
    for pattern in () if found else TENSOR_PATTERNS:
        found = _everywhere(pattern, parts, tol)
        if found:
            break
    if found is None:
        blown = [s for s in parts if _try(_non_finite, s, tol) is not None]
        if not blown:
            return None
        # nan/inf on some failing cases is the first thing to fix, whatever the others show
        first = _try(_non_finite, blown[0], tol)
        found = Diagnosis(first[0], f"on {_plural_cases([s.index + 1 for s in blown])}, {first[1]}; the other "
                                    f"failing cases differ from the expected output without nan")
    wrong_dtype = [m for *_, m in failing if m.kind == "dtype"]
    extra = f"; besides, your {wrong_dtype[0].text}" if wrong_dtype else ""
    return Diagnosis(found.name, _relabel(found.message, label) + extra)


def _everywhere(pattern: Pattern, seen: list, tol: _Tol) -> Optional[Diagnosis]:
    """The pattern's diagnosis when it holds, under the same name, on every failing case; cases whose output
    has nan/inf where the expected one is finite may instead show that (and are said to)."""
    first, blown, texts = None, [], set()
    for s in seen:
        found = _try(pattern, s, tol)
        if found is None and pattern not in (_non_finite, _nearly) and _try(_non_finite, s, tol) is not None:
            blown.append(s.index + 1)
            continue
        if found is None or (first is not None and found[0] != first[0]):
            return None
        first = first or found
        texts.add(found[1])
    if first is None:
        return None
    n = len(seen) - len(blown)
    shown = next(s.index for s in seen if s.index + 1 not in blown) + 1
    tail = "" if n == 1 else (f" (case {shown}; the same holds on each of the {n} such failing cases)" if len(texts) == 1
                              else f" (case {shown}; each of the {n} such failing cases shows this, with its own numbers)")
    if blown:
        tail += (f"; besides, on {_plural_cases(blown)} your output has nan or inf where the expected one is "
                 f"finite (an overflow, a division by zero or the log of zero)")
    return Diagnosis(first[0], first[1] + tail)


def _try(pattern: Pattern, s: _Seen, tol: _Tol) -> Optional[tuple]:
    try:
        return pattern(s, tol)
    except (RuntimeError, ValueError, TypeError, IndexError):  # an output of a kind the pattern cannot read
        return None


def _plural_cases(numbers: list) -> str:
    return f"case {numbers[0]}" if len(numbers) == 1 else "cases " + ", ".join(map(str, numbers))


def _relabel(text: str, label: str) -> str:
    """Say ``your output[1]`` when the pattern is about one item of a tuple."""
    if label == "output":
        return text
    return text.replace("your output", f"your {label}", 1)
