"""The worker: runs one learner notebook inside the sandbox and answers the grader's calls by value.

The grader starts it (see :mod:`.sandbox`) as ``python -I -c BOOT CONFIG`` and talks to it over the
worker's stdin/stdout with :mod:`.wire` messages:

=========================  ==================================================================
grader -> worker            worker -> grader
=========================  ==================================================================
(start)                     ``ready``: what confinement was applied (uid, limits, network)
``setup`` exercises          ``setup_done``
``cell`` index, source       ``cell_done``: ok / error + the learner's traceback, fatal?, defined?
``eval`` exercise, calls     one ``outcome`` per call (value by value, or error / forbidden / ...),
                             then ``eval_done``
``bye``                      (exits)
=========================  ==================================================================

What the worker never has: the seed, the reference outputs, the comparison. It receives the inputs of
one exercise's calls only after every learner cell has run, and everything it sends back is validated
again by the grader.

Before any learner code runs, the worker confines itself (resource limits, parent-death signal, a
network namespace and an unprivileged user when asked to and able to), redirects file descriptors 0-2
(the protocol moves to private descriptors; ``input()`` reads an empty stdin; printed output goes to a
capped sink), and captures what it relies on later: the targets of forbidden calls, ``sys.setprofile``,
the encoder's torch functions, the per-call seeding of PyTorch's global generator (``exercises.rng``,
the same as the inline check's, so a learner who forgets ``generator=`` draws known numbers), and
snapshots of ``builtins``, ``torch.Tensor`` and ``json`` that are put back while an output is encoded. It then removes ``course_lib.grading`` from ``sys.modules``, so a
learner cell that imports and patches it patches a fresh copy. Comparison and scoring happen in the
grader, so a learner who patches ``torch.allclose``, ``torch.testing`` or the check functions changes
nothing; forbidden-call detection is in-process and therefore best-effort against deliberate
introspection (the grader flags sources that reach for the grading machinery).
"""

from __future__ import annotations

import builtins
import ctypes
import ctypes.util
import io
import json
import linecache
import os
import resource
import signal
import sys
import threading
import time
import traceback

PROTOCOL_MAX_BYTES = 1 << 31
TB_LIMIT = 4000
MSG_LIMIT = 1000


class ForbiddenCall(BaseException):
    """Raised inside the learner's code on a forbidden call (a BaseException: ``except Exception`` in
    the learner's code does not swallow it, and the watch remembers the hit anyway)."""


class CpuLimitExceeded(BaseException):
    """Raised in the learner's code (from the SIGXCPU handler) when it used up its CPU-time budget."""


