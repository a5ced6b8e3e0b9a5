"""The exposure worker's restoration and picking stage, and the files it writes.

After a supported CTF fit: the dose-weighted sum is Wiener-filtered with the spectral SNR fitted
to its own power spectrum (:func:`models.restoration.spectral_snr_from_fit`); with a denoiser,
the even and odd half sums are also Noise2Noise-denoised and their sum phase-flipped. Particles
are picked by normalised cross-correlation with projections of the session's reference when
one is set (:func:`load_reference` once per worker, :func:`reference_templates` once per pixel
size) on the denoised image when there is one, else on the Wiener-filtered one; without a
reference, by the learned picker on the dose-weighted sum (what it was trained on: the shipped
one, loaded once per worker and device, or the session's fine-tuned one), or by a difference
of Gaussians at the configured diameter on the denoised or Wiener-filtered image
(``picking.picker = "blob"``). When extraction is on, they are boxed from the dose-weighted
sum, phase-flipped, contrast-inverted and normalised as RELION expects.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from causalscope.models.optics import Optics
from causalscope.models.records import CtfRecord, PickingRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from causalscope.config import PickingSettings
    from causalscope.models.denoise import UNet
    from causalscope.models.picking import Picks
    from causalscope.models.picking.learned import PickerNet
    from causalscope.models.restoration import CtfParameters

__all__ = [
    "Restoration",
    "ctf_parameters",
    "load_reference",
    "pick",
    "picking_box_px",
    "reference_templates",
    "restore_and_pick",
    "wiener_restored",
    "write_restoration",
]


@dataclass(frozen=True)
class Restoration:
    """What the stage made: the restored micrograph, the picks and the particle boxes."""

    restored: torch.Tensor
    record: PickingRecord
    particles: np.ndarray | None
    denoised: torch.Tensor | None = None
    bfactor_fit_angstrom2: float = 0.0
    bfactor_used_angstrom2: float = 0.0
    excluded: torch.Tensor | None = None  # (h, w) bool: the areas not picked in


def load_reference(path: str | Path) -> np.ndarray:
    """The ``(n, 3)`` atom coordinates (Angstrom) of a PDB/mmCIF model or an MRC map.

    A map becomes one pseudo-atom per voxel above 2 sigma
    (:func:`daemon.formats.read_map_as_atoms`). Raises :class:`models.errors.FormatError`
    naming the file when it is missing, of an unknown kind or unreadable.
    """
    from causalscope.config.processing import REFERENCE_SUFFIXES, reference_kind
    from causalscope.daemon.formats import read_map_as_atoms, read_structure
    from causalscope.models.errors import FormatError

    path = Path(path)
    kind = reference_kind(path)
    if kind is None:
        raise FormatError(
            "Unknown reference format",
            f"{path}: expected an MRC map or a PDB/mmCIF model ({', '.join(REFERENCE_SUFFIXES)})",
            path=path,
        )
    if not path.is_file():
        raise FormatError("Reference not found", f"{path} does not exist", path=path)
    atoms = read_map_as_atoms(path) if kind == "map" else read_structure(path)
    return np.asarray(atoms.coords_angstrom, dtype=np.float64)


def picking_box_px(settings: PickingSettings, pixel_size_angstrom: float) -> int:
    """The extraction and template box: ``box_scale`` diameters, even, at least 16 px."""
    box = round(settings.box_scale * settings.particle_diameter_angstrom / pixel_size_angstrom / 2)
    return max(2 * box, 16)


def reference_templates(
    coords_angstrom: np.ndarray, settings: PickingSettings, pixel_size_angstrom: float
) -> torch.Tensor:
    """``(template_views, box, box)`` projections of the reference at this pixel size."""
    from causalscope.models.picking import project_templates

    return project_templates(
        coords_angstrom,
        pixel_size_angstrom=pixel_size_angstrom,
        box_px=picking_box_px(settings, pixel_size_angstrom),
        n_views=settings.template_views,
    )


def ctf_parameters(ctf: CtfRecord, optics: Optics) -> CtfParameters:
    from causalscope.models.restoration import CtfParameters

    return CtfParameters(
        defocus_u_angstrom=ctf.defocus_u_angstrom,
        defocus_v_angstrom=ctf.defocus_v_angstrom,
        defocus_angle_deg=ctf.defocus_angle_deg,
        phase_shift_deg=ctf.phase_shift_deg,
        **optics.ctf_keywords(),
    )


def wiener_restored(
    image: torch.Tensor,
    *,
    ctf: CtfRecord,
    optics: Optics,
    bfactor_bounds: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, float, float]:
    """``image`` Wiener-filtered with the SSNR of its own fit (its B raised to the lower of
    ``bfactor_bounds`` when below it), that fit's B and the B used."""
    import torch

    from causalscope.models.restoration import spectral_snr_from_fit, wiener_filter, with_bfactor

    parameters = ctf_parameters(ctf, optics)
    apix = optics.pixel_size_angstrom
    work = image.detach().to(torch.float32)
    own = spectral_snr_from_fit(work, pixel_size_angstrom=apix, **parameters.kwargs())
    ssnr = own
    if bfactor_bounds is not None and own.bfactor_angstrom2 < bfactor_bounds[0]:
        ssnr = with_bfactor(own, bfactor_bounds[0])
    restored = wiener_filter(work, pixel_size_angstrom=apix, ssnr=ssnr, **parameters.kwargs())
    return restored, own.bfactor_angstrom2, ssnr.bfactor_angstrom2


