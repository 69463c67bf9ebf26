"""The class of misbehaving learners the fault tests grade: one student per fault.

Each entry: student name -> (cells, expectation). Students are unit 02 notebooks in which one thing
goes wrong; the other exercises are correct, so the tests can also check that one fault costs only
what it must.
"""

from __future__ import annotations

import os
from pathlib import Path

from course_lib.exercises import get
from course_lib.grading.sandbox import PROJECT_ROOT

from .build import CORRECT, NB, stub, unit02, write

SOFTMAX = "02.stable_softmax"


def softmax_cell(body: str, signature: str = "x, dim=-1", name: str = "stable_softmax", pre: str = "") -> str:
    lines = [f"# EXERCISE: {SOFTMAX}", *([pre] if pre else []), f"def {name}({signature}):"]
    lines += ["    " + ln for ln in body.strip("\n").split("\n")]
    return "\n".join(lines)


CORRECT_BODY = "m = x.amax(dim=dim, keepdim=True)\ne = (x - m).exp()\nreturn e / e.sum(dim=dim, keepdim=True)"


def hardcoded_cell() -> str:
    """A softmax that only knows the answers of the notebook's visible (public) cases."""
    ex = get(SOFTMAX)
    table = []
    for call in ex.plan(ex.cases(0, hidden=False)):
        expected = ex.expected(call)
        table.append((call.args[0].tolist(), call.kwargs.get("dim", -1), expected.tolist()))
    return softmax_cell(
        "for inp, d, out in ANSWERS:\n"
        "    if x.tolist() == inp and dim == d:\n"
        "        return torch.tensor(out, dtype=x.dtype)\n"
        "return torch.zeros_like(x)", pre=f"ANSWERS = {table!r}")


def secret_paths(out: Path, subs: Path) -> dict:
    """Files a learner must not be able to read (or, for OUT, write)."""
    sol = sorted((PROJECT_ROOT / "solutions").glob("*.ipynb"))
    return {"git_head": str(PROJECT_ROOT / ".git" / "HEAD"),
            "solution": str(sol[0]) if sol else str(PROJECT_ROOT / ".git" / "HEAD"),
            "other": str(subs / "correct" / f"{NB}.ipynb"),
            "out": str(out / "grades.csv"), "out_dir": str(out)}


