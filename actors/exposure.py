"""The exposure worker: one movie's frames in, one typed record and its micrographs out.

A plain class, testable and usable without Ray (``causalscope process`` calls it directly),
to be wrapped once as a Ray actor by the live pipeline. It never reads movie files or opens
the database: the daemon reads the frames (files or the ZeroMQ stream) and stores the record.

:meth:`ExposureWorker.process` runs the typed stages of :mod:`actors._stages`, each timed:
frame statistics -> gain/defect correction and motion correction (global, patches, dose
weighting, even/odd sums) -> CTF estimation on the aligned, non-weighted sum -> restoration and
picking (by templates from ``processing.picking.reference`` when set, else by blobs) -> the
sanity gate -> micrographs (MRC), a RELION-style motion STAR file, thumbnails and particles.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from causalscope.actors._causal import exposure_inputs, restoration_record
from causalscope.actors._memory import (
    keep_freed_memory,
    release_if_large,
    resident_bytes,
)
from causalscope.actors._records import used_dose
from causalscope.actors._repro import ReproStage, triage_record
from causalscope.actors._run import Run
from causalscope.actors._stages import (
    CtfInput,
    CtfOutput,
    CtfStage,
    GateInput,
    GateOutput,
    GateStage,
    MotionInput,
    MotionOutput,
    MotionStage,
    OutputInput,
    OutputStage,
    RestoreInput,
    RestoreOutput,
    RestoreStage,
)
from causalscope.models.gate import blank_frames, frame_statistics
from causalscope.models.motion.gain import upload_frames
from causalscope.models.optics import DetectorCalibration, Optics
from causalscope.models.records import (
    AcquisitionMetadata,
    ExposureRecord,
    FrameStatistics,
    GateFlag,
    ReproRecord,
    TriageRecord,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from causalscope.actors._values import Outputs
    from causalscope.config import DetectorSettings, MicroscopeSettings, ProcessingSettings
    from causalscope.models.causal.envelope import EnvelopePrior

__all__ = ["DetectorCalibration", "ExposureWorker", "configured_optics", "resolve_device"]


def resolve_device(choice: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; others unchanged."""
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("processing.device = 'cuda' but no CUDA device is visible")
    return choice


def configured_optics(microscope: MicroscopeSettings) -> Optics:
    """The configured microscope's optics: what the worker falls back to where the metadata
    are silent."""
    return Optics(
        pixel_size_angstrom=microscope.pixel_size_angstrom,
        voltage_kv=microscope.voltage_kv,
        spherical_aberration_mm=microscope.spherical_aberration_mm,
        amplitude_contrast=microscope.amplitude_contrast,
    )


