"""Restoration benchmark: FRC against the clean image, phase flip vs Wiener, and time.

Each case is simulated (300 kV, 1 A/px, the built-in apoferritin-like phantom), its CTF fitted
by :func:`models.ctf_estimation.estimate_ctf`, the SSNR fitted by
:func:`models.restoration.spectral_snr_from_fit`, and the micrograph restored two ways. The
micrograph is the whole dose as one frame where nothing moves (the sum of a drift-free movie is
a single Poisson draw of the dose), and the motion-corrected sum (:func:`correct_motion`,
global + local, no dose weighting) in the drift case.

What the FRC compares: ``mean - micrograph`` (particles white) after phase flipping, and after
Wiener filtering, each against ``clean_phase`` (the particles' projected phase: no CTF, ice,
envelope or noise), over the whole micrograph, rings one Fourier pixel wide, no mask and no
low-pass on either side; the two restorations see the same input and the same fitted CTF. The
resolution is where the FRC last falls below 0.5 (:func:`frc_resolution_angstrom`). A Wiener
filter multiplies each ring by nearly one number, which the FRC normalises away, so the two
FRCs differ only through the CTF's variation within a ring; the real-space correlation
coefficient with the clean image shows what the Wiener filter does gain. A Wiener filter with
the perfect SSNR (from the clean image and the known dose) is reported as the ceiling of any
linear filter.

Noise2Noise (``n2n_*`` fields): the shipped denoiser (:func:`models.denoise.default_model`)
denoises the even and the odd half sums, their sum is phase flipped with the same fitted CTF
and compared in the same way; ``n2n_improvement_percent`` is its gain over phase flipping of
the same micrograph. So that every method sees the same micrograph, the drift-free cases are
two-frame movies (even = frame 0, odd = frame 1, micrograph = their sum: a Poisson draw of the
whole dose, as a single frame is); the drift case uses the motion-corrected even/odd sums.
Timing adds the tiled denoising of both half sums at the timing size and its peak memory.

Session fine-tuning (``n2n_held_out_*`` and ``n2n_in_set_*`` fields, ``finetune`` section): as
the live pipeline does (:mod:`daemon.bench._finetune`: its trainer, its rounds of 200 steps),
the shipped model is fine-tuned on half sums of the same simulated session (the case's settings
and specimen, other seeds); only even/odd halves, never the clean image. ``held_out``: after
``finetune_steps`` steps on ``session_exposures`` other exposures (seeds 1000, 1001, ...), so
the evaluated exposures are new to it; ``in_set``: one more round with the evaluated exposures
added, so each is denoised by weights that trained on it, which is what happens live. Both are
evaluated like ``n2n``, and their gains are over the same phase-flipped micrographs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from causalscope.daemon.bench._common import VOLTAGE_KV

__all__ = ["CASES", "run_restoration_bench"]

CASES: dict[str, dict[str, float]] = {
    "typical": {"dose_e_per_a2": 40.0, "ice_thickness_nm": 30.0},
    "low_snr": {"dose_e_per_a2": 10.0, "ice_thickness_nm": 30.0},
    "thick_ice": {"dose_e_per_a2": 40.0, "ice_thickness_nm": 100.0},
    "high_drift": {"dose_e_per_a2": 40.0, "ice_thickness_nm": 30.0, "drift_total_px": 40.0},
}


def _micrograph(
    size: int, case: dict[str, float], seed: int
) -> tuple[Any, Any, Any, tuple[Any, Any]]:
    """(micrograph float32, clean phase, truth, (even, odd) half sums) for one case."""
    from causalscope.models.simulate.exposure import ExposureParameters, simulate_exposure
    from causalscope.models.simulate.specimen import phantom_specimen

    drift = case.get("drift_total_px", 0.0)
    n_frames = 16 if drift > 0 else 2
    params = ExposureParameters(
        size_px=size,
        n_frames=n_frames,
        pixel_size_angstrom=1.0,
        drift_total_px=drift,
        drift_jitter_px=0.3 if drift > 0 else 0.0,
        local_motion_px=1.0 if drift > 0 else 0.0,
        intra_frame_blur=drift > 0,
        n_particles=int(30 * (size / 1024) ** 2),
        dose_e_per_a2=case["dose_e_per_a2"],
        ice_thickness_nm=case["ice_thickness_nm"],
        seed=seed,
    )
    sim = simulate_exposure(params, specimen=phantom_specimen())
    if drift == 0:
        frames = sim.frames.astype(np.float32)
        halves = (frames[0::2].sum(0), frames[1::2].sum(0))
        image = halves[0] + halves[1]
    else:
        from causalscope.models.motion import correct_motion

        corrected = correct_motion(
            sim.frames,
            pixel_size_angstrom=1.0,
            voltage_kv=VOLTAGE_KV,
            dose_per_frame_e_per_a2=params.dose_e_per_a2 / n_frames,
            dose_weighting=False,
        )
        image = np.asarray(corrected.aligned_sum, dtype=np.float32)
        halves = (
            np.asarray(corrected.even_sum, dtype=np.float32),
            np.asarray(corrected.odd_sum, dtype=np.float32),
        )
    return image, sim.clean_phase, sim.truth, halves


def _perfect_ssnr(clean: Any, mean_count: float, p_elastic: float) -> Any:
    """Radial SSNR of the clean phase under the known contrast gain and Poisson noise."""
    import torch

    n = clean.shape[-1]
    power = torch.fft.rfft2(clean).abs().square() / clean.numel()
    ky = torch.fft.fftfreq(n)
    kx = torch.fft.rfftfreq(n)
    rings = torch.round(torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) * n).long().flatten()
    radial = torch.zeros(int(rings.max()) + 1, dtype=torch.float64)
    radial.index_add_(0, rings, power.flatten().double())
    radial /= torch.bincount(rings).clamp(min=1)
    gain = 2.0 * p_elastic * mean_count
    return (gain**2 * radial[: n // 2 + 1] / mean_count).float()


_Micrograph = tuple[Any, Any, Any, tuple[Any, Any]]


def _accuracy(
    size: int,
    name: str,
    seed: int,
    device: str = "cpu",
    *,
    simulated: _Micrograph | None = None,
    finetuned: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One case and seed; ``finetuned`` maps a label to a model evaluated as ``n2n_<label>``."""
    import torch

    from causalscope.daemon.bench._common import fit_ctf
    from causalscope.models.denoise import default_model, denoise_half_sums
    from causalscope.models.restoration import (
        fourier_ring_correlation,
        frc_resolution_angstrom,
        phase_flip,
        spectral_snr_from_fit,
        wiener_filter,
    )

    if simulated is None:
        simulated = _micrograph(size, CASES[name], seed)
    image, clean_np, truth, (even, odd) = simulated
    micrograph = torch.from_numpy(image)
    clean = torch.from_numpy(clean_np)
    ctf = fit_ctf(micrograph)
    contrast = micrograph.mean() - micrograph
    ssnr = spectral_snr_from_fit(contrast, pixel_size_angstrom=1.0, **ctf.kwargs())
    restored = {
        "phase_flip": phase_flip(contrast, pixel_size_angstrom=1.0, **ctf.kwargs()),
        "wiener": wiener_filter(contrast, pixel_size_angstrom=1.0, ssnr=ssnr, **ctf.kwargs()),
        "wiener_perfect_ssnr": wiener_filter(
            contrast,
            pixel_size_angstrom=1.0,
            ssnr=_perfect_ssnr(clean, float(micrograph.mean()), truth["p_elastic"]),
            **ctf.kwargs(),
        ),
    }
    models = {"n2n": default_model(device=device)}
    models.update({f"n2n_{label}": model for label, model in (finetuned or {}).items()})
    for method, model in models.items():
        denoised = denoise_half_sums(
            torch.from_numpy(even).to(device), torch.from_numpy(odd).to(device), model
        ).cpu()
        restored[method] = phase_flip(
            denoised.mean() - denoised, pixel_size_angstrom=1.0, **ctf.kwargs()
        )
    row: dict[str, Any] = {
        "case": name,
        "size": size,
        "seed": seed,
        **CASES[name],
        "defocus_error_angstrom": round(
            0.5 * (ctf.defocus_u_angstrom + ctf.defocus_v_angstrom)
            - 0.5 * (truth["defocus_u_angstrom"] + truth["defocus_v_angstrom"]),
            1,
        ),
        "ssnr_bfactor_angstrom2": round(ssnr.bfactor_angstrom2, 1),
    }
    for method, out in restored.items():
        frc = fourier_ring_correlation(out, clean)
        row[f"{method}_frc05_angstrom"] = round(
            frc_resolution_angstrom(frc, pixel_size_angstrom=1.0), 2
        )
        row[f"{method}_correlation"] = round(
            float(np.corrcoef(out.flatten().numpy(), clean_np.flatten())[0, 1]), 4
        )
    flip, wien = row["phase_flip_frc05_angstrom"], row["wiener_frc05_angstrom"]
    # resolution improves when the number in Angstrom falls: +x % = flip / wiener - 1
    row["frc05_improvement_percent"] = round(100.0 * (flip / wien - 1.0), 2)
    for method in models:
        row[f"{method}_improvement_percent"] = round(
            100.0 * (flip / row[f"{method}_frc05_angstrom"] - 1.0), 2
        )
    return row


