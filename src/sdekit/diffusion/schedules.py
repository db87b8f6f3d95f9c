r"""Noise schedules: the forward process ``x_t = alpha(t) x_0 + sigma(t) eps``, ``eps ~ N(0, I)``.

A schedule fixes the two marginal coefficients and everything derived from them:

* the log signal-to-noise ratio ``lambda(t) = log(alpha(t) / sigma(t))`` (decreasing in ``t``) and its
  inverse ``t_of_log_snr``, which exponential-integrator samplers step in;
* the linear forward SDE with these marginals (Song et al. 2021, "Score-based generative modeling
  through stochastic differential equations", ICLR):

  .. math::  dx = f(t)\,x\,dt + g(t)\,dW, \qquad f = \frac{d\log\alpha}{dt}, \qquad
             g^2 = \frac{d\sigma^2}{dt} - 2 f \sigma^2 = -2\sigma^2 \frac{d\lambda}{dt}.

Time ``t`` may be a Python float, a 0-d tensor or a per-sample tensor ``(batch,)``; every method
returns a tensor of the shape of ``t`` (floats become float64). ``broadcast_like`` (the layer's ``_utils``)
turns a ``(batch,)`` coefficient into one that broadcasts against ``x: (batch, *event)``.

The schedules here: :class:`VP` (linear beta), :class:`CosineVP`, :class:`DiscreteVP` (a
discrete-time model read in continuous time), :class:`SubVP`, :class:`VE`, :class:`EDM` and
:class:`LinearFlow` (the flow-matching / rectified-flow interpolant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._utils import as_time, check_real

__all__ = ["Schedule", "VP", "CosineVP", "DiscreteVP", "SubVP", "VE", "EDM", "LinearFlow"]


class Schedule:
    r"""Base class of noise schedules: ``x_t = alpha(t) x_0 + sigma(t) eps`` on ``[t_min, t_max]``.

    A subclass implements ``log_alpha``, ``log_sigma``, ``d_alpha``, ``d_sigma`` and
    ``t_of_log_snr``, and may override any derived quantity with a closed form that is more accurate.

    Every schedule accepts its whole documented time range, ends included, and there ``alpha``,
    ``sigma`` and ``log_snr`` are finite or exactly ``+-inf``:

    ==============================  ===================  ==============================================
    schedule                        time range           at the ends
    ==============================  ===================  ==============================================
    VP, SubVP, DiscreteVP           ``t >= 0``           ``t = 0``: ``alpha = 1``, ``sigma = 0``,
                                                         ``log_snr = +inf``
    CosineVP, LinearFlow            ``0 <= t <= 1``      ``t = 0`` as above; ``t = 1``: ``alpha = 0``,
                                                         ``sigma = 1``, ``log_snr = -inf``
    VE                              any real ``t``       finite
    EDM                             ``t > 0``            finite on ``[sigma_min, sigma_max]``
    ==============================  ===================  ==============================================

    Samplers step onto ``sigma = 0`` exactly (the data-prediction ones return ``D``); a step that starts
    where ``alpha = 0`` sees pure noise.

    Attributes:
        t_min, t_max: the time interval samplers run on (``t_max``: the prior; ``t_min``: the data
            end, where ``sigma`` is small but, for most schedules, not zero).
        is_variance_preserving: ``alpha^2 + sigma^2 = 1`` for every ``t``.
        prior_std: standard deviation of the prior ``N(0, prior_std^2 I)`` that stands in for the
            marginal at ``t_max``.
    """

    is_variance_preserving: bool = False
    t_min: float
    t_max: float

    def _set_interval(self, t_min, t_max, lo: float = -math.inf, hi: float = math.inf) -> None:
        t_min = check_real("t_min", t_min)
        t_max = check_real("t_max", t_max)
        if not lo <= t_min < t_max <= hi:
            raise ValueError(
                f"{type(self).__name__} needs {lo} <= t_min < t_max <= {hi}; got t_min={t_min}, t_max={t_max}"
            )
        self.t_min, self.t_max = t_min, t_max

    # -- the primitives (subclasses) --------------------------------------------------------
    def log_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        """``log alpha(t)``."""
        raise NotImplementedError

    def log_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        """``log sigma(t)``."""
        raise NotImplementedError

    def d_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        """``d alpha / dt``."""
        raise NotImplementedError

    def d_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        """``d sigma / dt``."""
        raise NotImplementedError

    def t_of_log_snr(self, lam: float | torch.Tensor) -> torch.Tensor:
        """The time at which ``log_snr(t) == lam`` (the inverse of :meth:`log_snr`)."""
        raise NotImplementedError

    # -- derived quantities ------------------------------------------------------------------
    def alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        """Signal coefficient ``alpha(t)`` of ``x_t = alpha x_0 + sigma eps``."""
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        """Noise coefficient ``sigma(t)`` of ``x_t = alpha x_0 + sigma eps``."""
        return torch.exp(self.log_sigma(t))

    def log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        r"""The log signal-to-noise ratio ``lambda(t) = log(alpha(t) / sigma(t))``, decreasing in ``t``."""
        return self.log_alpha(t) - self.log_sigma(t)

    def d_log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        r"""``d lambda / dt = d log alpha / dt - d log sigma / dt = -g(t)^2 / (2 sigma(t)^2)`` (< 0)."""
        return self.d_alpha(t) / self.alpha(t) - self.d_sigma(t) / self.sigma(t)

    def f(self, t: float | torch.Tensor) -> torch.Tensor:
        r"""Drift coefficient of the forward SDE ``dx = f(t) x dt + g(t) dW``: ``f = d log alpha / dt``."""
        return self.d_alpha(t) / self.alpha(t)

    def g2(self, t: float | torch.Tensor) -> torch.Tensor:
        r"""Squared diffusion coefficient ``g^2 = d sigma^2/dt - 2 f sigma^2``."""
        s = self.sigma(t)
        return 2.0 * s * (self.d_sigma(t) - self.f(t) * s)

    def g(self, t: float | torch.Tensor) -> torch.Tensor:
        """Diffusion coefficient ``g(t) = sqrt(g2(t))`` of the forward SDE."""
        return torch.sqrt(self.g2(t).clamp_min(0.0))

    def sigma_tilde(self, t: float | torch.Tensor) -> torch.Tensor:
        """``sigma / alpha = exp(-lambda)``: the noise level of the scaled state ``x / alpha``, i.e. the
        ``sigma`` of the equivalent variance-exploding process (Karras et al. 2022, eq. 4)."""
        return torch.exp(-self.log_snr(t))

    @property
    def prior_std(self) -> float:
        """Standard deviation of the prior at ``t_max``."""
        return float(self.sigma(self.t_max))

    def prior_sample(self, shape: int | Sequence[int], generator: torch.Generator | None = None, *,
                     dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
        """Draw ``x_T ~ N(0, prior_std^2 I)`` of ``shape`` (e.g. ``(batch, *event)``).

        Arguments:
            shape: the sample shape.
            generator: a ``torch.Generator`` (on ``device``) for reproducible draws; ``None`` uses
                torch's global generator.
            dtype, device: of the result (default: torch's default dtype, CPU).
        """
        if isinstance(shape, int):
            shape = (shape,)
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from None
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return z * self.prior_std

    def default_grid(self) -> tuple[str, dict]:
        """The time grid samplers use when none is given: a name of
        :data:`~sdekit.diffusion.TIME_GRIDS` and its keyword arguments (uniform in ``t``; Karras for
        :class:`EDM`), resolved by :func:`sdekit.diffusion.timesteps.default_timesteps` (a schedule names
        its grid and does not import the grids)."""
        return "uniform", {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(t_min={self.t_min}, t_max={self.t_max})"


# ------------------------------------------------------------------------------------------------
# Variance preserving family
# ------------------------------------------------------------------------------------------------
class _VariancePreserving(Schedule):
    r"""``sigma^2 = 1 - alpha^2``; a subclass gives ``log_alpha``, ``f = d log alpha/dt`` and
    ``t_of_log_alpha``. Then ``g^2 = -2 f`` (the ``beta(t)`` of Ho et al. / Song et al.) and
    ``d lambda/dt = f / sigma^2``."""

    is_variance_preserving = True

    def t_of_log_alpha(self, log_alpha: float | torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.log(-torch.expm1(2.0 * self.log_alpha(t)))

    def d_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return self.alpha(t) * self.f(t)

    def d_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        # sigma sigma' = -alpha alpha' = -alpha^2 f
        a2 = torch.exp(2.0 * self.log_alpha(t))
        return -a2 * self.f(t) / self.sigma(t)

    def g2(self, t: float | torch.Tensor) -> torch.Tensor:
        return -2.0 * self.f(t)

    def d_log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        # abs: sigma^2 = +0.0 where log alpha rounds to +0.0 (t = 0), so lambda' = -inf, not +inf
        return self.f(t) / (-torch.expm1(2.0 * self.log_alpha(t))).abs()

    def beta(self, t: float | torch.Tensor) -> torch.Tensor:
        """``beta(t) = g(t)^2 = -2 f(t)``."""
        return -2.0 * self.f(t)

    def t_of_log_snr(self, lam: float | torch.Tensor) -> torch.Tensor:
        # alpha^2 = sigmoid(2 lambda)  =>  log alpha = -softplus(-2 lambda) / 2
        lam = as_time(lam, "lam")
        return self.t_of_log_alpha(-0.5 * F.softplus(-2.0 * lam))

    @property
    def prior_std(self) -> float:
        return 1.0


def _linear_beta_integral(t: torch.Tensor, b0: float, b1: float) -> torch.Tensor:
    return b0 * t + 0.5 * (b1 - b0) * t * t


def _t_of_linear_beta_integral(B: torch.Tensor, b0: float, b1: float) -> torch.Tensor:
    # Solve 0.5 (b1 - b0) t^2 + b0 t = B for t >= 0, in the form without cancellation.
    return 2.0 * B / (b0 + torch.sqrt(b0 * b0 + 2.0 * (b1 - b0) * B))


def _check_betas(beta_min, beta_max):
    beta_min = check_real("beta_min", beta_min, nonnegative=True)
    beta_max = check_real("beta_max", beta_max, positive=True)
    if beta_max < beta_min:
        raise ValueError(f"beta_max must be >= beta_min; got beta_min={beta_min}, beta_max={beta_max}")
    return beta_min, beta_max


class VP(_VariancePreserving):
    r"""The variance-preserving SDE with a linear ``beta(t) = beta_min + t (beta_max - beta_min)``
    (Song et al. 2021, "Score-based generative modeling through SDEs", eq. 11; the continuous limit of
    DDPM's linear schedule):

    .. math:: \alpha(t) = e^{-B(t)/2},\quad B(t) = \beta_{min} t + \tfrac12(\beta_{max}-\beta_{min}) t^2,
              \quad \sigma^2 = 1 - \alpha^2,\quad f = -\beta/2,\quad g^2 = \beta.

    ``t_of_log_snr`` is closed form: ``B = log(1 + e^{-2 lambda})``, then the positive root of the
    quadratic (Lu et al. 2022, DPM-Solver, appendix).

    Arguments:
        beta_min, beta_max: ``beta(0)`` and ``beta(1)``, ``0 <= beta_min <= beta_max``.
        t_min, t_max: sampling interval (default ``[1e-3, 1]``, as score_sde and DPM-Solver).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, *, t_min: float = 1e-3,
                 t_max: float = 1.0) -> None:
        self.beta_min, self.beta_max = _check_betas(beta_min, beta_max)
        self._set_interval(t_min, t_max, lo=0.0)

    def log_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return -0.5 * _linear_beta_integral(as_time(t), self.beta_min, self.beta_max)

    def log_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.log(-torch.expm1(-_linear_beta_integral(as_time(t), self.beta_min, self.beta_max)))

    def f(self, t: float | torch.Tensor) -> torch.Tensor:
        t = as_time(t)
        return -0.5 * (self.beta_min + (self.beta_max - self.beta_min) * t)

    def log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        # lambda = -log(e^B - 1) / 2
        B = _linear_beta_integral(as_time(t), self.beta_min, self.beta_max)
        return -0.5 * torch.log(torch.expm1(B))

    def t_of_log_alpha(self, log_alpha: float | torch.Tensor) -> torch.Tensor:
        return _t_of_linear_beta_integral(-2.0 * as_time(log_alpha), self.beta_min, self.beta_max)

    def t_of_log_snr(self, lam: float | torch.Tensor) -> torch.Tensor:
        B = F.softplus(-2.0 * as_time(lam, "lam"))
        return _t_of_linear_beta_integral(B, self.beta_min, self.beta_max)

    def __repr__(self) -> str:
        return (f"VP(beta_min={self.beta_min}, beta_max={self.beta_max}, t_min={self.t_min}, "
                f"t_max={self.t_max})")


class CosineVP(_VariancePreserving):
    r"""The cosine schedule of Nichol & Dhariwal 2021 ("Improved denoising diffusion probabilistic
    models", eq. 17) in continuous time, as DPM-Solver's ``NoiseScheduleVP('cosine')``:

    .. math:: \alpha(t) = \frac{\cos(\theta(t))}{\cos(\theta(0))},\quad
              \theta(t) = \frac{t + s}{1 + s}\frac{\pi}{2},\quad \sigma^2 = 1 - \alpha^2,\quad
              f = -\frac{\pi}{2(1+s)}\tan\theta.

    ``alpha(1) = 0``, so ``t_max`` defaults to the time where ``beta = -2 f`` reaches 999 (about
    0.998), as in DPM-Solver, which keeps ``lambda(t_max)`` finite.

    Arguments:
        s: the offset ``s`` (default 0.008).
        t_min, t_max: sampling interval (``t_max=None``: the clipped value above).
    """

    def __init__(self, s: float = 0.008, *, t_min: float = 1e-3, t_max: float | None = None) -> None:
        self.s = check_real("s", s, positive=True)
        self._theta0 = self.s / (1.0 + self.s) * math.pi / 2.0
        self._log_cos0 = math.log(math.cos(self._theta0))
        if t_max is None:
            t_max = math.atan(999.0 * (1.0 + self.s) / math.pi) * 2.0 * (1.0 + self.s) / math.pi - self.s
        self._set_interval(t_min, t_max, lo=0.0, hi=1.0)

    def _theta(self, t: float | torch.Tensor) -> torch.Tensor:
        return (as_time(t) + self.s) / (1.0 + self.s) * (math.pi / 2.0)

    def log_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        # Two forms without cancellation, each on its half of [0, 1] (the inputs are clamped so that the
        # unused branch stays finite, for values and gradients):
        # * t <= 1/2: alpha = cos(theta0 + d) / cos(theta0) = 1 - 2 sin^2(d/2) - tan(theta0) sin(d), with
        #   d = t / (1 + s) pi/2, through log1p: log alpha(0) = 0 exactly (plain log(cos) - log(cos0)
        #   rounds to +-1e-20 there, and a positive log alpha makes sigma = sqrt(1 - alpha^2) NaN);
        # * t > 1/2: cos(theta) = sin((1 - t) / (1 + s) pi/2), so alpha(1) = 0 exactly (log alpha = -inf)
        #   where cos(pi/2) would round to 6e-17.
        t = as_time(t)
        scale = math.pi / (2.0 * (1.0 + self.s))
        d = t.clamp(max=0.5) * scale
        near_zero = torch.log1p(-2.0 * torch.sin(0.5 * d) ** 2 - math.tan(self._theta0) * torch.sin(d))
        near_one = torch.log(torch.sin((1.0 - t.clamp(min=0.5)) * scale)) - self._log_cos0
        return torch.where(t <= 0.5, near_zero, near_one)

    def f(self, t: float | torch.Tensor) -> torch.Tensor:
        return -math.pi / (2.0 * (1.0 + self.s)) * torch.tan(self._theta(t))

    def t_of_log_alpha(self, log_alpha: float | torch.Tensor) -> torch.Tensor:
        theta = torch.arccos(torch.exp(as_time(log_alpha) + self._log_cos0))
        # clamped to [0, 1]: arccos near cos(theta0) rounds to times a few 1e-16 outside the interval
        return (theta * 2.0 * (1.0 + self.s) / math.pi - self.s).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"CosineVP(s={self.s}, t_min={self.t_min}, t_max={self.t_max})"


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor):
    """Piecewise-linear interpolation through ``(xp, fp)`` (``xp`` increasing) with linear
    extrapolation by the end segments; returns the value and the slope of the segment used (the
    segment to the right at a knot)."""
    xp = xp.to(dtype=x.dtype, device=x.device)
    fp = fp.to(dtype=x.dtype, device=x.device)
    flat = x.reshape(-1)
    i = torch.searchsorted(xp, flat.detach().contiguous(), right=True) - 1
    i = i.clamp(0, xp.shape[0] - 2)
    x0, y0 = xp[i], fp[i]
    slope = (fp[i + 1] - y0) / (xp[i + 1] - x0)
    y = y0 + slope * (flat - x0)
    return y.reshape(x.shape), slope.reshape(x.shape)


