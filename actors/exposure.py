"""The exposure worker: one movie's frames in, one typed record and its micrographs out.

A plain class, testable and usable without Ray (``causalscope process`` calls it directly),
to be wrapped once as a Ray actor by the live pipeline. It never reads movie files or opens
the database: the daemon reads the frames (files or the ZeroMQ stream) and stores the record.

Stages, each timed: frame statistics -> gain/defect correction and motion correction (global,
patches, dose weighting, even/odd sums) -> CTF estimation on the aligned, non-weighted sum ->
the sanity gate -> micrographs written (MRC) beside a RELION-style motion STAR file ->
restoration and picking (by templates from ``processing.picking.reference`` when set, else by
blobs).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from causalscope.actors._causal import bfactor_bounds, exposure_inputs, restoration_record
from causalscope.actors._outputs import write_outputs
from causalscope.actors._records import build_motion_record, used_dose
from causalscope.actors._restore import (
    Restoration,
    load_reference,
    reference_templates,
    restore_and_pick,
    write_restoration,
)
from causalscope.models.gate import blank_frames, evaluate_gate, frame_statistics, gate_status
from causalscope.models.records import (
    AcquisitionMetadata,
    CtfRecord,
    ExposureRecord,
    FrameStatistics,
    GateFlag,
    MotionRecord,
)

if TYPE_CHECKING:
    import torch

    from causalscope.config import Settings
    from causalscope.models.causal.envelope import EnvelopePrior
    from causalscope.models.ctf_estimation import CtfEstimate
    from causalscope.models.denoise import UNet
    from causalscope.models.motion import MotionCorrection

__all__ = ["DetectorCalibration", "ExposureWorker", "resolve_device"]


def resolve_device(choice: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; others unchanged."""
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("processing.device = 'cuda' but no CUDA device is visible")
    return choice


@dataclass(frozen=True)
class DetectorCalibration:
    """Gain reference and defect mask, already in the frames' orientation and size."""

    gain: np.ndarray | None = None
    defect_mask: np.ndarray | None = None


@dataclass(frozen=True)
class _Optics:
    pixel_size_angstrom: float
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


