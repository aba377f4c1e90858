"""The CPT loss law a sweep is fitted to: loss against the LR schedule's areas and the mix.

An eval inside a cosine run is not the final loss of a shorter run: the loss there also
depends on how far the LR has been annealed. So the law is written in the schedule's
areas, not in tokens (Tissue et al. 2024, "Scaling Law with Learning Rate Annealing",
arXiv:2408.11029): ``L(s) = L0 + A * S1^-alpha - C * S2``, with ``S1`` the forward area
(sum of the LRs so far) and ``S2`` the annealing area (sum of a momentum of the LR drops,
decay ``LAMBDA``). For continued pretraining Wang et al. 2025 ("Learning Dynamics in
Continual Pre-Training for Large Language Models", ICML 2025, arXiv:2505.07796) add a
distribution-shift term ``B * (1 - (1 + S1/tau)^-alpha)`` that moves the loss towards the
new data's optimum. steep's form, per eval set of role r (domain or general)::

    L(s) = L(0) + A * ((1 + F_r/tau)^-alpha - 1) - C * S2_r + B * (1 - (1 + F_o/kappa)^-alpha)

- ``F_r``: the forward area on the set's own role's tokens (sum of LR x the role's share),
  ``F_o`` the area on the other role's tokens, ``S2_r`` the annealing area on the role's
  tokens. The mix enters only through the areas, so the law is continuous in the mix and
  in the LR: one parameter set serves every point of the grid.
- Anchored at step 0: the law equals the base model's measured loss there, so the fitted
  ``L0 = L(0) - A`` of Tissue et al. is not a free parameter (the base's pretraining area
  folds into ``tau``).
- LRs are in units of the base's peak (``lr_fraction`` x the schedule's shape), so the
  fit needs no base model and its areas compare across points.
- Model size (only when a sweep spans several): D-CPT Law (Que et al., NeurIPS 2024,
  arXiv:2406.01375) adds a power-law term in the parameter count N. Anchored at step 0 the
  size moves how far the loss can fall, so it enters as the learning amplitude
  ``A * (1 - D * (N/N_ref)^-nu)``: bounded as N grows (the amplitude tends to ``A``), the
  same at every size when ``D = 0``. With one size ``D`` is held at 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LAW_NAME = (
    "LR-annealing law (Tissue et al. 2024, arXiv:2408.11029) with the CPT distribution-shift "
    "term of Wang et al. 2025 (ICML, arXiv:2505.07796), per eval set, mix through the areas"
)
LAMBDA = 0.999  # Tissue et al.'s decay of the annealing momentum
PARAMS = ("A", "alpha", "tau", "C", "B", "kappa", "D", "nu")
SIZE_PARAMS = (6, 7)  # D and nu: fitted only when the sweep spans model sizes
# (low, high) per parameter, in the fit's normalised units (areas / the largest area seen,
# losses / the base loss, sizes / the largest size seen)
LOWER = np.array([0.0, 0.05, 1e-4, 0.0, -1.0, 1e-4, -1.0, 0.05])
UPPER = np.array([5.0, 3.0, 1e3, 5.0, 1.0, 1e3, 1.0, 2.0])


@dataclass(frozen=True)
class Areas:
    """The schedule's areas at each eval step of one run, for one role."""

    own: np.ndarray  # F_r: LR x own-role share, summed
    other: np.ndarray  # F_o: LR x other-role share, summed
    anneal: np.ndarray  # S2_r: annealing momentum x own-role share, summed
    size: np.ndarray | float = 1.0  # N / N_ref of the run's model (1: one size)

    def rows(self, idx: np.ndarray) -> Areas:
        """The areas of rows ``idx`` (a bootstrap's resample)."""
        size = self.size[idx] if isinstance(self.size, np.ndarray) else self.size
        return Areas(self.own[idx], self.other[idx], self.anneal[idx], size)


