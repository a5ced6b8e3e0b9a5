"""The session's running reconstructions, fed from the daemon's loop without waiting on them.

:class:`EvaluationTracker` hands each committed exposure's particles to one
:class:`~actors.evaluation.SessionEvaluator` (a Ray actor when Ray runs, else in this process)
in commit order, and asks it for an update once enough new particles have arrived;
:meth:`~EvaluationTracker.poll` returns the finished updates for the store.

The schedule adapts: an update is asked for after ``update_every`` new particles, or after
as many as arrive in twice the time the last update took, whichever is more, so that updates
take at most about half of the evaluator's time however fast the session collects. The
evaluator holds no CPU of Ray's (the exposure actors hold them all) and computes with
``threads`` torch threads, on a quarter of a GPU beside an exposure actor where the cluster
has GPUs and ``processing.device`` allows CUDA, else on the CPU
(:func:`daemon.placement.evaluator_placement` says why).

On a restart every done exposure with particles is handed over again in commit order; the
evaluator skips those its saved state holds, and an update it saved that the store missed (a
crash between the two) is returned by the first poll. An evaluator actor that dies while the
session runs (killed for memory, its process crashed) is started again the same way, from its
last saved update, with every exposure handed over so far, up to
:data:`MAX_EVALUATOR_RESTARTS` times in a session (each one said in :attr:`errors`).

With a planned session length (``session_hours``), the session's clock starts at its first
committed particles (kept in ``session_start.json`` beside the evaluator's state, so that a
restart does not restart it) and each update is told the hours left, for the forecast of the
resolution at the session's end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from causalscope.actors._evaluation_results import EvaluationUpdate
    from causalscope.actors.evaluation import EvaluatorSettings
    from causalscope.config import Settings

__all__ = ["MAX_EVALUATOR_RESTARTS", "EvaluationTracker", "session_tracker"]

log = logging.getLogger(__name__)

#: evaluator actors started again after one died, in a session, before the tracker stops
MAX_EVALUATOR_RESTARTS = 3


class EvaluationTracker:
    """Feeds the session evaluator and collects its updates (see the module docstring).

    Parameters
    ----------
    settings
        The evaluator's settings.
    state_dir
        Where the evaluator keeps its state and writes its files.
    update_every
        New particles that trigger an update (at least; see the module docstring).
    threads
        Torch threads of the evaluator.
    idle_s
        Ask for an update of whatever is new once no exposure has come for this long.
    session_hours
        The session's planned length (hours from its first committed particles), or None.
    """

    def __init__(
        self,
        settings: EvaluatorSettings,
        state_dir: Path,
        *,
        update_every: int,
        threads: int = 1,
        idle_s: float = 30.0,
        session_hours: float | None = None,
    ) -> None:
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.update_every = max(1, update_every)
        self.threads = threads
        self.idle_s = idle_s
        self.threshold = self.update_every
        self.labels: dict[int, str] = {}
        self.errors: list[str] = []
        self._worker: Any = None
        self._remote = False
        self._consuming: deque[tuple[str, Any]] = deque()
        self._update: tuple[Any, float] | None = None  # (handle, asked at)
        self._new_particles = 0
        self._relabelled = False
        self._arrivals: deque[tuple[float, int]] = deque()
        self._last_arrival: float | None = None
        self._resume: tuple[list[tuple[str, str]], int | None] | None = None
        self._recovery: tuple[Any, int | None] | None = None
        self._handed: list[tuple[str, str]] = []  # every exposure handed over, in order
        self._died: BaseException | None = None  # why the actor died, until it is replaced
        self.restarts = 0  # actors started again after one died
        self.latest: EvaluationUpdate | None = None
        self.session_hours = session_hours
        self._started: float | None = self._read_start()

    # --- feeding ------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._worker is not None or self.restarts > MAX_EVALUATOR_RESTARTS:
            return
        import ray

        if ray.is_initialized():
            from causalscope.actors.remote import EvaluatorActor
            from causalscope.daemon.placement import evaluator_placement

            # beside the daemon, no CPU reserved (the exposure actors hold them), a GPU share
            # where there is one to have; told the device that share allows
            options, device = evaluator_placement(self.settings.device)
            settings = dataclasses.replace(self.settings, device=device)
            self._worker = EvaluatorActor.options(**options).remote(
                self.state_dir, settings, threads=self.threads
            )
            self._remote = True
        else:
            from causalscope.actors.evaluation import SessionEvaluator

            self._worker = SessionEvaluator(self.state_dir, self.settings)
        if self._resume is not None:
            rows, stored_version = self._resume
            self._resume = None
            # asked first: the actor answers in the order it is called
            self._recovery = (self._call("latest"), stored_version)
            self._handed = list(rows)
            for exposure_id, star in rows:
                self._consuming.append((exposure_id, self._call("consume", exposure_id, star)))

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A handle (Ray) or the finished result (in process; an error is kept for poll)."""
        if self._remote:
            return getattr(self._worker, method).remote(*args, **kwargs)
        try:
            return ("ok", getattr(self._worker, method)(*args, **kwargs))
        except Exception as error:  # a bad exposure must not stop the session
            return ("error", error)

    def resume(self, done: Iterable[tuple[str, str]], *, stored_version: int | None) -> None:
        """A restart: every done exposure's particle STAR (commit order), handed over when
        the evaluator starts; the store holds updates up to ``stored_version``."""
        self._resume = (list(done), stored_version)

    def start(self) -> None:
        """Start the evaluator now (a restart's hand-over), rather than at the next commit."""
        if self._resume is not None:
            self._ensure_worker()

    def committed(self, exposure_id: str, particles_star: str, n_particles: int) -> None:
        """Hand over one committed exposure's particles."""
        self._ensure_worker()
        self._handed.append((exposure_id, particles_star))
        if self._worker is not None:
            self._consuming.append(
                (exposure_id, self._call("consume", exposure_id, particles_star))
            )
        self._new_particles += n_particles
        if self._started is None and n_particles > 0:
            self._started = time.time()
            self._write_start(self._started)
        # quiet is counted from here: the first write (and the import it needs) can take a
        # good part of a short idle time
        self._last_arrival = time.monotonic()
        self._arrivals.append((self._last_arrival, n_particles))

    def hours_left(self) -> float | None:
        """Hours left of the planned session (0 once past it; None without a plan or before
        the first particles)."""
        if self.session_hours is None or self._started is None:
            return None
        return max(0.0, self.session_hours - (time.time() - self._started) / 3600.0)

    def _read_start(self) -> float | None:
        path = self.state_dir / "session_start.json"
        try:
            return float(json.loads(path.read_text())["started_at"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("%s unreadable (%s): the session's clock starts again", path, error)
            return None

    def _write_start(self, started: float) -> None:
        from causalscope.daemon.formats._common import output_path

        path = self.state_dir / "session_start.json"
        try:
            with output_path(path, atomic=True) as part:
                part.write_text(json.dumps({"started_at": started}))
        except OSError as error:  # the forecast's clock is not worth stopping the session
            log.warning("could not write %s: %s", path, error)

    def relabel(self, class_index: int, label: str) -> None:
        """The operator selected or rejected a class: the next poll asks for an update."""
        self.labels[class_index] = label
        self._relabelled = True

    def particles_per_hour(self, *, window_s: float = 3600.0) -> float | None:
        """Particles committed per hour over the last ``window_s`` (None before two)."""
        now = time.monotonic()
        while self._arrivals and now - self._arrivals[0][0] > window_s:
            self._arrivals.popleft()
        if len(self._arrivals) < 2:
            return None
        span = max(now - self._arrivals[0][0], 1.0)
        return sum(n for _, n in self._arrivals) / span * 3600.0

    # --- collecting ---------------------------------------------------------------------

    def _result(self, handle: Any, deadline: float) -> tuple[bool, Any]:
        """(finished, value or exception) of a handle, waited for until ``deadline``."""
        if not self._remote:
            return True, handle[1]
        import ray

        ready, _ = ray.wait([handle], timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            return False, None
        try:
            return True, ray.get(handle)
        except ray.exceptions.RayActorError as error:  # the actor is gone: poll replaces it
            self._died = error
            return True, error
        except Exception as error:
            return True, error

    def poll(self, *, wait_s: float = 0.0, final: bool = False) -> list[EvaluationUpdate]:
        """Finished updates the store does not hold yet; asks for the next when due
        (``final``: now, for whatever is new; ``wait_s``: how long to wait, in all, for what
        is under way)."""
        deadline = time.monotonic() + wait_s
        if self._died is not None:
            self._replace_dead_worker()
        if self._worker is None:
            return []
        out: list[EvaluationUpdate] = []
        if self._recovery is not None:
            out += self._recover(deadline)
        while self._consuming:
            exposure_id, handle = self._consuming[0]
            finished, value = self._result(handle, deadline)
            if not finished:
                break
            self._consuming.popleft()
            if self._died is not None:
                return out  # what it had not taken goes to the next actor
            if isinstance(value, Exception):
                self.errors.append(f"{exposure_id}: {value}")
                log.warning("evaluator skipped %s: %s", exposure_id, value)
        if self._update is not None:
            out += self._collect_update(deadline)
        last = self._last_arrival
        quiet = last is not None and time.monotonic() - last > self.idle_s
        due = self._new_particles >= self.threshold or self._relabelled
        due = due or (quiet and self._new_particles > 0)
        if self._update is None and (due or (final and self._new_particles)):
            self._ask_for_update()
            out += self._collect_update(deadline)
        return out

    def _replace_dead_worker(self) -> None:
        """A new evaluator actor for the one that died: it loads the last saved update and is
        handed every exposure again (those it holds are skipped), then asked for an update."""
        error, self._died = self._died, None
        if self._remote and self._worker is not None:  # "unavailable" may still be running
            import ray

            with contextlib.suppress(Exception):
                ray.kill(self._worker, no_restart=True)
        self._worker, self._consuming, self._update = None, deque(), None
        self.restarts += 1
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if self.restarts > MAX_EVALUATOR_RESTARTS:
            message = f"evaluator died ({reason}); not started again after {self.restarts - 1}"
            self.errors.append(message)
            log.error("%s: no more running reconstructions in this session", message)
            return
        self.errors.append(f"evaluator died ({reason}); started again from its last update")
        log.warning("evaluator died (%s): started again from its last saved update", reason)
        stored = None if self.latest is None else self.latest.version
        self._resume = (list(self._handed), stored)
        self._new_particles = max(self._new_particles, self.threshold)  # an update is due
        self._ensure_worker()

    def _recover(self, deadline: float) -> list[EvaluationUpdate]:
        """The evaluator's saved update when the store lacks it (after a restart)."""
        assert self._recovery is not None
        handle, stored = self._recovery
        finished, latest = self._result(handle, deadline)
        if not finished:
            return []
        self._recovery = None
        if latest is None or isinstance(latest, Exception):
            return []
        self.latest = latest
        return [latest] if stored is None or latest.version > stored else []

    def _ask_for_update(self) -> None:
        asked_at = time.monotonic()
        handle = self._call(
            "update",
            labels=dict(self.labels),
            particles_per_hour=self.particles_per_hour(),
            hours_left=self.hours_left(),
        )
        self._update = (handle, asked_at)
        self._new_particles = 0
        self._relabelled = False

    def _collect_update(self, deadline: float) -> list[EvaluationUpdate]:
        assert self._update is not None
        handle, asked_at = self._update
        finished, value = self._result(handle, deadline)
        if not finished:
            return []
        self._update = None
        if self._died is not None:
            return []  # the next poll starts another actor and asks it again
        if isinstance(value, Exception):
            self.errors.append(f"update: {value}")
            log.warning("evaluator update failed: %s", value)
            return []
        took = time.monotonic() - asked_at
        rate = self.particles_per_hour()
        if rate:  # updates take at most about half the evaluator's time
            self.threshold = max(self.update_every, int(2 * took * rate / 3600.0))
        if value is None:
            return []
        self.latest = value
        return [value]

    @property
    def backlog(self) -> int:
        """Exposures handed over and not yet taken by the evaluator."""
        return len(self._consuming)

    def close(self) -> None:
        """Stop the actor (its state was saved at its last update)."""
        if self._remote and self._worker is not None:
            import ray

            ray.kill(self._worker)
        self._worker = None


def session_tracker(settings: Settings, state_dir: Path) -> EvaluationTracker | None:
    """The session's tracker of its running reconstructions (state in ``state_dir``), when
    they are on and particles are extracted; None otherwise."""
    from causalscope.actors.evaluation import EvaluatorSettings
    from causalscope.daemon.novelty import default_index_folder

    picking = settings.processing.picking
    wanted = settings.processing.reconstruction
    if not (wanted.enabled and picking.enabled and picking.extract):
        return None
    evaluator = EvaluatorSettings(
        particle_diameter_angstrom=picking.particle_diameter_angstrom,
        classes=wanted.classes,
        class_threshold=wanted.class_threshold,
        reference=None if wanted.reference is None else str(wanted.reference),
        symmetry=wanted.symmetry,
        box_px=wanted.box_px,
        target_resolution_angstrom=wanted.target_resolution_angstrom,
        ab_initio_min_particles=wanted.ab_initio_min_particles,
        novelty_index=str(default_index_folder(wanted.novelty_index)),
        novelty_scale=wanted.novelty_scale,
        device=settings.processing.device,
    )
    return EvaluationTracker(
        evaluator,
        state_dir,
        update_every=wanted.update_every,
        session_hours=wanted.session_hours or None,
    )
