"""What an exposure worker writes: micrographs (MRC), the trajectory (RELION motion STAR) and
thumbnails (PNG), through the project's atomic writers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from causalscope.models.optics import Optics
from causalscope.models.records import CtfRecord

if TYPE_CHECKING:
    from causalscope.models.motion import MotionCorrection

__all__ = ["write_sums", "write_thumbnails"]


def write_sums(
    output_dir: Path,
    exposure_id: str,
    correction: MotionCorrection,
    *,
    optics: Optics,
    float16: bool = False,
) -> dict[str, str]:
    """The motion's micrographs (the aligned, dose-weighted, even and odd sums; as float16
    where ``float16`` allows, :func:`daemon.formats.write_micrograph`) and its trajectory; an
    OSError (a full disk) propagates."""
    from causalscope.daemon.formats import write_micrograph, write_motion_star

    pixel_size_angstrom = optics.pixel_size_angstrom
    micrographs = output_dir / "micrographs"
    images = {
        "aligned_sum": ("", correction.aligned_sum),
        "dose_weighted_sum": ("_DW", correction.dose_weighted_sum),
        "even_sum": ("_EVN", correction.even_sum),
        "odd_sum": ("_ODD", correction.odd_sum),
    }
    outputs: dict[str, str] = {}
    for kind, (suffix, tensor) in images.items():
        path = micrographs / f"{exposure_id}{suffix}.mrc"
        image = tensor.detach().cpu().numpy()
        write_micrograph(path, image, pixel_size_angstrom=pixel_size_angstrom, float16=float16)
        outputs[kind] = str(path)
    height, width = (int(n) for n in correction.aligned_sum.shape[-2:])
    local = correction.local_model is not None
    star = write_motion_star(
        output_dir / "motion" / f"{exposure_id}.star",
        correction.shifts_px,
        width_px=width,
        height_px=height,
        pixel_size_angstrom=pixel_size_angstrom,
        patch_positions_px=correction.patch_positions_px if local else None,
        patch_shifts_px=correction.patch_shifts_px if local else None,
    )
    outputs["trajectory"] = str(star)
    return outputs


def write_thumbnails(
    output_dir: Path,
    exposure_id: str,
    correction: MotionCorrection,
    *,
    ctf: CtfRecord | None,
    optics: Optics,
) -> dict[str, str]:
    """The dose-weighted sum and the CTF sum's power spectrum (beside the fit) as PNG."""
    from causalscope.daemon.formats.png import write_png
    from causalscope.models.ctf_estimation import power_spectrum
    from causalscope.models.thumbnails import micrograph_thumbnail, power_spectrum_thumbnail

    pixel_size = optics.pixel_size_angstrom
    folder = output_dir / "thumbnails"
    micrograph = write_png(
        folder / f"{exposure_id}.png", micrograph_thumbnail(correction.dose_weighted_sum)
    )
    image = correction.ctf_sum
    box = min(512, int(min(image.shape[-2:])) // 2 * 2)
    spectrum = power_spectrum(image, box_px=box, pixel_size_angstrom=pixel_size)
    fit: dict[str, object] = {}
    if ctf is not None and ctf.supported:
        fit = {
            **optics.ctf_keywords(),
            "defocus_u_angstrom": ctf.defocus_u_angstrom,
            "defocus_v_angstrom": ctf.defocus_v_angstrom,
            "defocus_angle_deg": ctf.defocus_angle_deg,
            "phase_shift_deg": ctf.phase_shift_deg,
        }
    picture = power_spectrum_thumbnail(
        spectrum.values.detach().cpu(),
        pixel_size_angstrom=pixel_size,
        **fit,  # type: ignore[arg-type]
    )
    ps_path = write_png(folder / f"{exposure_id}_ps.png", picture)
    return {"thumbnail": str(micrograph), "power_spectrum_thumbnail": str(ps_path)}
