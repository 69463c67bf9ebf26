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

import copy
import math
import re
import sys
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

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

    kind: str  # "type", "shape", "dtype", "values", "length"
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


def compare(expected: Any, got: Any, atol: float = 1e-5, rtol: float = 1e-4, check_dtype: bool = True,
            where: str = "") -> Optional[Mismatch]:
    """Compare an output with the expected one; ``None`` when they agree.

    Tensors must be exactly ``torch.Tensor`` (no subclasses), with the expected shape, dtype (when
    ``check_dtype``) and values (``|got - expected| <= atol + rtol * |expected|``, nan only where nan is
    expected). Tuples and lists are compared element by element; numbers with the same tolerance.
    """
    label = f"output{where}"
    if isinstance(expected, torch.Tensor):
        if type(got) is not torch.Tensor:
            if isinstance(got, torch.Tensor):
                return Mismatch("type", f"{label} is a {type(got).__name__}, a subclass of torch.Tensor; "
                                        f"return a plain torch.Tensor", where)
            return Mismatch("type", f"{label} should be a torch.Tensor, got {type(got).__name__}", where)
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
                                    f"got {type(got).__name__}", where)
        if len(got) != len(expected):
            return Mismatch("length", f"{label} has {len(got)} items, expected {len(expected)}", where,
                            expected=len(expected), got=len(got))
        for i, (e, g) in enumerate(zip(expected, got)):
            m = compare(e, g, atol, rtol, check_dtype, f"{where}[{i}]")
            if m is not None:
                return m
        return None
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        if got != expected or type(got) is not type(expected):
            return Mismatch("values", f"{label} is {got!r}, expected {expected!r}", where,
                            expected=expected, got=got)
        return None
    if isinstance(expected, (int, float)):
        if isinstance(got, torch.Tensor) and got.numel() == 1 and type(got) is torch.Tensor:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return Mismatch("type", f"{label} should be a number, got {type(got).__name__}", where)
        if isinstance(expected, int) and not isinstance(got, int) and check_dtype:
            if float(got) != float(expected):
                return Mismatch("values", f"{label} is {_fmt_number(got)}, expected {expected}", where,
                                expected=expected, got=got)
            return None
        e, g = float(expected), float(got)
        if math.isnan(e) and math.isnan(g):
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
            # a class (e.g. torch.nn.MultiheadAttention): catch its forward
            self.code = getattr(fn.forward, "__code__", None)
        else:
            self.self_obj = getattr(fn, "__self__", None)

    def matches(self, frame, event: str, arg: Any) -> bool:
        if event == "call":
            return self.code is not None and frame.f_code is self.code
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

    def to_dict(self) -> dict:
        return {
            "exercise": self.exercise_id, "status": self.status, "points": self.points,
            "max": self.max_points, "message": self.message, "mistake": self.mistake,
            "details": list(self.details), "cases_passed": self.cases_passed,
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

    def all_forbidden(self) -> list:
        extra = [Forbidden("course_lib's reference solution", (self.reference,),
                           "calls course_lib's own reference for this exercise instead of implementing it")] \
            if self.forbid_reference else []
        return list(self.forbidden) + extra

    # -- evaluation -----------------------------------------------------------------------------------

    def invoke(self, obj: Callable, call: Call, forbidden: Sequence[Forbidden] = ()) -> Any:
        """Run the learner's function (or module class) on fresh copies of a call's arguments."""
        args, kwargs = materialize(call.args), materialize(call.kwargs)
        if self.kind == "module":
            spec = args[0]
            if not isinstance(spec, ModuleInputs):
                raise TypeError("module exercises take a ModuleInputs as their only argument")

            def run():
                module = obj(**spec.init)
                _load_parameters(module, spec.state, self.function)
                module.eval()
                with torch.no_grad():
                    return module(*spec.args)

            return call_watched(run, (), {}, forbidden)
        return call_watched(obj, args, kwargs, forbidden)

    def expected(self, call: Call) -> Any:
        return self.invoke(self.reference, call)

    def judge(self, cases: Sequence[Case], calls: Sequence[Call], outcomes: Sequence[Outcome]) -> Report:
        """Compare the learner's outcomes with the reference: status, points and a message."""
        return _judge(self, list(cases), list(calls), list(outcomes))

    def evaluate_locally(self, obj: Callable, calls: Sequence[Call], stop_on_stub: bool = True,
                         allow_reference: bool = False) -> list:
        """Outcomes of running ``obj`` here, in this process (the inline check).

        ``allow_reference`` lets ``obj`` call course_lib's reference (the tests of the tests evaluate
        the reference itself and buggy variants built on it).
        """
        forbidden = list(self.forbidden) if allow_reference else self.all_forbidden()
        outcomes = []
        for call in calls:
            outcome = outcome_of(lambda: self.invoke(obj, call, forbidden))
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


def _match_mistake(ex: Exercise, call: Call, got: Any) -> Optional[KnownMistake]:
    for mistake in ex.mistakes:
        try:
            wrong = ex.invoke(mistake.fn, call)
        except Exception:  # a mistake that crashes on this input simply doesn't match
            continue
        if compare(wrong, got, ex.atol, ex.rtol, ex.check_dtype) is None:
            return mistake
    return None


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
    if len(outcomes) < len(calls):
        outcomes = outcomes + [Outcome("error", error="not evaluated")] * (len(calls) - len(outcomes))

    details: list = []
    groups: dict = {}
    first_failure: Optional[str] = None
    mistake: Optional[KnownMistake] = None
    first_tb = ""
    errors = 0
    case_outputs: dict = {}
    for call, oc in zip(calls, outcomes):
        if call.property_name is not None:
            continue
        case = cases[call.case_index]
        groups.setdefault(case.group, True)
        label = _describe_case(case, call.case_index)
        if oc.kind != "value":
            errors += 1
            groups[case.group] = False
            line = f"{label}: raised {oc.error}"
            details.append(line)
            if first_failure is None:
                first_failure, first_tb = line, oc.traceback
            continue
        case_outputs[call.case_index] = oc.value
        expected = ex.expected(call)
        mm = compare(expected, oc.value, ex.atol, ex.rtol, ex.check_dtype)
        if mm is None:
            details.append(f"{label}: ok")
            continue
        groups[case.group] = False
        details.append(f"{label}: {mm.text}")
        if mistake is None:
            mistake = _match_mistake(ex, call, oc.value)
        if first_failure is None:
            first_failure = f"{label}: {mm.text}"

    passed_cases = sum(1 for d in details if d.endswith(": ok"))
    # Properties: each one is its own group for partial credit.
    for prop in ex.properties:
        derived = {}
        for call, oc in zip(calls, outcomes):
            if call.property_name == prop.name:
                derived.setdefault(call.case_index, []).append(oc)
        ok = bool(case_outputs)  # a property of outputs that never came back cannot hold
        for i, case in enumerate(cases):
            if i not in case_outputs:
                continue
            douts = derived.get(i, [])
            if any(d.kind != "value" for d in douts):
                ok = False
                break
            try:
                if not prop.holds(case, case_outputs[i], [d.value for d in douts]):
                    ok = False
                    break
            except Exception:  # an output of the wrong kind fails the property
                ok = False
                break
        groups[f"property:{prop.name}"] = ok
        details.append(f"property '{prop.name}': {'holds' if ok else 'fails: ' + prop.message}")
        if not ok and first_failure is None:
            first_failure = f"property '{prop.name}' fails: {prop.message}"

    # Properties earn their share only next to at least one passing case group.
    case_ok = [v for k, v in groups.items() if not k.startswith("property:")]
    if not any(case_ok):
        groups = {k: False for k in groups}
    n_groups = len(groups)
    n_ok = sum(1 for v in groups.values() if v)
    points = round(max_pts * n_ok / n_groups, 2) if n_groups else 0.0
    if n_ok == n_groups:
        status, message = PASSED, f"all {len(cases)} cases pass" + (
            f" and {len(ex.properties)} properties hold" if ex.properties else "")
    else:
        status = PARTIAL if n_ok else (ERROR if errors == len(cases) else FAILED)
        message = first_failure or "some cases fail"
    return Report(status=status, points=points, message=message,
                  mistake=mistake.name if mistake else None,
                  mistake_message=mistake.message if mistake else None,
                  details=details, cases_passed=passed_cases, traceback=first_tb, **base)


def run_local(ex: Exercise, obj: Callable, seed: int = PUBLIC_SEED, hidden: bool = False,
              allow_reference: bool = False) -> Report:
    """Plan, evaluate in this process and judge: the inline check and the tests of the tests."""
    cases = ex.cases(seed, hidden)
    calls = ex.plan(cases)
    outcomes = ex.evaluate_locally(obj, calls, allow_reference=allow_reference)
    return ex.judge(cases, calls, outcomes)
