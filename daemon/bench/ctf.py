"""CTF-estimation benchmark: accuracy against simulated truth and CTFFIND, and time.

Simulated cases: 300 kV, 1 A/px micrographs (the sum of a movie without drift is a single
Poisson frame of the whole dose, so each case is simulated as one frame) spread over defocus
0.5-3 um, astigmatism 0-600 A, dose 30-50 e/A^2 and ice 20-80 nm, fitted with the exposure
worker's default ``processing.ctf`` settings (``box_px = "auto"``, 30-4 A). Real cases: the RELION
tutorial's 12 power spectra against CTFFIND-4.1, when ``../shared/data`` is present.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SIZES", "run_ctf_bench", "simulated_cases"]

SIZES = {"1024": 1024, "4096": 4096}


def simulated_cases(n: int, seed: int = 0) -> list[dict[str, float]]:
    """``n`` parameter sets spread over the issue's ranges (deterministic)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        defocus = 5000.0 + 25000.0 * (i + rng.uniform(0, 1)) / n
        astigmatism = float(rng.choice([0.0, 150.0, 300.0, 450.0, 600.0]))
        cases.append(
            {
                "defocus_u_angstrom": defocus + astigmatism / 2,
                "defocus_v_angstrom": defocus - astigmatism / 2,
                "defocus_angle_deg": float(rng.uniform(0, 180)),
                "dose_e_per_a2": float(rng.uniform(30, 50)),
                "ice_thickness_nm": float(20 + 60 * ((i * 7) % n + rng.uniform(0, 1)) / n),
                "seed": 100 + i,
            }
        )
    return cases


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _angle_error(a: float, b: float) -> float:
    d = (a - b) % 180.0
    return float(min(d, 180.0 - d))


def _simulate(size: int, case: dict[str, float]) -> np.ndarray:
    from causalscope.daemon.bench._common import still_micrograph

    image, _ = still_micrograph(
        size,
        particles_per_1024=40,
        seed=int(case["seed"]),
        defocus_u_angstrom=case["defocus_u_angstrom"],
        defocus_v_angstrom=case["defocus_v_angstrom"],
        defocus_angle_deg=case["defocus_angle_deg"],
        dose_e_per_a2=case["dose_e_per_a2"],
        ice_thickness_nm=case["ice_thickness_nm"],
    )
    return image


def run_ctf_bench(
    *,
    sizes: list[str],
    n_cases: int,
    device: str,
    shared_data: Path | None,
    bound: bool = False,
) -> dict[str, Any]:
    """Run the CTF benchmark (``n_cases`` simulated cases at each size); a JSON-able report.

    ``bound``: each simulated row also gets ``crb``, the Cramér–Rao sds of that case
    (:func:`daemon.bench.ctf_bound.simulated_bound`), and ``error_over_crb``, ``|error| / sd``
    for defocus, astigmatism and angle (None where the angle error is not measured).
    """
    from causalscope.actors._memory import keep_freed_memory, release_freed_memory

    report: dict[str, Any] = {"bench": "ctf", "device": device, "simulated": [], "real": []}
    # as an exposure worker does: freed temporaries stay in the heap, given back after each
    report["heap_kept"] = keep_freed_memory()
    for size_name in sizes:
        size = SIZES[size_name]
        for case in simulated_cases(n_cases):
            report["simulated"].append(_simulated_row(size, case, device, bound=bound))
            release_freed_memory()
    if shared_data is not None and (shared_data / "relion_tutorial").is_dir():
        report["real"] = _real_spectra(shared_data / "relion_tutorial", device)
    report["summary"] = _summary(report)
    return report


