"""Starting a worker: limits, isolation, and what each worker may see.

Two ways, chosen once per run (:func:`choose`):

* **bubblewrap** (Linux, ``bwrap`` on the PATH and working): the worker sees the system read-only
  (``--ro-bind / /``), a private size-capped ``/tmp`` as its scratch and home, no network
  (``--unshare-net``), its own PID namespace (it cannot see or signal the grader), and none of:
  the course's ``solutions/`` and ``.git`` (history holds the solutions), the submissions folder (other
  learners), the output folder, the grader's temporary folder, and the home folder of the user who
  runs the grader (re-exposing, read-only, only the Python installation if it lives there).
* **limits** (no bubblewrap, e.g. macOS, or ``--no-sandbox``): a private scratch folder, the same
  resource limits, a network namespace when started as root on Linux, and an unprivileged user when
  started as root and the Python installation is readable by one.

In both, the worker applies the resource limits to itself before any learner code runs (address
space, CPU seconds, processes, file size, no core dumps), and, when the grader runs as root, switches
to a user id of its own (one per parallel slot, so one learner's fork bomb cannot starve another's
worker and the process-count limit means something: root is exempt from it). Each result records the
isolation that was used.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BWRAP_SCRATCH = "/tmp/work"

BOOT = ("import sys; sys.path.insert(0, {root!r}); "
        "from course_lib.grading.worker import main; main(sys.argv[1])")


@dataclass
class Limits:
    """Every limit of a grading run (seconds, MB, counts); the CLI exposes each one."""

    # Time limits are CPU seconds used by the learner's code (all its threads), so that a busy grading
    # machine gives the same verdicts as an idle one. Code that sleeps or blocks uses no CPU: a wall-clock
    # backstop of ``wall_factor`` times each limit ends it.
    cell_timeout: float = 120.0       # one notebook cell
    exercise_timeout: float = 60.0    # all calls of one exercise (a slow solution is graded up to it)
    notebook_timeout: float = 900.0   # everything for one notebook, restarts included
    wall_factor: float = 10.0         # wall-clock backstop = wall_factor x the CPU limit
    startup_timeout: float = 120.0    # starting a worker (imports torch)
    memory_mb: int = 4096             # address space of the worker process
    max_procs: int = 64               # processes and threads of one worker (when it runs as its own user)
    file_size_mb: int = 256           # largest file the worker may write
    scratch_mb: int = 512             # size of the private /tmp under bubblewrap
    max_value_mb: int = 64            # largest output of one call
    max_output_kb: int = 64           # worker stderr kept for diagnostics (the rest is counted, not kept)
    max_restarts: int = 3             # worker restarts per notebook after a crash or a timeout

    def key(self) -> dict:
        """The limits that can change a grade (part of the cache key)."""
        d = asdict(self)
        for k in ("max_output_kb", "startup_timeout"):
            d.pop(k)
        return d


@dataclass
class Sandbox:
    """How workers are started in this run."""

    kind: str                           # "bubblewrap" or "limits"
    reason: str = ""                    # why this kind (e.g. "bwrap not found")
    bwrap: Optional[str] = None
    hide: list = field(default_factory=list)      # folders the worker must not see
    tmp_root: Path = Path(tempfile.gettempdir())
    drop_uid: bool = False
    uid_base: int = 0
    drop_note: str = ""
    mpl_cache: Optional[dict] = None

    # -- description ------------------------------------------------------------------------------

    def describe(self, confinement: Optional[dict] = None) -> str:
        """One line for the results: which isolation, which user, which network."""
        parts = []
        if self.kind == "bubblewrap":
            parts.append("bubblewrap: read-only system, private /tmp, no network, own PID namespace, "
                         "solutions/, submissions and output hidden")
        else:
            parts.append(f"limits only ({self.reason}): resource limits and a private scratch folder")
        if confinement:
            uid = confinement.get("uid")
            parts.append(f"uid {uid}" + (" (root)" if uid == 0 else ""))
            if self.kind != "bubblewrap":
                parts.append("network " + confinement.get("network", "not isolated"))
        if self.drop_note:
            parts.append(self.drop_note)
        return "; ".join(parts)

    # -- starting a worker ------------------------------------------------------------------------

    def uid_for(self, slot: int) -> Optional[int]:
        return self.uid_base + slot if self.drop_uid else None

    @property
    def fork_server(self) -> bool:
        """Whether workers are forked from a per-slot server (see :mod:`.worker`).

        Only where one notebook's worker cannot reach the next one's: under bubblewrap (the server
        kills every other process of its PID namespace and wipes /tmp between workers) or with a
        user id of their own (killed as a whole). As root without either, each notebook gets a fresh
        process instead.
        """
        linux = sys.platform.startswith("linux")  # SOCK_SEQPACKET and prctl: Linux only
        return linux and (self.kind == "bubblewrap" or self.drop_uid)

    def child_config(self, slot: int, limits: Limits, scratch: Optional[Path]) -> dict:
        """The limits and user a worker applies to itself before any learner code runs."""
        uid = self.uid_for(slot)
        return {
            "rlimits": {
                "RLIMIT_AS": limits.memory_mb << 20,
                "RLIMIT_CPU": int(limits.notebook_timeout * 1.5 + 30),
                "RLIMIT_FSIZE": limits.file_size_mb << 20,
                "RLIMIT_CORE": 0,
                **({"RLIMIT_NPROC": limits.max_procs} if uid is not None else {}),
            },
            "uid": uid, "gid": uid,
            "scratch": BWRAP_SCRATCH if self.kind == "bubblewrap" else str(scratch),
            "pid_namespace": self.kind == "bubblewrap",
        }

    def command(self, cfg: dict, entry: str = "main") -> tuple:
        """``(argv, env, cwd)`` for a worker (``entry="main"``) or a fork server (``"zygote_main"``)."""
        cfg = dict(cfg, unshare_net=self.kind != "bubblewrap" and os.geteuid() == 0 and sys.platform.startswith("linux"),
                   pid_namespace=self.kind == "bubblewrap")
        boot = BOOT.format(root=str(PROJECT_ROOT)).replace("import main; main(", f"import {entry}; {entry}(")
        py = [worker_python(), "-I", "-c", boot, json.dumps(cfg)]
        scratch = cfg.get("scratch") or str(self.tmp_root)
        env = worker_env(scratch)
        if self.kind != "bubblewrap":
            return py, env, str(self.tmp_root)
        return [*self.bwrap_args(cfg.get("limits_scratch_mb", 512), drop=self.drop_uid), "--", *py], env, "/"

    def bwrap_args(self, scratch_mb: int, drop: bool) -> list:
        args = [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--perms", "1777", "--size", str(scratch_mb << 20), "--tmpfs", "/tmp"]
        homes, exposed = hidden_homes(), exposed_paths()
        for h in homes:
            args += ["--tmpfs", h]
        made: set = set()
        # The private /tmp hides whatever lives under /tmp too: a checkout or venv there (a CI clone,
        # say) must be bound back, like the parts of a hidden home the worker needs.
        for p in exposed:
            home = next((h for h in [*homes, "/tmp"] if _under(p, h)), None)
            if home is None:
                continue
            # bubblewrap would create the folders between the home and the path as 0700 (root only)
            for parent in reversed(Path(p).parents):
                if _under(str(parent), home) and str(parent) != home and str(parent) not in made:
                    made.add(str(parent))
                    args += ["--perms", "0755", "--dir", str(parent)]
            args += ["--ro-bind", p, p]
        for h in self.hide:
            h = str(h)
            if os.path.isdir(h) and not _under(h, "/tmp"):
                args += ["--tmpfs", h]
        args += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                 "--new-session", "--die-with-parent", "--hostname", "grader", "--chdir", "/tmp"]
        if not drop and os.geteuid() == 0:
            args += ["--cap-drop", "ALL"]
        return args

    def start(self, slot: int, limits: Limits) -> tuple:
        """Start a single worker process: ``(Popen, host scratch folder)``."""
        scratch = Path(tempfile.mkdtemp(prefix="w", dir=self.tmp_root))
        uid = self.uid_for(slot)
        if uid is not None and self.kind != "bubblewrap":
            os.chown(scratch, uid, uid)
        cfg = self.child_config(slot, limits, scratch)
        cfg["limits_scratch_mb"] = limits.scratch_mb
        argv, env, cwd = self.command(cfg)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=cwd, start_new_session=True, close_fds=True)
        return proc, scratch

    def start_server(self, slot: int, limits: Limits, control_fd: int) -> subprocess.Popen:
        """Start the fork server of ``slot``; it talks over the inherited ``control_fd``."""
        cfg = {"control_fd": control_fd, "scratch": str(self.tmp_root / f"slot{slot}"),
               "limits_scratch_mb": limits.scratch_mb}
        argv, env, cwd = self.command(cfg, entry="zygote_main")
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env, cwd=cwd, start_new_session=True, close_fds=True, pass_fds=(control_fd,))

    def cleanup(self, proc: subprocess.Popen, slot: int, scratch: Optional[Path]) -> None:
        """Kill a worker (or server) and everything it started; remove its scratch folder."""
        _kill_group(proc)
        uid = self.uid_for(slot)
        if uid is not None and self.kind != "bubblewrap":
            kill_all_of_user(uid)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        proc.kill()
    except OSError:
        pass


_fork_lock = threading.Lock()


def kill_all_of_user(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a worker's own user): catches double-forked escapees."""
    if os.geteuid() != 0 or not hasattr(os, "fork"):
        return
    with _fork_lock:
        pid = os.fork()
        if pid == 0:  # child: only async-signal-safe calls
            try:
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, 9)
            except BaseException:  # noqa: BLE001
                pass
            os._exit(0)
        os.waitpid(pid, 0)