def cpu_seconds() -> float:
    """CPU time (user + system, every thread) this process has used so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class CpuBudget:
    """A CPU-time budget for one cell or one exercise, enforced by the kernel (``RLIMIT_CPU``).

    The soft limit is set to the CPU time used so far plus the budget; past it the kernel sends SIGXCPU
    (again every second), and the handler raises :class:`CpuLimitExceeded` inside the learner's code.
    CPU time does not grow while the machine is busy with other work, so the verdict is the same on an
    idle and a loaded machine. Code that sleeps or blocks uses no CPU: the grader's wall-clock backstop
    ends it.
    """

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.start = 0.0

    def __enter__(self):
        self.start = cpu_seconds()
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(self.start + self.seconds) + 1  # whole seconds, rounded up
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        signal.signal(signal.SIGXCPU, _on_sigxcpu)  # learner cells may have replaced the handler
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        return self

    def __exit__(self, *exc):
        # A SIGXCPU still pending must not raise later, in the middle of a message to the grader.
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        return False

    @property
    def used(self) -> float:
        return cpu_seconds() - self.start

    def exceeded(self) -> bool:
        return self.used > self.seconds


def _on_sigxcpu(signum, frame):
    raise CpuLimitExceeded()


class SignatureMismatch(Exception):
    pass


TAMPER_LABEL = "a call that switches off the grader's call watch (sys.setprofile / sys.settrace)"


# ---------------------------------------------------------------------------------------------------
# Confinement (runs first, as trusted code)
# ---------------------------------------------------------------------------------------------------


def _libc():
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def unshare_network() -> str:
    """Give this process (and its children) a network namespace of its own: no network (needs root)."""
    libc = _libc() if sys.platform.startswith("linux") else None
    CLONE_NEWNET = 0x40000000
    if libc is not None and libc.unshare(CLONE_NEWNET) == 0:
        return "isolated (own network namespace)"
    return "not isolated"


def confine(cfg: dict) -> dict:
    """Apply limits and the user switch described by ``cfg``; report what was achieved."""
    done: dict = {"limits": {}}
    for name, value in cfg.get("rlimits", {}).items():
        res = getattr(resource, name, None)
        if res is None:
            continue
        try:
            soft, hard = resource.getrlimit(res)
            value = int(value)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(res, (value, value))
            done["limits"][name] = value
        except (ValueError, OSError):
            pass
    uid, gid = cfg.get("uid"), cfg.get("gid")
    if uid is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(int(gid))
        os.setuid(int(uid))
    done["uid"] = os.getuid()
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is not None:
        PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1 and not cfg.get("pid_namespace"):
            os._exit(3)  # the grader is already gone
    scratch = cfg["scratch"]
    os.makedirs(scratch, exist_ok=True)
    os.chdir(scratch)
    for sub in ("tmp", ".config/matplotlib"):
        os.makedirs(os.path.join(scratch, sub), exist_ok=True)
    os.environ.update(HOME=scratch, TMPDIR=os.path.join(scratch, "tmp"),
                      MPLCONFIGDIR=os.path.join(scratch, ".config", "matplotlib"))
    import tempfile

    tempfile.tempdir = None
    return done


# ---------------------------------------------------------------------------------------------------
# Output sink (what learner code prints)
# ---------------------------------------------------------------------------------------------------


class Sink(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of learner code: counts characters, keeps none of them."""

    def __init__(self, fd: int):
        super().__init__()
        self.chars = 0
        self._fd = fd

    def write(self, s) -> int:
        n = len(s) if isinstance(s, (str, bytes)) else 0
        self.chars += n
        return n

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    @property
    def encoding(self):  # noqa: D401 - io API
        return "utf-8"

    @property
    def buffer(self):
        return self


# ---------------------------------------------------------------------------------------------------
# Watching for forbidden calls (targets resolved before learner code runs)
# ---------------------------------------------------------------------------------------------------


class Watch:
    """Recognises calls of forbidden targets in ``sys.setprofile`` events.

    Python functions are recognised by their code object (aliases and wrappers are caught), classes by
    their ``__init__`` / ``forward`` code, built-in functions by identity or by (name, owner) and
    method descriptors (``torch.Tensor.softmax``) by name and the type of the bound object.
    """

    def __init__(self, forbidden, resolve, tamper_targets):
        import types

        self.codes: dict = {}
        self.keep: list = []
        self.objects: dict = {}
        self.methods: dict = {}
        self.owners: dict = {}
        self.tripped = None
        self.active = False
        for f in forbidden:
            for t in f.targets:
                try:
                    obj = resolve(t) if isinstance(t, str) else t
                except (ImportError, AttributeError):
                    continue
                self._add(obj, f.label, types)
        for t in tamper_targets:
            self._add(t, TAMPER_LABEL, types)

    def _add(self, obj, label, types) -> None:
        fn = obj.__func__ if isinstance(obj, (staticmethod, classmethod, types.MethodType)) else obj
        self.keep.append(fn)
        if isinstance(fn, types.FunctionType):
            self.codes[id(fn.__code__)] = label
            self.keep.append(fn.__code__)
        elif isinstance(fn, type):
            for attr in ("__init__", "forward", "__call__"):
                code = getattr(getattr(fn, attr, None), "__code__", None)
                if code is not None and not getattr(code, "co_filename", "").endswith("torch/nn/modules/module.py"):
                    self.codes[id(code)] = label
                    self.keep.append(code)
        elif isinstance(fn, (types.MethodDescriptorType, types.WrapperDescriptorType)):
            self.methods.setdefault(fn.__name__, []).append((fn.__objclass__, label))
        else:
            self.objects[id(fn)] = label
            owner = getattr(fn, "__self__", None)
            name = getattr(fn, "__name__", None)
            if owner is not None and name:
                self.owners.setdefault(name, []).append((owner, label))

    def hook(self):
        codes, objects, methods, owners, watch = self.codes, self.objects, self.methods, self.owners, self
        _id, _getattr, _type, _issub = id, getattr, type, issubclass

        def profile(frame, event, arg):
            if not watch.active or watch.tripped is not None:
                return
            if event == "call":
                label = codes.get(_id(frame.f_code))
            elif event == "c_call":
                label = objects.get(_id(arg))
                if label is None:
                    name = _getattr(arg, "__name__", None)
                    owner = _getattr(arg, "__self__", None)
                    for cls, lab in methods.get(name, ()):
                        if _issub(_type(owner), cls):
                            label = lab
                            break
                    if label is None:
                        for obj, lab in owners.get(name, ()):
                            if owner is obj:
                                label = lab
                                break
            else:
                return
            if label is not None:
                watch.tripped = label
                raise ForbiddenCall(label)

        return profile