class ExposureWorker:
    """Processes exposures one at a time with fixed settings and detector calibration.

    Parameters
    ----------
    microscope
        The configured optics: fallbacks where the metadata are silent (the amplitude contrast
        always comes from here).
    detector
        The detector's kind and counts per electron (dose measured from the counts).
    processing
        Motion, CTF, gate, picking and causal settings, and the device.
    output_dir
        Where micrographs go: ``micrographs/<id>.mrc`` (aligned sum), ``<id>_DW.mrc``
        (dose-weighted), ``<id>_EVN.mrc`` / ``<id>_ODD.mrc`` (dose-weighted half sums, for
        denoising and resolution estimates) and ``motion/<id>.star`` (the trajectory).
    calibration
        Gain and defects in the frames' orientation (the daemon applies rotation and flip).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: from ``processing.device``.
    torch_threads
        CPU threads for torch in this process (a worker's share of the cores); None leaves
        torch's default (all cores).
    sums_early
        Write the motion's micrographs while the CTF and restoration run, not after them
        (beside Delta-Repro, as the thumbnails and restored images always are). Default: on a
        GPU, whose host is idle while it computes; on a CPU the writer competes with the stages
        for the same cores (1024^2 x 20 on 2 cores: CTF 0.19-0.20 -> 0.24 s, the exposure no
        faster).

    Raises
    ------
    FormatError
        The picking reference (``processing.picking.reference``) is missing or unreadable:
        it is read here, once, not on each exposure.
    """

    def __init__(
        self,
        *,
        microscope: MicroscopeSettings,
        detector: DetectorSettings,
        processing: ProcessingSettings,
        output_dir: str | Path,
        calibration: DetectorCalibration | None = None,
        device: str | None = None,
        torch_threads: int | None = None,
        sums_early: bool | None = None,
    ) -> None:
        if torch_threads is not None:
            import torch

            # several CPU workers share a machine: each must stay on its own share of cores
            torch.set_num_threads(max(1, int(torch_threads)))
        keep_freed_memory()  # movie-sized temporaries reuse the heap (see actors._memory)
        self._optics = configured_optics(microscope)
        self._processing = processing
        self._device = device or resolve_device(processing.device)
        scoring = processing.scoring
        self.motion = MotionStage(
            motion=processing.motion,
            dose_weighting=processing.dose_weighting,
            detector=detector,
            calibration=calibration or DetectorCalibration(),
            device=self._device,
            halves=scoring.refits_halves,
        )
        self.ctf = CtfStage(ctf=processing.ctf)
        self.repro = None
        if scoring.refits_halves:
            self.repro = ReproStage(
                ctf=processing.ctf,
                picking=processing.picking,
                resolution_angstrom=scoring.repro_resolution_angstrom,
            )
        self.restore = RestoreStage(
            picking=processing.picking, causal=processing.causal, device=self._device
        )
        self.gate = GateStage(limits=processing.gate)
        self.outputs = OutputStage(
            output_dir=Path(output_dir), float16=processing.micrographs_float16
        )
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exposure-files")
        self._sums_early = self._device.startswith("cuda") if sums_early is None else sums_early

    @property
    def device(self) -> str:
        """Where this worker computes."""
        return self._device

    def set_weights(self, kind: str, weights: bytes) -> None:
        """Use a session's fine-tuned ``"denoiser"`` or ``"picker"`` from the next exposure."""
        self.restore.set_weights(kind, weights)

    def set_restoration_prior(self, prior: EnvelopePrior | None) -> None:
        """The causal model's envelope posterior: the Wiener filter's B from the next exposure."""
        self.restore.prior = prior

    def process_id(self) -> int:
        """The operating-system process this worker runs in (a Ray actor's worker process)."""
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this worker runs on (``"local"`` outside Ray)."""
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"

    def memory_bytes(self) -> int | None:
        """This worker's resident memory (the daemon recycles a worker that grew too big)."""
        return resident_bytes()

    def process(
        self,
        frames: np.ndarray,
        *,
        exposure_id: str,
        movie_path: str,
        metadata: AcquisitionMetadata | None = None,
        pixel_size_angstrom: float | None = None,
    ) -> ExposureRecord:
        """Process one exposure's ``(F, h, w)`` frames into its record and micrographs.

        ``pixel_size_angstrom`` is the frames' own (EER upsampling included) when the caller
        knows it; otherwise the metadata's, otherwise the configured microscope's. Broken input
        never raises: the record's status is ``fail`` and its flags say why. The memory its
        temporaries took goes back to the system at the end, unless the worker is small
        enough to keep it for the next exposure (see ``actors._memory``).
        """
        try:
            return self._process(
                frames,
                exposure_id=exposure_id,
                movie_path=movie_path,
                metadata=metadata,
                pixel_size_angstrom=pixel_size_angstrom,
            )
        finally:
            release_if_large()

    def _process(
        self,
        frames: np.ndarray,
        *,
        exposure_id: str,
        movie_path: str,
        metadata: AcquisitionMetadata | None,
        pixel_size_angstrom: float | None,
    ) -> ExposureRecord:
        run = Run(exposure_id, str(movie_path), metadata, self._device)
        frames = frames[None] if frames.ndim == 2 else frames
        optics = self._admit(run, frames, pixel_size_angstrom)
        if isinstance(optics, ExposureRecord):
            return optics
        raw: np.ndarray | torch.Tensor = frames
        if self._device.startswith("cuda"):
            with run.timer.stage("upload"):  # once, in the frames' own dtype
                raw = upload_frames(frames, self._device)
        with run.timer.stage("statistics"):
            stats = frame_statistics(raw)
        motion = ctf = restored = repro = triage = None
        if self._usable(stats):  # else the gate says why; no later stage could mean anything
            motion = self._motion_of(run, raw, optics, stats)
        # the files are written while the later stages run (the sums as soon as the motion is
        # done with ``sums_early``); both only read the stages' outputs, and the record waits
        # for every file
        writing: list[Future[dict[str, str]]] = []

        def write(part: Callable[[OutputInput], Outputs], value: OutputInput) -> None:
            writing.append(self._writer.submit(self._write, run, part, value))

        try:
            if motion is not None and self._sums_early:
                write(self.outputs.write_sums, OutputInput(run.exposure_id, motion, optics))
            if motion is not None:
                ctf = run.attempt(
                    self.ctf.name, "ctf", lambda: self.ctf(CtfInput.of(motion, optics))
                )
            if motion is not None and ctf is not None and ctf.record.supported:
                restored = self._restore_of(run, motion, ctf, optics)
            if motion is not None:
                value = OutputInput(
                    run.exposure_id,
                    motion,
                    optics,
                    ctf.record if ctf is not None else None,
                    restored.restoration if restored is not None else None,
                )
                if not self._sums_early:
                    write(self.outputs.write_sums, value)
                write(self.outputs.write_results, value)
            if motion is not None and ctf is not None:
                # also where the fit is not supported: such an exposure's estimates are the
                # ones least reproducible, and Delta-Repro ranks every exposure with a fit
                repro = self._repro_of(run, motion, ctf, optics)
            if motion is not None:
                triage = self._triage_of(run, motion, optics)
            with run.timer.stage("gate"):
                gate = self.gate(self._gate_input(run, stats, optics, motion, ctf))
        finally:
            files = _written(writing)  # a full disk's OSError is raised here
        record = self._record(run, optics, stats, motion, ctf, restored, gate, files)
        return record.model_copy(update={"repro": repro, "triage": triage})

    # --- steps of process ---------------------------------------------------------------------

    def _admit(
        self, run: Run, frames: np.ndarray, pixel_size_angstrom: float | None
    ) -> Optics | ExposureRecord:
        """The exposure's optics, or the failed record of input no stage can take."""
        try:
            optics = Optics.resolve(
                self._optics, metadata=run.metadata, pixel_size_angstrom=pixel_size_angstrom
            )
        except ValueError as error:
            return run.rejected("optics_invalid", f"implausible optics: {error}", None)
        if frames.ndim != 3 or frames.shape[0] < 1:
            message = f"expected frames (F, h, w), got shape {frames.shape}"
            return run.rejected("unreadable", message, optics)
        return optics

    def _usable(self, stats: FrameStatistics) -> bool:
        """Finite, and not every frame blank."""
        if any(n > 0 for n in stats.nonfinite_counts):
            return False
        return len(blank_frames(stats, self._processing.gate)) < stats.n_frames

    def _motion_of(
        self, run: Run, frames: np.ndarray | torch.Tensor, optics: Optics, stats: FrameStatistics
    ) -> MotionOutput | None:
        value = MotionInput(frames, optics, stats, run.dose_e_per_a2)
        mismatch = self.motion.calibration_mismatch(value)
        if mismatch is not None:  # the operator's to fix, not a failure of the stage
            message = f"{run.movie_path}: {mismatch}"
            flag = GateFlag(code="calibration_mismatch", severity="fail", message=message)
            run.flags.append(flag)
            return None
        motion = run.attempt(self.motion.name, "motion", lambda: self.motion(value))
        if motion is not None:
            for stage, seconds in motion.correction.timings_s.items():
                run.timer.seconds[f"motion.{stage}"] = round(seconds, 4)
        return motion

    def _restore_of(
        self, run: Run, motion: MotionOutput, ctf: CtfOutput, optics: Optics
    ) -> RestoreOutput | None:
        """Restoration and picking, when picking is on; templates are timed on their own
        (projected on the first exposure only)."""
        restore = self.restore
        if not restore.picking.enabled:
            return None
        if restore.uses_templates:
            pixel_size = optics.pixel_size_angstrom
            if (
                run.attempt(restore.name, "templates", lambda: restore.templates_for(pixel_size))
                is None
            ):
                return None
        value = RestoreInput.of(
            motion,
            ctf,
            optics,
            dose_e_per_a2=used_dose(run.dose_e_per_a2, motion.record),
            metadata=run.metadata,
        )
        return run.attempt(restore.name, "restore_and_pick", lambda: restore(value))

    def _repro_of(
        self, run: Run, motion: MotionOutput, ctf: CtfOutput, optics: Optics
    ) -> ReproRecord | None:
        """Delta-Repro's refits on the half sums; a failure is a warning, never the exposure's."""
        stage = self.repro
        if stage is None:
            return None
        c = motion.correction
        try:
            with run.timer.stage(stage.name):
                templates, picker = self.restore.pickers_for(optics.pixel_size_angstrom)
                return stage(
                    (c.even_sum, c.odd_sum),
                    ctf=ctf.record,
                    optics=optics,
                    templates=templates,
                    half_shifts_px=c.half_shifts_px,
                    whole=(c.ctf_sum, c.ctf_sum_noise_variance),
                    picker=picker,
                )
        except (ValueError, RuntimeError) as error:
            message = f"{run.movie_path}: Delta-Repro's refits failed: {error}"
            run.flags.append(GateFlag(code="repro_error", severity="warn", message=message))
        return None

    def _triage_of(self, run: Run, motion: MotionOutput, optics: Optics) -> TriageRecord | None:
        """The micrograph's triage; a failure is a warning, never the exposure's."""
        scoring = self._processing.scoring
        if not (scoring.enabled and scoring.triage):
            return None
        try:
            with run.timer.stage("triage"):
                return triage_record(
                    motion.correction.dose_weighted_sum,
                    pixel_size_angstrom=optics.pixel_size_angstrom,
                )
        except (ValueError, RuntimeError) as error:
            message = f"{run.movie_path}: the micrograph's triage failed: {error}"
            run.flags.append(GateFlag(code="triage_error", severity="warn", message=message))
        return None

    def _gate_input(
        self,
        run: Run,
        stats: FrameStatistics,
        optics: Optics,
        motion: MotionOutput | None,
        ctf: CtfOutput | None,
    ) -> GateInput:
        return GateInput(
            stats,
            optics,
            run.dose_e_per_a2,
            motion=motion.record if motion is not None else None,
            ctf=ctf.record if ctf is not None else None,
            flags=tuple(run.flags),
        )

    def _write(
        self, run: Run, part: Callable[[OutputInput], Outputs], value: OutputInput
    ) -> dict[str, str]:
        with run.timer.stage("write"):
            return dict(part(value).files)

    def _record(
        self,
        run: Run,
        optics: Optics,
        stats: FrameStatistics,
        motion: MotionOutput | None,
        ctf: CtfOutput | None,
        restored: RestoreOutput | None,
        gate: GateOutput,
        files: dict[str, str],
    ) -> ExposureRecord:
        """The exposure's record: the stages' outputs and the causal model's inputs."""
        motion_record = motion.record if motion is not None else None
        ctf_record = ctf.record if ctf is not None else None
        restoration = restored.restoration if restored is not None else None
        bounds = restored.bfactor_bounds if restored is not None else None
        dose_used = used_dose(run.dose_e_per_a2, motion_record)
        causal = exposure_inputs(
            self._processing.causal,
            ctf=ctf_record,
            motion=motion_record,
            dose_e_per_a2=dose_used,
            metadata=run.metadata,
            restoration=restoration,
        )
        return ExposureRecord(
            status=gate.status,
            flags=list(gate.flags),
            dose_e_per_a2=dose_used,
            n_frames=stats.n_frames,
            frames=stats,
            motion=motion_record,
            ctf=ctf_record,
            picking=restoration.record if restoration is not None else None,
            restoration=restoration_record(restoration, bounds, self.restore.prior),
            causal=causal,
            outputs=files,
            timings_s=dict(run.timer.seconds),
            **run.head(optics),
        )


def _written(writing: list[Future[dict[str, str]]]) -> dict[str, str]:
    """The files of every write, once all have ended; the first one's error raised."""
    files: dict[str, str] = {}
    errors = [error for future in writing if (error := future.exception()) is not None]
    if errors:
        raise errors[0]
    for future in writing:
        files.update(future.result())
    return files
