"""Physical-consistency obligations of an exposure and of a running reconstruction, each
discharged by an SMT solver (z3), and LogicScore, the share of them that hold.

Every obligation is a claim about measured quantities (with their uncertainties) that physics
requires; :func:`._solver.discharge` proves it impossible within ``sigmas`` of the measurements
or finds values that satisfy it. A failed one carries its counterexample: the measured values
and the derived quantities (Nyquist, packing limit, ...) that break it. An obligation whose
inputs were not measured is not stated (LogicScore counts only those stated).

Exposure obligations (:func:`exposure_obligations`):

``fit_within_nyquist``
    ``fit_resolution_angstrom >= 2 * pixel_size_angstrom * binning``.
``particles_fit_in_ice``
    ``10 * ice_thickness_nm >= particle_diameter_angstrom`` (thickness within its sigma).
``picks_do_not_overlap``
    the closest two picks ``>= min_spacing_diameters * particle_diameter_angstrom`` apart.
``packing_allows_density``
    ``n * pi * (d / 2)^2 <= 0.9069 * area * max(1, 10 * t / d)``: picks cover no more than
    hexagonal packing allows, one layer per particle diameter of ice.
``dose_matches_metadata``
    ``|metadata dose - measured dose| <= dose_tolerance * measured dose`` (measured from the
    counts), and the dose used for weighting equals the metadata's.
``drift_within_stage``
    ``total drift / exposure time <= max_drift_rate_angstrom_per_s``.

Reconstruction obligations (:func:`reconstruction_obligations`):

``map_within_nyquist``
    gold-standard resolution ``>= 2 *`` the map's pixel size.
``map_not_beyond_classes``
    gold-standard resolution ``>= class_margin *`` the best 2D class's resolution (a 3D map
    averages more views than a class, so it may be better, by at most the margin's factor).
``symmetry_consistent``
    the map's correlation with itself under each operator of its point group
    ``>= symmetry_correlation``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import z3

from causalscope.models.scoring._solver import Measured, ObligationResult, discharge

__all__ = [
    "ExposureFacts",
    "ObligationSettings",
    "ReconstructionFacts",
    "exposure_obligations",
    "logic_score",
    "reconstruction_obligations",
]

#: densest packing of equal discs in a plane (hexagonal)
HEXAGONAL_PACKING = math.pi / (2 * math.sqrt(3))


@dataclass(frozen=True)
class ObligationSettings:
    """Tolerances of the obligations (documented in :mod:`causalscope.config.processing`)."""

    sigmas: float = 2.0
    min_spacing_diameters: float = 0.45
    dose_tolerance: float = 0.25
    max_drift_rate_angstrom_per_s: float = 50.0
    class_margin: float = 0.5
    symmetry_correlation: float = 0.8


@dataclass(frozen=True)
class ExposureFacts:
    """What the obligations of one exposure read (``None``: not measured)."""

    exposure_id: str
    pixel_size_angstrom: float
    binning: float = 1.0
    fit_resolution_angstrom: float | None = None
    ice_thickness_nm: float | None = None
    ice_thickness_sigma_nm: float = 0.0
    particle_diameter_angstrom: float | None = None
    n_particles: int = 0
    area_angstrom2: float | None = None
    closest_picks_angstrom: float | None = None
    metadata_dose_e_per_a2: float | None = None
    used_dose_e_per_a2: float | None = None
    measured_dose_e_per_a2: float | None = None
    total_drift_angstrom: float | None = None
    exposure_time_s: float | None = None


@dataclass(frozen=True)
class ReconstructionFacts:
    """What the obligations of one reconstruction update read."""

    version: int
    pixel_size_angstrom: float
    resolution_angstrom: float | None
    best_class_resolution_angstrom: float | None = None
    symmetry: str = "C1"
    symmetry_correlations: tuple[float, ...] = ()


def exposure_obligations(
    facts: ExposureFacts, settings: ObligationSettings | None = None
) -> list[ObligationResult]:
    """The exposure's obligations that its measurements allow stating, discharged."""
    s = settings or ObligationSettings()
    subject = f"exposure {facts.exposure_id}"
    found: list[ObligationResult] = []
    if facts.fit_resolution_angstrom is not None:
        nyquist = 2.0 * facts.pixel_size_angstrom * facts.binning
        found.append(
            discharge(
                name="fit_within_nyquist",
                subject=subject,
                statement="fit_resolution_angstrom >= 2 * pixel_size_angstrom * binning",
                measured={
                    "fit_resolution_angstrom": Measured(facts.fit_resolution_angstrom),
                    "pixel_size_angstrom": Measured(facts.pixel_size_angstrom),
                    "binning": Measured(facts.binning),
                },
                claim=lambda x: (
                    x["fit_resolution_angstrom"] >= 2 * x["pixel_size_angstrom"] * x["binning"]
                ),
                derived={"nyquist_angstrom": lambda x: 2 * x["pixel_size_angstrom"] * x["binning"]},
                explain=lambda v: (
                    f"the CTF fit claims {v['fit_resolution_angstrom']:.2f} A, "
                    f"{'within' if v['fit_resolution_angstrom'] >= nyquist else 'beyond'} "
                    f"Nyquist ({v.get('nyquist_angstrom', nyquist):.2f} A at "
                    f"{v['pixel_size_angstrom']:.3f} A/px)"
                ),
                sigmas=s.sigmas,
            )
        )
    diameter = facts.particle_diameter_angstrom
    picked = diameter is not None and facts.n_particles > 0
    if picked and facts.ice_thickness_nm is not None:
        assert diameter is not None
        found.append(
            discharge(
                name="particles_fit_in_ice",
                subject=subject,
                statement="10 * ice_thickness_nm >= particle_diameter_angstrom",
                measured={
                    "ice_thickness_nm": Measured(
                        facts.ice_thickness_nm, facts.ice_thickness_sigma_nm
                    ),
                    "particle_diameter_angstrom": Measured(diameter),
                },
                claim=lambda x: 10 * x["ice_thickness_nm"] >= x["particle_diameter_angstrom"],
                explain=lambda v: (
                    f"{facts.n_particles} particles of {v['particle_diameter_angstrom']:.0f} A "
                    f"picked in ice measured at {v['ice_thickness_nm']:.0f} "
                    f"+- {facts.ice_thickness_sigma_nm:.1f} nm"
                ),
                sigmas=s.sigmas,
            )
        )
    if picked and facts.closest_picks_angstrom is not None and facts.n_particles > 1:
        assert diameter is not None
        fraction = s.min_spacing_diameters
        found.append(
            discharge(
                name="picks_do_not_overlap",
                subject=subject,
                statement=(f"closest_picks_angstrom >= {fraction} * particle_diameter_angstrom"),
                measured={
                    "closest_picks_angstrom": Measured(facts.closest_picks_angstrom),
                    "particle_diameter_angstrom": Measured(diameter),
                },
                claim=lambda x: (
                    x["closest_picks_angstrom"]
                    >= z3.RealVal(repr(fraction)) * x["particle_diameter_angstrom"]
                ),
                explain=lambda v: (
                    f"the two closest picks are {v['closest_picks_angstrom']:.0f} A apart, "
                    f"for particles of {v['particle_diameter_angstrom']:.0f} A "
                    f"(at least {fraction * v['particle_diameter_angstrom']:.0f} A needed)"
                ),
                sigmas=s.sigmas,
            )
        )
    if picked and facts.area_angstrom2 is not None:
        assert diameter is not None
        found.append(_packing(facts, diameter, subject, s))
    if facts.metadata_dose_e_per_a2 is not None and facts.measured_dose_e_per_a2 is not None:
        found.append(_dose(facts, subject, s))
    if facts.total_drift_angstrom is not None and facts.exposure_time_s:
        limit = s.max_drift_rate_angstrom_per_s
        found.append(
            discharge(
                name="drift_within_stage",
                subject=subject,
                statement=f"total_drift_angstrom <= {limit} * exposure_time_s",
                measured={
                    "total_drift_angstrom": Measured(facts.total_drift_angstrom),
                    "exposure_time_s": Measured(facts.exposure_time_s),
                },
                claim=lambda x: (
                    x["total_drift_angstrom"] <= z3.RealVal(repr(limit)) * x["exposure_time_s"]
                ),
                derived={
                    "limit_angstrom": lambda x: z3.RealVal(repr(limit)) * x["exposure_time_s"]
                },
                explain=lambda v: (
                    f"the specimen moved {v['total_drift_angstrom']:.0f} A in "
                    f"{v['exposure_time_s']:.1f} s; the stage and beam-induced motion allow "
                    f"{limit:.0f} A/s"
                ),
                sigmas=s.sigmas,
            )
        )
    return found


