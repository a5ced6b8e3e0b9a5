"""The statistics behind :class:`~.class2d.Class2D`'s per-particle outlier flags and the
split that re-seeds an empty class: robust z-scores within a class and among all particles,
and the worst-explained particles of the class that explains its members least evenly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from causalscope.models.classification._grids import gaussian_low_pass

__all__ = [
    "AGGREGATE_Z",
    "JOINT_Z",
    "ParticleFlags",
    "background_statistics",
    "class_outliers",
    "flat_outliers",
    "global_z",
    "joint_outliers",
    "particle_flags",
    "robust_z",
    "split_seeds",
]

#: a particle whose misfit and power z-scores add up to more than this is an outlier
JOINT_Z = 4.0
#: ... and one whose misfit, power, mass and halo z-scores add up to more than this
AGGREGATE_Z = 5.0
#: a class whose members' median in-plane gap of its average (log-likelihood,
#: :meth:`._em.EStep.in_plane_ratio`) is below this has no in-plane contrast to judge them by
MIN_IN_PLANE_GAP = 40.0
#: the in-plane z-score beyond which a particle is flat (:func:`flat_outliers`)
FLAT_Z = 5.0


def robust_z(
    values: np.ndarray, classes: np.ndarray, index: np.ndarray, *, floor_share: float
) -> np.ndarray:
    """Robust z-score of the particles ``index``' ``values`` (misfit, log power) among the
    particles of their class (``classes``: each stored particle's, -1 for none), from the
    class's lower quantiles only: junk raises both (a misfit: aggregates; power: carbon
    edges, dense ice, aggregates), and may be the class's majority. With the 10th and 25th
    percentiles ``q10, q25`` of a Gaussian, ``sigma = (q25 - q10) / 0.607`` and ``mean = q25 +
    0.674 sigma``; classes of fewer than 20 use the median and the MAD.

    Sigma is at least ``floor_share`` of the pooled one (the MAD of every particle about its
    class's median): a real class whose misfits have a tight lower part and a long upper tail
    read 5-6 % of 393 EMPIAR-10028 ribosomes as outliers in one random start of four, 1.5 %
    with a floor of 0.75, and on simulated sessions junk rejected stayed within 0.7 % while
    2-4 % more good particles were kept.
    """
    z = np.zeros(len(index))
    stored = classes >= 0
    spread = np.zeros(int(stored.sum()))
    for k in np.unique(classes[stored]):
        members = classes[stored] == k
        spread[members] = np.abs(values[stored][members] - np.median(values[stored][members]))
    floor = floor_share * 1.4826 * float(np.median(spread)) if spread.size else 0.0
    for k in np.unique(classes[index]):
        members = values[classes == k]
        if members.size >= 20:
            q10, q25 = np.percentile(members, [10, 25])
            sigma = (q25 - q10) / 0.6071
            centre = q25 + 0.6745 * sigma
        else:
            centre = float(np.median(members))
            sigma = 1.4826 * float(np.median(np.abs(members - centre)))
        here = classes[index] == k
        sigma = max(sigma, floor)
        z[here] = (values[index][here] - centre) / max(sigma, 1e-6 * max(centre, 1e-12))
    return z


def joint_outliers(
    z_misfit: np.ndarray, z_power: np.ndarray, z_mass: np.ndarray, z_halo: np.ndarray
) -> np.ndarray:
    """Particles flagged by z-scores within their class (:func:`robust_z`) taken together,
    none of which need reach the single-score limit.

    An aggregate (particles on top of one another, or touching) is explained worse, carries
    more power and more mass than one particle, and has density beyond its radius (a halo).
    Misfit and power alone: each z near 2, their sum beyond :data:`JOINT_Z` (2 in 14,681
    good particles of six simulated sessions against 58 of the 170 junk particles left in
    good classes; on real expert picks it adds 0-1.3 % to the other flags). The four
    together beyond :data:`AGGREGATE_Z`, with misfit, power and mass each above their
    class's centre: the worst selected purity of ``bench classes`` seeds 0-5 rose from
    0.89-0.97 to 0.957-0.974 (3 of the 6 aggregates left in seed 3's worst class caught)
    for at most 0.2 % of the good particles, and 0.5-1.2 % more of 433 EMPIAR-10028 expert
    picks flagged (three random starts; beyond 4.5 and without the three conditions,
    1.8-2.5 %).
    """
    flagged = (z_misfit + z_power) > JOINT_Z
    raised = (z_misfit > 0) & (z_power > 0) & (z_mass > 0)
    return flagged | (raised & ((z_misfit + z_power + z_mass + z_halo) > AGGREGATE_Z))


def class_outliers(
    z_misfit: np.ndarray,
    z_power: np.ndarray,
    z_mass: np.ndarray,
    z_halo: np.ndarray,
    *,
    limit: float,
) -> np.ndarray:
    """Particles flagged by their z-scores within their class (:func:`robust_z`): explained
    worse or carrying more low-resolution power than ``limit`` allows, far lighter than the
    class (one species' projected mass is the same from every view: a simulated ice blob
    the size of a view, mass z -5.0 in its class of beta-galactosidase and -3.4 among all
    particles, where the global rule did not reach; of four sessions' 10,089 good particles
    kept, 3 at most below -3.5 in any one), or by the scores together
    (:func:`joint_outliers`)."""
    flagged = (z_misfit > limit) | (z_power > limit) | (z_mass < -limit)
    return flagged | joint_outliers(z_misfit, z_power, z_mass, z_halo)


def flat_outliers(
    ratio: np.ndarray,
    expected: np.ndarray,
    classes: np.ndarray,
    index: np.ndarray,
    *,
    limit: float,
    floor_share: float,
) -> np.ndarray:
    """The particles ``index`` flatter in-plane than their class (a round ice blob in a class
    of a view): their in-plane ratio (:meth:`._em.EStep.in_plane_ratio`, every stored
    particle's in ``ratio``, its class average's own gap in ``expected``) more than
    ``max(limit, FLAT_Z)`` robust sigmas below the class's (:func:`robust_z` of minus the
    ratio: from the class's upper quantiles), in classes whose members' median ``expected``
    is at least :data:`MIN_IN_PLANE_GAP`.

    The noise alone is about ``sqrt(2 / gap)`` of the ratio, and bicubic turns alone give a
    round average a gap of 27-34 (Gaussian blobs in the tests); simulated classes of views:
    apoferritin 58-114, beta-galactosidase 98-190. The best of many turns gives good
    particles a longer tail than a Gaussian's: at 3.5, one simulated session lost 15 good
    particles (z up to 4.8) and its worst selected class fell below 0.95 purity; the ice
    blobs left in a class of views read 5.8-8.3 (both limits chosen on those two sessions,
    then checked on eight others, unchanged but one good particle). Give the split of
    two-population classes the other flags only: with these taken out first, the classes
    took other courses and one session ended with a class of 45 beta-galactosidase and 5
    ice blobs.
    """
    z = robust_z(-ratio, classes, index, floor_share=floor_share)
    for k in np.unique(classes[index]):  # only where the turn can be told
        if np.median(expected[classes == k]) < MIN_IN_PLANE_GAP:
            z[classes[index] == k] = 0.0
    return z > max(limit, FLAT_Z)


@dataclass(frozen=True)
class ParticleFlags:
    """The flags of the particles ``index`` of :func:`particle_flags` (``(n,)`` each)."""

    z_misfit: np.ndarray  # robust z of the low-resolution misfit within the class
    alone: np.ndarray  # by the image alone, among all particles (halo, mass, power, structure)
    flat: np.ndarray  # by the in-plane contrast alone (:func:`flat_outliers`), no other flag
    outlier: np.ndarray  # any of them


def particle_flags(
    *,
    misfit: np.ndarray,
    log_power: np.ndarray,
    mass: np.ndarray,
    halo: np.ndarray,
    structure: np.ndarray,
    in_plane: np.ndarray,
    in_plane_expected: np.ndarray,
    classes: np.ndarray,
    index: np.ndarray,
    limit: float,
    floor_share: float,
) -> ParticleFlags:
    """Every outlier flag of the particles ``index`` from the statistics of every stored
    particle (``(N,)`` each; ``classes`` their classes, -1 for none): within the class
    (:func:`class_outliers`, :func:`flat_outliers`) and, from the image alone, against all
    particles: the halo, the mass, far more low-resolution power than any particle's (a
    carbon edge or dense ice in a class whose own spread, or junk majority, hides it from
    the class's z) and structure around it (an aggregate), beyond ``limit``."""
    z = robust_z(misfit, classes, index, floor_share=floor_share)
    z_power = robust_z(log_power, classes, index, floor_share=floor_share)
    alone = np.abs(global_z(halo)[index]) > limit
    alone |= np.abs(global_z(mass)[index]) > limit
    alone |= global_z(log_power)[index] > limit
    alone |= global_z(structure)[index] > limit
    z_mass = robust_z(mass, classes, index, floor_share=floor_share)
    z_halo = robust_z(halo, classes, index, floor_share=floor_share)
    outlier = alone | class_outliers(z, z_power, z_mass, z_halo, limit=limit)
    flat = flat_outliers(
        in_plane, in_plane_expected, classes, index, limit=limit, floor_share=floor_share
    )
    flat &= ~outlier
    return ParticleFlags(z, alone, flat, outlier | flat)


def global_z(values: np.ndarray) -> np.ndarray:
    """Robust z-score (median, MAD) of each value among all of them (zeros when they are
    all equal, as without a diameter)."""
    if values.size == 0:
        return values
    centre = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - centre)))
    if sigma <= 0:
        return np.zeros(values.size)
    return (values - centre) / sigma


