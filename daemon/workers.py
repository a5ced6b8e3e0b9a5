"""The pool of exposure actors: Ray, one actor per GPU or per CPU share, replaced when one dies.

The scheduler hands a pool an exposure and later collects what came back; the pool knows
nothing of the store. Frames go into Ray's object store once per exposure (``ray.put``) and the
calibration once per session.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from causalscope.models.optics import DetectorCalibration

if TYPE_CHECKING:
    from causalscope.config import Settings
    from causalscope.models.records import AcquisitionMetadata, ExposureRecord

__all__ = ["Outcome", "RayWorkerPool", "Task", "beside_the_daemon", "start_ray"]

log = logging.getLogger(__name__)


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
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=log_to_terminal)
        return f"joined Ray cluster at {address}"
    cpus = num_cpus or os.cpu_count() or 1
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


def beside_the_daemon() -> dict[str, Any]:
    """Ray options that place a session's own actor (causal model, evaluator, denoiser trainer)
    on the daemon's node, with no CPU reserved.

    On a cluster the exposure actors spread over the nodes; the session's singletons stay with
    the daemon, so that losing a worker node costs only the exposures it was processing. Soft:
    where the daemon's node cannot take it, Ray places it elsewhere.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return {"num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)}


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

    ``crashed`` is True when the actor process died (killed, out of memory, segfault): the
    exposure itself may be fine and is worth retrying on a fresh actor.
    """

    task: Task
    record: ExposureRecord | None = None
    error: BaseException | None = None
    crashed: bool = False


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
        Number of actors; default: one per GPU of the cluster when the processing device
        allows CUDA, else one per ``threads_per_worker`` CPUs.
    threads_per_worker
        CPU threads (torch) and Ray CPU share of each CPU actor.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        output_dir: Path,
        calibration: DetectorCalibration | None = None,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
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
        if use_gpu:
            self._options: dict[str, Any] = {
                "num_gpus": 1,
                "num_cpus": 1,
                "scheduling_strategy": "SPREAD",
            }
            default_workers = gpus
            self.device_kind = "cuda"
        else:
            self._options = {"num_cpus": self._threads, "scheduling_strategy": "SPREAD"}
            default_workers = max(1, cpus // self._threads)
            self.device_kind = "cpu"
        self.n_workers = n_workers or default_workers
        self._actors: list[Any] = [self._new_actor() for _ in range(self.n_workers)]
        self._load = [0] * self.n_workers
        self._generation = [0] * self.n_workers
        self._running: dict[Any, tuple[Task, int, int]] = {}
        self._denoiser_ref: Any = None
        self._restoration_prior: Any = None

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

    def actor_process_ids(self) -> list[int]:
        """The process id of every live actor (for memory measurements and fault tests)."""
        import ray

        return [int(pid) for pid in ray.get([a.process_id.remote() for a in self._actors])]

    def actor_node_ids(self) -> list[str]:
        """The Ray node id of every live actor, in slot order (where the work runs)."""
        import ray

        return [str(node) for node in ray.get([a.node_id.remote() for a in self._actors])]

    def set_denoiser_weights(self, weights: bytes) -> None:
        """Every actor uses these denoiser weights from its next exposure on."""
        import ray

        self._denoiser_ref = ray.put(weights)
        for actor in self._actors:
            actor.set_denoiser_weights.remote(self._denoiser_ref)

    def set_restoration_prior(self, prior: Any) -> None:
        """Every actor uses the causal model's envelope prior from its next exposure on."""
        self._restoration_prior = prior
        for actor in self._actors:
            actor.set_restoration_prior.remote(prior)

    def submit(self, task: Task) -> int:
        """Hand ``task`` to the least loaded actor (again, for a retry: its frames stay put);
        returns the actor's slot."""
        import ray

        slot = int(np.argmin(self._load))
        if task.frames_ref is None:
            task.frames_ref = ray.put(task.frames)
            task.frames = np.empty(0)  # the object store holds them now; no second copy
        ref = self._actors[slot].process.remote(
            task.frames_ref,
            exposure_id=task.exposure_id,
            movie_path=task.movie_path,
            metadata=task.metadata,
            pixel_size_angstrom=task.pixel_size_angstrom,
        )
        self._running[ref] = (task, slot, self._generation[slot])
        self._load[slot] += 1
        return slot

    def collect(self, timeout_s: float) -> list[Outcome]:
        """Outcomes of the tasks that finished within ``timeout_s`` (possibly none)."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        if not self._running:
            return []
        ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=timeout_s)
        outcomes = []
        for ref in ready:
            task, slot, generation = self._running.pop(ref)
            self._load[slot] -= 1
            try:
                outcomes.append(Outcome(task, record=ray.get(ref)))
            except RayActorError as error:
                if generation == self._generation[slot]:  # not yet replaced for a sibling task
                    self._replace(slot)
                outcomes.append(Outcome(task, error=error, crashed=True))
            except RayTaskError as error:
                outcomes.append(Outcome(task, error=getattr(error, "cause", None) or error))
        return outcomes

    def _replace(self, slot: int) -> None:
        """A fresh actor in ``slot``; the dead one's other tasks fail and come back too."""
        import ray

        old = self._actors[slot]
        try:
            ray.kill(old, no_restart=True)
        except Exception:  # already gone
            log.debug("actor in slot %d was already gone", slot)
        self._actors[slot] = self._new_actor()
        self._generation[slot] += 1
        if self._denoiser_ref is not None:  # a replacement starts where the others are
            self._actors[slot].set_denoiser_weights.remote(self._denoiser_ref)
        if self._restoration_prior is not None:
            self._actors[slot].set_restoration_prior.remote(self._restoration_prior)

    def shutdown(self) -> None:
        """Stop every actor (tasks still running are abandoned: the store still has them)."""
        import ray

        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                log.debug("actor already gone at shutdown")
        self._actors = []
        self._running.clear()
