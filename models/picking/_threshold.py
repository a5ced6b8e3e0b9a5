"""``threshold="auto"``: split the peak scores only when they are bimodal.

The local maxima of a picker's response (after NMS) are a mixture of background peaks and
particles. When both are present their scores form two modes with a cut between them. When only one
kind is present (a crowded exposure where every peak is a particle, or an empty one where
none is) a two-class split such as Otsu's (1979) still cuts the set in two and throws away
half of it, so the split is made only when the scores are bimodal:

- a two-component Gaussian mixture beats one Gaussian by the BIC (Schwarz 1978) by more
  than :data:`BIC_MARGIN` (10: "very strong" evidence, Kass & Raftery 1995);
- the two components are cleanly separated: Ashman's ``D = sqrt(2) |m1 - m2| /
  sqrt(s1^2 + s2^2) > ASHMAN_D_MIN`` (2, Ashman et al. 1994). The BIC alone prefers two
  components for any skewed unimodal sample of a few hundred, and peak heights are skewed;
- each component holds at least :data:`MIN_COMPONENT_PEAKS` peaks: one outlying peak is not
  a mode;
- the lower component looks like background: its mean is below the noise floor (when one is
  known). Two groups of particles (thin and thick ice) are not split.

The cut is then where the upper component's posterior reaches one half, between the two
means. Otherwise the cut is the noise floor: peaks more than ``k`` noise sigmas above the
background, which the caller computes from an estimate of the response's noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: BIC(1 Gaussian) - BIC(2 Gaussians) must exceed this for the scores to count as bimodal
BIC_MARGIN = 10.0
#: and the two components must be at least this far apart (Ashman's D)
ASHMAN_D_MIN = 2.0
#: and each must hold at least this many peaks (its weight times the number of peaks)
MIN_COMPONENT_PEAKS = 3.0
#: fewer peaks than this are never split
MIN_PEAKS_TO_SPLIT = 8
#: no component is narrower than this fraction of the sample's standard deviation
_MIN_SIGMA_FRACTION = 0.1
_EM_ITERATIONS = 200


@dataclass(frozen=True)
class Bimodality:
    """Two-component fit of a set of scores.

    Attributes
    ----------
    n
        Number of scores.
    delta_bic
        ``BIC(1 component) - BIC(2 components)``: positive favours two.
    ashman_d
        Separation of the two components in units of their pooled width.
    means, sigmas, weights
        The components, lower mean first.
    """

    n: int
    delta_bic: float
    ashman_d: float
    means: tuple[float, float]
    sigmas: tuple[float, float]
    weights: tuple[float, float]

    @property
    def bimodal(self) -> bool:
        """Strong BIC evidence, clean separation, and enough peaks in each component."""
        return (
            self.delta_bic > BIC_MARGIN
            and self.ashman_d > ASHMAN_D_MIN
            and min(self.weights) * self.n >= MIN_COMPONENT_PEAKS
        )

    def log_joint(self, scores: torch.Tensor) -> torch.Tensor:
        """``(n, 2)`` float64: log of each component's weight times its density at ``scores``."""
        x = scores.detach().to(torch.float64).flatten().cpu()[:, None]
        mean = torch.tensor(self.means, dtype=torch.float64)
        var = torch.tensor(self.sigmas, dtype=torch.float64).clamp(min=1e-150) ** 2
        weight = torch.tensor(self.weights, dtype=torch.float64).clamp(min=1e-300)
        return torch.log(weight) + _normal_log_pdf(x, mean, var)

    def upper_posterior(self, scores: torch.Tensor) -> torch.Tensor:
        """``(n,)`` float64: the probability that each score belongs to the upper component."""
        joint = self.log_joint(scores)
        return torch.exp(joint[:, 1] - torch.logsumexp(joint, dim=1))

    def boundary(self) -> float:
        """The largest score between the means where the lower component is the likelier."""
        grid = torch.linspace(self.means[0], self.means[1], 1001, dtype=torch.float64)
        log_p = self.log_joint(grid)
        lower = torch.nonzero(log_p[:, 0] > log_p[:, 1]).flatten()
        return float(grid[int(lower[-1])]) if lower.numel() else self.means[0]


