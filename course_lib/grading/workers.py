"""Worker processes seen from the grader: starting them (through :mod:`.sandbox`) and talking to them.

* :class:`ProcessWorker`: a worker in a process of its own, the protocol on its stdin/stdout;
* :class:`ForkServer`: one per parallel slot, imports torch once and forks a fresh confined worker per
  notebook (see :func:`.worker.zygote_main`); :class:`ForkedWorker` is such a worker, on a socket;
* every wait is bounded: a worker that dies, breaks the protocol or runs past its deadline becomes a
  :class:`WorkerGone` whose ``reason`` says which, in words.

:mod:`.session` uses these to grade one notebook; nothing here knows about exercises or grades.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from typing import Optional

from . import wire
from .sandbox import Limits, Sandbox, describe_exit

PROTOCOL_HEADER_MAX = wire.MAX_HEADER_BYTES




class WorkerGone(Exception):
    """The worker died, broke the protocol, or ran out of time; ``reason`` says which, in words."""

    def __init__(self, reason: str, timeout: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.timeout = timeout


class _Channel:
    """Messages to and from one worker, every wait bounded; subclasses say how it started and ends."""

    def __init__(self, limits: Limits, bubblewrap: bool):
        self.limits, self.bubblewrap = limits, bubblewrap
        self.messages: queue.Queue = queue.Queue()
        self.confinement: dict = {}
        self._closed = False
        self._status: Optional[str] = None

    def _start_reader(self, stream) -> None:
        def loop():
            max_bytes = (self.limits.max_value_mb << 20) + (1 << 20)
            try:
                while True:
                    self.messages.put(wire.read_message(stream, max_bytes, PROTOCOL_HEADER_MAX))
            except EOFError:
                self.messages.put(("eof", None))
            except wire.WireError as e:
                self.messages.put(("bad", f"the worker sent malformed data ({e})"))
            except (OSError, ValueError) as e:
                self.messages.put(("eof", str(e)))

        threading.Thread(target=loop, daemon=True).start()

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def send(self, header: dict, blobs: list = (), deadline: Optional[float] = None) -> None:
        data = wire.message_bytes(header, list(blobs))
        timer = None
        if deadline is not None:  # a worker that stops reading is killed, which ends the write
            timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.kill)
            timer.daemon = True
            timer.start()
        try:
            self._write(data)
        except (OSError, ValueError):
            raise WorkerGone(self.death_reason()) from None
        finally:
            if timer is not None:
                timer.cancel()

    def receive(self, deadline: float, what: str) -> tuple:
        try:
            item = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.kill()
            raise WorkerGone(f"{what} did not finish in time", timeout=True) from None
        header, blobs = item
        if header == "eof":
            raise WorkerGone(self.death_reason())
        if header == "bad":
            self.kill()
            raise WorkerGone(blobs)
        return header, blobs

    def diagnostics(self) -> str:
        return ""

    def death_reason(self) -> str:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self._closed:
            try:
                self._write(wire.message_bytes({"op": "bye"}))
            except Exception:  # noqa: BLE001
                pass
            self.kill()


class ProcessWorker(_Channel):
    """A worker in a process of its own (stdin/stdout carry the protocol)."""

    def __init__(self, sandbox: Sandbox, slot: int, limits: Limits):
        super().__init__(limits, sandbox.kind == "bubblewrap")
        self.sandbox, self.slot = sandbox, slot
        self.proc, self.scratch = sandbox.start(slot, limits)
        self.stderr = _Drain(self.proc.stderr, limits.max_output_kb << 10)
        self._start_reader(self.proc.stdout)

    def _write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def diagnostics(self) -> str:
        return self.stderr.tail()

    def death_reason(self) -> str:
        if self._status is None:
            try:
                rc = self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                self.kill()
                rc = self.proc.returncode
            self._status = describe_exit(rc, self.bubblewrap)
        return self._status

    def kill(self) -> None:
        if not self._closed:
            self._closed = True
            self.sandbox.cleanup(self.proc, self.slot, self.scratch)

    def close(self) -> None:
        if not self._closed:
            try:
                self._write(wire.message_bytes({"op": "bye"}))
                self.proc.wait(timeout=2)
            except Exception:  # noqa: BLE001
                pass
            self.kill()


class _Drain:
    """Reads a stream to its end, keeping only the last ``keep`` bytes."""

    def __init__(self, stream, keep: int):
        self.data, self.total, self.keep = b"", 0, keep
        self.lock = threading.Lock()

        def loop():
            try:
                while True:
                    chunk = stream.read1(65536)
                    if not chunk:
                        return
                    with self.lock:
                        self.total += len(chunk)
                        self.data = (self.data + chunk)[-self.keep:]
            except (OSError, ValueError):
                return

        threading.Thread(target=loop, daemon=True).start()

    def tail(self, lines: int = 3) -> str:
        with self.lock:
            text = self.data.decode("utf-8", "replace")
        return " | ".join(text.strip().splitlines()[-lines:])


class ForkServer:
    """The fork server of one slot (see :func:`.worker.zygote_main`), seen from the grader."""

    def __init__(self, sandbox: Sandbox, slot: int, limits: Limits):
        self.sandbox, self.slot, self.limits = sandbox, slot, limits
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = sandbox.start_server(slot, limits, theirs.fileno())
        finally:
            theirs.close()
        self.stderr = _Drain(self.proc.stderr, limits.max_output_kb << 10)
        self.lock = threading.Lock()
        try:
            reply = self._recv(limits.startup_timeout)
        except WorkerGone as e:
            self.stop()
            tail = self.stderr.tail()
            raise WorkerGone(f"the worker could not start ({e.reason})" + (f": {tail}" if tail else "")) from None
        if reply.get("op") != "ready":
            self.stop()
            raise WorkerGone("the worker could not start")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _recv(self, timeout: float) -> dict:
        self.ctl.settimeout(timeout)
        try:
            data = self.ctl.recv(1 << 16)
        except (socket.timeout, OSError):
            raise WorkerGone("the fork server did not answer", timeout=True) from None
        if not data:
            raise WorkerGone("the fork server ended")
        return json.loads(data)

    def request(self, msg: dict, fds: tuple = (), timeout: float = 30.0) -> dict:
        with self.lock:
            try:
                if fds:
                    socket.send_fds(self.ctl, [json.dumps(msg).encode()], list(fds))
                else:
                    self.ctl.send(json.dumps(msg).encode())
                return self._recv(timeout)
            except (OSError, ValueError):
                raise WorkerGone("the fork server ended") from None

    def spawn(self, cfg: dict) -> tuple:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            reply = self.request({"op": "spawn", "cfg": cfg}, (theirs.fileno(),))
        finally:
            theirs.close()
        if reply.get("op") != "spawned":
            mine.close()
            raise WorkerGone("the fork server could not start a worker")
        return reply["pid"], mine

    def reap(self, kill: bool, grace: float = 1.0) -> dict:
        return self.request({"op": "reap", "kill": kill, "grace": grace}, timeout=60.0)

    def stop(self) -> None:
        try:
            self.ctl.close()
        except OSError:
            pass
        self.sandbox.cleanup(self.proc, self.slot, None)


class ForkedWorker(_Channel):
    """A worker forked by the slot's :class:`ForkServer`; a socket carries the protocol."""

    def __init__(self, server: ForkServer, sandbox: Sandbox, slot: int, limits: Limits):
        super().__init__(limits, sandbox.kind == "bubblewrap")
        self.server = server
        scratch = None if sandbox.kind == "bubblewrap" else sandbox.tmp_root / f"w{slot}"
        self.pid, self.sock = server.spawn(sandbox.child_config(slot, limits, scratch))
        self._start_reader(self.sock.makefile("rb"))

    def _write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def diagnostics(self) -> str:
        return self.server.stderr.tail()

    def _end(self, kill: bool) -> None:
        if self._status is None:
            try:
                st = self.server.reap(kill=kill)
                rc = -st["signal"] if "signal" in st else st.get("exit")
                self._status = describe_exit(rc, bubblewrap=False)
                if st.get("killed_by_grader") and not kill:
                    self._status = "the worker process stopped answering"
            except WorkerGone as e:
                self.server.stop()
                self._status = f"the worker process ended ({e.reason})"
            try:
                self.sock.close()
            except OSError:
                pass

    def death_reason(self) -> str:
        self._end(kill=False)
        return self._status

    def kill(self) -> None:
        if not self._closed:
            self._closed = True
            self._end(kill=True)

    def close(self) -> None:
        if not self._closed:
            try:
                self._write(wire.message_bytes({"op": "bye"}))
            except Exception:  # noqa: BLE001
                pass
            self._closed = True
            self._end(kill=False)