# ---------------------------------------------------------------------------------------------------
# Namespace snapshots: put back what the encoder relies on while an output is encoded
# ---------------------------------------------------------------------------------------------------


class Pristine:
    """``builtins``, ``json`` and ``torch.Tensor`` as they were before any learner code ran.

    :meth:`restore` puts them back (attributes a learner replaced, added or deleted) before the
    evaluation phase and again before each output is encoded, so that a learner's patch cannot
    change what the encoder sends. Patching those namespaces is not something a course notebook
    needs; it only affects the evaluation phase.
    """

    def __init__(self, namespaces):
        self.targets = [(ns, dict(vars(ns))) for ns in namespaces]

    def restore(self) -> None:
        for ns, state in self.targets:
            try:
                current = vars(ns)
                is_type = isinstance(ns, type)
                for k in [k for k in current if k not in state]:
                    type.__delattr__(ns, k) if is_type else current.pop(k)
                for k, v in state.items():
                    if current.get(k, _MISSING) is not v:
                        if is_type:
                            type.__setattr__(ns, k, v)
                        else:
                            current[k] = v
            except (TypeError, AttributeError):
                pass


# ---------------------------------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------------------------------


def _cell_name(index: int) -> str:
    return f"<cell {index}>"


def learner_traceback(exc: BaseException) -> str:
    """The frames of the learner's own cells (never the worker's, course_lib's or torch's), then the
    exception line. SyntaxErrors show the offending line of the cell."""
    try:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell ")]
        lines = []
        for f in frames:
            lines.append(f"  Cell {f.filename[6:-1]}, line {f.lineno}, in {f.name}\n")
            if f.line:
                lines.append(f"    {f.line.strip()}\n")
        tail = "".join(traceback.format_exception_only(type(exc), exc))
        tail = tail.replace('File "<cell ', 'File "cell ').replace('>", line', '", line')
        text = "".join(lines)
        if len(text) > TB_LIMIT:
            text = "  ...\n" + text[-TB_LIMIT:]
        return text + _clip(tail, MSG_LIMIT)
    except BaseException:  # noqa: BLE001 - a learner's exception whose __str__ misbehaves
        return f"{type(exc).__name__} (its message could not be shown)\n"


def error_text(exc: BaseException) -> str:
    try:
        msg = str(exc)
    except BaseException:  # noqa: BLE001
        msg = "(message could not be shown)"
    return _clip(f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__, MSG_LIMIT)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 20] + " ...(shortened)"