def _packing(
    facts: ExposureFacts, diameter: float, subject: str, s: ObligationSettings
) -> ObligationResult:
    measured = {
        "n_particles": Measured(float(facts.n_particles)),
        "particle_diameter_angstrom": Measured(diameter),
        "area_angstrom2": Measured(float(facts.area_angstrom2 or 0.0)),
    }
    if facts.ice_thickness_nm is not None:
        measured["ice_thickness_nm"] = Measured(
            facts.ice_thickness_nm, facts.ice_thickness_sigma_nm
        )
    pi, packing = z3.RealVal(repr(math.pi)), z3.RealVal(repr(HEXAGONAL_PACKING))

    def layers(x: dict[str, z3.ArithRef]) -> z3.ArithRef:
        if "ice_thickness_nm" not in x:
            return z3.RealVal(1)
        stacked = 10 * x["ice_thickness_nm"] / x["particle_diameter_angstrom"]
        return z3.If(stacked > 1, stacked, z3.RealVal(1))

    def covered(x: dict[str, z3.ArithRef]) -> z3.ArithRef:
        radius = x["particle_diameter_angstrom"] / 2
        return x["n_particles"] * pi * radius * radius

    def allowed(x: dict[str, z3.ArithRef]) -> z3.ArithRef:
        return packing * x["area_angstrom2"] * layers(x)

    return discharge(
        name="packing_allows_density",
        subject=subject,
        statement=(
            "n_particles * pi * (particle_diameter_angstrom / 2)^2 <= "
            "0.9069 * area_angstrom2 * max(1, 10 * ice_thickness_nm / particle_diameter_angstrom)"
        ),
        measured=measured,
        claim=lambda x: covered(dict(x)) <= allowed(dict(x)),
        derived={
            "covered_angstrom2": lambda x: covered(dict(x)),
            "allowed_angstrom2": lambda x: allowed(dict(x)),
        },
        explain=lambda v: (
            f"{v['n_particles']:.0f} particles of {v['particle_diameter_angstrom']:.0f} A cover "
            f"{v.get('covered_angstrom2', 0.0) / 1e6:.2f} um2; packing allows "
            f"{v.get('allowed_angstrom2', 0.0) / 1e6:.2f} um2 on this micrograph"
        ),
        sigmas=s.sigmas,
    )