# ---------------------------------------------------------------------------------------------------
# Environment and paths
# ---------------------------------------------------------------------------------------------------


def worker_python() -> str:
    return sys.executable


def worker_env(scratch: str) -> dict:
    """A clean environment: nothing of the grader's (no tokens, no proxies), no threads to oversubscribe."""
    venv_bin = os.path.dirname(sys.executable)
    dead_proxy = "http://127.0.0.1:9"
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": scratch, "TMPDIR": f"{scratch}/tmp", "MPLCONFIGDIR": f"{scratch}/.config/matplotlib",
        "USER": "learner", "LOGNAME": "learner", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "TQDM_DISABLE": "1", "COURSE_GRADING": "1",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "http_proxy": dead_proxy, "https_proxy": dead_proxy, "HTTP_PROXY": dead_proxy,
        "HTTPS_PROXY": dead_proxy, "no_proxy": "", "NO_PROXY": "",
    }


def _under(path: str, root: str) -> bool:
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def hidden_homes() -> list:
    """Home folders hidden from the worker (they hold keys and tokens)."""
    homes = {"/root"}
    home = os.path.expanduser("~")
    if home not in ("/", "") and os.path.isdir(home):
        homes.add(os.path.realpath(home))
    return sorted(h for h in homes if os.path.isdir(h))


