"""What the live benchmarks (``faults``, ``soak``) share: a Ray cluster of their own, the daemon
as a subprocess (``causalscope watch``) that can be killed and started again on its session,
the processes' memory and open files read from ``/proc``, and a small filesystem to fill.

Every process these helpers kill or measure is found from the benchmark's own cluster (the
children of its raylet) or its own daemon: never by name across the machine, which other
sessions and test runs share.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DaemonProcess",
    "OwnCluster",
    "SmallFilesystemUnavailable",
    "fill",
    "free_tcp_port",
    "open_files",
    "ray_memory",
    "resident_mib",
    "small_filesystem",
    "toml_settings",
]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: the process title Ray gives an exposure actor (``ray::ExposureWorker.process`` while busy)
EXPOSURE_WORKER = "ray::ExposureWorker"


def resident_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` (MiB), None when it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return round(int(handle.read().split()[1]) * _PAGE / 2**20, 1)
    except (OSError, IndexError, ValueError):
        return None


def open_files(pid: int) -> int | None:
    """Open file descriptors of ``pid`` (``/proc/PID/fd``), None when it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def ray_memory() -> tuple[int, int]:
    """Used and total memory as Ray's memory monitor counts them (cgroup usage less file
    cache, Ray's ``memory_monitor_utils.cc``), which differs from ``MemAvailable``."""
    from ray._private.utils import get_system_memory, get_used_memory

    return int(get_used_memory()), int(get_system_memory())


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnCluster:
    """A one-node Ray cluster of the benchmark's own (``ray.cluster_utils.Cluster``).

    Parameters
    ----------
    num_cpus
        CPUs of the node.
    object_store_mb
        Its object store (small: the movies are small, and the memory is the machine's).
    memory_threshold
        Ray's memory monitor kills workers once this share of the node's memory is used
        (``RAY_memory_usage_threshold``, read by the raylet when it starts); None leaves Ray's
        default.
    """

    def __init__(
        self, *, num_cpus: int, object_store_mb: int = 200, memory_threshold: float | None = None
    ) -> None:
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.memory_threshold = memory_threshold
        self._cluster: Any = None

    def __enter__(self) -> OwnCluster:
        from ray.cluster_utils import Cluster

        env: dict[str, str] = {}
        if self.memory_threshold is not None:
            env = {
                "RAY_memory_usage_threshold": f"{self.memory_threshold:.4f}",
                "RAY_memory_monitor_refresh_ms": "100",
            }
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            self._cluster = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": self.num_cpus,
                    "object_store_memory": self.object_store_mb * 2**20,
                    "include_dashboard": False,
                },
            )
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return self

    def __exit__(self, *exc: object) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None

    @property
    def address(self) -> str:
        """The address a driver joins (``--ray-address``)."""
        return str(self._cluster.address)

    @property
    def raylet_pid(self) -> int:
        """The node's raylet: the parent of every worker process."""
        from ray._private import ray_constants

        processes = self._cluster.head_node.all_processes[ray_constants.PROCESS_TYPE_RAYLET]
        return int(processes[0].process.pid)

    def worker_pids(self, title: str = EXPOSURE_WORKER, *, busy: bool = False) -> list[int]:
        """Worker processes of this node whose title starts with ``title`` (exposure actors by
        default); ``busy``: only those running a method now (``ray::Class.method``)."""
        found = []
        for pid in _children(self.raylet_pid):
            name = _title(pid)
            if name.startswith(title) and (not busy or name.startswith(f"{title}.")):
                found.append(pid)
        return found