def build_class(subs: Path, out: Path, sandboxed: bool) -> None:
    """Write every student of the fault class into ``subs``."""
    p = secret_paths(out, subs)
    S = lambda body, **kw: {SOFTMAX: softmax_cell(body, **kw)}  # noqa: E731
    students = {
        "correct": unit02(checks=True),
        "stub": unit02({k: stub(k) for k in CORRECT}),
        # --- faults in cells -------------------------------------------------------------------
        "sleep_forever_cell": unit02(extra_before=["import time\ntime.sleep(10**6)"]),
        "infinite_loop_cell": unit02(extra_before=["while True:\n    pass"]),
        # Untouched tensors reach the address-space limit in ~0.02 s; zero-filled bytearrays took 2.4 s
        # on a quiet machine and over the 5 s cell limit on a loaded one (reported as a timeout instead).
        "memory_bomb_cell": unit02(extra_before=[
            "import torch\nhog = []\nwhile True:\n    hog.append(torch.empty(10**8, dtype=torch.uint8))"]),
        # Python's own MemoryError (the tensor above raises torch's RuntimeError): one impossible block.
        "memory_error_cell": unit02(extra_before=["hog = bytearray(10**12)"]),
        "os_exit_cell": unit02(extra_before=["import os\nos._exit(3)"]),
        "sys_exit_cell": unit02(extra_before=["import sys\nsys.exit(1)"]),
        "segfault_cell": unit02(extra_before=["import ctypes\nctypes.string_at(0)"]),
        "million_lines": unit02(extra_before=["for i in range(10**6):\n    print(i)"]),
        "input_cell": unit02(extra_before=["name = input('your name? ')"]),
        "name_error_cell": unit02(extra_before=["print(undefined_name)"]),
        # --- faults in the learner's function ----------------------------------------------------
        "infinite_loop_fn": unit02(S("while True:\n    pass")),
        "segfault_fn": unit02(S("import ctypes\nctypes.string_at(0)")),
        "os_exit_fn": unit02(S("import os\nos._exit(0)")),
        "sys_exit_fn": unit02(S("import sys\nsys.exit(0)")),
        "input_fn": unit02(S("n = input()\n" + CORRECT_BODY)),
        # Slow by construction in CPU time (what the limits count), whatever the machine's load.
        "slow_correct": unit02(S("import time\nt0 = time.process_time()\nwhile time.process_time() - t0 < 0.3:\n"
                                 "    pass\n" + CORRECT_BODY)),
        # Sleeps use no CPU: only the wall-clock backstop ends them.
        "sleep_forever_fn": unit02(S("import time\ntime.sleep(10**6)")),
        "syntax_error": unit02(S("return (x")),
        "raises_deep": unit02(S("return helper(x)", pre="def helper(t):\n    return t.nonexistent_method()")),
        # --- structure -----------------------------------------------------------------------------
        "deleted_cell": unit02({SOFTMAX: None}),
        "renamed": unit02(S(CORRECT_BODY, name="my_softmax")),
        "signature": unit02(S(CORRECT_BODY.replace("dim=dim", "dim=axis"), signature="x, axis=-1")),
        # --- wrong answers ---------------------------------------------------------------------------
        "wrong_shape": unit02(S("return x.exp().sum(dim=dim)")),
        "wrong_dtype": unit02(S("m = x.amax(dim=dim, keepdim=True)\ne = (x - m).exp()\n"
                                "return (e / e.sum(dim=dim, keepdim=True)).double()")),
        "returns_list": unit02(S(CORRECT_BODY.replace("return e / e.sum(dim=dim, keepdim=True)",
                                                      "return (e / e.sum(dim=dim, keepdim=True)).tolist()"))),
        "returns_numpy": unit02(S(CORRECT_BODY.replace("return e / e.sum(dim=dim, keepdim=True)",
                                                       "return (e / e.sum(dim=dim, keepdim=True)).numpy()"))),
        "returns_nan": unit02(S("return torch.full_like(x, float('nan'))")),
        "tensor_subclass": unit02(S(CORRECT_BODY.replace("return e / e.sum(dim=dim, keepdim=True)",
                                                         "return torch.zeros_like(x).as_subclass(AlwaysEqual)"),
                                    pre="class AlwaysEqual(torch.Tensor):\n"
                                        "    def __eq__(self, other):\n        return True\n"
                                        "    def allclose(self, *a, **k):\n        return True")),
        "hardcoded": unit02({SOFTMAX: hardcoded_cell()}, checks=True),
        "known_mistake": unit02(S("e = x.exp()\nreturn e / e.sum(dim=dim, keepdim=True)")),
        # --- cheating --------------------------------------------------------------------------------
        "monkeypatch": unit02(S("return torch.zeros_like(x)"), extra_before=[
            "import torch, torch.testing\nimport course_lib.exercises as E\nfrom course_lib.exercises import core\n"
            "torch.allclose = lambda *a, **k: True\ntorch.testing.assert_close = lambda *a, **k: None\n"
            "torch.equal = lambda *a, **k: True\ncore.compare = lambda *a, **k: None\n"
            "core.Exercise.judge = lambda self, *a, **k: None\n"
            "core.Exercise.invoke = lambda self, obj, call, forbidden=(): self.reference(*call.args, **call.kwargs)\n"
            "E.check = lambda *a, **k: 'passed'\ncore.run_local = lambda *a, **k: None\n"
            "import course_lib.grading.wire as W\nW.encode = None"]),
        "calls_reference": unit02(S("return ref_softmax(x, dim)",
                                    pre="from course_lib.softmax import softmax as ref_softmax")),
        "reference_after_patching_setprofile": unit02(
            S("return ref_softmax(x, dim)", pre="from course_lib.softmax import softmax as ref_softmax"),
            extra_before=["import sys, threading\nsys.setprofile = lambda f: None\nthreading.setprofile = lambda f: None"]),
        "unsets_profile": unit02(S("import sys\nsys.setprofile(None)\nreturn ref_softmax(x, dim)",
                                   pre="from course_lib.softmax import softmax as ref_softmax")),
        "forbidden_builtin": unit02(S("return torch.softmax(x, dim=dim)")),
        "forbidden_method_alias": unit02(S("f = x.softmax\ntry:\n    return f(dim)\nexcept Exception:\n"
                                           "    return torch.zeros_like(x)")),
        "forbidden_in_helper": unit02(S("import torch.nn.functional as F\nreturn F.softmax(x, dim)")),
        # --- the sandbox: reading what is hidden, writing the output, network ------------------
        "reads_secrets": unit02(S(f"""
import os
for path in {[p['git_head'], p['solution'], p['other']]!r}:
    if os.path.exists(path):
        raise RuntimeError('could read ' + path)
""" + CORRECT_BODY)),
        "writes_out": unit02(extra_before=[f"""
import os
for target in [{p['out']!r}, os.path.join({p['out_dir']!r}, 'pwned.txt')]:
    try:
        with open(target, 'w') as f:
            f.write('student,total\\nwrites_out,999\\n')
    except OSError as e:
        print('blocked', e)
"""]),
        "network": unit02(extra_before=["import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3)"]),
        "many_processes": unit02(extra_before=[
            "import subprocess\nprocs = [subprocess.Popen(['sleep', '60']) for _ in range(300)]"]),
        "magics": unit02(extra_before=["%matplotlib inline\n!pip install nothing-at-all\n%time x = 1"]),
    }
    if not sandboxed:
        for k in ("reads_secrets", "writes_out", "network", "many_processes"):
            students.pop(k)
    for name, cells in students.items():
        write(subs, name, cells)
    # Cells tagged network / slow / nbval-skip are not run (this one would end the worker).
    write(subs, "tagged_cells", unit02(extra_before=["import os\nos._exit(9)", "raise RuntimeError('slow')",
                                                     "import time\ntime.sleep(600)"]),
          tags={2: ["nbval-skip", "network"], 3: ["slow"], 4: ["nbval-skip"]})
    # Not a notebook, an old notebook, odd names, a symbolic link.
    (subs / "not_json").mkdir()
    (subs / "not_json" / f"{NB}.ipynb").write_text("this is { not json")
    import nbformat

    from .build import notebook

    v3 = subs / "nbformat3"
    v3.mkdir()
    (v3 / f"{NB}.ipynb").write_text(nbformat.writes(notebook(unit02()), version=3))
    write(subs, "José García", unit02())
    write(subs, "..dots..", unit02())
    write(subs, "spaces in name", unit02(), name=f"{NB} (1).ipynb")
    link = subs / "symlink"
    link.mkdir()
    os.symlink(subs / "correct" / f"{NB}.ipynb", link / f"{NB}.ipynb")


__all__ = ["build_class", "secret_paths", "hardcoded_cell", "softmax_cell", "SOFTMAX", "CORRECT_BODY"]
