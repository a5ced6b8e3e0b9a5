"""The exposure worker's stages: typed values in, typed values out.

Each stage is a callable object made once per worker from the settings sections it reads; it
takes one input value of :mod:`actors._values` and returns one output value.

============ ================ ================== =============================================
stage        input            output             what it does
============ ================ ================== =============================================
motion       MotionInput      MotionOutput       gain/defect correction, global and local
                                                 alignment, dose weighting, the motion record
ctf          CtfInput         CtfOutput          CTF estimation on the aligned sum
picking      RestoreInput     RestoreOutput      Wiener filter, denoising, picking, extraction
gate         GateInput        GateOutput         the sanity gate over frames, motion and CTF
outputs      OutputInput      Outputs            micrographs, trajectory, thumbnails, particles
============ ================ ================== =============================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from causalscope.actors._causal import bfactor_bounds
from causalscope.actors._outputs import write_sums, write_thumbnails
from causalscope.actors._records import build_motion_record
from causalscope.actors._restore import (
    load_reference,
    reference_templates,
    restore_and_pick,
    write_restoration,
)
from causalscope.actors._values import (
    CalibrationMismatch,
    CtfInput,
    CtfOutput,
    GateInput,
    GateOutput,
    MotionInput,
    MotionOutput,
    OutputInput,
    Outputs,
    RestoreInput,
    RestoreOutput,
    Stage,
)
from causalscope.models.gate import evaluate_gate, gate_status
from causalscope.models.optics import DetectorCalibration
from causalscope.models.records import CtfRecord

if TYPE_CHECKING:
    import torch

    from causalscope.config import (
        CausalSettings,
        CtfSettings,
        DetectorSettings,
        GateSettings,
        MotionSettings,
        PickingSettings,
    )
    from causalscope.models.causal.envelope import EnvelopePrior
    from causalscope.models.denoise import UNet
    from causalscope.models.picking.learned import PickerNet

__all__ = ["CtfStage", "GateStage", "MotionStage", "OutputStage", "RestoreStage"]


class MotionStage:
    """Gain/defect correction and motion correction (:func:`models.motion.correct_motion`);
    with ``halves``, the even and the odd frames are also aligned each on their own (for
    Delta-Repro's drift)."""

    name = "motion"

    def __init__(
        self,
        *,
        motion: MotionSettings,
        dose_weighting: bool,
        detector: DetectorSettings,
        calibration: DetectorCalibration,
        device: str,
        halves: bool = False,
    ) -> None:
        self._halves = halves
        self._motion = motion
        self._dose_weighting = dose_weighting
        self._detector = detector
        self._calibration = calibration
        self._device = device
        self._tensors: tuple[torch.Tensor | None, torch.Tensor | None] | None = None

    def calibration_mismatch(self, value: MotionInput) -> str | None:
        """Why the gain reference or defect mask cannot correct these frames, or None."""
        problem = self._calibration.mismatch(tuple(value.frames.shape[1:]))
        if problem is None:
            return None
        return f"{problem}: check detector.gain_rotation, gain_flip and eer_upsampling"

    def __call__(self, value: MotionInput, /) -> MotionOutput:
        from causalscope.models.motion import correct_motion

        problem = self.calibration_mismatch(value)
        if problem is not None:
            raise CalibrationMismatch(problem)
        optics, motion = value.optics, self._motion
        dose_per_frame = self._dose_per_frame(value)
        gain, defects = self._calibration_tensors()
        correction = correct_motion(
            value.frames,
            pixel_size_angstrom=optics.pixel_size_angstrom,
            voltage_kv=optics.voltage_kv,
            dose_per_frame_e_per_a2=dose_per_frame,
            gain=gain,
            defect_mask=defects,
            patches=(motion.patches_y, motion.patches_x),  # (rows, columns)
            bfactor_angstrom2=motion.bfactor_angstrom2,
            iterations=motion.iterations,
            tolerance_px=motion.tolerance_px,
            patch_iterations=motion.patch_iterations,
            dose_weighting=self._dose_weighting,
            local=value.frames.shape[0] > 2 and motion.patches_x * motion.patches_y > 1,
            device=self._device,
            halves=self._halves,
        )
        record = build_motion_record(
            correction,
            detector=self._detector,
            motion=motion,
            pixel_size_angstrom=optics.pixel_size_angstrom,
        )
        return MotionOutput(correction, record, dose_per_frame)

    def _dose_per_frame(self, value: MotionInput) -> float:
        """From the metadata, else measured from the counts (the gate then warns)."""
        dose, n_frames = value.dose_e_per_a2, value.frames.shape[0]
        if dose is not None and dose > 0:
            return dose / n_frames
        # counting detectors: a count is an electron (times counts_per_electron)
        means = np.asarray(value.statistics.frame_means, dtype=np.float64)
        per_electron = self._detector.counts_per_electron
        return float(np.nanmean(means)) / per_electron / value.optics.pixel_size_angstrom**2

    def _calibration_tensors(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The gain and defects on the device, made on first use."""
        import torch

        if self._tensors is None:
            gain = defects = None
            if self._calibration.gain is not None:
                # a copy: arrays from Ray's object store are read-only
                array = np.array(self._calibration.gain, dtype=np.float32)
                gain = torch.as_tensor(array, device=self._device)
            if self._calibration.defect_mask is not None:
                mask = np.array(self._calibration.defect_mask, dtype=np.bool_)
                defects = torch.as_tensor(mask, device=self._device)
            self._tensors = (gain, defects)
        return self._tensors


class CtfStage:
    """CTF estimation (:func:`models.ctf_estimation.estimate_ctf`)."""

    name = "ctf"

    def __init__(self, *, ctf: CtfSettings) -> None:
        self._ctf = ctf

    def __call__(self, value: CtfInput, /) -> CtfOutput:
        from causalscope.models.ctf_estimation import estimate_ctf

        optics = value.optics
        estimate = estimate_ctf(
            value.image,
            pixel_size_angstrom=optics.pixel_size_angstrom,
            noise_variance=value.noise_variance,
            **optics.ctf_keywords(),
            **self._ctf.fit_options(tuple(value.image.shape[-2:]), optics.pixel_size_angstrom),
        )
        return CtfOutput(CtfRecord.model_validate(estimate.to_dict()))


class GateStage:
    """The sanity gate (:func:`models.gate.evaluate_gate`)."""

    name = "gate"

    def __init__(self, *, limits: GateSettings) -> None:
        self._limits = limits

    def __call__(self, value: GateInput, /) -> GateOutput:
        found = evaluate_gate(
            frames=value.statistics,
            motion=value.motion,
            ctf=value.ctf,
            pixel_size_angstrom=value.optics.pixel_size_angstrom,
            metadata_dose_e_per_a2=value.dose_e_per_a2,
            limits=self._limits,
        )
        flags = [*value.flags, *found]
        return GateOutput(tuple(flags), gate_status(flags))


class RestoreStage:
    """Wiener filter, Noise2Noise denoising, picking and extraction (:mod:`actors._restore`).

    The reference (``picking.reference``) is read when the stage is made; its templates are
    projected once per pixel size. The denoiser, the learned picker and the causal model's
    envelope prior can be replaced between exposures.

    Raises
    ------
    FormatError
        The picking reference is missing or unreadable.
    """

    name = "picking"

    def __init__(self, *, picking: PickingSettings, causal: CausalSettings, device: str) -> None:
        self.picking = picking
        self._causal = causal
        self._device = device
        self._reference: np.ndarray | None = None
        if picking.enabled and picking.reference is not None:
            self._reference = load_reference(picking.reference)
        self._templates: dict[float, torch.Tensor] = {}
        self._denoiser: UNet | None = None
        self._picker: PickerNet | None = None  # None: the shipped learned picker
        self.prior: EnvelopePrior | None = None

    def pickers_for(
        self, pixel_size_angstrom: float
    ) -> tuple[torch.Tensor | None, PickerNet | None]:
        """What this stage picks with, for picking elsewhere as it does (Delta-Repro's
        halves): the templates (None when picking is off or by blobs or the learned picker)
        and the session's fine-tuned learned picker (None: the shipped one)."""
        if not self.picking.enabled:
            return None, self._picker
        return self.templates_for(pixel_size_angstrom), self._picker

    @property
    def uses_templates(self) -> bool:
        """Whether it picks by templates of a reference (else by blobs)."""
        return self._reference is not None

    def templates_for(self, pixel_size_angstrom: float) -> torch.Tensor | None:
        """The reference's projections at this pixel size; None when picking blobs."""
        if self._reference is None:
            return None
        key = round(pixel_size_angstrom, 6)
        if key not in self._templates:
            templates = reference_templates(self._reference, self.picking, pixel_size_angstrom)
            self._templates[key] = templates.to(self._device)
        return self._templates[key]

    def denoiser(self) -> UNet:
        """The Noise2Noise model, loaded once (the shipped one, or a session's fine-tuned)."""
        if self._denoiser is None:
            from causalscope.models.denoise import default_model

            self._denoiser = default_model(device=self._device).eval()
        return self._denoiser

    def set_weights(self, kind: str, weights: bytes) -> None:
        """Use these ``"denoiser"`` or ``"picker"`` weights from the next exposure on."""
        if kind == "denoiser":
            from causalscope.models.denoise import load_weights

            self._denoiser = load_weights(weights, device=self._device).eval()
        elif kind == "picker":
            from causalscope.models.picking.learned import load_picker

            self._picker = load_picker(weights, device=self._device)
        else:
            raise ValueError(f'kind must be "denoiser" or "picker", got {kind!r}')

    def __call__(self, value: RestoreInput, /) -> RestoreOutput:
        optics = value.optics
        bounds = bfactor_bounds(
            self._causal,
            self.prior,
            ctf=value.ctf,
            motion=value.motion,
            dose_e_per_a2=value.dose_e_per_a2,
            metadata=value.metadata,
        )
        restoration = restore_and_pick(
            value.image,
            ctf=value.ctf,
            optics=optics,
            settings=self.picking,
            halves=value.halves,
            denoiser=self.denoiser() if self.picking.denoise else None,
            bfactor_bounds=bounds,
            templates=self.templates_for(optics.pixel_size_angstrom),
            picker=self._picker,
        )
        return RestoreOutput(restoration, bounds)


class OutputStage:
    """Micrographs (MRC; float16 where ``float16`` allows), trajectory (STAR), thumbnails
    (PNG), restored images and particles, under ``output_dir``; an OSError (a full disk)
    propagates. The worker writes the two parts apart (:meth:`write_sums` as soon as the
    motion is done, :meth:`write_results` after the restoration); a call writes both."""

    name = "outputs"

    def __init__(self, *, output_dir: Path, float16: bool = False) -> None:
        # the writers and what they load (starfile and pandas: 0.5 s) are imported with the
        # worker, not by its first exposure's files
        import causalscope.daemon.formats  # noqa: F401

        self.output_dir = Path(output_dir)
        self.float16 = float16

    def __call__(self, value: OutputInput, /) -> Outputs:
        return Outputs({**self.write_sums(value).files, **self.write_results(value).files})

    def write_sums(self, value: OutputInput) -> Outputs:
        """The motion's micrographs and trajectory (``value``'s CTF and restoration unread)."""
        correction = value.motion.correction
        return Outputs(
            write_sums(
                self.output_dir,
                value.exposure_id,
                correction,
                optics=value.optics,
                float16=self.float16,
            )
        )

    def write_results(self, value: OutputInput) -> Outputs:
        """The thumbnails, and the restored images and particles when there are some."""
        files = write_thumbnails(
            self.output_dir,
            value.exposure_id,
            value.motion.correction,
            ctf=value.ctf,
            optics=value.optics,
        )
        if value.restoration is not None and value.ctf is not None:
            files.update(
                write_restoration(
                    self.output_dir,
                    value.exposure_id,
                    value.restoration,
                    ctf=value.ctf,
                    optics=value.optics,
                    float16=self.float16,
                )
            )
        return Outputs(files)


if TYPE_CHECKING:  # mypy checks that each stage is a Stage of its input and output values

    def _stages(
        motion: MotionStage,
        ctf: CtfStage,
        restore: RestoreStage,
        gate: GateStage,
        outputs: OutputStage,
    ) -> tuple[
        Stage[MotionInput, MotionOutput],
        Stage[CtfInput, CtfOutput],
        Stage[RestoreInput, RestoreOutput],
        Stage[GateInput, GateOutput],
        Stage[OutputInput, Outputs],
    ]:
        return motion, ctf, restore, gate, outputs
