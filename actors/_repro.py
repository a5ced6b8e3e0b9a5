"""What the exposure worker measures for the scores: Delta-Repro's refits of the CTF and the
picks on the even and odd half sums (:mod:`models.scoring.repro`), and the micrograph's triage
from the image alone (:mod:`models.triage`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from causalscope.models.parallel import map_pieces, small_images
from causalscope.models.records import CtfRecord, ReproRecord, TriageRecord
from causalscope.models.scoring.repro import (
    HalfEstimate,
    defocus_scale_angstrom,
    delta_repro,
    shift_scale_angstrom,
    trajectory_difference_px,
    worst_direction_difference,
)
from causalscope.models.units import electron_wavelength_angstrom

if TYPE_CHECKING:
    import numpy as np
    import torch

    from causalscope.config import CtfSettings, PickingSettings
    from causalscope.models.optics import Optics
    from causalscope.models.picking.learned import PickerNet

__all__ = ["ReproStage", "triage_binned", "triage_record"]


class ReproStage:
    """Refit each half sum's CTF (as the CTF stage does, over the settings' whole defocus
    range by default: a half that finds another defocus than its twin did not reproduce it;
    ``window_um`` searches only that close to the whole exposure's defocus; where the tile is
    ``"auto"``, in one pass at the tile the whole exposure's fit called for,
    :func:`models.ctf_estimation.auto_box_px`) and count its
    picks (blobs or templates, as the picking stage does, on the half's Wiener-filtered
    image); with the halves' own trajectories (``half_shifts_px``: the even and the odd
    frames aligned each on their own by the motion stage) also compare the drift. A half's
    defocus counts even where its rings alone would not support a fit; its fit resolution
    only where they do. The differences are counted in units of
    :func:`models.scoring.repro.defocus_scale_angstrom` and
    :func:`models.scoring.repro.shift_scale_angstrom` at ``resolution_angstrom``."""

    name = "repro"

    def __init__(
        self,
        *,
        ctf: CtfSettings,
        picking: PickingSettings,
        resolution_angstrom: float = 3.0,
        window_um: float | None = None,
    ) -> None:
        self._ctf = ctf
        self._picking = picking
        self._resolution_angstrom = resolution_angstrom
        self._window_um = window_um

    def __call__(
        self,
        halves: tuple[torch.Tensor, torch.Tensor],
        *,
        ctf: CtfRecord,
        optics: Optics,
        templates: torch.Tensor | None,
        half_shifts_px: tuple[np.ndarray, np.ndarray] | None = None,
        whole: tuple[torch.Tensor, float | None] | None = None,
        picker: PickerNet | None = None,
    ) -> ReproRecord | None:
        """``whole``: the CTF sum the exposure's ``ctf`` was fitted on and its per-pixel
        noise variance, for the resampled-noise refit; ``picker``: the session's learned
        picker (None: the shipped one)."""
        from causalscope.models.ctf_estimation import auto_box_px, estimate_ctf
        from causalscope.models.ctf_estimation.estimate import AUTO_FIRST_BOX_PX

        apix = optics.pixel_size_angstrom
        options = self._ctf.fit_options(tuple(halves[0].shape[-2:]), apix)
        if self._window_um is not None:
            whole_um = 0.5e-4 * (ctf.defocus_u_angstrom + ctf.defocus_v_angstrom)
            options["defocus_min_um"] = max(0.05, whole_um - self._window_um)
            options["defocus_max_um"] = whole_um + self._window_um
        if options["box_px"] == "auto":
            # one pass at the tile the whole exposure's fit called for (the same spectral
            # sampling for the halves and the resampled noise as for the whole, and half the
            # periodograms of "auto"'s two passes on large images)
            options["box_px"] = (
                auto_box_px(
                    max(ctf.defocus_u_angstrom, ctf.defocus_v_angstrom),
                    short_side_px=min(halves[0].shape[-2:]),
                    pixel_size_angstrom=apix,
                    voltage_kv=optics.voltage_kv,
                    max_resolution_angstrom=options["max_resolution_angstrom"],
                )
                if ctf.supported
                else AUTO_FIRST_BOX_PX
            )
        tile = int(options["box_px"])

        def estimate(half: torch.Tensor) -> HalfEstimate:
            image = half.detach().float()
            fit = CtfRecord.model_validate(
                estimate_ctf(
                    image, pixel_size_angstrom=apix, **optics.ctf_keywords(), **options
                ).to_dict()
            )
            picks = None
            if self._picking.enabled:
                picks = _count_picks(image, ctf, optics, self._picking, templates, picker)
            return HalfEstimate(
                defocus_angstrom=0.5 * (fit.defocus_u_angstrom + fit.defocus_v_angstrom),
                defocus_sigma_angstrom=fit.defocus_sigma_angstrom,
                fit_resolution_angstrom=fit.fit_resolution_angstrom if fit.supported else None,
                n_particles=picks,
                astigmatism_angstrom=fit.defocus_u_angstrom - fit.defocus_v_angstrom,
                astigmatism_angle_deg=fit.defocus_angle_deg,
            )

        jobs: list[Callable[[], Any]] = [
            functools.partial(estimate, halves[0]),
            functools.partial(estimate, halves[1]),
        ]
        if whole is not None:
            jobs.append(functools.partial(_noise_refit, *whole, optics=optics, options=options))
        if small_images(*halves[0].shape[-2:]):
            # independent refits of small operations: shared between Python threads, each on
            # one torch thread (models.parallel); at 1024^2 0.60-0.65 s -> 0.45 s
            results = map_pieces(
                lambda job: job(), jobs, device=halves[0].device, name="repro", one_thread=True
            )
        else:
            results = [job() for job in jobs]
        even, odd, *rest = results
        noisy = rest[0] if rest else None
        drift = None
        if half_shifts_px is not None:
            drift = apix * trajectory_difference_px(*half_shifts_px)
        result = delta_repro(
            even,
            odd,
            frequency_step_per_angstrom=1.0 / (tile * apix),
            defocus_scale_angstrom=defocus_scale_angstrom(
                resolution_angstrom=self._resolution_angstrom,
                wavelength_angstrom=electron_wavelength_angstrom(optics.voltage_kv),
            ),
            whole_supported=ctf.supported,
            drift_difference_angstrom=drift,
            shift_scale_angstrom=shift_scale_angstrom(
                resolution_angstrom=self._resolution_angstrom
            ),
            noise_difference_angstrom=None
            if noisy is None
            else worst_direction_difference(
                (ctf.defocus_u_angstrom, ctf.defocus_v_angstrom, ctf.defocus_angle_deg),
                (noisy.defocus_u_angstrom, noisy.defocus_v_angstrom, noisy.defocus_angle_deg),
            ),
        )
        if result is None:
            return None
        return ReproRecord(
            defocus_even_angstrom=even.defocus_angstrom,
            defocus_odd_angstrom=odd.defocus_angstrom,
            fit_resolution_even_angstrom=even.fit_resolution_angstrom,
            fit_resolution_odd_angstrom=odd.fit_resolution_angstrom,
            particles_even=even.n_particles,
            particles_odd=odd.n_particles,
            z_defocus=result.z_defocus,
            z_fit_resolution=result.z_fit_resolution,
            z_particles=result.z_particles,
            delta_repro=result.delta_repro,
            drift_difference_angstrom=drift,
            z_drift=result.z_drift,
            defocus_noise_angstrom=None
            if noisy is None
            else 0.5 * (noisy.defocus_u_angstrom + noisy.defocus_v_angstrom),
            z_noise=result.z_noise,
        )


#: the resampled noise is the same draw for every exposure (a restart scores it the same)
_NOISE_SEED = 20260101


def _noise_refit(
    image: torch.Tensor, noise_variance: float | None, *, optics: Optics, options: dict[str, Any]
) -> CtfRecord | None:
    """The CTF of ``image`` with fresh noise of variance ``noise_variance`` per pixel added,
    fitted as the CTF stage fits (told of the doubled noise); None without a noise estimate."""
    import torch

    from causalscope.models.ctf_estimation import estimate_ctf

    if noise_variance is None or not noise_variance > 0:
        return None
    work = image.detach().float()
    generator = torch.Generator(device=work.device).manual_seed(_NOISE_SEED)
    noise = torch.randn(work.shape, generator=generator, device=work.device, dtype=work.dtype)
    noisy = work + math.sqrt(noise_variance) * noise
    fit = estimate_ctf(
        noisy,
        pixel_size_angstrom=optics.pixel_size_angstrom,
        noise_variance=2.0 * noise_variance,
        **optics.ctf_keywords(),
        **options,
    )
    return CtfRecord.model_validate(fit.to_dict())


def _count_picks(
    image: torch.Tensor,
    ctf: CtfRecord,
    optics: Optics,
    settings: PickingSettings,
    templates: torch.Tensor | None,
    picker: PickerNet | None,
) -> int:
    """Particles the exposure's picker finds on the half sum ``image``, given what it is given
    on the whole: the learned picker (``picker``, else the shipped one) the sum itself, the
    others the sum Wiener-filtered with the exposure's CTF."""
    from causalscope.actors._restore import pick, wiener_restored

    apix = optics.pixel_size_angstrom
    if templates is None and settings.picker == "learned":
        return len(pick(image, None, settings, apix, model=picker).scores)
    restored, _, _ = wiener_restored(image, ctf=ctf, optics=optics)
    return len(pick(restored, templates, settings, apix).scores)