def _simulated_row(
    size: int, case: dict[str, float], device: str, *, bound: bool
) -> dict[str, Any]:
    """One simulated case at ``size`` px: fitted as the worker does, scored against its truth."""
    import torch

    from causalscope.daemon.bench._common import CS_MM, VOLTAGE_KV, Q, worker_ctf_options
    from causalscope.models.ctf_estimation import estimate_ctf

    image = _simulate(size, case)
    tensor = torch.from_numpy(image).to(device)
    started = time.perf_counter()
    est = estimate_ctf(
        tensor,
        pixel_size_angstrom=1.0,
        voltage_kv=VOLTAGE_KV,
        spherical_aberration_mm=CS_MM,
        amplitude_contrast=Q,
        noise_variance=float(image.mean()),
        **worker_ctf_options(image.shape),
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    true_mean = 0.5 * (case["defocus_u_angstrom"] + case["defocus_v_angstrom"])
    true_astig = case["defocus_u_angstrom"] - case["defocus_v_angstrom"]
    row: dict[str, Any] = {
        "size": size,
        **{k: round(v, 2) for k, v in case.items()},
        "defocus_error_angstrom": round(est.defocus_angstrom - true_mean, 1),
        "defocus_sigma_angstrom": est.defocus_sigma_angstrom,
        "astigmatism_error_angstrom": round(est.astigmatism_angstrom - true_astig, 1),
        "angle_error_deg": round(_angle_error(est.defocus_angle_deg, case["defocus_angle_deg"]), 2)
        if true_astig >= 200
        else None,
        "ice_error_nm": round(est.ice_thickness_nm - case["ice_thickness_nm"], 1)
        if est.ice_thickness_nm is not None
        else None,
        "ice_sigma_nm": est.ice_thickness_sigma_nm,
        "fit_resolution_angstrom": _rounded(est.fit_resolution_angstrom, 2),
        "figure_of_merit": round(est.figure_of_merit, 4),
        "supported": est.supported,
        "time_s": round(elapsed, 3),
    }
    if bound:
        from causalscope.daemon.bench.ctf_bound import simulated_bound

        crb = simulated_bound(size, case)
        row["crb"] = crb
        row["error_over_crb"] = {
            "defocus": round(abs(row["defocus_error_angstrom"]) / crb["defocus_sd_angstrom"], 2),
            "astigmatism": round(
                abs(row["astigmatism_error_angstrom"]) / crb["astigmatism_sd_angstrom"], 2
            ),
            "angle": round(row["angle_error_deg"] / crb["angle_sd_deg"], 2)
            if row["angle_error_deg"] is not None and crb["angle_sd_deg"]
            else None,
        }
    return row


def _real_spectra(folder: Path, device: str) -> list[dict[str, Any]]:
    import mrcfile
    import starfile
    import torch

    from causalscope.models.ctf_estimation import estimate_ctf

    reference = starfile.read(folder / "ctffind4_reference.star")
    table = reference if not isinstance(reference, dict) else list(reference.values())[-1]
    rows = []
    for _, ref in table.iterrows():
        name = Path(str(ref["rlnMicrographName"])).stem
        path = folder / "power_spectra" / f"{name}_PS.mrc"
        if not path.exists():
            continue
        with mrcfile.open(path) as mrc:
            spectrum = np.asarray(mrc.data, dtype=np.float32).copy()
            apix = float(mrc.voxel_size.x)
        started = time.perf_counter()
        est = estimate_ctf(
            torch.from_numpy(spectrum).to(device),
            pixel_size_angstrom=apix,
            voltage_kv=200.0,
            spherical_aberration_mm=1.4,
            amplitude_contrast=0.1,
            is_power_spectrum=True,
            box_px=spectrum.shape[-1],
        )
        elapsed = time.perf_counter() - started
        ref_mean = 0.5 * (float(ref["rlnDefocusU"]) + float(ref["rlnDefocusV"]))
        rows.append(
            {
                "spectrum": path.name,
                "ctffind_defocus_angstrom": round(ref_mean, 1),
                "defocus_angstrom": round(est.defocus_angstrom, 1),
                "defocus_error_percent": round(100 * (est.defocus_angstrom / ref_mean - 1), 3),
                "ctffind_angle_deg": float(ref["rlnDefocusAngle"]),
                "angle_error_deg": round(
                    _angle_error(est.defocus_angle_deg, float(ref["rlnDefocusAngle"])), 2
                ),
                "ctffind_astigmatism_angstrom": round(
                    float(ref["rlnDefocusU"]) - float(ref["rlnDefocusV"]), 1
                ),
                "astigmatism_angstrom": round(est.astigmatism_angstrom, 1),
                "fit_resolution_angstrom": _rounded(est.fit_resolution_angstrom, 2),
                "supported": est.supported,
                "time_s": round(elapsed, 3),
            }
        )
    return rows


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.median(kept)), 3) if kept else None


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in sorted({r["size"] for r in report["simulated"]}):
        rows = [r for r in report["simulated"] if r["size"] == size]
        angles = [r["angle_error_deg"] for r in rows if r["angle_error_deg"] is not None]
        astig = [
            abs(r["astigmatism_error_angstrom"])
            for r in rows
            if r["defocus_u_angstrom"] - r["defocus_v_angstrom"] >= 200
        ]
        ice = [abs(r["ice_error_nm"]) for r in rows if r["ice_error_nm"] is not None]
        out[str(size)] = {
            "cases": len(rows),
            "median_abs_defocus_error_angstrom": float(
                np.median([abs(r["defocus_error_angstrom"]) for r in rows])
            ),
            "unsupported": sum(not r["supported"] for r in rows),
            # supported fits more than 2 % from the true mean defocus: must stay 0
            "wrong_supported": sum(
                r["supported"]
                and abs(r["defocus_error_angstrom"])
                > 0.01 * (r["defocus_u_angstrom"] + r["defocus_v_angstrom"])
                for r in rows
            ),
            "median_abs_astigmatism_error_angstrom": _median(astig),
            "max_abs_astigmatism_error_angstrom": max(astig) if astig else None,
            "median_angle_error_deg": _median(angles),
            "max_angle_error_deg": max(angles) if angles else None,
            "max_abs_ice_error_nm": max(ice) if ice else None,
            "ice_within_10_nm": sum(e <= 10.0 for e in ice),
            "median_time_s": float(np.median([r["time_s"] for r in rows])),
        }
        if all("crb" in r for r in rows):
            # an efficient unbiased estimator's median |error| / sd is 0.67
            out[str(size)]["median_error_over_crb"] = {
                key: _median([r["error_over_crb"][key] for r in rows])
                for key in ("defocus", "astigmatism", "angle")
            }
            out[str(size)]["crb_astigmatism_sd_angstrom"] = [
                min(r["crb"]["astigmatism_sd_angstrom"] for r in rows),
                max(r["crb"]["astigmatism_sd_angstrom"] for r in rows),
            ]
    if report["real"]:
        out["real"] = {
            "spectra": len(report["real"]),
            "max_abs_defocus_error_percent": max(
                abs(r["defocus_error_percent"]) for r in report["real"]
            ),
            "max_angle_error_deg": max(r["angle_error_deg"] for r in report["real"]),
        }
    return out
