r"""DDIM (Song, Meng & Ermon 2021, "Denoising diffusion implicit models", eq. 12), for any schedule."""

from __future__ import annotations

import math

from .._utils import check_real
from .base import Sampler, schedule_point


class DDIM(Sampler):
    r"""DDIM, written with the data prediction ``D`` and the log-SNR step ``h = lambda_1 - lambda_0``:

    .. math:: x_1 = \alpha_1 D + \sqrt{\sigma_1^2 - \sigma_\eta^2}\,\hat\epsilon + \sigma_\eta z,\qquad
              \hat\epsilon = \frac{x_0 - \alpha_0 D}{\sigma_0},\qquad
              \sigma_\eta = \eta\,\sigma_1\sqrt{1 - e^{-2h}}.

    ``eta = 0`` is the deterministic sampler, a first-order exponential integrator of the
    probability-flow ODE, ``x_1 = (sigma_1/sigma_0) x_0 - alpha_1 (e^{-h} - 1) D`` (the first-order
    DPM-Solver++, Lu et al. 2022, "DPM-Solver++", eq. 8). ``sigma_eta`` is the posterior standard
    deviation of ``q(x_1 | x_0, D)`` times ``eta`` (DDIM eq. 16 for any ``alpha``, ``sigma``); ``eta = 1``
    is ancestral DDPM sampling. ``z = dW / sqrt|t_1 - t_0|`` comes from the Brownian source.

    Arguments:
        eta: stochasticity, ``eta >= 0`` (default 0).

    Order 1 (weak order 1 for ``eta > 0``), one model call per step.
    """

    name = "ddim"
    order = 1.0
    nfe_per_step = 1

    def __init__(self, eta: float = 0.0) -> None:
        self.eta = check_real("eta", eta, nonnegative=True)
        self.stochastic = self.eta > 0

    def coefficients(self, p0, p1) -> tuple[float, float, float]:
        """``(c_x, c_d, c_z)`` of the step ``x_1 = c_x x_0 + c_d D(x_0, t_0) + c_z z`` between the schedule
        points ``p0`` and ``p1`` (``c_z = 0`` for ``eta = 0``); AdjointDEIS-1 transposes this step."""
        h = p1.log_snr - p0.log_snr
        if not self.stochastic:
            return p1.sigma / p0.sigma, -p1.alpha * math.expm1(-h), 0.0
        sigma_eta = self.eta * p1.sigma * math.sqrt(-math.expm1(-2.0 * h))
        keep = math.sqrt(max(p1.sigma**2 - sigma_eta**2, 0.0))
        return keep / p0.sigma, p1.alpha - keep * p0.alpha / p0.sigma, sigma_eta

    def step(self, ctx, k, t0, t1, x, state):
        p0, p1 = schedule_point(ctx.schedule, t0), schedule_point(ctx.schedule, t1)
        d = ctx.denoiser(x, t0)
        c_x, c_d, c_z = self.coefficients(p0, p1)
        x1 = c_x * x + c_d * d
        return (x1 + c_z * ctx.normal(k, t0, t1) if self.stochastic else x1), state

    def __repr__(self) -> str:
        return f"DDIM(eta={self.eta})"