def split_seeds(
    misfit: np.ndarray, classes: np.ndarray, large: np.ndarray, n_seeds: int, per_seed: int
) -> np.ndarray:
    """``(n, per_seed)`` particle indices, ``n <= n_seeds``: the ``per_seed`` worst-explained
    particles (largest misfit over their class's median) of each of the classes that explain
    their members least evenly (the mean ratio of their worst fifth), among the ``large``
    ``(K,)`` classes of at least ``4 per_seed`` particles. A class holding two populations (a
    view of the particle and round ice blobs of a similar size) has a long upper tail of
    misfits made of the minority; a seed from that tail draws the minority out of it."""
    sources: list[tuple[float, np.ndarray]] = []
    for k in np.unique(classes[classes >= 0]):
        members = np.flatnonzero(classes == k)
        if not large[k] or members.size < 4 * per_seed:
            continue
        ratio = misfit[members] / max(float(np.median(misfit[members])), 1e-12)
        order = np.argsort(-ratio)
        tail = order[: max(per_seed, members.size // 5)]
        sources.append((float(np.mean(ratio[tail])), members[order[:per_seed]]))
    sources.sort(key=lambda item: -item[0])
    chosen = [particles for _, particles in sources[:n_seeds]]
    return np.stack(chosen) if chosen else np.zeros((0, per_seed), dtype=int)


def background_statistics(
    images: torch.Tensor, *, pixel_size_angstrom: float, diameter_angstrom: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(halo, structure)`` ``(m,)`` of ``images`` ``(m, b, b)`` from the ring between the
    particle's radius (plus 2 px) and 95 % of the half box: its mean (a halo: ice and carbon
    reach past the particle, a protein does not) and the log of its variance after a 20 A
    low-pass (structure: an aggregate's other particles, an edge, a neighbour; extraction's
    normalisation leaves the ring's noise at unit variance, nearly all of it finer than
    20 A). Zeros without a diameter, or when that ring is empty.

    Simulated aggregates (3-5 copies of a particle 1.2 radii apart, rms) have a structure
    z-score among all particles of 11 (median), carbon edges 30, ice blobs 1-2.4; of two
    sessions' 5,081 good particles kept, none above 3 (5 above 2.5). The aggregates it
    catches are those the other rules leave: light or dim ones (a neighbour in the ring
    raises the normalisation's sigma, so the particle reads lighter than its class).
    """
    m, b = images.shape[0], images.shape[-1]
    zeros = np.zeros(m)
    if diameter_angstrom is None:
        return zeros, zeros
    axis = torch.arange(b, dtype=torch.float32, device=images.device) - b // 2
    radius = torch.sqrt(axis[:, None] ** 2 + axis[None, :] ** 2)
    inner = diameter_angstrom / 2 / pixel_size_angstrom + 2
    ring = (radius >= inner) & (radius <= 0.95 * b / 2)
    if int(ring.sum()) < 2:
        return zeros, zeros
    low = gaussian_low_pass(
        images, pixel_size_angstrom=pixel_size_angstrom, resolution_angstrom=20.0
    )
    variance = low[:, ring].double().var(dim=1).clamp(min=1e-30).cpu()
    halo = images[:, ring].mean(dim=1).double().cpu().numpy()
    return halo, np.log(variance.numpy())