_EXPOSED: Optional[list] = None


def exposed_paths() -> list:
    """Folders the worker's Python needs: its installation, its ``sys.path`` and the course package."""
    global _EXPOSED
    if _EXPOSED is None:
        paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
                 os.path.dirname(os.path.realpath(sys.executable)), str(PROJECT_ROOT / "course_lib")}
        try:
            out = subprocess.run([worker_python(), "-I", "-c", "import sys, json; print(json.dumps(sys.path))"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
            paths.update(os.path.realpath(p) for p in json.loads(out) if p and os.path.isdir(p))
        except (subprocess.SubprocessError, ValueError, OSError):
            paths.update(os.path.realpath(p) for p in sys.path if p and os.path.isdir(p))
        kept: list = []
        for p in sorted(paths, key=len):  # drop paths inside paths already kept
            if not any(_under(p, k) for k in kept):
                kept.append(p)
        _EXPOSED = kept
    return list(_EXPOSED)


def _others_can_read(path: str, treat_as_open: list) -> Optional[str]:
    """``None`` when a user who is neither owner nor group can read ``path``, else the blocking folder.

    Folders under ``treat_as_open`` (the homes bubblewrap replaces with a fresh 0755 tmpfs) count as
    traversable up to the re-exposed path.
    """
    path = os.path.realpath(path)
    parts = Path(path).parts
    for i in range(1, len(parts) + 1):
        p = str(Path(*parts[:i]))
        if any(_under(path, h) and _under(h, p) and p != path for h in treat_as_open):
            continue
        try:
            mode = os.stat(p).st_mode
        except OSError:
            return p
        need = stat.S_IXOTH | (stat.S_IROTH if p == path else 0)
        if mode & need != need:
            return p
    return None


def choose(mode: str = "auto", hide: list = (), tmp_root: Optional[Path] = None) -> Sandbox:
    """The sandbox for this run. ``mode``: "auto" (bubblewrap when it works), "bwrap" (required) or "none"."""
    tmp_root = Path(tmp_root or tempfile.gettempdir())
    hide = [str(Path(h).resolve()) for h in hide]
    bwrap, reason = None, ""
    if mode == "none":
        reason = "--no-sandbox"
    else:
        bwrap, reason = find_bwrap()
        if bwrap is None and mode == "bwrap":
            raise RuntimeError(f"bubblewrap is required but {reason}")
    kind = "bubblewrap" if bwrap else "limits"
    box = Sandbox(kind=kind, reason=reason, bwrap=bwrap, hide=hide, tmp_root=tmp_root)
    if os.geteuid() == 0:
        homes = hidden_homes() if kind == "bubblewrap" else []
        blocked = next((b for b in (_others_can_read(p, homes) for p in exposed_paths()) if b), None)
        if blocked is None:
            box.drop_uid = True
            box.uid_base = 1_100_000_000 + (os.getpid() % 100_000) * 256
        else:
            box.drop_note = (f"runs as root: {blocked} is not readable by an unprivileged user"
                             + (" (capabilities dropped)" if kind == "bubblewrap" else ""))
    return box


_BWRAP: Optional[tuple] = None


def find_bwrap() -> tuple:
    """``(path, "")`` when bubblewrap is installed and can create its namespaces here, else ``(None, why)``."""
    global _BWRAP
    if _BWRAP is None:
        path = shutil.which("bwrap")
        if path is None:
            _BWRAP = (None, "bubblewrap (bwrap) is not installed")
        else:
            try:
                r = subprocess.run([path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                                    "--unshare-net", "--unshare-pid", "--die-with-parent", "true"],
                                   capture_output=True, text=True, timeout=30)
                _BWRAP = (path, "") if r.returncode == 0 else (None, f"bwrap does not work here: {r.stderr.strip()[:200]}")
            except (OSError, subprocess.SubprocessError) as e:
                _BWRAP = (None, f"bwrap does not work here: {e}")
    return _BWRAP


def describe_exit(returncode: Optional[int], bubblewrap: bool) -> str:
    """Why a worker process ended, in words."""
    import signal as _signal

    if returncode is None:
        return "the worker process stopped responding"
    sig = -returncode if returncode < 0 else (returncode - 128 if bubblewrap and returncode > 128 else None)
    if sig:
        names = {
            _signal.SIGSEGV: "crashed with a segmentation fault (SIGSEGV)",
            _signal.SIGBUS: "crashed with a bus error (SIGBUS)",
            _signal.SIGABRT: "aborted (SIGABRT)",
            _signal.SIGKILL: "was killed (SIGKILL)",
            _signal.SIGXCPU: "used up its CPU-time limit (SIGXCPU)",
            _signal.SIGXFSZ: "wrote a file larger than the limit (SIGXFSZ)",
            _signal.SIGFPE: "crashed with an arithmetic error (SIGFPE)",
            _signal.SIGILL: "crashed with an illegal instruction (SIGILL)",
        }
        try:
            name = _signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"the worker process {names.get(sig, f'was ended by {name}')}"
    return f"the worker process exited with status {returncode} (os._exit(), or a crash, ends the Python process)"