def areas(
    lrs: Sequence[float], shares: Sequence[float], at_steps: Sequence[int], decay_steps: int = 1
) -> Areas:
    """Areas after ``at_steps`` samples, from the LR and the role's token share of every
    sample (``lrs[i]``, ``shares[i]``: sample i, 0-based); a sample stands for
    ``decay_steps`` optimizer steps (the momentum decays that many times between two),
    and the caller scales the sums by it. The annealing momentum starts at the LR's first
    peak: a warmup's rise, kept in a momentum that decays by 0.1% a step, would otherwise
    cancel the annealing of a whole short run."""
    lr = np.asarray(lrs, dtype=float)
    w = np.asarray(shares, dtype=float)
    drops = np.diff(lr, prepend=lr[:1]) * -1.0  # eta_{i-1} - eta_i; 0 at the first step
    if len(lr):  # the warmup's rises are no (negative) annealing: Tissue et al. leave it out
        drops[: int(np.argmax(lr)) + 1] = 0.0
    momentum = np.empty_like(lr)
    m, decay = 0.0, LAMBDA**decay_steps
    for i, d in enumerate(drops):
        m = decay * m + d
        momentum[i] = m
    cum = [np.concatenate([[0.0], np.cumsum(x)]) for x in (lr * w, lr * (1 - w), momentum * w)]
    idx = np.clip(np.asarray(at_steps, dtype=int), 0, len(lr))
    return Areas(cum[0][idx], cum[1][idx], cum[2][idx])


def law(theta: np.ndarray, base: np.ndarray, a: Areas, scale: float) -> np.ndarray:
    """Predicted loss for parameters ``theta`` (``PARAMS``, normalised) at areas ``a``;
    ``base``: the step-0 loss, ``scale``: the area that normalises (the largest seen)."""
    amp, alpha, tau, c, b, kappa, d, nu = pad(theta)
    own, other, anneal = a.own / scale, a.other / scale, a.anneal / scale
    amp = amp * (1 - d * np.power(a.size, -nu))
    rel = (
        amp * ((1 + own / tau) ** -alpha - 1) - c * anneal + b * (1 - (1 + other / kappa) ** -alpha)
    )
    return base * (1 + rel)


def pad(theta: np.ndarray) -> np.ndarray:
    """Parameters of a fit saved before the size term: no size dependence (D = 0)."""
    theta = np.asarray(theta, dtype=float)
    return theta if len(theta) == len(PARAMS) else np.concatenate([theta, [0.0, 0.5]])


def _starts(fixed: dict[int, float]) -> list[np.ndarray]:
    """A few starting points across the curvature: the fit keeps the best."""
    out = []
    for amp in (0.1, 1.0):
        for tau in (0.01, 0.3):
            x = np.array([amp, 0.5, tau, 0.05, 0.0, tau, 0.0, 0.5])
            for i, v in fixed.items():
                x[i] = v
            out.append(x)
    return out


@dataclass
class Fit:
    theta: np.ndarray
    cost: float
    residuals: np.ndarray  # relative: (predicted - observed) / base


def fit(
    loss: np.ndarray,
    base: np.ndarray,
    a: Areas,
    scale: float,
    start: np.ndarray | None = None,
    fixed: dict[int, float] | None = None,
) -> Fit:
    """Least squares on the relative residuals (``scipy.optimize.least_squares``, bounded);
    from ``start`` alone when given (a bootstrap refit), else from several starts.
    ``fixed``: parameter index -> value held, not fitted (the size term of one size)."""
    from scipy.optimize import least_squares  # deferred: the `predict` extra

    fixed = {SIZE_PARAMS[0]: 0.0, SIZE_PARAMS[1]: 0.5} if fixed is None else fixed
    free = np.array([i not in fixed for i in range(len(PARAMS))])

    def full(x: np.ndarray, template: np.ndarray) -> np.ndarray:
        theta = template.copy()
        theta[free] = x
        return theta

    best, best_theta = None, None
    for x0 in [pad(start)] if start is not None else _starts(fixed):
        x0 = np.clip(x0, LOWER + 1e-9, UPPER - 1e-9)
        for i, v in fixed.items():
            x0[i] = v

        def resid(x: np.ndarray, x0: np.ndarray = x0) -> np.ndarray:
            return (law(full(x, x0), base, a, scale) - loss) / base

        with np.errstate(all="ignore"):
            r = least_squares(
                resid, x0[free], bounds=(LOWER[free], UPPER[free]), method="trf", max_nfev=400
            )
        if best is None or r.cost < best.cost:
            best, best_theta = r, full(r.x, x0)
    assert best is not None and best_theta is not None
    return Fit(best_theta, float(best.cost), best.fun)


def r_squared(observed: np.ndarray, predicted: np.ndarray) -> float | None:
    """1 - SS_res / SS_tot; None when the observations do not vary."""
    ss_tot = float(np.sum((observed - observed.mean()) ** 2))
    if ss_tot <= 0 or not math.isfinite(ss_tot):
        return None
    return 1.0 - float(np.sum((observed - predicted) ** 2)) / ss_tot
