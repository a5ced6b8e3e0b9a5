"""Keep a live session running when its process dies: ``causalscope watch --supervise``.

Some deaths cannot be caught inside the session's own process: Ray ends a driver whose control
store (the GCS) stays away (``gcs_rpc_server_reconnect_timeout_s``, 60 s by default), the
kernel's out-of-memory killer sends SIGKILL, a native library crashes. With ``--supervise`` the
``watch`` process runs the session in a child process and only watches it: when the child ends
without being asked to, the supervisor says why, waits, and starts it again on the same session.
The session resumes from its database (nothing done is redone, nothing unfinished is lost) and
raises a ``daemon_restarted`` alert with the reason, so the operator sees it on the dashboard.
With the default embedded Ray, the new child starts a fresh Ray of its own; with
``--ray-address`` it joins the cluster again once the cluster answers.

The pause before a restart doubles from ``daemon_restart_pause_s`` (up to 5 minutes) while the
child keeps dying within a minute of its start. The supervisor gives up, with a message that
says how to go on, after ``daemon_restarts_per_hour`` restarts in the last hour. A child that
ends normally (``--until-idle``), on a user error (exit 2) or on Ctrl-C is not started again.
SIGTERM and Ctrl-C reach the child as SIGTERM (it stops after the exposures in flight); the
child is sent SIGTERM by the kernel if the supervisor itself dies (Linux).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

__all__ = [
    "RESTART_REASON",
    "SUPERVISED",
    "RestartPolicy",
    "describe_exit",
    "session_command",
    "supervise",
]

#: The environment variable that tells a restarted child why its predecessor ended.
RESTART_REASON = "CAUSALSCOPE_RESTART_REASON"
#: Set in the child: it runs the session itself instead of supervising again.
SUPERVISED = "CAUSALSCOPE_SUPERVISED"

#: exit statuses that are not restarted: ended normally, a user error, interrupted
_NOT_RESTARTED = frozenset({0, 2, 130})
_MAX_PAUSE_S = 300.0
_STEADY_S = 60.0  # a child that ran this long was healthy: the pause starts small again
_PR_SET_PDEATHSIG = 1


@dataclass
class RestartPolicy:
    """When to start the child again: the first pause, and the restarts allowed per hour."""

    pause_s: float = 2.0
    per_hour: int = 10


def describe_exit(code: int) -> str:
    """``"killed by SIGKILL"`` or ``"exit status 1"``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _die_with_parent() -> None:  # in the child, between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the child outlives a killed supervisor
        pass


def _say(text: str) -> None:
    print(text, flush=True)


def session_command(argv: Sequence[str]) -> list[str]:
    """The child's command line: ``causalscope ARGV`` with this Python."""
    return [sys.executable, "-m", "causalscope.daemon.cli", *argv]


def supervise(
    command: Sequence[str],
    policy: RestartPolicy,
    *,
    say: Callable[[str], None] = _say,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run ``command`` in a child process until it ends normally; returns its status.

    ``command`` runs the session (:func:`session_command`, without ``--supervise``).
    """
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    restarts: deque[float] = deque()
    pause = policy.pause_s
    reason: str | None = None
    try:
        while True:
            env = {**os.environ, SUPERVISED: "1"}
            if reason is not None:
                env[RESTART_REASON] = reason
            started = clock()
            child = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)
            code = child.wait()  # a signal's handler runs, then the wait goes on (PEP 475)
            ran_s = clock() - started
            if stopping or code in _NOT_RESTARTED:
                return code
            now = clock()
            while restarts and restarts[0] < now - 3600:
                restarts.popleft()
            reason = f"the session process ended ({describe_exit(code)}) after {ran_s:.0f} s"
            if len(restarts) >= policy.per_hour:
                say(
                    f"causalscope watch: {reason}; it was started again {len(restarts)} times "
                    "in the last hour, so the supervisor stops here. Read the session's log and "
                    "Ray's logs (its session folder), then run the same command again: the "
                    "session resumes where it stopped."
                )
                return code if code > 0 else 1
            pause = policy.pause_s if ran_s >= _STEADY_S else pause
            restarts.append(now)
            say(
                f"causalscope watch: {reason}; starting it again in {pause:g} s (restart "
                f"{len(restarts)} in the last hour, at most {policy.per_hour}); nothing done "
                "is redone and nothing unfinished is lost",
            )
            deadline = clock() + pause
            while not stopping and clock() < deadline:
                time.sleep(min(0.2, pause))
            if stopping:
                return 130
            pause = min(_MAX_PAUSE_S, 2 * pause)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
