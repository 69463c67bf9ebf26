"""The exercise model: one definition per exercise, used three ways.

An :class:`Exercise` bundles everything the course knows about one graded function:

* who it is: a stable ``id`` (``"02.stable_softmax"``), its ``notebook``, the ``function`` name the learner
  writes, ``points``, a ``title`` and a time estimate;
* what is right: the ``reference`` implementation and a seeded ``make_cases(gen, hidden)`` generator;
* how to compare: tolerances and whether dtypes must match;
* what to teach: ``properties`` (rows sum to one, causality, ...), ``forbidden`` shortcuts
  (``torch.softmax`` in the softmax exercise) and ``mistakes``, buggy variants of the reference each
  with the message a learner should see when their output matches it.

Grading an exercise is split into two steps so that the learner's code can run somewhere else (the
autograder runs it in a sandboxed worker and only ships inputs and outputs across, by value):

1. :meth:`Exercise.plan` turns a seed into a list of :class:`Call` (the inputs to feed the learner's code);
2. somebody evaluates each call and returns an :class:`Outcome` per call;
3. :meth:`Exercise.judge` compares those outcomes with the reference and the known mistakes and
   returns a :class:`Report` (status, points, a message, the named mistake if any).

:func:`run_local` does all three in this process; the inline ``check`` in the notebooks uses it.
"""

from __future__ import annotations

import ast
import copy
import inspect
import math
import re
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch

ID_PATTERN = re.compile(r"^(?P<unit>\d\d)\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")

#: The public seed of the inline checks in the notebooks. The autograder draws a fresh secret one.
PUBLIC_SEED = 0

# Status values, shared with the autograder's results files.
PASSED = "passed"
PARTIAL = "partial"
FAILED = "failed"
ERROR = "error"
TIMEOUT = "timeout"
NOT_ATTEMPTED = "not_attempted"
FORBIDDEN = "forbidden"
MISSING = "missing"
STATUSES = (PASSED, PARTIAL, FAILED, ERROR, TIMEOUT, NOT_ATTEMPTED, FORBIDDEN, MISSING)
CACHE_ENTRIES = 4096
#: A known mistake matches the learner's output within this multiple of the exercise's tolerances.
MISTAKE_SLACK = 10.0


# ---------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorSeed:
    """Stands for ``torch.Generator().manual_seed(seed)`` in a case's arguments.

    Generators carry state, so a case never holds one: every call gets a fresh generator made from
    this seed (the reference, each known mistake and the learner all see the same random stream).
    """

    seed: int

    def make(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


@dataclass(frozen=True)
class ModuleInputs:
    """Arguments of a *module* exercise: build ``Cls(**init)``, load ``state``, call ``forward(*args)``."""

    init: dict
    state: dict
    args: tuple


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """Standard-normal case data drawn from the case generator ``gen`` (times ``scale``)."""
    return torch.randn(*shape, generator=gen) * scale


def draw_seed(gen: torch.Generator) -> int:
    """A seed drawn from the case generator, e.g. for a :class:`GeneratorSeed` inside a case."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=gen))


@dataclass(frozen=True)
class Case:
    """One input to an exercise.

    ``group`` names the case group used for partial credit; ``note`` tells the learner what the case
    is about ("logits near 1000").
    """

    args: tuple
    kwargs: dict = field(default_factory=dict)
    group: str = "basic"
    note: str = ""


@dataclass(frozen=True)
class Call:
    """One evaluation of the learner's code: a case, or an input derived from it by a property."""

    args: tuple
    kwargs: dict
    case_index: int
    property_name: Optional[str] = None


def materialize(value: Any) -> Any:
    """A fresh, independent copy of call arguments (tensors cloned, generators created)."""
    if isinstance(value, GeneratorSeed):
        return value.make()
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(materialize(v) for v in value)
    if isinstance(value, list):
        return [materialize(v) for v in value]
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, ModuleInputs):
        return ModuleInputs(materialize(value.init), materialize(value.state), materialize(value.args))
    return copy.deepcopy(value)


