"""The CryoPPP micrographs in ``../shared/data/picking`` with their truth: disc centres.

Each set is a folder with ``images/*.png`` (1024 px, 8-bit) and ``labels/*.png`` (expert disc
masks, 1024 px for EMPIAR-10028 and 256 px for EMPIAR-10059). The mask is brought to the
image's pixels (:func:`~models.picking.discs.mask_at`, then ``> 127``) and its discs, of the
set's known diameter, are fitted by :func:`~models.picking.discs.disc_centres`; the IoU of the
redrawn discs with the mask is kept with each micrograph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CRYOPPP_DIAMETER_PX", "RealMicrograph", "load_cryoppp"]

#: particle diameters in image pixels (1024 px images): the disc diameters that redraw the
#: masks best (EMPIAR-10028 80S ribosome; EMPIAR-10059 TRPV1)
CRYOPPP_DIAMETER_PX = {"10028": 56.0, "10059": 36.0}


@dataclass(frozen=True)
class RealMicrograph:
    """One real micrograph, its truth ``(n, 2)`` [x, y] (image px) and the mask fit's IoU."""

    name: str
    image: np.ndarray
    truth_xy_px: np.ndarray
    diameter_px: float
    mask_iou: float


def _dataset(folder: Path) -> str:
    return "10059" if "10059" in folder.name else "10028"


def load_cryoppp(folder: Path, names: Sequence[str] | None = None) -> list[RealMicrograph]:
    """Every micrograph of one CryoPPP set folder (or those ``names``), sorted by name."""
    import imagecodecs

    from causalscope.models.picking.discs import disc_centres, disc_iou, mask_at

    diameter = CRYOPPP_DIAMETER_PX[_dataset(folder)]
    out = []
    for path in sorted((folder / "images").glob("*.png")):
        if names is not None and path.name not in names:
            continue
        image = np.asarray(imagecodecs.png_decode(path.read_bytes()), dtype=np.float32)
        mask = np.asarray(imagecodecs.png_decode((folder / "labels" / path.name).read_bytes()))
        mask = mask if mask.ndim == 2 else mask[..., 0]
        inside = mask_at(mask, image.shape) > 127
        centres = disc_centres(inside, radius_px=diameter / 2)
        iou = disc_iou(inside, centres, radius_px=diameter / 2)
        out.append(RealMicrograph(path.name, image, centres, diameter, round(iou, 3)))
    return out
