"""Can an optional download work right now? One short probe, one friendly line when it cannot.

The course runs offline: nothing that the tests or the autograder run needs the network. A few optional
cells fetch real data or real weights (Tiny Shakespeare, GPT-2, BERT). Left to themselves, libraries such
as ``huggingface_hub`` retry an unreachable host for minutes and fill the notebook with red tracebacks, so
every such cell asks first::

    from course_lib.online import can_download
    if can_download("GPT-2's weights (500 MB)", host="huggingface.co", needs=("transformers",)):
        ...  # download and use them

:func:`can_download` opens one TCP connection to ``host`` with a short timeout (no retries, no DNS
retries beyond the system's own), remembers the answer for the rest of the session, and when the download
cannot work prints **one** line that says why and that the rest of the notebook does not need it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from typing import Iterable, Optional

#: Seconds one probe may take before the host counts as unreachable.
DEFAULT_TIMEOUT = 3.0

# host:port -> (reachable, reason); a notebook asks at most once per host.
_PROBES: dict = {}

#: Set to "1" to behave as if offline (tests, and learners who want a quiet Run All).
OFFLINE_ENV = "COURSE_OFFLINE"


def _probe(host: str, port: int, timeout: float) -> tuple:
    """``(True, "")`` when a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    key = f"{host}:{port}"
    if key in _PROBES:
        return _PROBES[key]
    start = time.monotonic()
    try:
        # resolve first, with the same budget: a missing DNS server must not cost more than a connect
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        left = max(0.1, timeout - (time.monotonic() - start))
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(left)
            sock.connect(address)
        result = (True, "")
    except socket.gaierror:
        result = (False, f"cannot look up {host}")
    except socket.timeout:
        result = (False, f"no answer from {host} within {timeout:g} s")
    except OSError as e:
        result = (False, f"cannot reach {host} ({e.strerror or type(e).__name__})")
    _PROBES[key] = result
    return result


def missing_packages(needs: Iterable[str]) -> list:
    """The names in ``needs`` that cannot be imported here."""
    return [name for name in needs if importlib.util.find_spec(name) is None]


def can_download(what: str, host: str, port: int = 443, timeout: float = DEFAULT_TIMEOUT,
                 needs: Iterable[str] = (), quiet: bool = False) -> bool:
    """Whether downloading ``what`` from ``host`` can work now; one printed line when it cannot.

    ``needs`` names Python packages the cell imports (e.g. ``("transformers",)``); a missing one is
    reported the same way, with the command that installs it. ``quiet`` suppresses the line.
    """
    reason: Optional[str] = None
    missing = missing_packages(needs)
    if missing:
        reason = f"it needs {', '.join(missing)} (pip install {' '.join(missing)})"
    elif os.environ.get(OFFLINE_ENV) == "1":
        reason = f"{OFFLINE_ENV}=1 is set"
    else:
        ok, why = _probe(host, port, timeout)
        if not ok:
            reason = f"offline: {why}"
    if reason is None:
        return True
    if not quiet:
        print(f"Skipping {what}: {reason}. The rest of the notebook runs without it.")
    return False


def forget() -> None:
    """Forget earlier probes (the next :func:`can_download` probes again)."""
    _PROBES.clear()
