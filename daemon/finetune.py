"""Fine-tuning the session's models in the background: the denoiser and the learned picker.

One trainer actor per model and session, beside the daemon with no CPU reserved (it trains
between exposures, never blocking them). Nothing here waits: the session's loop polls for a
finished round, hands its weights to the exposure actors and logs its report. The checkpoint
lies beside the session, and a restart starts from it.

- :class:`Finetuner`, the denoiser (:class:`~actors.denoiser.DenoiserTrainer`): each good
  exposure's even/odd half sums; after every ``processing.picking.finetune_every`` exposures it
  trains ``finetune_steps`` steps and writes ``denoiser.pt``.
- :class:`PickerFinetuner`, the learned picker (:class:`~actors.picker_trainer.PickerTrainer`):
  the operator's coordinate files in ``processing.picking.tuning.labels`` (read as they
  appear), the picks sorted by the session's 2D classes (``reconstruction/classes``:
  selected and excluded particles) and, with self-training, each exposure's confident picks;
  each new or changed label file, and classes grown by a quarter, start a round, and a
  candidate that beats the shipped picker on the labels' held-back rows is written to
  ``picker.pt`` and used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from causalscope.daemon._judged import read_judged, write_judged
from causalscope.models.records import ExposureRecord

if TYPE_CHECKING:
    from causalscope.config import PickingSettings
    from causalscope.daemon.alerts import Alert

__all__ = ["LABEL_SUFFIXES", "Finetuner", "PickerFinetuner", "labelled_exposure"]

log = logging.getLogger(__name__)

#: endings of a label file's stem after the exposure's id (RELION's manual and automatic
#: picks, a dose-weighted micrograph's name), removed in any order
LABEL_SUFFIXES = ("_manualpick", "_autopick", "_picks", "_DW")
#: coordinate files read as labels
_LABEL_FILES = (".star", ".csv", ".txt", ".box", ".cs")
#: seconds between looks into the labels folder
_SCAN_S = 2.0
#: the key of the 2D classes' selection among the label files given to rounds
_CLASSES = "2D classes"
_FIX_CLASSES = "The 2D classes' files are written again at the evaluator's next update."
_FIX_LABELS = (
    "Write every particle of the exposure as pixels of its dose-weighted sum (RELION STAR, "
    "CSV, Topaz .txt, EMAN2/crYOLO .box) or as cryoSPARC's shares of it (.cs); the file is "
    "read again when it changes."
)


class _Background:
    """A trainer actor made on first use, and the refs of the round in flight."""

    actor_class = "DenoiserTrainerActor"

    def __init__(self, *, steps: int, checkpoint: Path) -> None:
        self.steps = steps
        self.checkpoint = Path(checkpoint)
        self._actor: Any = None
        self._round: list[Any] | None = None
        self.rounds = 0

    @property
    def running(self) -> bool:
        """Whether a round is in flight."""
        return self._round is not None

    def initial_weights(self) -> bytes | None:
        """The session's checkpoint from an earlier run, if there is one."""
        try:
            return self.checkpoint.read_bytes()
        except FileNotFoundError:
            return None

    def _trainer(self) -> Any:
        if self._actor is None:
            from causalscope.actors import remote
            from causalscope.daemon.placement import beside_the_daemon

            actor = getattr(remote, self.actor_class)
            self._actor = actor.options(**beside_the_daemon()).remote(self.initial_weights())
        return self._actor

    def _finished(self) -> list[Any] | None:
        """The values of the round in flight once all are ready (then no round is in flight);
        None while it runs or when none does. Raises what the round raised."""
        if self._round is None:
            return None
        import ray

        ready, _ = ray.wait(self._round, num_returns=len(self._round), timeout=0)
        if len(ready) < len(self._round):
            return None
        refs, self._round = self._round, None
        return list(ray.get(refs))

    def close(self) -> None:
        """Stop the trainer (its checkpoint stays)."""
        if self._actor is not None:
            import ray

            try:
                ray.kill(self._actor, no_restart=True)
            except Exception:
                log.debug("trainer already gone")
            self._actor = None