def restore_and_pick(
    image: torch.Tensor,
    *,
    ctf: CtfRecord,
    optics: Optics,
    settings: PickingSettings,
    halves: tuple[torch.Tensor, torch.Tensor] | None = None,
    denoiser: UNet | None = None,
    bfactor_bounds: tuple[float, float] | None = None,
    templates: torch.Tensor | None = None,
    picker: PickerNet | None = None,
) -> Restoration:
    """Restore ``image`` (the dose-weighted sum), pick, and box the particles.

    ``halves`` (even, odd) and ``denoiser`` together add the denoised, phase-flipped sum.
    ``templates`` ``(T, b, b)`` at the optics' pixel size (:func:`reference_templates`):
    pick by template matching instead of blobs. ``picker``: a session's fine-tuned learned
    picker in place of the shipped one.
    ``bfactor_bounds`` (from the causal model's envelope prior for this exposure's factors):
    an own SSNR fit whose B lies below the lower bound is raised to it before the Wiener filter
    uses it (see :func:`models.causal.prior_bfactor`).
    """
    import torch

    from causalscope.models.restoration import phase_flip

    parameters = ctf_parameters(ctf, optics)
    pixel_size_angstrom = optics.pixel_size_angstrom
    work = image.detach().to(torch.float32)
    restored, bfactor_fit, bfactor_used = wiener_restored(
        work, ctf=ctf, optics=optics, bfactor_bounds=bfactor_bounds
    )
    denoised = None
    if halves is not None and denoiser is not None:
        from causalscope.models.denoise import denoise_half_sums

        with torch.inference_mode():
            summed = denoise_half_sums(
                halves[0].detach().to(torch.float32), halves[1].detach().to(torch.float32), denoiser
            )
        denoised = phase_flip(
            summed, pixel_size_angstrom=pixel_size_angstrom, **parameters.kwargs()
        )
    diameter = settings.particle_diameter_angstrom
    # restored (Wiener or phase-flipped, so CTF-corrected as pick_template wants), the protein
    # is dark on a bright background, as in the raw micrograph
    picked_on = denoised if denoised is not None else restored
    if templates is None and settings.picker == "learned":
        picked_on = work
    excluded: dict[str, float] | None = None
    excluded_area: torch.Tensor | None = None
    n_excluded = 0
    mask = None
    # on the sum of counts (the restored images have lost the local mean it reads); a sum
    # without a positive mean (not counts) is left unmasked: its record says None
    if settings.exclude and float(work.mean()) > 0:
        from causalscope.models.picking.exclusion import exclusion_mask

        mask = exclusion_mask(
            work,
            pixel_size_angstrom=pixel_size_angstrom,
            particle_diameter_angstrom=diameter,
            dense_fraction=settings.exclude_contrast,
            thin_fraction=settings.exclude_contrast,
        )
    counted = None if mask is None else mask.keeps
    picks = pick(
        picked_on,
        templates,
        settings,
        pixel_size_angstrom,
        model=picker,
        counted=counted,
        ice_free=None if mask is None else mask.thin,
    )
    if mask is not None:
        picks, n_excluded = mask.drop(work, picks, diameter_px=diameter / pixel_size_angstrom)
        excluded = {k: round(v, 4) for k, v in mask.fractions.items()}
        excluded_area = mask.mask
    xy = picks.xy_px.detach().cpu()
    scores = picks.scores.detach().cpu()
    box, particles = _extract(work, xy, parameters, settings, pixel_size_angstrom)
    record = PickingRecord(
        n_particles=len(xy),
        particle_diameter_angstrom=diameter,
        picker="template" if templates is not None else settings.picker,
        mean_score=float(scores.mean()) if len(scores) else None,
        threshold=None if picks.threshold is None else round(picks.threshold, 4),
        box_px=box,
        picks_xy_px=np.round(xy.numpy().astype(np.float64), 2).tolist(),
        scores=np.round(scores.numpy().astype(np.float64), 4).tolist(),
        excluded_fractions=excluded,
        picks_excluded=n_excluded,
        fine_tuned=templates is None and settings.picker == "learned" and picker is not None,
    )
    return Restoration(
        restored,
        record,
        particles,
        denoised,
        bfactor_fit_angstrom2=bfactor_fit,
        bfactor_used_angstrom2=bfactor_used,
        excluded=excluded_area,
    )