class ExposureWorker:
    """Processes exposures one at a time with fixed settings and detector calibration.

    Parameters
    ----------
    settings
        The resolved settings (microscope fallbacks, detector, processing).
    output_dir
        Where micrographs go: ``micrographs/<id>.mrc`` (aligned sum), ``<id>_DW.mrc``
        (dose-weighted), ``<id>_EVN.mrc`` / ``<id>_ODD.mrc`` (dose-weighted half sums, for
        denoising and resolution estimates) and ``motion/<id>.star`` (the trajectory).
    calibration
        Gain and defects in the frames' orientation (the daemon applies rotation and flip).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: from ``settings.processing.device``.
    torch_threads
        CPU threads for torch in this process (a worker's share of the cores); None leaves
        torch's default (all cores).

    Raises
    ------
    FormatError
        The picking reference (``processing.picking.reference``) is missing or unreadable:
        it is read here, once, not on each exposure.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        output_dir: str | Path,
        calibration: DetectorCalibration | None = None,
        device: str | None = None,
        torch_threads: int | None = None,
    ) -> None:
        if torch_threads is not None:
            import torch

            # several CPU workers share a machine: each must stay on its own share of cores
            torch.set_num_threads(max(1, int(torch_threads)))
        self._settings = settings
        self._output_dir = Path(output_dir)
        self._calibration = calibration or DetectorCalibration()
        self._device = device or resolve_device(settings.processing.device)
        self._gain_tensor: torch.Tensor | None = None
        self._denoise_model: UNet | None = None
        self._defect_tensor: torch.Tensor | None = None
        self._envelope_prior: EnvelopePrior | None = None
        picking = settings.processing.picking
        self._reference_coords: np.ndarray | None = None
        if picking.enabled and picking.reference is not None:
            self._reference_coords = load_reference(picking.reference)
        # projected once per pixel size (one per session, unless the metadata disagree)
        self._templates: dict[float, torch.Tensor] = {}

    @property
    def device(self) -> str:
        """Where this worker computes."""
        return self._device

    def _denoiser(self) -> UNet:
        """The Noise2Noise model, loaded once (the shipped one, or a session's fine-tuned)."""
        if self._denoise_model is None:
            from causalscope.models.denoise import default_model

            self._denoise_model = default_model(device=self._device).eval()
        return self._denoise_model

    def _templates_for(self, pixel_size_angstrom: float) -> torch.Tensor | None:
        """The reference's projections at this pixel size; None when picking blobs."""
        if self._reference_coords is None:
            return None
        key = round(pixel_size_angstrom, 6)
        if key not in self._templates:
            templates = reference_templates(
                self._reference_coords, self._settings.processing.picking, pixel_size_angstrom
            )
            self._templates[key] = templates.to(self._device)
        return self._templates[key]

    def set_denoiser_weights(self, weights: bytes) -> None:
        """Use these weights (a session's fine-tuned model) from the next exposure on."""
        from causalscope.models.denoise import load_weights

        self._denoise_model = load_weights(weights, device=self._device).eval()

    def set_restoration_prior(self, prior: EnvelopePrior | None) -> None:
        """The causal model's envelope posterior: the Wiener filter's B from the next exposure."""
        self._envelope_prior = prior

    def process_id(self) -> int:
        """The operating-system process this worker runs in (a Ray actor's worker process)."""
        return os.getpid()

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
        never raises: the record's status is ``fail`` and its flags say why.
        """
        timer = _Timer()
        optics = self._optics(metadata, pixel_size_angstrom)
        dose = metadata.dose_e_per_a2 if metadata is not None else None
        base = {
            "exposure_id": exposure_id,
            "movie_path": str(movie_path),
            "pixel_size_angstrom": optics.pixel_size_angstrom,
            "voltage_kv": optics.voltage_kv,
            "cs_mm": optics.cs_mm,
            "amplitude_contrast": optics.amplitude_contrast,
            "metadata": metadata,
            "device": self._device,
        }
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3 or frames.shape[0] < 1:
            flag = GateFlag(
                code="unreadable",
                severity="fail",
                message=f"{movie_path}: expected frames (F, h, w), got shape {frames.shape}",
            )
            return ExposureRecord(status="fail", flags=[flag], **base)
        n_frames = int(frames.shape[0])
        with timer.stage("statistics"):
            stats = frame_statistics(frames)
        unusable = (
            any(n > 0 for n in stats.nonfinite_counts)
            or len(blank_frames(stats, self._settings.processing.gate)) == n_frames
        )
        if unusable:  # the gate says why; no later stage could mean anything
            return self._finish(base, [], stats, None, None, None, timer, dose, n_frames)

        flags: list[GateFlag] = []
        motion_record: MotionRecord | None = None
        ctf_record: CtfRecord | None = None
        correction: MotionCorrection | None = None
        calibration_flag = self._check_calibration(frames.shape[1:], movie_path)
        if calibration_flag is not None:
            return self._finish(
                base, [calibration_flag], stats, None, None, None, timer, dose, n_frames
            )
        dose_per_frame = self._dose_per_frame(dose, stats, optics, n_frames)
        try:
            with timer.stage("motion"):
                correction = self._correct_motion(frames, optics, dose_per_frame)
            for stage, seconds in correction.timings_s.items():
                timer.seconds[f"motion.{stage}"] = round(seconds, 4)
            motion_record = build_motion_record(
                correction, self._settings, optics.pixel_size_angstrom
            )
        except (ValueError, RuntimeError) as error:
            flags.append(_stage_error("motion", movie_path, error))
        if correction is not None:
            try:
                with timer.stage("ctf"):
                    estimate = self._estimate_ctf(correction, optics)
                ctf_record = CtfRecord.model_validate(estimate.to_dict())
            except (ValueError, RuntimeError) as error:
                flags.append(_stage_error("ctf", movie_path, error))
        restoration = None
        prior: tuple[float, float] | None = None
        picking = self._settings.processing.picking
        if correction is not None and ctf_record is not None and ctf_record.supported:
            if picking.enabled:
                prior = bfactor_bounds(
                    self._settings.processing.causal,
                    self._envelope_prior,
                    ctf=ctf_record,
                    motion=motion_record,
                    dose_e_per_a2=used_dose(dose, motion_record),
                    metadata=metadata,
                )
                try:
                    templates = None
                    if self._reference_coords is not None:
                        with timer.stage("templates"):  # projected on the first exposure only
                            templates = self._templates_for(optics.pixel_size_angstrom)
                    with timer.stage("restore_and_pick"):
                        restoration = restore_and_pick(
                            correction.dose_weighted_sum,
                            ctf=ctf_record,
                            optics=base,
                            pixel_size_angstrom=optics.pixel_size_angstrom,
                            settings=picking,
                            halves=(correction.even_sum, correction.odd_sum),
                            denoiser=self._denoiser() if picking.denoise else None,
                            bfactor_bounds=prior,
                            templates=templates,
                        )
                except (ValueError, RuntimeError) as error:
                    flags.append(_stage_error("picking", movie_path, error))
        return self._finish(
            base,
            flags,
            stats,
            motion_record,
            ctf_record,
            correction,
            timer,
            dose,
            n_frames,
            restoration,
            prior,
        )

    # --- stages -----------------------------------------------------------------------------

    def _optics(self, metadata: AcquisitionMetadata | None, pixel_size: float | None) -> _Optics:
        scope = self._settings.microscope
        md = metadata
        return _Optics(
            pixel_size_angstrom=pixel_size
            or (md.pixel_size_angstrom if md and md.pixel_size_angstrom else None)
            or scope.pixel_size_angstrom,
            voltage_kv=(md.voltage_kv if md and md.voltage_kv else None) or scope.voltage_kv,
            cs_mm=(md.spherical_aberration_mm if md and md.spherical_aberration_mm else None)
            or scope.spherical_aberration_mm,
            amplitude_contrast=scope.amplitude_contrast,
        )

    def _check_calibration(self, shape: tuple[int, ...], movie_path: str) -> GateFlag | None:
        for name, array in (
            ("gain reference", self._calibration.gain),
            ("defect mask", self._calibration.defect_mask),
        ):
            if array is not None and tuple(array.shape) != tuple(shape):
                return GateFlag(
                    code="calibration_mismatch",
                    severity="fail",
                    message=(
                        f"{movie_path}: frames are {shape[1]}x{shape[0]} px but the {name} is "
                        f"{array.shape[1]}x{array.shape[0]}: check detector.gain_rotation, "
                        "gain_flip and eer_upsampling"
                    ),
                )
        return None

    def _dose_per_frame(
        self,
        dose: float | None,
        stats: FrameStatistics,
        optics: _Optics,
        n_frames: int,
    ) -> float:
        """From the metadata, else measured from the counts (the gate then warns)."""
        if dose is not None and dose > 0:
            return dose / n_frames
        # counting detectors: a count is an electron (times counts_per_electron)
        per_electron = self._settings.detector.counts_per_electron
        means = np.asarray(stats.frame_means, dtype=np.float64)
        return float(np.nanmean(means)) / per_electron / optics.pixel_size_angstrom**2

    def _tensors(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        import torch

        if self._gain_tensor is None and self._calibration.gain is not None:
            # a copy: arrays from Ray's object store are read-only
            gain = np.array(self._calibration.gain, dtype=np.float32)
            self._gain_tensor = torch.as_tensor(gain, device=self._device)
        if self._defect_tensor is None and self._calibration.defect_mask is not None:
            defects = np.array(self._calibration.defect_mask, dtype=np.bool_)
            self._defect_tensor = torch.as_tensor(defects, device=self._device)
        return self._gain_tensor, self._defect_tensor

    def _correct_motion(
        self, frames: np.ndarray, optics: _Optics, dose_per_frame: float
    ) -> MotionCorrection:
        from causalscope.models.motion import correct_motion

        motion = self._settings.processing.motion
        gain, defects = self._tensors()
        return correct_motion(
            frames,
            pixel_size_angstrom=optics.pixel_size_angstrom,
            voltage_kv=optics.voltage_kv,
            dose_per_frame_e_per_a2=dose_per_frame,
            gain=gain,
            defect_mask=defects,
            patches=(motion.patches_x, motion.patches_y),
            bfactor_angstrom2=motion.bfactor_angstrom2,
            iterations=motion.iterations,
            tolerance_px=motion.tolerance_px,
            dose_weighting=self._settings.processing.dose_weighting,
            local=frames.shape[0] > 2 and motion.patches_x * motion.patches_y > 1,
            device=self._device,
        )

    def _estimate_ctf(self, correction: MotionCorrection, optics: _Optics) -> CtfEstimate:
        from causalscope.models.ctf_estimation import estimate_ctf

        return estimate_ctf(
            correction.ctf_sum,
            pixel_size_angstrom=optics.pixel_size_angstrom,
            voltage_kv=optics.voltage_kv,
            spherical_aberration_mm=optics.cs_mm,
            amplitude_contrast=optics.amplitude_contrast,
            noise_variance=correction.ctf_sum_noise_variance,
            **self._settings.processing.ctf.fit_options(
                tuple(correction.ctf_sum.shape[-2:]), optics.pixel_size_angstrom
            ),
        )

    def _finish(
        self,
        base: dict[str, object],
        flags: list[GateFlag],
        stats: FrameStatistics,
        motion: MotionRecord | None,
        ctf: CtfRecord | None,
        correction: MotionCorrection | None,
        timer: _Timer,
        dose: float | None,
        n_frames: int,
        restoration: Restoration | None = None,
        prior: tuple[float, float] | None = None,
    ) -> ExposureRecord:
        pixel_size = float(base["pixel_size_angstrom"])  # type: ignore[arg-type]
        with timer.stage("gate"):
            gate_flags = evaluate_gate(
                frames=stats,
                motion=motion,
                ctf=ctf,
                pixel_size_angstrom=pixel_size,
                metadata_dose_e_per_a2=dose,
                limits=self._settings.processing.gate,
            )
        all_flags = flags + gate_flags
        outputs: dict[str, str] = {}
        if correction is not None:
            with timer.stage("write"):
                outputs = write_outputs(
                    self._output_dir,
                    str(base["exposure_id"]),
                    correction,
                    pixel_size_angstrom=pixel_size,
                    ctf=ctf,
                    optics=base,
                )
                if restoration is not None and ctf is not None:
                    outputs.update(
                        write_restoration(
                            self._output_dir,
                            str(base["exposure_id"]),
                            restoration,
                            pixel_size_angstrom=pixel_size,
                            ctf=ctf,
                            optics=base,
                        )
                    )
        dose_used = used_dose(dose, motion)
        causal = exposure_inputs(
            self._settings.processing.causal,
            ctf=ctf,
            motion=motion,
            dose_e_per_a2=dose_used,
            metadata=base["metadata"],  # type: ignore[arg-type]
            restoration=restoration,
        )
        return ExposureRecord(
            status=gate_status(all_flags),
            flags=all_flags,
            dose_e_per_a2=dose_used,
            n_frames=n_frames,
            frames=stats,
            motion=motion,
            ctf=ctf,
            picking=restoration.record if restoration is not None else None,
            restoration=restoration_record(restoration, prior, self._envelope_prior),
            causal=causal,
            outputs=outputs,
            timings_s=dict(timer.seconds),
            **base,
        )


def _stage_error(stage: str, movie_path: str, error: Exception) -> GateFlag:
    return GateFlag(
        code=f"{stage}_error",
        severity="fail",
        message=f"{movie_path}: {stage} failed: {error}",
    )