#: the triage's statistics are calibrated on fields at least this wide (real micrographs are
#: 3,000-6,000 A); on a narrower one it says nothing
TRIAGE_MIN_FIELD_ANGSTROM = 2000.0
#: the triage works on the micrograph binned to about this sampling (its statistics are in
#: Angstrom; 16x fewer pixels at 1 A/px), as on the real micrographs it was checked on
TRIAGE_PIXEL_ANGSTROM = 4.0
#: the crystalline-ice test's windows at full sampling: up to this many a side, this wide
ICE_WINDOWS = 2
ICE_WINDOW_PX = 512


def triage_record(image: torch.Tensor, *, pixel_size_angstrom: float) -> TriageRecord | None:
    """The micrograph's triage (:func:`models.triage.classify_features`) as a record; None for
    a field narrower than :data:`TRIAGE_MIN_FIELD_ANGSTROM`.

    The statistics come from the micrograph binned to about :data:`TRIAGE_PIXEL_ANGSTROM`
    (:func:`triage_binned`), but the crystalline-ice test, which the binning puts beyond
    Nyquist, from windows of :data:`ICE_WINDOW_PX` (up to :data:`ICE_WINDOWS` a side) spread
    over the field at full sampling, where that reaches the ice's 3.35-4.05 A: the window
    with the brightest spot speaks (crystalline domains of 50-150 nm need not cover any)."""
    import dataclasses

    from causalscope.models.triage import classify_features, triage_features, windowed_ice

    if min(image.shape[-2:]) * pixel_size_angstrom < TRIAGE_MIN_FIELD_ANGSTROM:
        return None
    work, apix = triage_binned(image, pixel_size_angstrom=pixel_size_angstrom)
    features = triage_features(work, pixel_size_angstrom=apix)
    if features.ice_spot_ratio is None:
        full = image.detach().float().cpu().numpy()
        spot, ring = windowed_ice(
            full, pixel_size_angstrom=pixel_size_angstrom, side_px=ICE_WINDOW_PX,
            per_side=ICE_WINDOWS,
        )  # fmt: skip
        features = dataclasses.replace(features, ice_spot_ratio=spot, ice_ring_ratio=ring)
    found = classify_features(features, side_px=min(work.shape))
    return TriageRecord(
        label=found.label,
        p_usable=float(found.scores.get("usable", 0.0)),
        scores={k: float(v) for k, v in found.scores.items()},
        reason=found.reason,
    )