class Finetuner(_Background):
    """Feeds the denoiser's trainer actor and hands its weights to the exposure actors.

    Parameters
    ----------
    every, steps
        Train after this many new exposures, for this many steps (``every = 0``: never).
    checkpoint
        Where the fine-tuned weights are kept (``<session>/denoiser.pt``).
    """

    def __init__(self, *, every: int, steps: int, checkpoint: Path) -> None:
        super().__init__(steps=steps, checkpoint=checkpoint)
        self.every = every
        self._new = 0

    def committed(self, record: ExposureRecord) -> None:
        """Offer a committed exposure's half sums; start a round when enough are new."""
        if self.every <= 0 or record.status == "fail":
            return
        even, odd = record.outputs.get("even_sum"), record.outputs.get("odd_sum")
        if not even or not odd:
            return
        trainer = self._trainer()
        trainer.add_pair_files.remote(even, odd)
        self._new += 1
        if self._new >= self.every and self._round is None:
            self._new = 0
            self._round = [
                trainer.train.remote(self.steps),
                trainer.checkpoint.remote(str(self.checkpoint)),
                trainer.weights.remote(),
            ]

    def poll(self, pool: Any) -> dict[str, float] | None:
        """The finished round's training report (its weights sent to ``pool``), else None."""
        try:
            values = self._finished()
        except Exception as error:  # a failed round must not stop the session
            log.warning("denoiser fine-tuning failed: %s", error)
            return {"error": 1.0}
        if values is None:
            return None
        report, _, weights = values
        if pool is not None and hasattr(pool, "set_weights"):
            pool.set_weights("denoiser", weights)
        self.rounds += 1
        return dict(report)

    def describe(self, report: dict[str, Any]) -> str:
        """The session log's line for a round's report."""
        return f"denoiser fine-tuned (round {self.rounds}); checkpoint {self.checkpoint}"


def labelled_exposure(path: Path) -> str | None:
    """The exposure id a label file names (its stem less :data:`LABEL_SUFFIXES`), or None for
    a file that is not a coordinate file."""
    if path.suffix.lower() not in _LABEL_FILES or path.name.startswith("."):
        return None
    stem = path.stem
    changed = True
    while changed:
        changed = False
        for suffix in LABEL_SUFFIXES:
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem, changed = stem[: -len(suffix)], True
    return stem