def toml_settings(values: dict[str, Any]) -> str:
    """Nested ``{section: {key: value}}`` as TOML (strings, numbers, booleans)."""
    lines: list[str] = []

    def section(prefix: str, table: dict[str, Any]) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if scalars:
            lines.append(f"[{prefix}]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in scalars.items())
        for key, value in table.items():
            if isinstance(value, dict):
                section(f"{prefix}.{key}" if prefix else key, value)

    section("", values)
    return "\n".join(lines) + "\n"


@dataclass
class DaemonRun:
    """One start of the daemon: its pid and when it started and ended (monotonic seconds)."""

    pid: int
    started: float
    ended: float | None = None
    how: str = "running"  # "killed" (kill -9, planned), "stopped" (SIGTERM), "exited" (itself)
    returncode: int | None = None


@dataclass
class DaemonProcess:
    """``causalscope watch`` as a subprocess on one session, started again after each kill.

    Parameters
    ----------
    config
        The settings file (``--config``).
    sessions
        The sessions folder; the session is ``sessions/name``.
    name
        The session's name.
    arguments
        The source and cluster options (``DIR``, ``--zmq``, ``--ray-address``, ...).
    log
        Where its output goes (appended, one block per start).
    """

    config: Path
    sessions: Path
    name: str
    arguments: Sequence[str]
    log: Path
    runs: list[DaemonRun] = field(default_factory=list)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def database(self) -> Path:
        return self.sessions / self.name / f"{self.name}.duckdb"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> int:
        """Start it; returns its pid."""
        command = [
            sys.executable,
            "-m",
            "causalscope.daemon.cli",
            "--config",
            str(self.config),
            "watch",
            *self.arguments,
            "--session",
            self.name,
            "--sessions-dir",
            str(self.sessions),
        ]
        with open(self.log, "ab") as out:
            out.write(f"\n=== start {time.strftime('%H:%M:%S')}: {command}\n".encode())
            out.flush()
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self.runs.append(DaemonRun(self._process.pid, time.monotonic()))
        return self._process.pid

    def alive(self) -> bool:
        """Still running; a run that ended by itself is noted (``how = "exited"``)."""
        if self._process is None:
            return False
        code = self._process.poll()
        if code is None:
            return True
        run = self.runs[-1]
        if run.ended is None:
            run.ended, run.how, run.returncode = time.monotonic(), "exited", code
        return False

    def kill9(self) -> None:
        """``kill -9`` the daemon (planned)."""
        assert self._process is not None
        if not self.alive():
            return
        os.kill(self._process.pid, signal.SIGKILL)
        code = self._process.wait()
        run = self.runs[-1]
        run.ended, run.how, run.returncode = time.monotonic(), "killed", code

    def stop(self, timeout_s: float = 180.0) -> int | None:
        """SIGTERM (the daemon closes its session cleanly) and wait; kill -9 after the timeout."""
        if self._process is None or not self.alive():
            return None if self._process is None else self._process.returncode
        self._process.send_signal(signal.SIGTERM)
        try:
            code = self._process.wait(timeout_s)
            how = "stopped"
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
            how = "stop timed out, killed"
        run = self.runs[-1]
        run.ended, run.how, run.returncode = time.monotonic(), how, code
        return code

    def endpoints(self) -> Any:
        """The running session's endpoints file, when it is this run's (its pid)."""
        from causalscope.daemon.client.endpoints import read_endpoints

        with contextlib.suppress(Exception):
            found = read_endpoints(self.database)
            if found is not None and found.pid == self.pid and found.query:
                return found
        return None

    def wait_ready(self, timeout_s: float = 300.0) -> Any:
        """Wait until this run answers queries; its endpoints. RuntimeError if it dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"the daemon exited by itself; see {self.log}")
            found = self.endpoints()
            if found is not None:
                return found
            time.sleep(0.2)
        raise RuntimeError(f"the daemon did not open its endpoints within {timeout_s:g} s")

    def query(self, sql: str, timeout_s: float = 10.0) -> list[tuple[Any, ...]] | None:
        """Rows of ``sql`` from the running session; None when it does not answer now."""
        from causalscope.daemon.client.query import query_endpoint

        found = self.endpoints()
        if found is None:
            return None
        try:
            return [
                tuple(row) for row in query_endpoint(found.query, sql, timeout_s=timeout_s).rows
            ]
        except Exception:  # busy, restarting, or the disk is full: ask again later
            return None


class SmallFilesystemUnavailable(RuntimeError):
    """A size-limited filesystem cannot be mounted here (the reason is the message)."""


@contextlib.contextmanager
def small_filesystem(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` mounted at ``where``; SmallFilesystemUnavailable (saying why)
    where mounting is not allowed (it needs root or CAP_SYS_ADMIN)."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        mount = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as error:  # no mount program
        raise SmallFilesystemUnavailable(f"cannot run mount: {error}") from error
    if mount.returncode != 0:
        raise SmallFilesystemUnavailable(
            f"cannot mount a {size_mb} MB tmpfs here (needs root or CAP_SYS_ADMIN): "
            f"{mount.stderr.strip() or mount.returncode}"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until its filesystem is full; returns the filler file."""
    filler = folder / "filler.bin"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    return filler