def _is_memory_error(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


class Worker:
    def __init__(self, inp, out, confinement: dict):
        self.inp, self.out = inp, out
        self.confinement = confinement
        self.snapshots: dict = {}
        self.exercises: dict = {}
        self.watches: dict = {}

    # -- plumbing ---------------------------------------------------------------------------------

    def send(self, header: dict, blobs=()) -> None:
        self.wire.write_message(self.out, header, list(blobs))

    def serve(self) -> None:
        from . import wire

        self.wire = wire
        self.send({"op": "ready", "confinement": self.confinement, "python": sys.version.split()[0]})
        while True:
            try:
                header, blobs = wire.read_message(self.inp, PROTOCOL_MAX_BYTES)
            except EOFError:
                os._exit(0)
            op = header["op"]
            if op == "setup":
                self.setup(header)
            elif op == "cell":
                self.run_cell(header)
            elif op == "eval":
                self.evaluate(header, blobs)
            elif op == "bye":
                self.out.flush()
                os._exit(0)
            else:
                self.send({"op": "error", "error": f"unknown op {op!r}"})

    # -- setup (still trusted: no learner code has run) -------------------------------------------

    def setup(self, msg: dict) -> None:
        import torch

        from ..exercises import core, registry, rng

        mpl = msg.get("mpl_cache")
        if mpl and mpl.get("name", "").startswith("fontlist"):
            path = os.path.join(os.environ.get("MPLCONFIGDIR", "."), os.path.basename(mpl["name"]))
            with open(path, "w", encoding="utf-8") as f:
                f.write(mpl["text"])
        tamper = [sys.setprofile, sys.settrace, threading.setprofile, threading.settrace]
        for spec in msg["exercises"]:
            try:
                forbidden = registry.get(spec["id"]).all_forbidden()
            except KeyError:  # defined in the grader only (it cannot be graded here): watch tampering only
                forbidden = []
            self.exercises[spec["id"]] = spec
            self.watches[spec["id"]] = Watch(forbidden, core.resolve, tamper)
        self.torch = torch
        self._no_grad = torch.no_grad
        self._Module = torch.nn.Module
        self._Generator = torch.Generator
        self._GeneratorSeed, self._ModuleInputs = core.GeneratorSeed, core.ModuleInputs
        # PyTorch's global generator is seeded per call exactly as in the inline check (Exercise.invoke)
        self._global_seed, self._seeded_global_rng = rng.global_seed, rng.seeded_global_rng
        self._setprofile = sys.setprofile
        self._thread_setprofile = threading.setprofile
        self._signature = __import__("inspect").signature
        self._perf = time.perf_counter
        self.pristine = Pristine([builtins, json, torch.Tensor])
        self._make_shell()
        cpu = msg.get("cpu") or {}
        self.cpu_cell = float(cpu.get("cell", 120.0))
        self.cpu_exercise = float(cpu.get("exercise", 60.0))
        self.cpu_base = cpu_seconds()  # starting Python and importing torch are not the learner's
        self.send({"op": "setup_done"})
        # Learner cells that import course_lib.grading get a fresh copy; this one stays out of reach.
        for name in [m for m in sys.modules if m == "course_lib.grading" or m.startswith("course_lib.grading.")]:
            del sys.modules[name]

    def _make_shell(self) -> None:
        note = "(shell commands and %pip are not run while grading)"
        try:
            from IPython.core.interactiveshell import InteractiveShell
            from traitlets.config import Config

            c = Config()
            c.HistoryManager.enabled = False
            shell = InteractiveShell.instance(config=c)

            def skip(*args, **kwargs):
                print(note)

            for name in ("pip", "conda", "mamba", "matplotlib", "sx", "system", "gui"):
                shell.register_magic_function(skip, "line", name)
            for name in ("bash", "sh", "script", "system", "html", "javascript", "js", "svg", "latex",
                         "markdown", "perl", "ruby"):
                shell.register_magic_function(skip, "cell", name)
            shell.system = skip
            shell.getoutput = lambda *a, **k: []
            from IPython.display import display

            self.ns = shell.user_ns
            self.ns["display"] = display
            self.transform = shell.transform_cell
        except ImportError:
            self.ns = {"__name__": "__main__", "display": print}
            self.transform = _strip_magics

    # -- cells ------------------------------------------------------------------------------------

    def run_cell(self, msg: dict) -> None:
        index, source = int(msg["index"]), msg["source"]
        name = _cell_name(index)
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        before = sys.stdout.chars + sys.stderr.chars if isinstance(sys.stdout, Sink) else 0
        reply = {"op": "cell_done", "index": index, "ok": True}
        start = time.perf_counter()
        limit = float(msg.get("cpu_limit", self.cpu_cell))  # less when the notebook's budget is nearly used
        budget = CpuBudget(limit)
        try:
            with budget:
                code = compile(self.transform(source), name, "exec")
                exec(code, self.ns)  # noqa: S102 - this is the learner's notebook, inside the sandbox
        except CpuLimitExceeded:
            reply.update(ok=False, fatal="cpu", error=f"used more than {limit:g} s of CPU time")
        except BaseException as e:  # noqa: BLE001 - sys.exit(), KeyboardInterrupt: reported, not obeyed
            if budget.exceeded():  # the learner's code caught the limit's exception and went on
                reply.update(ok=False, fatal="cpu", error=f"used more than {limit:g} s of CPU time")
            else:
                reply.update(ok=False, error=error_text(e), traceback=learner_traceback(e))
                if _is_memory_error(e):
                    reply["fatal"] = "memory"
        finally:
            self._after_cell()
        reply["seconds"] = round(time.perf_counter() - start, 4)
        reply["cpu_seconds"] = round(budget.used, 4)
        reply["cpu_total"] = round(cpu_seconds() - self.cpu_base, 4)
        if isinstance(sys.stdout, Sink) and isinstance(sys.stderr, Sink):
            reply["output_chars"] = sys.stdout.chars + sys.stderr.chars - before
        defined = {}
        for ex_id in msg.get("exercises", []):  # capture what the exercise cell defines, right now
            obj = self.ns.get(self.exercises[ex_id]["function"], _MISSING)
            self.snapshots[ex_id] = obj
            defined[ex_id] = obj is not _MISSING
        reply["defined"] = defined
        self.send(reply)

    def _after_cell(self) -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            try:
                plt.close("all")
            except BaseException:  # noqa: BLE001
                pass

    # -- evaluation -------------------------------------------------------------------------------

    def evaluate(self, msg: dict, blobs: list) -> None:
        wire = self.wire
        ex_id = msg["exercise"]
        spec = self.exercises[ex_id]
        obj = self.snapshots.get(ex_id, _MISSING)
        watch = self.watches[ex_id]
        max_bytes = int(msg.get("max_value_bytes", 64 << 20))
        # Learner cells may have patched builtins, json or torch.Tensor: evaluation runs on the originals.
        self.pristine.restore()
        spent = 0.0  # CPU seconds used by this exercise's calls so far
        limit = float(msg.get("cpu_limit", self.cpu_exercise))
        for i, call in enumerate(msg["calls"]):
            start = self._perf()
            watch.tripped = None
            out = {"op": "outcome", "i": i}
            out_blobs: list = []
            budget = CpuBudget(max(0.0, limit - spent))
            try:
                with budget:
                    self._call_once(obj, spec, call, blobs, watch, out, out_blobs, max_bytes, i)
            except CpuLimitExceeded:
                out.update(kind="timeout", error=self._cpu_note(limit, i, len(msg["calls"])))
            spent += budget.used
            if out.get("kind") != "timeout" and spent > limit:  # caught the limit and went on
                out.update(kind="timeout", error=self._cpu_note(limit, i, len(msg["calls"])))
            out["seconds"] = round(self._perf() - start, 4)
            out["cpu_seconds"] = round(budget.used, 4)
            out["cpu_total"] = round(cpu_seconds() - self.cpu_base, 4)
            if out["kind"] != "value":
                out_blobs.clear()
            self.send(out, out_blobs)
            if out["kind"] in ("forbidden", "not_implemented", "timeout"):
                break
        self.send({"op": "eval_done", "exercise": ex_id})

    def _cpu_note(self, limit: float, i: int, n: int) -> str:
        return (f"ran out of time: used more than the {limit:g} s of CPU time for this exercise "
                f"({i} of {n} calls finished)")

    def _call_once(self, obj, spec, call, blobs, watch, out: dict, out_blobs: list, max_bytes: int,
                   position: int = 0) -> None:
        """One call of the learner's function (number ``position`` of the plan); fills ``out`` (and
        ``out_blobs``) with its outcome."""
        wire = self.wire
        try:
            args = wire.decode(call["args"], blobs, wire.Budget(PROTOCOL_MAX_BYTES))
            kwargs = wire.decode(call["kwargs"], blobs, wire.Budget(PROTOCOL_MAX_BYTES))
            self._inputs = None
            with self._seeded_global_rng(self._global_seed(args, kwargs, position)):
                value = self._invoke(obj, spec, args, kwargs, watch)
            if watch.tripped is not None:
                raise ForbiddenCall(watch.tripped)
            self.pristine.restore()  # undo whatever the call itself patched, before encoding
            out_blobs.clear()
            out.update(kind="value", value=wire.encode(value, out_blobs, wire.Budget(max_bytes)))
            # The inputs as the call left them, by value: the grader checks that they are unchanged.
            try:
                out["inputs"] = wire.encode(self._inputs, out_blobs, wire.Budget(max_bytes))
            except wire.WireError as e:
                out["inputs"] = {"$opaque": f"inputs that cannot be sent back ({str(e)[:80]})"}
        except ForbiddenCall as e:
            out.update(kind="forbidden", error=watch.tripped or str(e))
        except NotImplementedError as e:
            out.update(kind="not_implemented", error=error_text(e))
        except SignatureMismatch as e:
            out.update(kind="error", error=f"SignatureError: {e}", traceback="")
        except wire.WireError as e:
            out.update(kind="error", error=f"your output cannot be graded: {e}", traceback="")
        except CpuLimitExceeded:
            raise
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from learner code too
            if watch.tripped is not None:
                out.update(kind="forbidden", error=watch.tripped)
            else:
                err = error_text(e)
                if isinstance(e, SystemExit):
                    err = f"your code called sys.exit() / exit() ({err}); return a value instead"
                elif _is_memory_error(e):
                    err = f"ran out of memory: {err}"
                out.update(kind="error", error=err, traceback=learner_traceback(e))

    def _check_signature(self, fn, args, kwargs, what: str) -> None:
        try:
            sig = self._signature(fn)
        except (TypeError, ValueError):
            return
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            shown = ", ".join([type(a).__name__ for a in args] + [f"{k}=..." for k in kwargs])
            raise SignatureMismatch(f"{what}{sig} cannot be called the way the exercise calls it, "
                                    f"{what}({shown}): {e}. Keep the signature given in the notebook.") from None

    def _invoke(self, obj, spec: dict, args: tuple, kwargs: dict, watch: Watch):
        name = spec["function"]
        args = tuple(self._materialize(a) for a in args)
        kwargs = {k: self._materialize(v) for k, v in kwargs.items()}
        hook = watch.hook()
        if spec["kind"] == "module":
            if not (isinstance(obj, type) and issubclass(obj, self._Module)):
                raise TypeError(f"`{name}` should be a class derived from torch.nn.Module, "
                                f"got {'a ' + type(obj).__name__ if not isinstance(obj, type) else 'another class'}")
            inputs = args[0]
            self._inputs = (inputs.args, {})
            self._check_signature(obj, (), inputs.init, name)

            def run():
                module = obj(**inputs.init)
                module.load_state_dict(inputs.state, strict=True)
                module.eval()
                self._check_signature(module.forward, inputs.args, {}, f"{name}.forward")
                with self._no_grad():
                    return module(*inputs.args)

            return self._watched(run, (), {}, hook, watch)
        if not callable(obj):
            raise TypeError(f"`{name}` should be a function, got {type(obj).__name__}")
        self._check_signature(obj, args, kwargs, name)
        self._inputs = (args, kwargs)
        return self._watched(obj, args, kwargs, hook, watch)

    def _watched(self, fn, args, kwargs, hook, watch):
        watch.active = True
        self._thread_setprofile(hook)
        self._setprofile(hook)
        try:
            return fn(*args, **kwargs)
        finally:
            watch.active = False
            self._setprofile(None)
            self._thread_setprofile(None)

    def _materialize(self, value):
        GeneratorSeed, ModuleInputs = self._GeneratorSeed, self._ModuleInputs
        if isinstance(value, GeneratorSeed):
            return self._Generator().manual_seed(value.seed)
        if isinstance(value, ModuleInputs):
            return ModuleInputs(value.init, value.state, tuple(self._materialize(a) for a in value.args))
        if isinstance(value, tuple):
            return tuple(self._materialize(v) for v in value)
        if isinstance(value, list):
            return [self._materialize(v) for v in value]
        if isinstance(value, dict):
            return {k: self._materialize(v) for k, v in value.items()}
        return value


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()


def _strip_magics(source: str) -> str:
    """Without IPython: comment out magics and shell lines."""
    out = []
    for line in source.split("\n"):
        s = line.lstrip()
        out.append(line[: len(line) - len(s)] + "pass  # " + s if s.startswith(("%", "!")) else line)
    return "\n".join(out)


def _import_everything() -> None:
    """What every notebook needs, imported once (in the fork server) or at start (single worker)."""
    import numpy  # noqa: F401
    import torch

    from ..exercises import registry
    from . import wire  # noqa: F401 - captures torch functions now, before any learner code

    torch.set_num_threads(1)
    registry.load_all()
    try:
        import IPython.core.interactiveshell  # noqa: F401
        import traitlets.config  # noqa: F401
    except ImportError:
        pass


def _learner_process(inp, out, cfg: dict, network: str = None) -> None:
    """Confine this process, then serve the grader; learner code runs only after this point."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    try:
        done = confine(cfg)
    except BaseException as e:  # noqa: BLE001
        sys.stderr.write(f"confinement failed: {e}\n")
        os._exit(4)
    if network:
        done["network"] = network
    sys.stdout, sys.stderr = Sink(1), Sink(2)
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""))

    def no_input(prompt=""):
        raise EOFError("input() cannot be answered while the notebook is graded; remove the input() call")

    builtins.input = no_input
    Worker(inp, out, done).serve()


def main(config_json: str) -> None:
    """A single worker process: the protocol is on stdin/stdout."""
    cfg = json.loads(config_json)
    # The protocol moves to private descriptors (not inherited by child processes); the learner's
    # stdin is empty and their stdout joins stderr, which the grader drains and caps.
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    network = unshare_network() if cfg.get("unshare_net") else None
    _import_everything()
    _learner_process(inp, out, cfg, network)


# ---------------------------------------------------------------------------------------------------
# The fork server: imports once, forks a fresh confined worker per notebook
# ---------------------------------------------------------------------------------------------------


def _send_json(sock, msg: dict) -> None:
    sock.send(json.dumps(msg).encode())


def _kill_everything_else(cfg: dict, child_pid: int, uid) -> None:
    """Kill the worker, its process group, and whatever it left behind."""
    for target in (lambda: os.killpg(child_pid, signal.SIGKILL), lambda: os.kill(child_pid, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass
    if uid is not None:
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(int(uid))
                os.setuid(int(uid))
                os.kill(-1, signal.SIGKILL)
            except BaseException:  # noqa: BLE001
                pass
            os._exit(0)
        os.waitpid(pid, 0)
    if cfg.get("pid_namespace"):  # everything in this sandbox but the init and the fork server
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in (1, me):
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass


def _reap(cfg: dict, pid: int, kill: bool, grace: float) -> dict:
    status = None
    end = time.monotonic() + (0 if kill else grace)
    while True:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        if time.monotonic() >= end:
            break
        time.sleep(0.01)
    _kill_everything_else(cfg, pid, cfg.get("uid"))
    if status is None:
        _, status = os.waitpid(pid, 0)
        killed = True
    else:
        killed = False
    while True:  # zombies of anything else this server started
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status), "killed_by_grader": killed}
    return {"exit": os.WEXITSTATUS(status), "killed_by_grader": killed}


def _fresh_scratch(cfg: dict) -> None:
    import shutil

    scratch = cfg["scratch"]
    roots = ["/tmp", "/dev/shm"] if cfg.get("pid_namespace") else [scratch]
    for root in roots:
        if os.path.isdir(root):
            for entry in os.listdir(root):
                path = os.path.join(root, entry)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
    os.makedirs(scratch, exist_ok=True)
    if cfg.get("uid") is not None:
        os.chown(scratch, int(cfg["uid"]), int(cfg["gid"]))


def zygote_main(config_json: str) -> None:
    """The fork server of one parallel slot. It never runs learner code.

    Requests come as JSON datagrams on a SOCK_SEQPACKET control socket: ``spawn`` (with the new
    worker's channel attached as a file descriptor) forks a worker into a wiped scratch folder;
    ``reap`` waits for it (or kills it), kills whatever it left behind and reports how it ended.
    """
    import socket

    cfg = json.loads(config_json)
    ctl = socket.socket(fileno=int(cfg["control_fd"]))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is not None:
        PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # workers of the same user cannot ptrace the server
    network = unshare_network() if cfg.get("unshare_net") else None
    _import_everything()
    _send_json(ctl, {"op": "ready"})
    child = None
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 2)
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)
        req = json.loads(data)
        if req["op"] == "spawn" and fds:
            ccfg = dict(req["cfg"], pid_namespace=cfg.get("pid_namespace"))
            _fresh_scratch(ccfg)
            pid = os.fork()
            if pid == 0:
                try:
                    ctl.close()
                    os.setsid()
                    inp = os.fdopen(os.dup(fds[0]), "rb", buffering=0)
                    out = os.fdopen(os.dup(fds[0]), "wb", buffering=1 << 16)
                    for fd in fds:
                        os.close(fd)
                    _learner_process(inp, out, ccfg, network)
                finally:
                    os._exit(5)
            for fd in fds:
                os.close(fd)
            child = (pid, ccfg)
            _send_json(ctl, {"op": "spawned", "pid": pid})
        elif req["op"] == "reap" and child is not None:
            status = _reap(child[1], child[0], bool(req.get("kill")), float(req.get("grace", 1.0)))
            _fresh_scratch(child[1])
            child = None
            _send_json(ctl, {"op": "reaped", **status})
        elif req["op"] == "exit":
            os._exit(0)
        else:
            for fd in fds:
                os.close(fd)
            _send_json(ctl, {"op": "error", "error": f"unexpected request {req.get('op')!r}"})