def _finetuned(
    size: int,
    name: str,
    simulated: dict[int, _Micrograph],
    *,
    steps: int,
    session_exposures: int,
    device: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The case's ``held_out`` and ``in_set`` fine-tuned models, and what their training did."""
    from causalscope.daemon.bench._finetune import SESSION_SEED_OFFSET, session_finetune

    others = [SESSION_SEED_OFFSET + i for i in range(session_exposures)]
    models, record = session_finetune(
        [_micrograph(size, CASES[name], s)[3] for s in others],
        [simulated[s][3] for s in simulated],
        steps=steps,
        device=device,
    )
    record["held_out"]["trained_on_seeds"] = others
    record["in_set"]["trained_on_seeds"] = others + list(simulated)
    return models, record


def _timing(size: int, device: str) -> dict[str, Any]:
    import torch

    from causalscope.daemon.bench._common import fit_ctf
    from causalscope.daemon.bench._measure import peak_memory
    from causalscope.models.restoration import (
        phase_flip,
        spectral_snr_from_fit,
        wiener_filter,
    )

    image, _, _, halves = _micrograph(size, CASES["typical"], 0)
    micrograph = torch.from_numpy(image).to(device)
    ctf = fit_ctf(micrograph)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times: dict[str, float] = {}
    with peak_memory(device) as memory:
        started = time.perf_counter()
        ssnr = spectral_snr_from_fit(micrograph, pixel_size_angstrom=1.0, **ctf.kwargs())
        sync()
        times["ssnr_fit_s"] = time.perf_counter() - started
        started = time.perf_counter()
        wiener_filter(micrograph, pixel_size_angstrom=1.0, ssnr=ssnr, **ctf.kwargs())
        sync()
        times["wiener_s"] = time.perf_counter() - started
        started = time.perf_counter()
        phase_flip(micrograph, pixel_size_angstrom=1.0, **ctf.kwargs())
        sync()
        times["phase_flip_s"] = time.perf_counter() - started
    from causalscope.models.denoise import default_model, denoise_half_sums

    model = default_model(device=device)
    even, odd = (torch.from_numpy(h).to(device) for h in halves)
    del image, halves
    with peak_memory(device) as n2n_memory:
        started = time.perf_counter()
        denoise_half_sums(even, odd, model)
        sync()
        times["n2n_denoise_s"] = time.perf_counter() - started
    return {
        "size": size,
        "torch_threads": torch.get_num_threads(),
        **{k: round(v, 3) for k, v in times.items()},
        "n2n_peak_rss_increase_gib": n2n_memory.rss_increase_gib,
        "n2n_cuda_peak_gib": n2n_memory.cuda_peak_gib,
        "restoration_s": round(times["ssnr_fit_s"] + times["wiener_s"], 3),
        "peak_rss_increase_gib": memory.rss_increase_gib,
        "cuda_peak_gib": memory.cuda_peak_gib,
    }


def run_restoration_bench(
    *,
    cases: list[str],
    size: int,
    seeds: list[int],
    timing_size: int | None,
    device: str,
    finetune_steps: int = 1200,
    session_exposures: int = 4,
) -> dict[str, Any]:
    """Run the restoration benchmark; returns a JSON-able report.

    ``finetune_steps = 0`` leaves out session fine-tuning; otherwise the shipped model trains
    that many steps on ``session_exposures`` other exposures of each case (``held_out``), then
    one more round of 200 with the evaluated exposures added (``in_set``).
    """
    rows: list[dict[str, Any]] = []
    finetune: dict[str, Any] = {}
    for name in cases:
        simulated = {seed: _micrograph(size, CASES[name], seed) for seed in seeds}
        models: dict[str, Any] = {}
        if finetune_steps > 0:
            models, finetune[name] = _finetuned(
                size,
                name,
                simulated,
                steps=finetune_steps,
                session_exposures=session_exposures,
                device=device,
            )
        for seed in seeds:
            rows.append(
                _accuracy(size, name, seed, device, simulated=simulated[seed], finetuned=models)
            )
        del simulated
    report: dict[str, Any] = {"bench": "restoration", "device": device, "cases": rows}
    if finetune:
        report["finetune"] = finetune
    if timing_size:
        report["timing"] = _timing(timing_size, device)
    summary: dict[str, Any] = {}
    for name in cases:
        mine = [r for r in rows if r["case"] == name]
        keys = [
            "phase_flip_frc05_angstrom",
            "wiener_frc05_angstrom",
            "frc05_improvement_percent",
            "phase_flip_correlation",
            "wiener_correlation",
            "wiener_perfect_ssnr_correlation",
        ]
        for method in ("n2n", "n2n_in_set", "n2n_held_out"):
            if f"{method}_frc05_angstrom" in mine[0]:
                keys += [f"{method}_{k}" for k in ("frc05_angstrom", "improvement_percent")]
                keys.append(f"{method}_correlation")
        summary[name] = {key: float(np.median([r[key] for r in mine])) for key in keys}
        for method in ("n2n", "n2n_in_set", "n2n_held_out"):
            if f"{method}_improvement_percent" in mine[0]:
                summary[name][f"{method}_min_improvement_percent"] = float(
                    min(r[f"{method}_improvement_percent"] for r in mine)
                )
    if "timing" in report:
        summary["time_per_exposure_s"] = report["timing"]["restoration_s"]
        summary["n2n_time_per_exposure_s"] = report["timing"]["n2n_denoise_s"]
        summary["n2n_peak_rss_increase_gib"] = report["timing"]["n2n_peak_rss_increase_gib"]
    report["summary"] = summary
    return report