def pick(
    image: torch.Tensor,
    templates: torch.Tensor | None,
    settings: PickingSettings,
    pixel_size_angstrom: float,
    *,
    model: PickerNet | None = None,
    counted: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ice_free: torch.Tensor | None = None,
) -> Picks:
    """Template matching when templates are given, else the configured picker (learned on the
    dose-weighted sum, by ``model`` or the shipped one, its automatic cut counting particles
    on the peaks ``counted`` keeps, the background of the ice measured apart from the areas
    ``ice_free``; or blobs)."""
    from causalscope.models.picking import pick_blobs, pick_template

    if templates is None and settings.picker == "learned":
        from causalscope.models.picking.learned import pick_learned

        return pick_learned(
            image,
            model if model is not None else _shipped_picker(str(image.device)),
            diameter_px=min(
                max(4.0, settings.particle_diameter_angstrom / pixel_size_angstrom),
                float(min(image.shape)),
            ),
            threshold=settings.learned_threshold,
            counted=counted,
            ice_free=ice_free,
        )
    if templates is not None:
        return pick_template(
            image,
            templates.to(image.device),
            pixel_size_angstrom=pixel_size_angstrom,
            particle_diameter_angstrom=settings.particle_diameter_angstrom,
            threshold=settings.threshold,
        )
    return pick_blobs(
        image,
        pixel_size_angstrom=pixel_size_angstrom,
        particle_diameter_angstrom=settings.particle_diameter_angstrom,
        threshold=settings.threshold,
    )


@functools.lru_cache(maxsize=4)
def _shipped_picker(device: str) -> PickerNet:
    """The shipped learned picker on ``device``, loaded once per worker process."""
    from causalscope.models.picking.learned import default_picker

    return default_picker(device=device)