def triage_binned(image: torch.Tensor, *, pixel_size_angstrom: float) -> tuple[np.ndarray, float]:
    """``(image, pixel size)``: ``image`` binned by a whole factor to about
    :data:`TRIAGE_PIXEL_ANGSTROM` (as it is when finer), float32 on the CPU.

    The bins are block means. They keep white noise white, and the dose-weighted sum's noise
    is white (its weights' squares sum to 1 at every frequency), so the floor the triage's
    statistics divide by is the one a Fourier binning leaves; the signal at 1/200-1/20 A that
    they measure loses 0-12 % of its power (``sinc^2``; their ratio to the floor moves by under
    2 % on the simulator's scenes). A 4096 px sum at 1 A/px bins in 6 ms, against 35 ms for
    its Fourier transform alone.
    """
    import torch.nn.functional as F

    factor = max(1, int(TRIAGE_PIXEL_ANGSTROM // pixel_size_angstrom))
    work = image.detach().float()
    if factor > 1:
        h = work.shape[-2] // factor // 2 * 2 * factor  # an even binned size
        w = work.shape[-1] // factor // 2 * 2 * factor
        work = F.avg_pool2d(work[None, None, :h, :w], factor)[0, 0]
    return work.cpu().numpy(), pixel_size_angstrom * factor