def otsu_threshold(scores: torch.Tensor) -> float:
    """The split of ``scores`` that maximises the between-class variance (Otsu 1979)."""
    values = torch.sort(scores.to(torch.float64)).values
    n = values.numel()
    if n < 2:
        return float(values[0]) - 1.0 if n else 0.0
    counts = torch.arange(1, n, dtype=torch.float64, device=values.device)
    cumulative = torch.cumsum(values, 0)[:-1]
    total = values.sum()
    mean_low = cumulative / counts
    mean_high = (total - cumulative) / (n - counts)
    between = counts * (n - counts) * (mean_high - mean_low) ** 2
    i = int(torch.argmax(between))
    return float(0.5 * (values[i] + values[i + 1]))


def _normal_log_pdf(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return -0.5 * (torch.log(2.0 * math.pi * var) + (x - mean) ** 2 / var)


def bimodality(scores: torch.Tensor) -> Bimodality:
    """Fit one and two Gaussians to ``scores`` ``(n,)`` (n >= 4) and compare them.

    The mixture is fitted by EM from Otsu's split (deterministic). Each component's sigma is
    kept above ``_MIN_SIGMA_FRACTION`` of the sample's, so that a component cannot collapse
    onto a point or two and win the likelihood by itself.
    """
    x = scores.detach().to(torch.float64).flatten().cpu()
    n = x.numel()
    if n < 4:
        raise ValueError(f"need at least 4 scores to fit two components, got {n}")
    total_var = float(x.var(unbiased=False))
    if total_var <= 0:
        mean = float(x.mean())
        return Bimodality(n, 0.0, 0.0, (mean, mean), (0.0, 0.0), (0.5, 0.5))
    var_floor = _MIN_SIGMA_FRACTION**2 * total_var
    log_l1 = float(_normal_log_pdf(x, x.mean(), torch.tensor(total_var)).sum())

    cut = otsu_threshold(x)
    upper = (x > cut).to(torch.float64)
    resp = torch.stack([1.0 - upper, upper], dim=1)  # (n, 2) responsibilities
    log_l2 = -math.inf
    means = var = weights = torch.zeros(2, dtype=torch.float64)
    for _ in range(_EM_ITERATIONS):
        counts = resp.sum(0).clamp(min=1e-12)
        weights = counts / n
        means = (resp * x[:, None]).sum(0) / counts
        var = ((resp * (x[:, None] - means) ** 2).sum(0) / counts).clamp(min=var_floor)
        joint = torch.log(weights.clamp(min=1e-300)) + _normal_log_pdf(x[:, None], means, var)
        total = torch.logsumexp(joint, dim=1)
        resp = torch.exp(joint - total[:, None])
        new = float(total.sum())
        if new - log_l2 < 1e-9 * abs(new):
            log_l2 = new
            break
        log_l2 = new
    # BIC = k ln n - 2 ln L, with 2 parameters for one Gaussian and 5 for a mixture of two
    delta_bic = (2 * math.log(n) - 2 * log_l1) - (5 * math.log(n) - 2 * log_l2)
    order = torch.argsort(means)
    means, var, weights = means[order], var[order], weights[order]
    d = math.sqrt(2.0) * float(means[1] - means[0]) / math.sqrt(float(var.sum()))
    sigmas = var.sqrt()
    return Bimodality(
        n,
        delta_bic,
        d,
        (float(means[0]), float(means[1])),
        (float(sigmas[0]), float(sigmas[1])),
        (float(weights[0]), float(weights[1])),
    )


def auto_threshold(scores: torch.Tensor, *, noise_floor: float) -> float:
    """The ``threshold="auto"`` cut for the peak ``scores`` ``(n,)``, in the scores' units.

    The boundary between the two components when the scores are bimodal (see the module
    docstring) and the lower component's mean lies below ``noise_floor``; ``noise_floor``
    otherwise. Picks keep the scores strictly above the cut.
    """
    if scores.numel() < MIN_PEAKS_TO_SPLIT:
        return noise_floor
    fit = bimodality(scores)
    if fit.bimodal and fit.means[0] < noise_floor:
        return fit.boundary()
    return noise_floor
