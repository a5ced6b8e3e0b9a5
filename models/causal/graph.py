"""The causal graph of what limits an exposure's CTF-fit resolution, with physics priors.

Nodes carry ``kind`` (``factor``, ``effect`` or ``outcome``). Each factor acts through one
intermediate physical effect; the effect enters the outcome with unit weight, so the weight of a
``factor -> effect`` edge is the factor's whole effect on the outcome, and it is that weight
which is learned.

The model is linear-Gaussian in transformed variables, so conjugate updates are exact:

* outcome ``y = d**2`` (Angstrom^2), ``d`` the CTF-fit resolution. With a Gaussian envelope
  ``exp(-B s**2 / 4)`` the resolution at a fixed signal-to-noise threshold satisfies
  ``d**2 = B / (4 ln(S/N / threshold))``, so ``d**2`` is a B-factor-like quantity: additive in the
  envelope B-factor, and to first order in the log signal and log noise. At ``d ~ 4 A`` and
  ``ln(S/N / threshold) ~ 2`` one A^2 of B moves ``d**2`` by about 1/8 A^2 (``D2_PER_B``).
* regressors: the factors in the units of :data:`FACTORS` (``transform`` says which).

Prior means and standard deviations are stated with their source in :data:`FACTORS`; they are
deliberately wide (the data decide), and the tolerance of each weight is the error that would move
``d**2`` by half an A^2 over the factor's typical spread within a session.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np

__all__ = [
    "D2_PER_B",
    "FACTORS",
    "INTERCEPT_PRIOR",
    "OUTCOME",
    "FactorSpec",
    "causal_graph",
    "design_matrix",
    "edge_priors",
]

OUTCOME = "ctf_fit_resolution"
D2_PER_B = 1.0 / 8.0
"""d**2 per A^2 of envelope B at d ~ 4 A and ln(SNR / threshold) ~ 2 (see module docstring)."""

_INELASTIC_MFP_NM = 350.0
_D2_TYPICAL = 16.0
_LN_SNR_MARGIN = 2.0


@dataclass(frozen=True)
class FactorSpec:
    """One cause: its regressor, the effect it acts through, its prior and its tolerance."""

    name: str
    effect: str
    transform: str
    prior_mean: float
    prior_sd: float
    tolerance: float
    source: str


FACTORS: tuple[FactorSpec, ...] = (
    FactorSpec(
        "ice_thickness",
        "inelastic_amplitude_loss",
        "ice_thickness_nm / 100",
        # Elastic signal falls as exp(-t / lambda): ln S/N drops by t / lambda, and
        # d**2 = B / (4 ln(...)) rises by d**2 * (t / lambda) / ln(...); plus charging B per nm.
        prior_mean=_D2_TYPICAL * (100.0 / _INELASTIC_MFP_NM) / _LN_SNR_MARGIN
        + D2_PER_B * 0.2 * 100.0,
        prior_sd=4.0,
        tolerance=0.5 / 0.3,
        source="inelastic mean free path ~350 nm at 300 kV (Rice et al. 2018, Ultramicroscopy; "
        "Egerton, EELS in the Electron Microscope) plus ~0.2 A^2/nm charging B",
    ),
    FactorSpec(
        "dose",
        "shot_noise",
        "ln(dose_e_per_a2 / 40)",
        # Shot-noise S/N ~ dose: ln S/N rises by ln(dose); half of that gain is eaten by
        # radiation damage at the frequencies that set d (critical exposure).
        prior_mean=-0.5 * _D2_TYPICAL / _LN_SNR_MARGIN,
        prior_sd=6.0,
        tolerance=0.5 / 0.03,
        source="Poisson counting noise; optimal exposure vs critical exposure "
        "(Grant & Grigorieff 2015, eLife 4:e06980)",
    ),
    FactorSpec(
        "drift",
        "envelope_bfactor",
        "total_drift_px",
        prior_mean=D2_PER_B * 0.8,
        prior_sd=0.3,
        tolerance=0.5 / 6.0,
        source="uncorrected intra-frame blur ~0.8 A^2 of B per px of total drift "
        "(simulator's bfactor_per_drift_px; Zheng et al. 2017 MotionCor2; Brilot et al. 2012)",
    ),
    FactorSpec(
        "defocus",
        "ctf_aberration_loss",
        "defocus_um",
        prior_mean=1.0,
        prior_sd=2.0,
        tolerance=0.5 / 0.4,
        source="spatial-coherence envelope grows with defocus; denser Thon rings are harder to "
        "fit (Rohou & Grigorieff 2015, CTFFIND4)",
    ),
    FactorSpec(
        "astigmatism",
        "ctf_aberration_loss",
        "|astigmatism_angstrom| / 100",
        prior_mean=0.5,
        prior_sd=1.5,
        tolerance=0.5 / 1.0,
        source="elliptical Thon rings fitted by a 1D average lose high-resolution rings "
        "(Mindell & Grigorieff 2003, CTFFIND3)",
    ),
    FactorSpec(
        "beam_tilt",
        "ctf_aberration_loss",
        "|beam_tilt_mrad|",
        prior_mean=1.0,
        prior_sd=3.0,
        tolerance=0.5 / 0.1,
        source="axial coma: phase error Cs * lambda**2 * s**3 * tau "
        "(Glaeser et al. 2011, J Struct Biol 174:1)",
    ),
    FactorSpec(
        "particle_density",
        "signal_in_averages",
        "ln(1 + n_particles)",
        prior_mean=-0.5,
        prior_sd=1.5,
        tolerance=0.5 / 0.5,
        source="protein adds elastic contrast to the Thon rings; an empty hole is pure ice "
        "(Rohou & Grigorieff 2015)",
    ),
)

INTERCEPT_PRIOR = (9.0, 10.0)
"""Prior (mean, sd) of d**2 at zero of every regressor, A^2: ~3 A fits on thin, still ice."""


def causal_graph() -> nx.DiGraph:
    """The DAG ``factor -> effect -> outcome``.

    ``factor -> effect`` edges carry ``prior_mean``, ``prior_sd``, ``tolerance``, ``source`` and
    ``transform``; ``effect -> outcome`` edges carry ``weight = 1`` (the effect is expressed in
    the outcome's units).
    """
    g = nx.DiGraph()
    g.add_node(OUTCOME, kind="outcome", units="A^2 (d**2)")
    for f in FACTORS:
        g.add_node(f.name, kind="factor", transform=f.transform)
        g.add_node(f.effect, kind="effect")
        g.add_edge(
            f.name,
            f.effect,
            prior_mean=f.prior_mean,
            prior_sd=f.prior_sd,
            tolerance=f.tolerance,
            source=f.source,
            transform=f.transform,
        )
        g.add_edge(f.effect, OUTCOME, weight=1.0)
    return g


def edge_priors(graph: nx.DiGraph) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Names, prior means, prior sds and tolerances of the learned weights, intercept first.

    The order is that of :data:`FACTORS` restricted to the factors present in ``graph``.
    """
    names = ["intercept"]
    means = [INTERCEPT_PRIOR[0]]
    sds = [INTERCEPT_PRIOR[1]]
    tols = [math.inf]
    for f in FACTORS:
        if not graph.has_edge(f.name, f.effect):
            continue
        e = graph.edges[f.name, f.effect]
        names.append(f.name)
        means.append(float(e["prior_mean"]))
        sds.append(float(e["prior_sd"]))
        tols.append(float(e["tolerance"]))
    return names, np.array(means), np.array(sds), np.array(tols)


def design_matrix(measurements: Mapping[str, np.ndarray | float]) -> np.ndarray:
    """Regressor rows ``(n, 1 + len(FACTORS))`` (intercept column first) from measurements.

    Keys: ``ice_thickness_nm``, ``dose_e_per_a2``, ``total_drift_px``, ``defocus_um``,
    ``astigmatism_angstrom``, ``beam_tilt_mrad``, ``n_particles``; scalars or ``(n,)`` arrays.
    """
    missing = {
        "ice_thickness_nm",
        "dose_e_per_a2",
        "total_drift_px",
        "defocus_um",
        "astigmatism_angstrom",
        "beam_tilt_mrad",
        "n_particles",
    } - set(measurements)
    if missing:
        raise ValueError(f"measurements lack {sorted(missing)}")
    m = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in measurements.items()}
    if np.any(m["dose_e_per_a2"] <= 0):
        raise ValueError(f"dose_e_per_a2 must be > 0, got min {m['dose_e_per_a2'].min()}")
    if np.any(m["n_particles"] < 0):
        raise ValueError(f"n_particles must be >= 0, got min {m['n_particles'].min()}")
    cols = [
        m["ice_thickness_nm"] / 100.0,
        np.log(m["dose_e_per_a2"] / 40.0),
        m["total_drift_px"],
        m["defocus_um"],
        np.abs(m["astigmatism_angstrom"]) / 100.0,
        np.abs(m["beam_tilt_mrad"]),
        np.log1p(m["n_particles"]),
    ]
    cols = list(np.broadcast_arrays(*cols))
    return np.column_stack([np.ones_like(cols[0]), *cols])