class DiscreteVP(_VariancePreserving):
    r"""A discrete-time variance-preserving model (DDPM, Ho et al. 2020) read in continuous time, as
    DPM-Solver's ``NoiseScheduleVP('discrete')`` (Lu et al. 2022, "DPM-Solver", appendix):
    step ``n = 0, ..., N-1`` sits at ``t_n = (n + 1) / N``, and ``log alpha(t)`` is the
    piecewise-linear interpolation of ``log alpha_n = log(alphas_cumprod[n]) / 2`` and of the clean
    data's ``log alpha = 0`` at ``t = 0`` (beyond ``t = 1``: extrapolated linearly by the last segment).
    Then ``sigma^2 = 1 - alpha^2``, ``f`` is the slope of the segment and ``g^2 = -2 f``;
    ``t_of_log_snr`` interpolates the inverse. So ``alpha(0) = 1``, ``sigma(0) = 0`` and
    ``log_snr(0) = +inf`` exactly (DPM-Solver extrapolates the first segment below ``t = 1/N``,
    which gives ``alpha(0) > 1`` and a NaN ``sigma``).

    A network trained on integer steps expects ``timestep(t) = N t - 1`` (DPM-Solver's
    ``(t - 1/N) * 1000`` for ``N = 1000``): pass ``time_input=schedule.timestep`` to the denoiser.

    Arguments:
        alphas_cumprod: 1-D, strictly decreasing, in ``(0, 1)``, at least two entries.
        t_min, t_max: sampling interval, ``0 <= t_min < t_max`` (default ``[1/N, 1]``).
    """

    def __init__(self, alphas_cumprod: torch.Tensor | Sequence[float], *, t_min: float | None = None,
                 t_max: float = 1.0) -> None:
        ac = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64)
        if ac.dim() != 1 or ac.numel() < 2:
            raise ValueError(f"alphas_cumprod must be 1-D with at least two entries, got shape "
                             f"{tuple(ac.shape)}")
        if not bool(((ac > 0) & (ac < 1)).all()):
            raise ValueError(f"alphas_cumprod must lie in (0, 1); got min {ac.min().item()}, max "
                             f"{ac.max().item()}")
        if not bool((ac[1:] < ac[:-1]).all()):
            i = int(torch.nonzero(ac[1:] >= ac[:-1])[0]) + 1
            raise ValueError(
                f"alphas_cumprod must be strictly decreasing; got alphas_cumprod[{i}]={ac[i].item()} >= "
                f"alphas_cumprod[{i - 1}]={ac[i - 1].item()}"
            )
        n = ac.numel()
        self.num_steps = n
        self.alphas_cumprod = ac
        # knots t = 0, 1/N, ..., 1: the clean data (log alpha = 0) and the N steps
        self._t = torch.arange(0, n + 1, dtype=torch.float64) / n
        self._log_alpha = torch.cat([torch.zeros(1, dtype=torch.float64), 0.5 * torch.log(ac)])
        self._set_interval(1.0 / n if t_min is None else t_min, t_max, lo=0.0)

    @classmethod
    def from_betas(cls, betas: torch.Tensor | Sequence[float], *, t_min: float | None = None,
                   t_max: float = 1.0) -> DiscreteVP:
        """From DDPM's ``betas``: ``alphas_cumprod = cumprod(1 - betas)``, betas in ``(0, 1)``."""
        b = torch.as_tensor(betas).detach().to("cpu", torch.float64)
        if b.dim() != 1 or not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must be a 1-D sequence of values in (0, 1)")
        return cls(torch.cumprod(1.0 - b, dim=0), t_min=t_min, t_max=t_max)

    @classmethod
    def linear(cls, num: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, *,
               t_min: float | None = None, t_max: float = 1.0) -> DiscreteVP:
        """DDPM's linear betas ``linspace(beta_start, beta_end, num)`` (Ho et al. 2020, section 4)."""
        if isinstance(num, bool) or not isinstance(num, int) or num < 2:
            raise ValueError(f"num must be an int >= 2, got {num!r}")
        beta_start = check_real("beta_start", beta_start, positive=True)
        beta_end = check_real("beta_end", beta_end, positive=True)
        betas = torch.linspace(beta_start, beta_end, num, dtype=torch.float64)
        return cls.from_betas(betas, t_min=t_min, t_max=t_max)

    def log_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return _interp(as_time(t), self._t, self._log_alpha)[0]

    def f(self, t: float | torch.Tensor) -> torch.Tensor:
        return _interp(as_time(t), self._t, self._log_alpha)[1]

    def t_of_log_alpha(self, log_alpha: float | torch.Tensor) -> torch.Tensor:
        return _interp(as_time(log_alpha), self._log_alpha.flip(0), self._t.flip(0))[0]

    def timestep(self, t: float | torch.Tensor) -> torch.Tensor:
        """The (continuous) step index ``N t - 1`` in ``[0, N - 1]`` that a discrete-time network expects."""
        return as_time(t) * self.num_steps - 1.0

    def __repr__(self) -> str:
        return f"DiscreteVP(num_steps={self.num_steps}, t_min={self.t_min}, t_max={self.t_max})"