def _dose(facts: ExposureFacts, subject: str, s: ObligationSettings) -> ObligationResult:
    tolerance = z3.RealVal(repr(s.dose_tolerance))
    measured = {
        "metadata_dose_e_per_a2": Measured(float(facts.metadata_dose_e_per_a2 or 0.0)),
        "measured_dose_e_per_a2": Measured(float(facts.measured_dose_e_per_a2 or 0.0)),
    }
    if facts.used_dose_e_per_a2 is not None:
        measured["used_dose_e_per_a2"] = Measured(facts.used_dose_e_per_a2)

    def claim(x: dict[str, z3.ArithRef]) -> z3.BoolRef:
        meta, seen = x["metadata_dose_e_per_a2"], x["measured_dose_e_per_a2"]
        parts = [meta - seen <= tolerance * seen, seen - meta <= tolerance * seen]
        if "used_dose_e_per_a2" in x:
            used = x["used_dose_e_per_a2"]
            parts += [used - meta <= tolerance * meta, meta - used <= tolerance * meta]
        return z3.And(*parts)

    return discharge(
        name="dose_matches_metadata",
        subject=subject,
        statement=(
            f"|metadata_dose - measured_dose| <= {s.dose_tolerance} * measured_dose and "
            f"|used_dose - metadata_dose| <= {s.dose_tolerance} * metadata_dose"
        ),
        measured=measured,
        claim=lambda x: claim(dict(x)),
        explain=lambda v: (
            f"the metadata says {v['metadata_dose_e_per_a2']:.1f} e/A2, the counts show "
            f"{v['measured_dose_e_per_a2']:.1f} e/A2"
            + (
                f", dose weighting used {v['used_dose_e_per_a2']:.1f} e/A2"
                if "used_dose_e_per_a2" in v
                else ""
            )
        ),
        sigmas=s.sigmas,
    )