def _extract(
    image: torch.Tensor,
    xy: torch.Tensor,
    parameters: CtfParameters,
    settings: PickingSettings,
    pixel_size_angstrom: float,
) -> tuple[int | None, np.ndarray | None]:
    """The box size and the boxed particles, phase-flipped with dark protein made bright;
    (None, None) when extraction is off, nothing was picked or the box would not fit."""
    from causalscope.models.picking import extract_particles

    if not settings.extract or not len(xy):
        return None, None
    box = picking_box_px(settings, pixel_size_angstrom)
    if box >= min(image.shape[-2:]):
        return None, None
    boxes = extract_particles(
        image,
        xy.to(image.device),
        box_px=box,
        pixel_size_angstrom=pixel_size_angstrom,
        ctf=parameters,
        invert_contrast=True,
    )
    return box, boxes.detach().cpu().numpy().astype(np.float32)


def write_restoration(
    output_dir: Path,
    exposure_id: str,
    restoration: Restoration,
    *,
    ctf: CtfRecord,
    optics: Optics,
    float16: bool = False,
) -> dict[str, str]:
    """``micrographs/<id>_wiener.mrc`` (and ``_denoised.mrc``; as float16 where ``float16``
    allows, :func:`daemon.formats.write_micrograph`), ``thumbnails/<id>_picks.png`` (the
    restored micrograph with its picks circled and the areas not picked in tinted) and, with
    particles, ``particles/<id>.mrcs`` + ``.star``."""
    import pandas as pd

    from causalscope.daemon.formats import write_micrograph
    from causalscope.daemon.formats.particles_star import write_particle_stack, write_particles_star
    from causalscope.daemon.formats.png import write_png
    from causalscope.models.thumbnails import picks_thumbnail

    pixel_size_angstrom = optics.pixel_size_angstrom
    outputs: dict[str, str] = {}
    record = restoration.record
    picture = picks_thumbnail(
        restoration.restored,
        np.asarray(record.picks_xy_px, dtype=np.float64).reshape(-1, 2),
        diameter_px=record.particle_diameter_angstrom / pixel_size_angstrom,
        excluded=restoration.excluded,
    )
    picks_png = write_png(output_dir / "thumbnails" / f"{exposure_id}_picks.png", picture)
    outputs["picks_thumbnail"] = str(picks_png)
    images = {"restored": ("_wiener", restoration.restored)}
    if restoration.denoised is not None:
        images["denoised"] = ("_denoised", restoration.denoised)
    for kind, (suffix, tensor) in images.items():
        path = output_dir / "micrographs" / f"{exposure_id}{suffix}.mrc"
        image = tensor.detach().cpu().numpy()
        write_micrograph(path, image, pixel_size_angstrom=pixel_size_angstrom, float16=float16)
        outputs[kind] = str(path)
    particles = restoration.particles
    if particles is None or record.box_px is None:
        return outputs
    stack = output_dir / "particles" / f"{exposure_id}.mrcs"
    names = write_particle_stack(stack, particles, pixel_size_angstrom=pixel_size_angstrom)
    xy = np.asarray(record.picks_xy_px, dtype=np.float64).reshape(-1, 2)
    table = pd.DataFrame(
        {
            "x_px": xy[:, 0],
            "y_px": xy[:, 1],
            "image_name": names,
            "micrograph_name": str(output_dir / "micrographs" / f"{exposure_id}_DW.mrc"),
            "defocus_u_angstrom": ctf.defocus_u_angstrom,
            "defocus_v_angstrom": ctf.defocus_v_angstrom,
            "defocus_angle_deg": ctf.defocus_angle_deg,
            "phase_shift_deg": ctf.phase_shift_deg,
            "figure_of_merit": record.scores,
        }
    )
    star = write_particles_star(
        output_dir / "particles" / f"{exposure_id}.star",
        {
            "pixel_size_angstrom": pixel_size_angstrom,
            "image_size_px": record.box_px,
            **optics.ctf_keywords(),
            "phase_flipped": True,
        },
        table,
    )
    outputs["particles"] = str(stack)
    outputs["particles_star"] = str(star)
    return outputs