# ------------------------------------------------------------------------------------------------
# The others
# ------------------------------------------------------------------------------------------------
class SubVP(Schedule):
    r"""The sub-VP SDE of Song et al. 2021 (eq. 17): the VP mean with a smaller variance,

    .. math:: \alpha = e^{-B/2},\quad \sigma = 1 - e^{-B},\quad f = -\beta/2,\quad
              g^2 = \beta (1 - e^{-2B}),

    with ``beta`` and ``B`` of :class:`VP`. ``t_of_log_snr``: with ``u = e^{-B/2}``,
    ``u / (1 - u^2) = e^lambda`` is a quadratic in ``u``.

    Arguments:
        beta_min, beta_max, t_min, t_max: as :class:`VP`.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, *, t_min: float = 1e-3,
                 t_max: float = 1.0) -> None:
        self.beta_min, self.beta_max = _check_betas(beta_min, beta_max)
        self._set_interval(t_min, t_max, lo=0.0)

    def _B(self, t: float | torch.Tensor) -> torch.Tensor:
        return _linear_beta_integral(as_time(t), self.beta_min, self.beta_max)

    def beta(self, t: float | torch.Tensor) -> torch.Tensor:
        return self.beta_min + (self.beta_max - self.beta_min) * as_time(t)

    def log_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return -0.5 * self._B(t)

    def log_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.log(-torch.expm1(-self._B(t)))

    def d_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return self.beta(t) * torch.exp(-self._B(t))

    def f(self, t: float | torch.Tensor) -> torch.Tensor:
        return -0.5 * self.beta(t)

    def g2(self, t: float | torch.Tensor) -> torch.Tensor:
        return -self.beta(t) * torch.expm1(-2.0 * self._B(t))

    def d_log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        # -beta (1 + e^{-B}) / (2 (1 - e^{-B}))
        e = torch.exp(-self._B(t))
        return -0.5 * self.beta(t) * (1.0 + e) / (-torch.expm1(-self._B(t)))

    def t_of_log_snr(self, lam: float | torch.Tensor) -> torch.Tensor:
        lam = as_time(lam, "lam")
        # log u = log 2 + lam - log(1 + sqrt(1 + 4 e^{2 lam}))         (lam <= 0)
        #       = log 2 - log(e^{-lam} + sqrt(e^{-2 lam} + 4))           (lam > 0)
        neg = torch.clamp(lam, max=0.0)
        pos = torch.clamp(lam, min=0.0)
        log_u_neg = math.log(2.0) + neg - torch.log1p(torch.sqrt(1.0 + 4.0 * torch.exp(2.0 * neg)))
        log_u_pos = math.log(2.0) - torch.log(torch.exp(-pos) + torch.sqrt(torch.exp(-2.0 * pos) + 4.0))
        log_u = torch.where(lam <= 0, log_u_neg, log_u_pos)
        return _t_of_linear_beta_integral(-2.0 * log_u, self.beta_min, self.beta_max)

    @property
    def prior_std(self) -> float:
        return 1.0

    def __repr__(self) -> str:
        return (f"SubVP(beta_min={self.beta_min}, beta_max={self.beta_max}, t_min={self.t_min}, "
                f"t_max={self.t_max})")


class VE(Schedule):
    r"""The variance-exploding SDE of Song et al. 2021 (eq. 9; NCSN, Song & Ermon 2019):

    .. math:: \alpha = 1,\quad \sigma(t) = \sigma_{min} (\sigma_{max}/\sigma_{min})^t,\quad f = 0,\quad
              g^2 = 2 \sigma^2 \log(\sigma_{max}/\sigma_{min}),\quad
              \lambda = -\log\sigma.

    Arguments:
        sigma_min, sigma_max: ``0 < sigma_min < sigma_max``.
        t_min, t_max: sampling interval (default ``[0, 1]``; ``sigma(0) = sigma_min > 0``).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, *, t_min: float = 0.0,
                 t_max: float = 1.0) -> None:
        self.sigma_min = check_real("sigma_min", sigma_min, positive=True)
        self.sigma_max = check_real("sigma_max", sigma_max, positive=True)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"VE needs sigma_min < sigma_max; got sigma_min={sigma_min}, "
                             f"sigma_max={sigma_max}")
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        self._set_interval(t_min, t_max)

    def log_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(as_time(t))

    def alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.ones_like(as_time(t))

    def log_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return math.log(self.sigma_min) + as_time(t) * self._log_ratio

    def d_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(as_time(t))

    def d_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return self.sigma(t) * self._log_ratio

    def f(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(as_time(t))

    def g2(self, t: float | torch.Tensor) -> torch.Tensor:
        return 2.0 * self._log_ratio * torch.exp(2.0 * self.log_sigma(t))

    def d_log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.full_like(as_time(t), -self._log_ratio)

    def t_of_log_snr(self, lam: float | torch.Tensor) -> torch.Tensor:
        return (-as_time(lam, "lam") - math.log(self.sigma_min)) / self._log_ratio

    def __repr__(self) -> str:
        return (f"VE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, t_min={self.t_min}, "
                f"t_max={self.t_max})")


class EDM(Schedule):
    r"""The schedule of Karras et al. 2022 ("Elucidating the design space of diffusion-based
    generative models", Table 1): ``alpha = 1``, ``sigma(t) = t`` on ``[sigma_min, sigma_max]``, so
    ``f = 0``, ``g^2 = 2t`` and ``lambda = -log t``. ``rho`` sets the default time grid
    (:class:`~sdekit.diffusion.Karras`), which is where EDM's ``rho`` lives.

    Arguments:
        sigma_min, sigma_max: the interval, ``0 < sigma_min < sigma_max`` (``t_min``, ``t_max``).
        rho: exponent of the default Karras grid (default 7).
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> None:
        self.sigma_min = check_real("sigma_min", sigma_min, positive=True)
        self.sigma_max = check_real("sigma_max", sigma_max, positive=True)
        self.rho = check_real("rho", rho, positive=True)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"EDM needs sigma_min < sigma_max; got sigma_min={sigma_min}, "
                             f"sigma_max={sigma_max}")
        self._set_interval(self.sigma_min, self.sigma_max, lo=0.0)

    def log_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(as_time(t))

    def alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.ones_like(as_time(t))

    def log_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.log(as_time(t))

    def sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return as_time(t).clone()

    def d_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(as_time(t))

    def d_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.ones_like(as_time(t))

    def f(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(as_time(t))

    def g2(self, t: float | torch.Tensor) -> torch.Tensor:
        return 2.0 * as_time(t)

    def d_log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        return -1.0 / as_time(t)

    def t_of_log_snr(self, lam: float | torch.Tensor) -> torch.Tensor:
        return torch.exp(-as_time(lam, "lam"))

    def default_grid(self) -> tuple[str, dict]:
        return "karras", {"rho": self.rho}

    def __repr__(self) -> str:
        return f"EDM(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, rho={self.rho})"


class LinearFlow(Schedule):
    r"""The linear interpolant of flow matching / rectified flow (Lipman et al. 2023, "Flow matching
    for generative modeling", with ``sigma_min = 0``; Liu et al. 2023, "Flow straight and fast"):
    ``x_t = (1 - t) x_0 + t eps``, so

    .. math:: \alpha = 1 - t,\quad \sigma = t,\quad \lambda = \log\frac{1-t}{t},\quad
              f = -\frac{1}{1-t},\quad g^2 = \frac{2t}{1-t}.

    Its probability-flow ODE is ``dx/dt = u(x, t)`` with the velocity ``u = E[eps - x_0 | x_t]``.
    ``alpha(1) = 0``: the prior ``N(0, I)`` is exact at ``t = 1`` (``lambda(1) = -inf``; a
    uniform-log-SNR grid then needs ``t_max < 1``).

    Arguments:
        t_min, t_max: sampling interval (default ``[1e-3, 1]``, the rectified-flow code's ``eps``).
    """

    def __init__(self, *, t_min: float = 1e-3, t_max: float = 1.0) -> None:
        self._set_interval(t_min, t_max, lo=0.0, hi=1.0)

    def alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return 1.0 - as_time(t)

    def sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return as_time(t).clone()

    def log_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.log1p(-as_time(t))

    def log_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.log(as_time(t))

    def d_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.full_like(as_time(t), -1.0)

    def d_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.ones_like(as_time(t))

    def f(self, t: float | torch.Tensor) -> torch.Tensor:
        return -1.0 / (1.0 - as_time(t))

    def g2(self, t: float | torch.Tensor) -> torch.Tensor:
        t = as_time(t)
        return 2.0 * t / (1.0 - t)

    def d_log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        t = as_time(t)
        return -1.0 / (t * (1.0 - t))

    def t_of_log_snr(self, lam: float | torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-as_time(lam, "lam"))

    @property
    def prior_std(self) -> float:
        return 1.0