class PickerFinetuner(_Background):
    """Feeds the learned picker's trainer actor from the labels folder (and, once labels are
    read, from the session's 2D classes; with self-training, from its confident picks) and
    hands adopted weights to the exposure actors.

    Parameters
    ----------
    labels
        The operator's coordinate files (None: no fine-tuning at all).
    output_dir
        The session folder (``micrographs/<id>_DW.mrc``: the micrograph a label file is for).
    diameter_angstrom, steps, self_training, confident, from_classes
        The particle diameter and ``processing.picking.tuning``'s settings.
    checkpoint
        Where adopted weights are kept (``<session>/picker.pt``).
    """

    actor_class = "PickerTrainerActor"

    def __init__(
        self,
        *,
        labels: Path | None,
        output_dir: Path,
        diameter_angstrom: float,
        steps: int,
        self_training: bool,
        confident: float,
        checkpoint: Path,
        from_classes: bool = False,
    ) -> None:
        super().__init__(steps=steps, checkpoint=checkpoint)
        self.labels = labels
        self.output_dir = Path(output_dir)
        self.diameter_angstrom = diameter_angstrom
        self.self_training, self.confident = self_training, confident
        self.from_classes = from_classes
        self._classes_version: tuple[float, int] | None = None  # of the selection last offered
        self._seen: dict[tuple[Path, str], tuple[float, int]] = {}  # (file, exposure) read
        self._names: dict[Path, tuple[tuple[float, int], set[str]]] = {}
        self._adding: list[tuple[Path, Any, str, tuple[float, int]]] = []
        self._next_scan = 0.0
        self._pending = False  # labels taken since the last round started
        #: label files (``path::exposure``) at the version a finished round was given, kept
        #: beside the checkpoint so that a restarted session reads them again without a round
        self._judged_path = self.checkpoint.with_name("picker_labels.json")
        self._judged = read_judged(self._judged_path)
        self._taken: dict[str, tuple[float, int]] = {}  # since the last round started
        self._in_round: dict[str, tuple[float, int]] = {}  # given to the round in flight
        self.adopted = 0  # rounds whose candidate is in use
        self.labels_read = 0  # label files (one exposure's rows each) the trainer holds
        #: label files that name no exposure of the session done so far (at the last scan)
        self.waiting: set[Path] = set()
        self.last: dict[str, Any] | None = None  # the last round's report
        self._resumed = self.checkpoint.is_file()  # an earlier run's adopted picker is in use
        self.problems: list[tuple[str, str]] = []  # (what, what to do), until alerted

    @classmethod
    def for_session(cls, picking: PickingSettings, root: Path) -> PickerFinetuner:
        """The session's (checkpoint ``<root>/picker.pt``): without the learned picker in use,
        labels are not used, and :attr:`problems` says so."""
        tuning = picking.tuning
        learned = picking.enabled and picking.picker == "learned" and picking.reference is None
        tuner = cls(
            labels=tuning.labels if learned else None,
            output_dir=root,
            diameter_angstrom=picking.particle_diameter_angstrom,
            steps=tuning.steps,
            self_training=tuning.self_training,
            confident=tuning.confident,
            checkpoint=root / "picker.pt",
            from_classes=tuning.from_classes,
        )
        if tuning.labels is not None and not learned:
            picker = "template" if picking.reference is not None else picking.picker
            tuner.problems.append(
                (
                    f"{tuning.labels}: picker labels fine-tune the learned picker, but this "
                    f"session picks {'nothing' if not picking.enabled else f'by {picker}'}",
                    'Set processing.picking.picker = "learned" without a reference, or leave '
                    "the labels out.",
                )
            )
        return tuner

    @property
    def enabled(self) -> bool:
        """Whether the session fine-tunes its picker (a labels folder is set)."""
        return self.labels is not None

    def committed(self, record: ExposureRecord) -> None:
        """With self-training, offer a learned-picker exposure's confident picks."""
        picking = record.picking
        micrograph = record.outputs.get("dose_weighted_sum")
        if (
            not self.enabled
            or not self.self_training
            or record.status == "fail"
            or picking is None
            or picking.picker != "learned"
            or not micrograph
        ):
            return
        confident = [
            xy
            for xy, p in zip(picking.picks_xy_px, picking.scores, strict=True)
            if p >= self.confident
        ]
        if confident:
            self._trainer().add_confident_file.remote(
                record.exposure_id,
                micrograph,
                confident,
                picking.n_particles,
                self.diameter_angstrom,
            )

    def _scan(self) -> None:
        """Hand new or changed label files of exposures with a micrograph to the trainer: a
        file named for its exposure, or one that names several micrographs (the exposures
        of the session among them, as each is done)."""
        import time

        now = time.monotonic()
        if self.labels is None or now < self._next_scan:
            return
        self._next_scan = now + _SCAN_S
        try:
            files = sorted(self.labels.iterdir())
        except OSError:  # not made yet, or unreadable for a moment: look again later
            return
        done: set[str] | None = None
        waiting: set[Path] = set()
        for path in files:
            exposure = labelled_exposure(path)
            if exposure is None:
                continue  # not a label file
            try:
                stat = path.stat()
            except OSError:
                continue
            version = (stat.st_mtime, stat.st_size)
            if self._micrograph(exposure).is_file():
                self._offer(path, exposure, version)
                continue
            if done is None:
                micrographs = self.output_dir / "micrographs"
                done = {p.name.removesuffix("_DW.mrc") for p in micrographs.glob("*_DW.mrc")}
            ready = sorted(self._named(path, version) & done)
            if not ready:
                waiting.add(path)
            for named in ready:
                self._offer(path, named, version)
        self.waiting = waiting
        self._scan_classes()

    def _scan_classes(self) -> None:
        """Hand a changed 2D class selection to the trainer, once it holds labels to judge by
        (it takes the classes when they have grown enough)."""
        selected = self.output_dir / "reconstruction" / "classes" / "selected_particles.star"
        if not self.from_classes or not self.labels_read:
            return
        try:
            stat = selected.stat()
        except OSError:
            return
        version = (stat.st_mtime, stat.st_size)
        if version == self._classes_version:
            return
        self._classes_version = version
        ref = self._trainer().add_classes_files.remote(
            str(selected),
            str(selected.with_name("excluded_particles.star")),
            str(self.output_dir / "micrographs"),
            self.diameter_angstrom,
        )
        self._adding.append((selected, ref, _CLASSES, version))

    def _micrograph(self, exposure: str) -> Path:
        return self.output_dir / "micrographs" / f"{exposure}_DW.mrc"

    def _named(self, path: Path, version: tuple[float, int]) -> set[str]:
        """The micrographs a label file names (read again when it changes)."""
        from causalscope.daemon.formats.coordinates import named_micrographs

        cached = self._names.get(path)
        if cached is None or cached[0] != version:
            cached = (version, named_micrographs(path))
            self._names[path] = cached
        return cached[1]

    def _offer(self, path: Path, exposure: str, version: tuple[float, int]) -> None:
        """The trainer reads ``path``'s labels of ``exposure`` (once per version of it)."""
        if self._seen.get((path, exposure)) == version:
            return
        self._seen[(path, exposure)] = version
        ref = self._trainer().add_labelled_files.remote(
            exposure, str(self._micrograph(exposure)), str(path), self.diameter_angstrom
        )
        self._adding.append((path, ref, f"{path}::{exposure}", version))

    @property
    def busy(self) -> bool:
        """Whether labels are being read, or a round runs or waits to start."""
        return self.running or self._pending or bool(self._adding)

    def poll(self, pool: Any) -> dict[str, Any] | None:
        """Read new labels; start a round when some were taken; the finished round's report
        (adopted weights sent to ``pool``), else None. Bad label files are reported once in
        :attr:`problems` (the error names the file) and skipped."""
        if not self.enabled:
            return None
        import ray

        self._scan()
        for item in list(self._adding):
            path, ref, key, version = item
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                continue
            self._adding.remove(item)
            try:
                taken = ray.get(ref)
            except Exception as error:  # the trainer failed: say so, go on without the file
                taken = {"error": f"{path}: {str(error).splitlines()[0]}"}
            if "error" in taken:
                fix = _FIX_CLASSES if key == _CLASSES else _FIX_LABELS
                self.problems.append((str(taken["error"]), fix))
            elif key == _CLASSES:
                if taken["classified"] and self._judged.get(key) != version:
                    self._taken[key] = version
                    self._pending = True
            else:
                self.labels_read += 1
                if self._judged.get(key) != version:  # else an earlier run's round had it
                    self._taken[key] = version
                    self._pending = True
        # a round takes every label file handed to the trainer before it (the actor runs its
        # calls in order), so it waits for those reads: what it was given is then known
        if self._pending and self._round is None and not self._adding:
            self._pending = False
            self._in_round, self._taken = self._taken, {}
            self._round = [self._trainer().round.remote(self.steps, str(self.checkpoint))]
        try:
            values = self._finished()
        except Exception as error:  # a failed round must not stop the session
            log.warning("picker fine-tuning failed: %s", error)
            return {"error": str(getattr(error, "cause", None) or error)}
        if values is None:
            return None
        self._judged.update(self._in_round)
        write_judged(self._judged_path, self._judged)
        report, weights = values[0]
        self.last = dict(report)
        if weights is not None:
            self.adopted += 1
            if pool is not None and hasattr(pool, "set_weights"):
                pool.set_weights("picker", weights)
        self.rounds += 1
        return dict(report)

    def describe(self, report: dict[str, Any]) -> str:
        """The session log's line for a round's report."""
        if "error" in report:
            return f"picker fine-tuning failed: {report['error']}"
        verdict = (
            f"adopted, checkpoint {self.checkpoint}"
            if report["adopted"]
            else "not adopted: the picker in use stays"
        )
        n, sorted_by = int(report["labelled"]), int(report.get("classified", 0))
        classes = f", {sorted_by} sorted by 2D classes" if sorted_by else ""
        return (
            f"picker fine-tuned (round {self.rounds}, {n} labelled "
            f"micrograph{'' if n == 1 else 's'}{classes}): F1 on their held-back rows "
            f"{report['held_out_f1_shipped']:.3f} shipped, {report['held_out_f1_tuned']:.3f} "
            f"fine-tuned; {verdict}"
        )

    def alerts(self) -> list[Alert]:
        """An alert for each problem with the labels since the last call."""
        from causalscope.daemon.alerts import Alert

        out = [
            Alert("picker_labels_refused", "warn", f"Picker labels not used: {what}", advice)
            for what, advice in self.problems
        ]
        self.problems.clear()
        return out

    def status(self) -> str | None:
        """The dashboard's line on the picker in use (None without a labels folder), with
        how many label files name no exposure done so far."""
        if not self.enabled:
            return None
        line = self._state()
        if self.waiting:
            names = ", ".join(sorted(p.name for p in self.waiting)[:2])
            more = ", ..." if len(self.waiting) > 2 else ""
            line += f"; {len(self.waiting)} label file(s) name no exposure done yet ({names}{more})"
        return line

    def _state(self) -> str:
        last = self.last
        if last is None:
            return "fine-tuned (an earlier run's)" if self._resumed else "shipped (no labels yet)"
        classes = int(last.get("classified", 0))
        held_out = (
            f"{int(last['labelled'])} labelled{f' + {classes} by 2D classes' if classes else ''}, "
            f"F1 {last['held_out_f1_shipped']:.2f} shipped -> {last['held_out_f1_tuned']:.2f}"
        )
        if last["adopted"]:
            return f"fine-tuned, round {self.rounds} ({held_out})"
        state = "fine-tuned" if self.adopted or self._resumed else "shipped"
        if last["held_out_particles"] < last["min_held_out_particles"]:
            return f"{state}; round {self.rounds} needs more labels ({held_out})"
        return f"{state}; round {self.rounds} not better ({held_out})"