# ---------------------------------------------------------------------------------------------------
# Outcomes (what came back from one call)
# ---------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """The result of one call of the learner's code.

    ``kind`` is ``"value"`` (``value`` holds the output), ``"not_implemented"`` (the stub raised),
    ``"error"`` (``error`` holds "TypeError: ..." and ``traceback`` the learner's frames),
    ``"forbidden"`` (``error`` names the shortcut) or ``"timeout"``.
    """

    kind: str
    value: Any = None
    error: str = ""
    traceback: str = ""
    #: ``(args, kwargs)`` as they were after the call (``forward``'s arguments for a module), so that the
    #: judge can tell whether the function changed its inputs; ``None`` when not reported.
    inputs: Any = None


@dataclass(frozen=True)
class Property:
    """A property that every correct output has, checked on the learner's outputs.

    ``derive(case)`` returns extra inputs to evaluate (e.g. the same sequence with its future changed);
    ``holds(case, output, derived_outputs)`` says whether the property holds. ``message`` explains a
    failure to the learner.
    """

    name: str
    message: str
    holds: Callable[..., bool]
    derive: Callable[[Case], Sequence[Case]] = lambda case: ()
    #: Names of exactly the known mistakes whose outputs fail this property (tested for every exercise),
    #: so that a property whose message diagnoses one cause never fires for another.
    fires_for: tuple = ()


@dataclass(frozen=True)
class KnownMistake:
    """A buggy variant of the reference, with what a learner whose output matches it should read."""

    name: str
    message: str
    fn: Callable


@dataclass(frozen=True)
class Alternative:
    """A correct implementation written differently from the reference (einsum instead of matmul, a
    loop instead of a vectorised expression, ...). The tests of the tests prove that it passes, inline
    and through the grader, on the public and the hidden cases."""

    name: str
    fn: Callable


@dataclass(frozen=True)
class Forbidden:
    """A shortcut the exercise asks you not to take, e.g. ``torch.softmax`` in the softmax exercise.

    ``targets`` are dotted names ("torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax").
    """

    label: str
    targets: tuple
    message: str = ""


# ---------------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------------


@dataclass
class Mismatch:
    """Why an output differs from the expected one."""

    kind: str  # "type", "shape", "dtype", "values", "length", "keys"
    text: str
    where: str = ""  # path inside a tuple output, e.g. "[1]"
    index: Optional[tuple] = None
    expected: Any = None
    got: Any = None
    max_error: Optional[float] = None


def _fmt_number(x: Any) -> str:
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        return f"{x:.6g}"
    return str(x)


def _is_number(x: Any) -> bool:
    """A real number: Python int/float or a numpy number (bools are not numbers here)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def what_is(got: Any) -> str:
    """What a returned value is, type name first, in the words a learner needs (``None`` -> ``return``)."""
    if got is None:
        return "None (your function returned nothing: did you forget `return`?)"
    name = type(got).__name__
    if isinstance(got, types.GeneratorType) or name == "generator":
        return "generator (your function uses `yield`; `return` the result instead)"
    if isinstance(got, (list, tuple)):
        kinds = {type(v).__name__ for v in got}
        if got and kinds == {"Tensor"}:
            return f"{name} of {len(got)} tensors"
        return f"{name} of {len(got)} items"
    if isinstance(got, torch.Tensor) and type(got) is torch.Tensor:
        return f"Tensor of shape {tuple(got.shape)}"
    if isinstance(got, np.ndarray):
        return "ndarray (a numpy array; compute with torch, or convert with `torch.from_numpy`)"
    if type(got).__module__ == "numpy":
        return f"numpy {name}"
    return name


def _tensors_instead(expected: torch.Tensor, got: Any) -> str:
    """Advice for a tuple or list of tensors where one tensor is expected: which item to return, or how
    to combine them, when that gives the expected shape."""
    if not (isinstance(got, (tuple, list)) and got and all(type(v) is torch.Tensor for v in got)):
        return ""
    want = tuple(expected.shape)
    same = [i for i, v in enumerate(got) if tuple(v.shape) == want]
    if same:
        return f" (item [{same[0]}] has the expected shape {want}: return only the tensor the task asks for)"
    for how in ("stack", "cat"):
        try:
            shape = tuple(getattr(torch, how)(list(got)).shape)
        except (RuntimeError, TypeError):
            continue
        if shape == want:
            return f" (combined with `torch.{how}` they would have the expected shape {want})"
    return f" (expected one tensor of shape {want})"


def _number_type(x: Any) -> str:
    return "an int" if isinstance(x, int) else "a float"


def compare(expected: Any, got: Any, atol: float = 1e-5, rtol: float = 1e-4, check_dtype: bool = True,
            where: str = "", exact_types: bool = True, tensor_numbers: bool = False) -> Optional[Mismatch]:
    """Compare an output with the expected one; ``None`` when they agree.

    Tensors must be exactly ``torch.Tensor`` (no subclasses), with the expected shape, dtype (when
    ``check_dtype``) and values (``|got - expected| <= atol + rtol * |expected|``, nan only where nan is
    expected). Tuples and lists are compared element by element, dicts key by key; numbers with the same
    tolerance. With ``exact_types`` a promised ``int`` must be an ``int`` (``2.0`` is wrong) and a promised
    ``float`` a ``float``; a 1-element tensor stands for a promised number only with ``tensor_numbers``.
    """
    label = f"output{where}"
    rec = dict(atol=atol, rtol=rtol, check_dtype=check_dtype, exact_types=exact_types,
               tensor_numbers=tensor_numbers)
    if isinstance(expected, torch.Tensor):
        if type(got) is not torch.Tensor:
            if isinstance(got, torch.Tensor):
                return Mismatch("type", f"{label} is a {type(got).__name__}, a subclass of torch.Tensor; "
                                        f"return a plain torch.Tensor", where)
            if type(got).__name__.endswith("(a torch.Tensor subclass)"):  # came back from the grader's worker
                return Mismatch("type", f"{label} should be a torch.Tensor, got {type(got).__name__}", where)
            return Mismatch("type", f"{label} should be a torch.Tensor, got {what_is(got)}"
                                    f"{_tensors_instead(expected, got)}", where)
        if tuple(got.shape) != tuple(expected.shape):
            return Mismatch("shape", f"{label} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}",
                            where, expected=tuple(expected.shape), got=tuple(got.shape))
        if check_dtype and got.dtype != expected.dtype:
            return Mismatch("dtype", f"{label} has dtype {got.dtype}, expected {expected.dtype}",
                            where, expected=str(expected.dtype), got=str(got.dtype))
        return _compare_values(expected, got, atol, rtol, label, where)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return Mismatch("type", f"{label} should be a {type(expected).__name__} of {len(expected)} items, "
                                    f"got {what_is(got)}", where)
        if exact_types and isinstance(expected, tuple) and not isinstance(got, tuple):
            return Mismatch("type", f"{label} should be a tuple of {len(expected)} items, got a "
                                    f"{type(got).__name__}: return `(a, b)` (or `tuple(...)`), as the task says",
                            where)
        if len(got) != len(expected):
            return Mismatch("length", f"{label} has {len(got)} items, expected {len(expected)}", where,
                            expected=len(expected), got=len(got))
        for i, (e, g) in enumerate(zip(expected, got)):
            m = compare(e, g, where=f"{where}[{i}]", **rec)
            if m is not None:
                return m
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return Mismatch("type", f"{label} should be a dict with {len(expected)} keys, got {what_is(got)}", where)
        if set(got) != set(expected):
            missing = [k for k in expected if k not in got]
            extra = [k for k in got if k not in expected]
            parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
            return Mismatch("keys", f"{label} has the wrong keys: {', '.join(parts)}", where,
                            expected=sorted(map(str, expected)), got=sorted(map(str, got)))
        for k in expected:
            m = compare(expected[k], got[k], where=f"{where}[{k!r}]", **rec)
            if m is not None:
                return m
        return None
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        if type(got) is not type(expected):
            return Mismatch("type", f"{label} should be {type(expected).__name__} {expected!r}, got {what_is(got)}",
                            where, expected=expected, got=got)
        if got != expected:
            return Mismatch("values", f"{label} is {got!r}, expected {expected!r}", where,
                            expected=expected, got=got)
        return None
    if _is_number(expected):
        promised = _number_type(expected)
        if isinstance(got, torch.Tensor) and type(got) is torch.Tensor:
            if not (tensor_numbers and got.numel() == 1):
                return Mismatch("type", f"{label} should be {promised} (a Python number), got {what_is(got)}; "
                                        f"turn a 1-element tensor into a number with `.item()`", where)
            got = got.item()
        if not _is_number(got):
            return Mismatch("type", f"{label} should be {promised}, got {what_is(got)}", where)
        if exact_types:
            if isinstance(expected, (int, np.integer)) and not isinstance(got, int):
                tip = "; use `int(...)` or integer operations (`//`)" if isinstance(got, float) else ""
                return Mismatch("type", f"{label} should be an int, got {type(got).__name__} "
                                        f"({_fmt_number(got)}){tip}", where, expected=expected, got=got)
            if isinstance(expected, (float, np.floating)) and not isinstance(got, float):
                return Mismatch("type", f"{label} should be a float, got {type(got).__name__} "
                                        f"({_fmt_number(got)})", where, expected=expected, got=got)
        if isinstance(expected, (int, np.integer)) and isinstance(got, (int, np.integer)):
            if int(got) != int(expected):
                return Mismatch("values", f"{label} is {int(got)}, expected {int(expected)}", where,
                                expected=int(expected), got=int(got), max_error=float(abs(int(got) - int(expected))))
            return None
        e, g = float(expected), float(got)
        if math.isnan(e) and math.isnan(g):
            return None
        if e == g:
            return None
        if not (abs(g - e) <= atol + rtol * abs(e)):
            return Mismatch("values", f"{label} is {_fmt_number(g)}, expected {_fmt_number(e)} "
                                      f"(error {_fmt_number(abs(g - e))})", where,
                            expected=e, got=g, max_error=abs(g - e))
        return None
    if got != expected:
        return Mismatch("values", f"{label} is {got!r}, expected {expected!r}", where, expected=expected, got=got)
    return None


def _compare_values(expected: torch.Tensor, got: torch.Tensor, atol: float, rtol: float, label: str,
                    where: str) -> Optional[Mismatch]:
    if expected.numel() == 0:
        return None
    if expected.dtype == torch.bool or not (expected.is_floating_point() or expected.is_complex()):
        bad = got.to(expected.dtype) != expected
        max_err = None
    else:
        e, g = expected.double(), got.double()
        diff = (g - e).abs()
        both_nan = torch.isnan(e) & torch.isnan(g)
        same_inf = torch.isinf(e) & (g == e)
        ok = (diff <= atol + rtol * e.abs()) | both_nan | same_inf
        bad = ~ok
        finite_diff = torch.where(ok, torch.zeros_like(diff), diff)
        max_err = float(torch.nan_to_num(finite_diff, nan=float("inf")).max())
        if torch.isnan(g[bad]).any():
            max_err = float("nan")
    if not bool(bad.any()):
        return None
    idx = tuple(int(i) for i in bad.nonzero()[0].tolist())
    n_bad = int(bad.sum())
    exp_v = expected[idx].item() if expected.dim() else expected.item()
    got_v = got[idx].item() if got.dim() else got.item()
    err_txt = "" if max_err is None else f"; largest error {_fmt_number(max_err)}"
    return Mismatch(
        "values",
        f"{label} differs at {n_bad} of {expected.numel()} positions; first at index {list(idx)}: "
        f"expected {_fmt_number(exp_v)}, got {_fmt_number(got_v)}{err_txt}",
        where, index=idx, expected=exp_v, got=got_v, max_error=max_err,
    )


# ---------------------------------------------------------------------------------------------------
# Forbidden shortcuts: watched with a profile hook so that aliases (s = torch.softmax) are caught too
# ---------------------------------------------------------------------------------------------------


class ForbiddenCall(Exception):
    """Raised inside the learner's function when it calls a forbidden shortcut."""


def resolve(dotted: str) -> Any:
    """``"torch.nn.functional.softmax"`` -> the object."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = __import__(".".join(parts[:i]), fromlist=["_"])
        except ImportError:
            continue
        for p in parts[i:]:
            obj = getattr(obj, p)
        return obj
    raise ImportError(dotted)


class _Matcher:
    """Recognises calls of one target in ``sys.setprofile`` events."""

    def __init__(self, target: Any, label: str):
        self.label = label
        self.code = None
        self.codes: set = set()
        self.name = getattr(target, "__name__", None)
        self.objclass = None
        self.self_obj = None
        self.target = target
        fn = target
        if isinstance(fn, (staticmethod, classmethod)):
            fn = fn.__func__
        if isinstance(fn, types.MethodType):
            fn = fn.__func__
        if isinstance(fn, types.FunctionType):
            self.code = fn.__code__
        elif isinstance(fn, (types.MethodDescriptorType, types.WrapperDescriptorType)):
            self.objclass = fn.__objclass__
        elif isinstance(fn, type) and hasattr(fn, "forward"):
            # a class (e.g. torch.nn.MultiheadAttention): catch its own __init__, forward and __call__, as
            # the grader's worker does (nn.Module's generic ones are everyone's)
            self.codes = set()
            for attr in ("__init__", "forward", "__call__"):
                code = getattr(getattr(fn, attr, None), "__code__", None)
                if code is not None and not code.co_filename.endswith("torch/nn/modules/module.py"):
                    self.codes.add(code)
        else:
            self.self_obj = getattr(fn, "__self__", None)

    def matches(self, frame, event: str, arg: Any) -> bool:
        if event == "call":
            return (self.code is not None and frame.f_code is self.code) or frame.f_code in self.codes
        if event == "c_call":
            if arg is self.target:
                return True
            if self.name is None or getattr(arg, "__name__", None) != self.name:
                return False
            owner = getattr(arg, "__self__", None)
            if self.objclass is not None:
                return isinstance(owner, self.objclass)
            return self.self_obj is not None and owner is self.self_obj
        return False


def _matchers(forbidden: Iterable[Forbidden]) -> list:
    out = []
    for f in forbidden:
        for t in f.targets:
            try:
                obj = resolve(t) if isinstance(t, str) else t
            except (ImportError, AttributeError):
                continue
            out.append(_Matcher(obj, f.label))
    return out


def call_watched(fn: Callable, args: tuple, kwargs: dict, forbidden: Sequence[Forbidden]) -> Any:
    """Call ``fn(*args, **kwargs)``, raising :class:`ForbiddenCall` on the first forbidden call inside it."""
    matchers = _matchers(forbidden)
    if not matchers:
        return fn(*args, **kwargs)
    previous = sys.getprofile()

    def hook(frame, event, arg):
        if event in ("call", "c_call"):
            for m in matchers:
                if m.matches(frame, event, arg):
                    sys.setprofile(None)
                    raise ForbiddenCall(m.label)

    sys.setprofile(hook)
    try:
        return fn(*args, **kwargs)
    finally:
        sys.setprofile(previous)


# ---------------------------------------------------------------------------------------------------
# The exercise
# ---------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a learner (and the gradebook) learns about one exercise."""

    exercise_id: str
    status: str
    points: float
    max_points: float
    message: str
    mistake: Optional[str] = None  # name of the matched known mistake
    mistake_message: Optional[str] = None
    details: list = field(default_factory=list)  # one line per case or property
    cases_passed: int = 0
    cases_total: int = 0
    traceback: str = ""
    failed_properties: list = field(default_factory=list)  # names of the properties that fail
    #: ``mistake`` is a pattern seen in the output (see :mod:`.diagnose`), not one of the listed mistakes
    diagnosed: bool = False

    def to_dict(self) -> dict:
        return {
            "exercise": self.exercise_id, "status": self.status, "points": self.points,
            "max": self.max_points, "message": self.message, "mistake": self.mistake,
            "diagnosed": self.diagnosed, "details": list(self.details), "cases_passed": self.cases_passed,
            "cases_total": self.cases_total, "traceback": self.traceback,
        }


@dataclass
class Exercise:
    """One graded exercise, defined once (see the module docstring)."""

    id: str
    notebook: str
    function: str
    points: float
    title: str
    reference: Callable
    make_cases: Callable[[torch.Generator, bool], Sequence[Case]]
    mistakes: Sequence[KnownMistake] = ()
    properties: Sequence[Property] = ()
    forbidden: Sequence[Forbidden] = ()
    minutes: int = 10
    atol: float = 1e-5
    rtol: float = 1e-4
    check_dtype: bool = True
    kind: str = "function"  # or "module": the learner writes an nn.Module class
    forbid_reference: bool = True  # calling course_lib's reference for this exercise counts as forbidden
    #: Correct implementations written differently from the reference (at least two per exercise).
    alternatives: Sequence[Alternative] = ()
    #: Names of the arguments (parameter names of the reference, or of ``forward`` for a module) that
    #: the function may change in place. Every other input must be unchanged after the call.
    mutates: tuple = ()
    #: Python numbers in the expected output must come back with exactly their type: an ``int`` where an
    #: int is promised (``2.0`` is wrong), a ``float`` where a float is (numpy float64 counts as float).
    exact_types: bool = True
    #: A 1-element tensor may stand for a promised Python number (off by default: ``.item()`` it).
    allow_tensor_numbers: bool = False
    # Reference and mistake outputs per call, and the public/hidden plans of run_local: computed once
    # (bounded; keyed by the identity of calls that the cache keeps alive).
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        m = ID_PATTERN.match(self.id)
        if not m:
            raise ValueError(f"exercise id {self.id!r} must look like '02.stable_softmax'")
        if not self.notebook.startswith(m.group("unit") + "_"):
            raise ValueError(f"exercise {self.id}: notebook {self.notebook!r} must start with {m.group('unit')}_")
        if self.kind not in ("function", "module"):
            raise ValueError(f"exercise {self.id}: kind must be 'function' or 'module', got {self.kind!r}")
        if self.points <= 0:
            raise ValueError(f"exercise {self.id}: points must be positive")
        if isinstance(self.mutates, str):
            raise ValueError(f"exercise {self.id}: mutates must be a tuple of names, e.g. ({self.mutates!r},)")
        self.mutates = tuple(self.mutates)
        self.alternatives = tuple(self.alternatives)

    # -- inputs ---------------------------------------------------------------------------------------

    @property
    def unit(self) -> str:
        return self.id[:2]

    def cases(self, seed: int = PUBLIC_SEED, hidden: bool = False) -> list:
        """The seeded cases: the notebook's public ones, or the autograder's larger hidden ones."""
        gen = torch.Generator().manual_seed(int(seed))
        cases = list(self.make_cases(gen, hidden))
        if not cases:
            raise ValueError(f"exercise {self.id}: make_cases returned no cases")
        return cases

    def plan(self, cases: Sequence[Case]) -> list:
        """Every call to make: each case, then the inputs derived by each property."""
        calls = [Call(c.args, c.kwargs, i) for i, c in enumerate(cases)]
        for prop in self.properties:
            for i, c in enumerate(cases):
                for d in prop.derive(c):
                    calls.append(Call(d.args, d.kwargs, i, prop.name))
        return calls

    def forbidden_allowing_reference(self) -> list:
        """The shortcuts still forbidden when course_lib's reference may be used (tests of the tests): a
        reference (and the mistakes built on it) may derive from a class that learners may not use."""
        out = []
        for f in self.forbidden:
            keep = []
            for t in f.targets:
                try:
                    obj = resolve(t) if isinstance(t, str) else t
                except (ImportError, AttributeError):
                    continue
                if obj is self.reference or (isinstance(obj, type) and isinstance(self.reference, type)
                                             and issubclass(self.reference, obj)):
                    continue
                keep.append(t)
            if keep:
                out.append(Forbidden(f.label, tuple(keep), f.message))
        return out

    def all_forbidden(self) -> list:
        extra = [Forbidden("course_lib's reference solution", (self.reference,),
                           "calls course_lib's own reference for this exercise instead of implementing it")] \
            if self.forbid_reference else []
        return list(self.forbidden) + extra

    # -- evaluation -----------------------------------------------------------------------------------

    def invoke(self, obj: Callable, call: Call, forbidden: Sequence[Forbidden] = (),
               keep_inputs: Optional[list] = None, position: Optional[int] = None) -> Any:
        """Run the learner's function (or module class) on fresh copies of a call's arguments.

        ``keep_inputs``, a list, receives ``(args, kwargs)`` as handed to the function (``forward``'s for a
        module): after the call they show whether the function changed them.

        PyTorch's global generator is seeded for the call (see :mod:`.rng`), exactly as in the grader's
        worker, and put back afterwards; ``position`` is the call's index in the plan (default: the case's
        index, which it is for the case calls).
        """
        from .rng import global_seed, seeded_global_rng

        where = call.case_index if position is None else position
        with seeded_global_rng(global_seed(call.args, call.kwargs, where)):
            return self._invoke_here(obj, call, forbidden, keep_inputs)

    def _invoke_here(self, obj: Callable, call: Call, forbidden: Sequence[Forbidden],
                     keep_inputs: Optional[list]) -> Any:
        args, kwargs = materialize(call.args), materialize(call.kwargs)
        if self.kind == "module":
            spec = args[0]
            if not isinstance(spec, ModuleInputs):
                raise TypeError("module exercises take a ModuleInputs as their only argument")
            if keep_inputs is not None:
                keep_inputs.append((spec.args, {}))

            def run():
                module = obj(**spec.init)
                _load_parameters(module, spec.state, self.function)
                module.eval()
                with torch.no_grad():
                    return module(*spec.args)

            return call_watched(run, (), {}, forbidden)
        if keep_inputs is not None:
            keep_inputs.append((args, kwargs))
        return call_watched(obj, args, kwargs, forbidden)

    def expected(self, call: Call) -> Any:
        return self.invoke(self.reference, call)

    def cached(self, key: tuple, call: Optional[Call], compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key`` (``call`` is kept alive with it, so its ``id`` stays unique)."""
        hit = self._cache.get(key)
        if hit is not None and hit[0] is call:
            return hit[1]
        value = compute()
        if len(self._cache) > CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = (call, value)
        return value

    def judge(self, cases: Sequence[Case], calls: Sequence[Call], outcomes: Sequence[Outcome]) -> Report:
        """Compare the learner's outcomes with the reference: status, points and a message."""
        return _judge(self, list(cases), list(calls), list(outcomes))

    def evaluate_locally(self, obj: Callable, calls: Sequence[Call], stop_on_stub: bool = True,
                         allow_reference: bool = False) -> list:
        """Outcomes of running ``obj`` here, in this process (the inline check).

        ``allow_reference`` lets ``obj`` call course_lib's reference (the tests of the tests evaluate
        the reference itself and buggy variants built on it).
        """
        forbidden = self.forbidden_allowing_reference() if allow_reference else self.all_forbidden()
        outcomes = []
        for position, call in enumerate(calls):
            kept: list = []
            outcome = outcome_of(lambda: self.invoke(obj, call, forbidden, kept, position))
            if outcome.kind == "value" and kept:
                outcome.inputs = kept[0]
            outcomes.append(outcome)
            if stop_on_stub and outcome.kind in ("not_implemented", "forbidden"):
                break
        return outcomes


def _load_parameters(module: torch.nn.Module, state: dict, name: str) -> None:
    """Load the case's weights into the learner's module, explaining a mismatch in plain words."""
    have = module.state_dict() if isinstance(module, torch.nn.Module) else None
    if have is None:
        raise TypeError(f"{name}(...) should build a torch.nn.Module, got {type(module).__name__}")
    missing = sorted(set(state) - set(have))
    extra = sorted(set(have) - set(state))
    if missing or extra:
        raise ValueError(
            f"{name} has parameters {sorted(have)}, the exercise expects {sorted(state)}: keep the "
            f"layers created in __init__ of the handed-out code (missing: {missing}, unexpected: {extra})")
    for key, value in state.items():
        if tuple(have[key].shape) != tuple(value.shape):
            raise ValueError(f"{name}.{key} has shape {tuple(have[key].shape)}, expected {tuple(value.shape)}")
    module.load_state_dict(state, strict=True)


def learner_traceback(exc: BaseException) -> str:
    """The traceback frames of the learner's own code (not the course machinery)."""
    frames = traceback.extract_tb(exc.__traceback__)
    here = __file__.rsplit(".", 1)[0]
    keep = [f for f in frames if not f.filename.startswith(here)]
    text = "".join(traceback.format_list(keep))
    return text + "".join(traceback.format_exception_only(type(exc), exc))


def outcome_of(thunk: Callable[[], Any]) -> Outcome:
    """Run ``thunk`` and turn whatever happens into an :class:`Outcome` (never raises, except Ctrl-C)."""
    try:
        return Outcome("value", value=thunk())
    except NotImplementedError as e:
        return Outcome("not_implemented", error=f"NotImplementedError: {e}")
    except ForbiddenCall as e:
        return Outcome("forbidden", error=str(e))
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - a learner's SystemExit must not end the check either
        return Outcome("error", error=f"{type(e).__name__}: {e}", traceback=learner_traceback(e))


def _describe_case(case: Case, i: int) -> str:
    return f"case {i + 1}" + (f" ({case.note})" if case.note else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word[:-1] + 'ies' if word.endswith('y') else word + 's'}"


# -- side effects ----------------------------------------------------------------------------------


def parameter_names(ex: "Exercise") -> list:
    """The reference's parameter names in order (``forward``'s, without ``self``, for a module)."""
    fn = ex.reference.forward if ex.kind == "module" else ex.reference
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    if ex.kind == "module" and params and params[0].name == "self":
        params = params[1:]
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def original_inputs(ex: "Exercise", call: Call) -> tuple:
    """``(args, kwargs)`` that the learner's function receives for ``call`` (``forward``'s for a module)."""
    if ex.kind == "module":
        spec = call.args[0]
        return tuple(spec.args), {}
    return tuple(call.args), dict(call.kwargs)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.numel() == 0:
        return True
    x, y = a.detach().contiguous().reshape(-1), b.detach().contiguous().reshape(-1)
    if x.dtype == torch.bool:
        return torch.equal(x, y)
    try:
        return torch.equal(x.view(torch.uint8), y.view(torch.uint8))
    except RuntimeError:
        return torch.equal(x, y)


def _changed(before: Any, after: Any) -> Optional[tuple]:
    """``None`` if ``after`` is ``before`` unchanged, else ``(path, value before)`` of the first change."""
    if isinstance(before, GeneratorSeed):  # a generator is there to be consumed
        return None
    if isinstance(before, torch.Tensor):
        if (type(after) is not torch.Tensor or tuple(after.shape) != tuple(before.shape)
                or after.dtype != before.dtype or not _same_bits(before, after)):
            return "", before
        return None
    if isinstance(before, (tuple, list)):
        if type(after) is not type(before) or len(after) != len(before):
            return "", before
        for i, (b, a) in enumerate(zip(before, after)):
            c = _changed(b, a)
            if c is not None:
                return f"[{i}]{c[0]}", c[1]
        return None
    if isinstance(before, dict):
        if not isinstance(after, dict) or list(after) != list(before):
            return "", before
        for k in before:
            c = _changed(before[k], after[k])
            if c is not None:
                return f"[{k!r}]{c[0]}", c[1]
        return None
    if isinstance(before, np.ndarray):
        same = type(after) is np.ndarray and after.dtype == before.dtype and after.shape == before.shape \
            and after.tobytes() == before.tobytes()
        return None if same else ("", before)
    if isinstance(before, float) and isinstance(after, float) and math.isnan(before) and math.isnan(after):
        return None
    try:
        same = type(after) is type(before) and bool(after == before)
    except Exception:  # noqa: BLE001 - an object that cannot even be compared has changed
        same = False
    return None if same else ("", before)


def mutation_message(name: str, path: str, before: Any) -> str:
    """What a learner reads when their function changed argument ``name`` (at ``path`` inside it)."""
    where = f"`{name}`" + (f" (at `{name}{path}`)" if path else "")
    if isinstance(before, torch.Tensor):
        return (f"your function changed {where} in place; compute a new tensor instead "
                f"(e.g. `{name} = {name} - m`, not `{name} -= m` or `{name}.sub_(m)`; a slice such as "
                f"`{name}[:, 1:]` shares memory with `{name}`: `.clone()` it before assigning into it)")
    if isinstance(before, (list, dict)):
        kind = type(before).__name__
        return (f"your function changed the {kind} {where} it was given; build a new {kind} instead of "
                f"changing this one")
    return f"your function changed {where} in place; leave the inputs as they were given"


def changed_input(ex: "Exercise", call: Call, inputs: Any) -> Optional[str]:
    """The message for the first input that ``call`` changed (``inputs`` = ``(args, kwargs)`` after the
    call), or ``None``. Arguments listed in ``ex.mutates`` may change."""
    if inputs is None:
        return None
    before_args, before_kwargs = original_inputs(ex, call)
    if not (type(inputs) in (tuple, list) and len(inputs) == 2 and type(inputs[0]) in (tuple, list)
            and isinstance(inputs[1], dict)):
        return "your function changed its inputs in a way that cannot be sent back; leave them as they were given"
    after_args, after_kwargs = inputs
    names = parameter_names(ex)
    pairs = [(names[i] if i < len(names) else f"argument {i + 1}", b, after_args[i] if i < len(after_args) else
              _MISSING_INPUT) for i, b in enumerate(before_args)]
    pairs += [(k, b, after_kwargs.get(k, _MISSING_INPUT)) for k, b in before_kwargs.items()]
    for name, before, after in pairs:
        if name in ex.mutates:
            continue
        c = _changed(before, after)
        if c is not None:
            return mutation_message(name, *c)
    return None


class _MissingInput:
    pass


_MISSING_INPUT = _MissingInput()


# -- naming a known mistake ------------------------------------------------------------------------


def _has_finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            return bool(torch.isfinite(value).any())
        return value.numel() > 0
    if isinstance(value, (tuple, list)):
        return any(_has_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_finite(v) for v in value.values())
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def _agree(ex: "Exercise", ref: Any, mis: Any, got: Any, slack: float = 1.0, blown: bool = False) -> tuple:
    """``(consistent, evidence)`` for one case.

    *consistent*: ``got`` equals the mistake's output ``mis`` wherever ``mis`` is finite (same type, shape
    and dtype too), within ``slack`` times the exercise's tolerances. *evidence*: at some position where
    ``mis`` is finite and differs from the reference output ``ref`` (by more than twice that band when
    ``slack > 1``, so that a mistake close to the right answer still needs an exact match), ``got``
    equals ``mis``. Non-finite values of the mistake (nan, inf) are no evidence. With ``blown``, positions
    where ``got`` is nan or inf are left out too (the caller says so to the learner).
    """
    atol, rtol = ex.atol * slack, ex.rtol * slack
    apart = 1.0 if slack == 1.0 else 2.0  # how far from the reference the mistake must be, in bands
    if isinstance(mis, torch.Tensor):
        if (type(got) is not torch.Tensor or tuple(got.shape) != tuple(mis.shape)
                or (ex.check_dtype and got.dtype != mis.dtype)):
            return False, False
        same_layout = (type(ref) is torch.Tensor and tuple(ref.shape) == tuple(mis.shape)
                       and (ref.dtype == mis.dtype or not ex.check_dtype))
        if mis.is_floating_point() or mis.is_complex():
            wide = torch.complex128 if (mis.is_complex() or got.is_complex()) else torch.float64
            m, g = mis.detach().to(wide), got.detach().to(wide)
            finite = torch.isfinite(m) & (torch.isfinite(g) if blown else True)
            close = (g - m).abs() <= atol + rtol * m.abs()
            if not bool(close[finite].all()):
                return False, False
            if same_layout:
                r = ref.detach().to(wide)
                differs = ~((m - r).abs() <= apart * (atol + rtol * r.abs()))
            else:
                differs = torch.ones_like(finite)
            return True, bool((finite & differs).any())
        if not torch.equal(g := got.detach().to(mis.dtype), mis):
            return False, False
        del g
        differs = not same_layout or not torch.equal(ref.detach().to(mis.dtype), mis)
        return True, bool(differs and mis.numel() > 0)
    if isinstance(mis, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(mis):
            return False, False
        refs = ref if isinstance(ref, (tuple, list)) and len(ref) == len(mis) else [_MISSING_INPUT] * len(mis)
        evidence = False
        for r, m, g in zip(refs, mis, got):
            c, e = _agree(ex, r, m, g, slack, blown)
            if not c:
                return False, False
            evidence = evidence or e
        return True, evidence
    if isinstance(mis, dict):
        if not isinstance(got, dict) or set(got) != set(mis):
            return False, False
        evidence = False
        for k in mis:
            r = ref.get(k, _MISSING_INPUT) if isinstance(ref, dict) else _MISSING_INPUT
            c, e = _agree(ex, r, mis[k], got[k], slack, blown)
            if not c:
                return False, False
            evidence = evidence or e
        return True, evidence
    if isinstance(mis, float) and not math.isfinite(mis):
        return True, False
    tol = dict(atol=atol, rtol=rtol, check_dtype=ex.check_dtype, exact_types=ex.exact_types,
               tensor_numbers=ex.allow_tensor_numbers)
    if compare(mis, got, **tol) is not None:
        return False, False
    return True, compare(ref, mis, **tol) is not None if not isinstance(ref, _MissingInput) else True


def match_mistake(ex: "Exercise", case_calls: list, expected: dict) -> Optional[KnownMistake]:
    """The first known mistake that the learner's outputs match on every case (see :func:`_agree`) with
    evidence on at least one; ``case_calls`` are ``(call, outcome)`` of the cases. Exact matches first;
    then up to rounding (:data:`MISTAKE_SLACK`): the same bug written in another order (``(x / T) / T``
    for ``x / T**2``) rounds differently."""
    for slack in (1.0, MISTAKE_SLACK):
        found = _match_mistake(ex, case_calls, expected, slack)
        if found is not None:
            return found
    if any(oc.kind == "value" and not _all_finite(oc.value) for _, oc in case_calls):
        # nan/inf of its own on top of a known mistake (an inverted mask and no fix for the rows it blocks
        # entirely): the mistake is named where the output is finite, and the nan is said
        found = _match_mistake(ex, case_calls, expected, MISTAKE_SLACK, blown=True)
        if found is not None:
            return KnownMistake(found.name, found.message + " Besides, your output has nan or inf where this "
                                "mistake gives finite numbers: look for a division by zero (such as a row whose entries are all "
                                "masked) or an overflow.", found.fn)
    return None


def _all_finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return not (value.is_floating_point() or value.is_complex()) or bool(torch.isfinite(value).all())
    if isinstance(value, (tuple, list)):
        return all(_all_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def _match_mistake(ex: "Exercise", case_calls: list, expected: dict, slack: float,
                   blown: bool = False) -> Optional[KnownMistake]:
    for mistake in ex.mistakes:
        consistent, evidence = True, False
        for call, oc in case_calls:
            wrong = ex.cached(("mistake", mistake.name, id(call)), call, lambda: outcome_of(
                lambda: ex.invoke(mistake.fn, call)))
            if wrong.kind != "value":  # a mistake that crashes on a case says nothing about it
                continue
            wrong = wrong.value
            if oc.kind != "value":
                if _has_finite(wrong):
                    consistent = False
                    break
                continue
            c, e = _agree(ex, expected[call.case_index], wrong, oc.value, slack, blown)
            if not c:
                consistent = False
                break
            evidence = evidence or e
        if consistent and evidence:
            return mistake
    return None


# -- describing an output --------------------------------------------------------------------------


def _at(value: Any, where: str) -> Any:
    """``value`` at a path such as ``[1]['k']`` (as in :attr:`Mismatch.where`)."""
    for part in re.findall(r"\[((?:'[^']*'|\"[^\"]*\"|[^\]])*)\]", where):
        try:
            key = ast.literal_eval(part)
            value = value[key]
        except Exception:  # noqa: BLE001
            return None
    return value


def summary(value: Any) -> str:
    """Shape, dtype, range and sum of a tensor (the value of a number), for comparing with the expected one."""
    if isinstance(value, torch.Tensor):
        head = f"shape {tuple(value.shape)}, {str(value.dtype).replace('torch.', '')}"
        if value.numel() == 0:
            return head + ", empty"
        v = value.detach()
        if v.dtype == torch.bool:
            return head + f", {int(v.sum())} of {v.numel()} True"
        if v.is_complex():
            return head
        d = v.double()
        n_nan = int(torch.isnan(d).sum())
        finite = d[~torch.isnan(d)]
        rng = (f", range [{_fmt_number(float(finite.min()))}, {_fmt_number(float(finite.max()))}]"
               if finite.numel() else "")
        nan = f", {n_nan} nan" if n_nan else ""
        return head + rng + f", sum {_fmt_number(float(d.sum()))}" + nan
    if _is_number(value):
        return f"{type(value).__name__} {_fmt_number(value)}"
    return what_is(value)


# -- judging ---------------------------------------------------------------------------------------


def _judge(ex: Exercise, cases: list, calls: list, outcomes: list) -> Report:
    max_pts = float(ex.points)
    base = dict(exercise_id=ex.id, max_points=max_pts, cases_total=len(cases))
    if not outcomes:
        return Report(status=NOT_ATTEMPTED, points=0.0, message="not attempted yet", **base)
    # Stub, forbidden shortcut or timeout anywhere decide the whole exercise.
    for oc in outcomes:
        if oc.kind == "not_implemented":
            return Report(status=NOT_ATTEMPTED, points=0.0,
                          message=f"not attempted yet: replace the `raise NotImplementedError` in "
                                  f"`{ex.function}` with your code", **base)
    for oc in outcomes:
        if oc.kind == "forbidden":
            label = oc.error
            f = next((f for f in ex.all_forbidden() if f.label == label), None)
            why = (f.message if f and f.message else
                   "this exercise asks you to build it yourself from simpler operations")
            return Report(status=FORBIDDEN, points=0.0, message=f"uses {label}: {why}", **base)
    for oc in outcomes:
        if oc.kind == "timeout":
            return Report(status=TIMEOUT, points=0.0, message=oc.error or "ran out of time", **base)
    for oc in outcomes:
        if oc.kind == "error" and oc.error.startswith("SignatureError:"):
            # the worker could not call the function the way the exercise does: like the inline check's
            # signature test, that is an error of the whole exercise, not of some cases
            try:
                want = f" (the notebook's signature: `{ex.function}{_plain_signature(_reference_signature(ex))}`)"
            except (TypeError, ValueError):
                want = ""
            return Report(status=ERROR, points=0.0, message=oc.error.split(": ", 1)[1] + want,
                          details=[f"raised {oc.error}"], **base)
    if len(outcomes) < len(calls):
        outcomes = outcomes + [Outcome("error", error="not evaluated")] * (len(calls) - len(outcomes))

    details: list = []
    groups: dict = {}
    failures: list = []  # (case index, line, Mismatch or None) of each failing case
    first_tb = ""
    errors = []
    case_outputs: dict = {}
    expected: dict = {}
    case_calls = []
    for call, oc in zip(calls, outcomes):
        if call.property_name is not None:
            continue
        case = cases[call.case_index]
        groups.setdefault(case.group, True)
        label = _describe_case(case, call.case_index)
        case_calls.append((call, oc))
        if oc.kind != "value":
            errors.append(oc.error)
            groups[case.group] = False
            line = f"{label}: raised {oc.error}"
            details.append(line)
            if not failures:
                first_tb = oc.traceback
            failures.append((call.case_index, line, None))
            continue
        case_outputs[call.case_index] = oc.value
        expected[call.case_index] = want = ex.cached(("expected", id(call)), call, lambda: ex.expected(call))
        mm = compare(want, oc.value, ex.atol, ex.rtol, ex.check_dtype, exact_types=ex.exact_types,
                     tensor_numbers=ex.allow_tensor_numbers)
        changed = changed_input(ex, call, oc.inputs)
        if mm is None and changed is None:
            details.append(f"{label}: ok")
            continue
        groups[case.group] = False
        problems = [p for p in (changed, mm.text if mm else None) if p]
        line = f"{label}: {'; '.join(problems)}"
        details.append(line)
        failures.append((call.case_index, line, mm or Mismatch("input", changed)))

    passed_cases = sum(1 for d in details if d.endswith(": ok"))
    # Properties: each one is its own group for partial credit.
    failed_props: list = []
    for prop in ex.properties:
        derived = {}
        for call, oc in zip(calls, outcomes):
            if call.property_name == prop.name:
                derived.setdefault(call.case_index, []).append((call, oc))
        ok = bool(case_outputs)  # a property of outputs that never came back cannot hold
        # The property's message diagnoses a cause; when there was nothing to look at, say that instead
        # (a function that raises does not "draw from the global random state").
        why = prop.message if case_outputs else "not checked: no case returned an output"
        for i, case in enumerate(cases):
            if i not in case_outputs:
                continue
            douts = derived.get(i, [])
            if any(d.kind != "value" for _, d in douts):
                ok, why = False, (f"not checked: your function failed on the extra call this property "
                                  f"makes from case {i + 1}")
                break
            changed = next((m for m in (changed_input(ex, c, d.inputs) for c, d in douts) if m), None)
            if changed:
                ok, why = False, f"{changed} (on an input this property derives from case {i + 1})"
                break
            try:
                if not prop.holds(case, case_outputs[i], [d.value for _, d in douts]):
                    ok = False
                    break
            except Exception:  # noqa: BLE001 - an output of the wrong kind fails the property
                ok = False
                break
        groups[f"property:{prop.name}"] = ok
        verdict = "holds" if ok else (why if why.startswith("not checked") else "fails: " + why)
        details.append(f"property '{prop.name}': {verdict}")
        if not ok:
            failed_props.append((prop.name, why))

    # Properties earn their share only next to at least one passing case group.
    case_ok = [v for k, v in groups.items() if not k.startswith("property:")]
    if not any(case_ok):
        groups = {k: False for k in groups}
    n_groups = len(groups)
    n_ok = sum(1 for v in groups.values() if v)
    points = round(max_pts * n_ok / n_groups, 2) if n_groups else 0.0
    mistake = None
    if n_ok == n_groups:
        status = PASSED
        message = (f"all {len(cases)} cases pass" if len(cases) > 1 else "the 1 case passes") + (
            f" and {_plural(len(ex.properties), 'property')} {'holds' if len(ex.properties) == 1 else 'hold'}"
            if ex.properties else "")
    else:
        status = PARTIAL if n_ok else (ERROR if len(errors) == len(cases) else FAILED)
        if any(mm is not None and mm.kind != "type" for _, _, mm in failures) or any(
                oc.kind == "value" for _, oc in case_calls):
            mistake = match_mistake(ex, case_calls, expected)
        if mistake is None:
            mistake = _as_sentence(_diagnosis(ex, cases, case_outputs, expected, failures))
        message = _failure_message(ex, cases, failures, failed_props, case_outputs, expected, errors)
    return Report(status=status, points=points, message=message,
                  mistake=mistake.name if mistake else None,
                  mistake_message=mistake.message if mistake else None,
                  diagnosed=mistake is not None and not isinstance(mistake, KnownMistake),
                  details=details, cases_passed=passed_cases, traceback=first_tb,
                  failed_properties=[name for name, _ in failed_props], **base)


def _as_sentence(found: Any) -> Any:
    """The diagnosis with its message starting as a sentence ("Your output ...")."""
    if found is None or not found.message:
        return found
    return type(found)(found.name, found.message[0].upper() + found.message[1:])


def _diagnosis(ex: Exercise, cases: list, outputs: dict, expected: dict, failures: list) -> Any:
    """What the wrong outputs show when no known mistake matches (see :mod:`.diagnose`): a pattern that
    holds on every failing case, or an input changed in place."""
    from .diagnose import Diagnosis, diagnose, diagnose_error

    found = diagnose(cases, [(i, expected[i], outputs[i]) for i in sorted(outputs)], ex.atol, ex.rtol,
                     ex.check_dtype, tuple(parameter_names(ex)))
    raised = [(i, line.split(": raised ", 1)[1]) for i, line, mm in failures if mm is None and ": raised " in line]
    if found is not None:
        if raised:  # the pattern is about the cases that returned an output: say what the others did
            which = ", ".join(str(i + 1) for i, _ in raised)
            found = Diagnosis(found.name, f"{found.message}; case{'s' if len(raised) > 1 else ''} {which} raised "
                                          f"{raised[0][1]}")
        return found
    changed = [mm for _, _, mm in failures if mm is not None and mm.kind == "input"]
    if changed and len(changed) == len(failures):
        return Diagnosis("changes an input in place", changed[0].text)
    if raised and len(raised) == len(failures):
        return diagnose_error([error for _, error in raised])
    return None


def _failure_message(ex: Exercise, cases: list, failures: list, failed_props: list, outputs: dict,
                     expected: dict, errors: list) -> str:
    """The first failure, then what helps find the bug: yours vs expected, every failing property."""
    n = len(cases)
    if failures and len(failures) == n and all(mm is None or mm.kind in ("type", "input") for _, _, mm in failures):
        # the same kind of wrong answer everywhere (an error, None, a list, a wrong signature): one clear line
        _, line, mm = failures[0]
        text = mm.text if mm is not None else line.split(": raised ", 1)[-1]
        kinds = {(mm.text if mm is not None else line.split(": raised ", 1)[-1]) for _, line, mm in failures}
        if mm is None and len(kinds) == 1:
            return f"every case raised {text}" if n > 1 else line
        if mm is not None:
            return f"{text} (on every case)" if n > 1 else line
    lines = []
    if failures:
        i, line, mm = failures[0]
        lines.append(line)
        if mm is not None and mm.kind in ("values", "shape", "dtype", "length", "keys"):
            got, want = _at(outputs.get(i), mm.where), _at(expected.get(i), mm.where)
            if isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor):  # a number says it all already
                part = f"output{mm.where}"
                lines.append(f"your {part}: {summary(got)}")
                lines.append(f"expected {part}: {summary(want)}")
        if len(failures) > 1:
            lines.append(f"{len(failures)} of {_plural(n, 'case')} fail")
        elif n > 1:
            lines.append(f"the other {_plural(n - 1, 'case')} pass" if n > 2 else "the other case passes")
    for name, why in failed_props:
        lines.append(f"property '{name}' fails: {why}")
    return "\n".join(lines) or "some cases fail"


def signature_problem(ex: Exercise, obj: Any, cases: Sequence[Case]) -> Optional[str]:
    """One line saying why ``obj`` cannot be called the way the cases call it, or ``None``."""
    name = ex.function
    if ex.kind == "module":
        if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
            what = "a class that is not a torch.nn.Module" if isinstance(obj, type) else what_is(obj)
            return f"`{name}` should be a class derived from torch.nn.Module, got {what}"
        checks = []
        for c in cases:
            spec = c.args[0] if c.args else None
            if isinstance(spec, ModuleInputs):
                checks.append((obj, ex.reference, (), spec.init, f"{name}"))
                checks.append((obj.forward, ex.reference.forward, (None, *spec.args), {}, f"{name}.forward"))
    else:
        if inspect.isgeneratorfunction(obj):
            return f"`{name}` is a generator function (it uses `yield`); `return` the result instead"
        checks = [(obj, ex.reference, tuple(c.args), dict(c.kwargs), name) for c in cases]
    for fn, ref, args, kwargs, what in checks:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            try:
                want = _plain_signature(inspect.signature(ref))
            except (TypeError, ValueError):
                want = "(...)"
            have = _plain_signature(sig)
            return (f"`{what}{have}` cannot be called the way the exercise calls it ({e}); "
                    f"keep the signature from the notebook: `{what}{want}`")
    return None


def _reference_signature(ex: Exercise) -> inspect.Signature:
    return inspect.signature(ex.reference.forward if ex.kind == "module" else ex.reference)


def _plain_signature(sig: inspect.Signature) -> str:
    """``(x, dim=-1)``: a signature without annotations and without ``self``."""
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    if params and params[0].name == "self":
        params = params[1:]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def _cases_and_calls(ex: Exercise, seed: int, hidden: bool) -> tuple:
    cases = ex.cases(seed, hidden)
    return cases, ex.plan(cases)


def run_local(ex: Exercise, obj: Callable, seed: int = PUBLIC_SEED, hidden: bool = False,
              allow_reference: bool = False) -> Report:
    """Plan, evaluate in this process and judge: the inline check and the tests of the tests."""
    cases, calls = ex.cached(("plan", int(seed), bool(hidden)), None, lambda: _cases_and_calls(ex, seed, hidden))
    problem = signature_problem(ex, obj, cases)
    if problem:
        return Report(ex.id, ERROR, 0.0, float(ex.points), problem, cases_total=len(cases))
    outcomes = ex.evaluate_locally(obj, calls, allow_reference=allow_reference)
    return ex.judge(cases, calls, outcomes)
