"""The pool of exposure actors: Ray, one actor per GPU or per CPU share, replaced when one dies.

The scheduler hands a pool an exposure and later collects what came back; the pool knows
nothing of the store. Frames go into Ray's object store once per exposure (``ray.put``) and the
calibration once per session.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from causalscope.actors._memory import ONE_HEAP_ENV
from causalscope.daemon.failures import Failure, PoolUnavailable, classify, ray_unreachable
from causalscope.daemon.placement import EXPOSURE_GPU_SHARE
from causalscope.models.optics import DetectorCalibration

if TYPE_CHECKING:
    from causalscope.config import Settings
    from causalscope.models.records import AcquisitionMetadata, ExposureRecord

__all__ = ["Outcome", "PoolHealth", "RayWorkerPool", "Task", "start_ray"]

log = logging.getLogger(__name__)

_CHECK_IDLE_S = 5.0  # how often an idle actor is asked whether it is still there


def start_ray(
    address: str | None = None, *, num_cpus: int | None = None, log_to_terminal: bool = True
) -> str:
    """Join the Ray cluster at ``address``, or start a local one (no dashboard).

    Returns a short description for the terminal. Does nothing when Ray is already up.
    ``log_to_terminal=False`` keeps the actors' output off this terminal (the dashboard owns it;
    Ray still writes its logs under its session folder).
    """
    import ray

    if ray.is_initialized():
        return "Ray already running in this process"
    # ray.init puts in a SIGTERM handler that exits at once: the daemon's own (stop after the
    # exposures in flight, close the session) is put back
    term = signal.getsignal(signal.SIGTERM)
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=log_to_terminal)
            return f"joined Ray cluster at {address}"
        cpus = num_cpus or os.cpu_count() or 1
        # the cluster's processes, its workers among them, inherit one C heap (RayWorkerPool)
        os.environ.update(ONE_HEAP_ENV)
        # "local": a new cluster of our own, even where `ray start` (or another session's test
        # cluster) left one running on this machine, which `ray.init()` would otherwise join
        ray.init(
            address="local",
            num_cpus=cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=log_to_terminal,
        )
        return f"local Ray with {cpus} CPU(s)"
    finally:
        if callable(term) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, term)


@dataclass
class Task:
    """One exposure handed to an actor."""

    exposure_id: str
    movie_path: str
    frames: np.ndarray = field(repr=False)
    metadata: AcquisitionMetadata | None
    pixel_size_angstrom: float | None
    attempt: int = 1
    context: Any = None  # the scheduler's own bookkeeping, returned untouched
    frames_ref: Any = None  # set by the pool: the frames in the object store, for a retry


@dataclass
class Outcome:
    """What came back for a task: a record, or the error that stopped it.

    ``crashed`` is True when Ray failed the task, not the exposure (a worker killed, out of
    memory or crashed, a lost object, a dead node): the exposure itself may be fine and is worth
    retrying; ``failure`` says what happened and what to advise.
    """

    task: Task
    record: ExposureRecord | None = None
    error: BaseException | None = None
    crashed: bool = False
    failure: Failure | None = None


@dataclass(frozen=True)
class PoolHealth:
    """The worker pool's actors, for the session's status (:meth:`RayWorkerPool.health`).

    The default is a pool not made yet (it starts at the first movie): no actor.

    Attributes
    ----------
    configured
        Actors the pool keeps, one per slot.
    alive
        Of those, the actors that have answered since they started and whose latest call (an
        exposure, or a check of an idle one) did not fail; a replacement that Ray has not
        started yet (no node with room for it) is not alive.
    replaced_after_failure
        Actors replaced in this run because Ray failed them (killed, crashed, their node died).
    recycled_for_memory
        Actors replaced in this run between exposures because their resident memory grew above
        ``processing.resilience.worker_memory_limit_mb``.
    memory_bytes
        Each slot's resident memory as measured after its actor's latest exposure; None where
        not measured (no bound set, or no exposure since the actor started).
    """

    configured: int = 0
    alive: int = 0
    replaced_after_failure: int = 0
    recycled_for_memory: int = 0
    memory_bytes: tuple[int | None, ...] = ()


class RayWorkerPool:
    """Exposure actors on a Ray cluster.

    Parameters
    ----------
    settings
        Resolved settings; every actor gets the sections it reads (microscope, detector,
        processing).
    output_dir
        The session folder the actors write micrographs into.
    calibration
        Gain and defects in the frames' orientation (put in the object store once).
    n_workers
        Number of actors; default: one per GPU of the cluster (each asks for
        :data:`daemon.placement.EXPOSURE_GPU_SHARE` of one) when the processing device allows
        CUDA, else one per ``threads_per_worker`` CPUs.
    threads_per_worker
        CPU threads (torch) and Ray CPU share of each CPU actor.
    actor_options
        More of Ray's actor options (e.g. ``{"resources": {"scope_node": 1}}`` to place the
        actors on the nodes that have that custom resource).

    A worker whose resident memory is above ``processing.resilience.worker_memory_limit_mb``
    gets no new exposures: a fresh one takes its place and the old one ends once its queued
    exposures are done (:attr:`recycled` counts them).

    :meth:`health` says how many actors are alive: each new actor is asked for its process id,
    and it is alive once it has answered, until a call to it fails; an idle actor is asked
    again every few seconds (a busy one's exposures say whether it is there).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        output_dir: Path,
        calibration: DetectorCalibration | None = None,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        actor_options: dict[str, Any] | None = None,
    ) -> None:
        import ray

        self._settings = settings
        self._output_dir = Path(output_dir)
        self._calibration_ref = ray.put(calibration or DetectorCalibration())
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = settings.processing.device != "cpu" and gpus > 0
        cpus = int(resources.get("CPU", 1))
        self._threads = max(1, threads_per_worker)
        # SPREAD: on a cluster, actors go to different nodes first (Ray's default packs a node
        # before it spreads), so a facility's nodes share the session from its first exposure
        if use_gpu:  # one per GPU, the evaluator's share beside it (daemon.placement)
            self._options: dict[str, Any] = {"num_gpus": EXPOSURE_GPU_SHARE, "num_cpus": 1}
            self._options["scheduling_strategy"] = "SPREAD"
            default_workers = gpus
            self.device_kind = "cuda"
        else:
            self._options = {"num_cpus": self._threads, "scheduling_strategy": "SPREAD"}
            default_workers = max(1, cpus // self._threads)
            self.device_kind = "cpu"
        if any(os.environ.get(name) != value for name, value in ONE_HEAP_ENV.items()):
            # a cluster start_ray did not start: one C heap from a runtime environment (0.5 s
            # more per actor start); 4096^2 x 40 motion on 2 threads in an actor took 55-66 s
            # without one heap, 45-47 s with it (see actors._memory.keep_freed_memory)
            self._options["runtime_env"] = {"env_vars": dict(ONE_HEAP_ENV)}
        self._options.update(actor_options or {})
        self.n_workers = n_workers or default_workers
        self._actors: list[Any] = [self._new_actor() for _ in range(self.n_workers)]
        self._load = [0] * self.n_workers
        self._generation = [0] * self.n_workers
        self._running: dict[Any, tuple[Task, int, int]] = {}
        # what every actor was told (fine-tuned weights, the envelope prior): key -> call
        self._standing: dict[str, tuple[str, tuple[Any, ...]]] = {}
        limit_mb = settings.processing.resilience.worker_memory_limit_mb
        self._memory_limit = limit_mb * 1024**2 if limit_mb else None
        # the actor's memory after each task, measured in its order: ref -> (slot, generation)
        self._memory_refs: dict[Any, tuple[int, int]] = {}
        self._memory_of: dict[Any, Any] = {}  # an exposure's ref -> the measurement after it
        self.worker_memory = [0] * self.n_workers  # bytes, as last measured
        self._retiring: list[tuple[Any, set[Any]]] = []  # recycled actors and their last tasks
        self.recycled: list[tuple[int, int]] = []  # (slot, bytes) of each recycled worker
        self.replaced_after_failure = 0  # actors replaced because Ray failed them
        # liveness: the call each slot's actor has not answered yet (None: none waiting), when
        # it was asked, and whether it answered and nothing to it failed since
        self._alive = [False] * self.n_workers
        self._asked_at = [0.0] * self.n_workers
        self._check: list[Any] = [self._ask(slot) for slot in range(self.n_workers)]

    def _new_actor(self) -> Any:
        from causalscope.actors.remote import ExposureActor

        device = "cuda" if self.device_kind == "cuda" else "cpu"
        settings = self._settings
        return ExposureActor.options(**self._options).remote(
            microscope=settings.microscope,
            detector=settings.detector,
            processing=settings.processing,
            output_dir=self._output_dir,
            calibration=self._calibration_ref,
            device=device,
            torch_threads=self._threads if device == "cpu" else None,
        )

    def describe(self) -> str:
        """``"2 CPU actors (1 thread each)"`` or ``"4 GPU actors"``."""
        if self.device_kind == "cuda":
            return f"{self.n_workers} GPU actor(s)"
        return f"{self.n_workers} CPU actor(s), {self._threads} thread(s) each"

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not yet collected."""
        return len(self._running)

    def health(self) -> PoolHealth:
        """The actors alive, replaced and recycled, and their memory (never waits on Ray)."""
        self._check_alive()
        measured = self._memory_limit is not None
        return PoolHealth(
            configured=self.n_workers,
            alive=sum(self._alive),
            replaced_after_failure=self.replaced_after_failure,
            recycled_for_memory=len(self.recycled),
            memory_bytes=tuple(b if measured and b > 0 else None for b in self.worker_memory),
        )

    def _ask(self, slot: int) -> Any:
        """Ask ``slot``'s actor for its process id: it answers once it has started."""
        self._asked_at[slot] = time.monotonic()
        return self._actors[slot].process_id.remote()

    def _check_alive(self) -> None:
        """Take the answers that came, and ask the idle actors again every few seconds."""
        import ray
        from ray.exceptions import RayError

        if not self._actors:  # shut down
            return
        waiting = [(slot, ref) for slot, ref in enumerate(self._check) if ref is not None]
        try:
            if waiting:
                refs = [ref for _, ref in waiting]
                ready = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
                for slot, ref in waiting:
                    if ref not in ready:
                        continue
                    self._check[slot] = None
                    try:
                        ray.get(ref, timeout=0)
                        self._alive[slot] = True
                    except RayError:  # dead, or never started (its node is gone)
                        self._alive[slot] = False
            now = time.monotonic()
            for slot, ref in enumerate(self._check):
                idle = self._load[slot] == 0 and ref is None
                if idle and now - self._asked_at[slot] >= _CHECK_IDLE_S:
                    self._check[slot] = self._ask(slot)
        except RayError as error:  # Ray itself does not answer: the scheduler says so
            log.debug("cannot check the actors: %s", _first_line(error))

    def actor_process_ids(self) -> list[int]:
        """The process id of every live actor (for memory measurements and fault tests)."""
        import ray

        return [int(pid) for pid in ray.get([a.process_id.remote() for a in self._actors])]

    def actor_node_ids(self) -> list[str]:
        """The Ray node id of every live actor, in slot order (where the work runs)."""
        import ray

        return [str(node) for node in ray.get([a.node_id.remote() for a in self._actors])]

    def check_ray(self, timeout_s: float = 2.0) -> Failure | None:
        """None while Ray's control store (GCS) answers within ``timeout_s``, else why not."""
        import ray

        try:
            client = ray._private.worker.global_worker.gcs_client  # type: ignore[attr-defined]
        except AttributeError:  # not connected, or a Ray without this client: nothing to ask
            return None
        try:
            client.internal_kv_get(b"causalscope_health", None, timeout=timeout_s)
        except Exception as error:  # RpcError, or whatever this Ray raises for it
            return ray_unreachable(_first_line(error))
        return None

    def _tell_every_actor(self, key: str, method: str, *args: Any) -> None:
        """Call ``method(*args)`` on every actor now, and on each replacement later."""
        self._standing[key] = (method, args)
        for actor in self._actors:
            getattr(actor, method).remote(*args)

    def set_weights(self, kind: str, weights: bytes) -> None:
        """Every actor uses these ``"denoiser"`` or ``"picker"`` weights from its next exposure."""
        import ray

        self._tell_every_actor(kind, "set_weights", kind, ray.put(weights))

    def set_restoration_prior(self, prior: Any) -> None:
        """Every actor uses the causal model's envelope prior from its next exposure on."""
        self._tell_every_actor("prior", "set_restoration_prior", prior)

    def submit(self, task: Task) -> int:
        """Hand ``task`` to the least loaded actor (again, for a retry: its frames stay put);
        returns the actor's slot."""
        import ray
        from ray.exceptions import RayError

        slot = int(np.argmin(self._load))
        if task.frames_ref is None:
            try:
                task.frames_ref = ray.put(task.frames)
            except RayError as error:  # Ray itself is gone or full: the task stays the caller's
                raise PoolUnavailable(ray_unreachable(str(error))) from error
            task.frames = np.empty(0)  # the object store holds them now; no second copy
        actor = self._actors[slot]
        ref = actor.process.remote(
            task.frames_ref,
            exposure_id=task.exposure_id,
            movie_path=task.movie_path,
            metadata=task.metadata,
            pixel_size_angstrom=task.pixel_size_angstrom,
        )
        if self._memory_limit is not None:  # measured right after the exposure, in order
            memory_ref = actor.memory_bytes.remote()
            self._memory_refs[memory_ref] = (slot, self._generation[slot])
            self._memory_of[ref] = memory_ref
        self._running[ref] = (task, slot, self._generation[slot])
        self._load[slot] += 1
        return slot

    def collect(self, timeout_s: float) -> list[Outcome]:
        """Outcomes of the tasks that finished within ``timeout_s`` (possibly none)."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        if not self._running:
            return []
        try:
            ready, _ = ray.wait(
                list(self._running), num_returns=len(self._running), timeout=timeout_s
            )
        except RayError as error:
            raise PoolUnavailable(ray_unreachable(str(error))) from error
        outcomes = []
        measured = [self._memory_of.pop(ref) for ref in ready if ref in self._memory_of]
        for ref in ready:
            task, slot, generation = self._running.pop(ref)
            self._load[slot] -= 1
            self._retired(ref)
            current = generation == self._generation[slot]
            try:
                outcomes.append(Outcome(task, record=ray.get(ref)))
            except RayError as error:
                cause = getattr(error, "cause", None) if isinstance(error, RayTaskError) else error
                if not isinstance(cause, RayError):  # the exposure's own error, in the worker
                    outcomes.append(Outcome(task, error=cause or error))
                    self._alive[slot] |= current  # it answered
                    continue
                # Ray failed it: the worker, its node, its arguments in the object store
                failure = classify(cause)
                if failure.replace_worker and current:
                    self._replace(slot)  # once, not again for a sibling task
                    self.replaced_after_failure += 1
                outcomes.append(Outcome(task, error=error, crashed=True, failure=failure))
            else:
                self._alive[slot] |= current
        self._check_memory(measured)
        return outcomes

    def _retired(self, ref: Any) -> None:
        """``ref`` is done: a recycled actor whose last task it was ends now."""
        import ray

        for entry in list(self._retiring):
            actor, refs = entry
            refs.discard(ref)
            if not refs:
                self._retiring.remove(entry)
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # already gone
                    log.debug("recycled actor was already gone")

    def _check_memory(self, just: list[Any]) -> None:
        """Recycle each worker that grew above the bound, measured after its exposure (those
        in ``just``, measured right after the exposures just collected, are waited for: the
        next exposure must not reach a worker that is to be recycled)."""
        import ray
        from ray.exceptions import RayError

        if not self._memory_refs:
            return
        if just:
            ray.wait(just, num_returns=len(just), timeout=2.0)
        refs = list(self._memory_refs)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            slot, generation = self._memory_refs.pop(ref)
            try:
                measured = ray.get(ref)
            except RayError:  # the worker died; its task's outcome says why
                continue
            if generation != self._generation[slot]:
                continue  # a replaced worker's
            self.worker_memory[slot] = int(measured or 0)
            if self._memory_limit is not None and self.worker_memory[slot] > self._memory_limit:
                self._recycle(slot)

    def _recycle(self, slot: int) -> None:
        """A fresh actor takes ``slot``'s new work; the old one ends after its queued tasks."""
        pending = {ref for ref, (_, s, _) in self._running.items() if s == slot}
        old = self._actors[slot]
        self.recycled.append((slot, self.worker_memory[slot]))
        self._replace(slot, kill=not pending)
        if pending:
            self._retiring.append((old, pending))
        self.worker_memory[slot] = 0

    def _replace(self, slot: int, *, kill: bool = True) -> None:
        """A fresh actor in ``slot``; the dead one's other tasks fail and come back too."""
        import ray

        old = self._actors[slot]
        if kill:
            try:
                ray.kill(old, no_restart=True)
            except Exception:  # already gone
                log.debug("actor in slot %d was already gone", slot)
        self._actors[slot] = self._new_actor()
        self._generation[slot] += 1
        self._alive[slot] = False  # until the new one answers
        self._check[slot] = self._ask(slot)
        for method, args in self._standing.values():  # it starts where the others are
            getattr(self._actors[slot], method).remote(*args)

    def shutdown(self) -> None:
        """Stop every actor (tasks still running are abandoned: the store still has them)."""
        import ray

        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                log.debug("actor already gone at shutdown")
        for actor, _ in self._retiring:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                log.debug("recycled actor already gone at shutdown")
        self._actors = []
        self._retiring = []
        self._alive = [False] * self.n_workers
        self._check = [None] * self.n_workers
        self._running.clear()
        self._memory_refs.clear()
        self._memory_of.clear()


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