def reconstruction_obligations(
    facts: ReconstructionFacts, settings: ObligationSettings | None = None
) -> list[ObligationResult]:
    """The reconstruction update's obligations that its measurements allow stating."""
    s = settings or ObligationSettings()
    subject = f"reconstruction {facts.version}"
    found: list[ObligationResult] = []
    resolution = facts.resolution_angstrom
    if resolution is not None:
        found.append(
            discharge(
                name="map_within_nyquist",
                subject=subject,
                statement="resolution_angstrom >= 2 * pixel_size_angstrom",
                measured={
                    "resolution_angstrom": Measured(resolution),
                    "pixel_size_angstrom": Measured(facts.pixel_size_angstrom),
                },
                claim=lambda x: x["resolution_angstrom"] >= 2 * x["pixel_size_angstrom"],
                derived={"nyquist_angstrom": lambda x: 2 * x["pixel_size_angstrom"]},
                explain=lambda v: (
                    f"the gold-standard FSC reaches {v['resolution_angstrom']:.2f} A; the map's "
                    f"Nyquist is {2 * v['pixel_size_angstrom']:.2f} A"
                ),
                sigmas=s.sigmas,
            )
        )
    best = facts.best_class_resolution_angstrom
    if resolution is not None and best is not None:
        margin = s.class_margin
        found.append(
            discharge(
                name="map_not_beyond_classes",
                subject=subject,
                statement=f"resolution_angstrom >= {margin} * best_class_resolution_angstrom",
                measured={
                    "resolution_angstrom": Measured(resolution),
                    "best_class_resolution_angstrom": Measured(best),
                },
                claim=lambda x: (
                    x["resolution_angstrom"]
                    >= z3.RealVal(repr(margin)) * x["best_class_resolution_angstrom"]
                ),
                explain=lambda v: (
                    f"the map claims {v['resolution_angstrom']:.2f} A; the best 2D class reaches "
                    f"{v['best_class_resolution_angstrom']:.2f} A"
                ),
                sigmas=s.sigmas,
            )
        )
    if facts.symmetry.upper() != "C1" and facts.symmetry_correlations:
        worst = min(facts.symmetry_correlations)
        threshold = s.symmetry_correlation
        found.append(
            discharge(
                name="symmetry_consistent",
                subject=subject,
                statement=f"min_g corr(map, g(map)) >= {threshold}",
                measured={"worst_correlation": Measured(worst)},
                claim=lambda x: x["worst_correlation"] >= z3.RealVal(repr(threshold)),
                explain=lambda v: (
                    f"under {facts.symmetry} the map correlates with its rotated self at "
                    f"worst {v['worst_correlation']:.2f} (at least {threshold} expected)"
                ),
                sigmas=s.sigmas,
            )
        )
    return found


def logic_score(results: list[ObligationResult]) -> float | None:
    """Share of the stated obligations that hold (``None`` when none was stated)."""
    if not results:
        return None
    return sum(r.holds for r in results) / len(results)
