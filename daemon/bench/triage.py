"""``causalscope bench triage``: the confusion matrix of micrograph triage on simulated
micrographs of every class, and its verdicts on the real micrographs of the picking data.

Simulated: ``n`` micrographs per class (``--size`` px, pixel size drawn in 2-6 A, crystalline
ice at 1.2 A so its 3.4-3.9 A planes lie inside Nyquist; contamination cycles through the
simulator's causes). Real: the CryoPPP PNGs (EMPIAR-10028 at 5.36 A/px: 1.34 A x 4;
EMPIAR-10059 at 4.5 A/px: particles of ~36 px, TRPV1 ~160 A) and the Magellon apoferritin
micrograph (6.3 A/px: 8x downsampled; its header keeps the original 0.79 A).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REAL_PIXEL_SIZE_ANGSTROM", "real_micrographs", "run_triage_bench"]

#: pixel sizes of the real micrographs in ../shared/data/picking (see the module docstring)
REAL_PIXEL_SIZE_ANGSTROM = {"10028": 5.36, "10059": 4.5, "magellon": 6.3}


def real_micrographs(shared_data: Path) -> list[tuple[Path, float]]:
    """``(path, pixel size)`` of every real micrograph under ``shared_data / "picking"``."""
    picking = shared_data / "picking"
    out: list[tuple[Path, float]] = []
    for folder in ("cryoppp_10028", "cryoppp_10028_train", "cryoppp_10059_train"):
        apix = REAL_PIXEL_SIZE_ANGSTROM["10059" if "10059" in folder else "10028"]
        out += [(p, apix) for p in sorted((picking / folder / "images").glob("*.png"))]
    magellon = picking / "magellon_apoferritin_ds8.mrc"
    if magellon.is_file():
        out.append((magellon, REAL_PIXEL_SIZE_ANGSTROM["magellon"]))
    return out


def run_triage_bench(
    *, n: int = 20, size: int = 512, seed: int = 0, shared_data: Path | None = None
) -> dict[str, Any]:
    """Confusion matrix (rows: truth, columns: verdict), accuracy per class, the real
    micrographs' verdicts and the time per micrograph (features and classification only)."""
    import torch

    from causalscope.daemon.formats.coordinates import read_micrograph
    from causalscope.models.simulate.triage_scenes import (
        CONTAMINATION_KINDS,
        TRIAGE_KINDS,
        simulate_triage_micrograph,
    )
    from causalscope.models.triage import TRIAGE_CLASSES, triage_micrograph

    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    confusion = {t: dict.fromkeys(TRIAGE_CLASSES, 0) for t in TRIAGE_KINDS}
    misses: list[dict[str, Any]] = []
    times: list[float] = []
    for kind in TRIAGE_KINDS:
        for i in range(n):
            apix = 1.2 if kind == "crystalline_ice" else float(rng.uniform(2.0, 6.0))
            detail = CONTAMINATION_KINDS[i % len(CONTAMINATION_KINDS)]
            scene = simulate_triage_micrograph(
                kind,
                size_px=size,
                pixel_size_angstrom=apix,
                seed=int(rng.integers(2**31)),
                detail=detail if kind == "contaminated" else None,
            )
            start = time.perf_counter()
            result = triage_micrograph(scene.image, pixel_size_angstrom=apix)
            times.append(time.perf_counter() - start)
            confusion[kind][result.label] += 1
            if result.label != kind:
                misses.append(
                    {
                        "truth": kind,
                        "detail": scene.detail,
                        "apix": round(apix, 2),
                        "verdict": result.label,
                        "reason": result.reason,
                    }
                )
    accuracy = {k: confusion[k][k] / n for k in TRIAGE_KINDS}
    per_detail: dict[str, int] = {}
    for miss in misses:
        if miss["truth"] == "contaminated":
            per_detail[miss["detail"]] = per_detail.get(miss["detail"], 0) + 1
    real: list[dict[str, Any]] = []
    real_times: list[float] = []
    if shared_data is not None:
        for path, apix in real_micrographs(shared_data):
            image, _ = read_micrograph(path)
            start = time.perf_counter()
            result = triage_micrograph(image, pixel_size_angstrom=apix)
            real_times.append(time.perf_counter() - start)
            real.append({"file": path.name, "pixel_size_angstrom": apix, **result.to_dict()})
    usable = sum(r["label"] == "usable" for r in real)
    summary = {
        "accuracy": accuracy,
        "contaminated_missed_by_cause": per_detail,
        "real_usable": f"{usable}/{len(real)}",
        "real_verdicts": {r["file"]: r["label"] for r in real},
        "ms_per_simulated_micrograph": round(1000 * float(np.median(times)), 1),
        "ms_per_real_micrograph": round(1000 * float(np.median(real_times)), 1)
        if real_times
        else None,
    }
    return {
        "n_per_class": n,
        "size_px": size,
        "confusion": confusion,
        "misses": misses,
        "real": real,
        "summary": summary,
    }
