r"""Multiplicative-noise removal (despeckling) with a diffusion model in the log domain.

An observation ``y = x * n`` of a positive image ``x`` with positive, mean-one noise ``n`` (speckle) is,
in ``u = log x``, an additive perturbation ``log y = u + log n``. Vuong & Nguyen (2024, "Perception-based
multiplicative noise removal using SDEs", arXiv 2408.10283) write the corruption as a geometric Brownian
motion (GBM) in the intensity, ``dx = x dW``, whose solution is, by Ito's formula,

.. math:: u_t = \log x_t = u_0 - \tfrac{t}{2} + W_t, \qquad
          u_t \mid u_0 \sim N\big(u_0 - \tfrac t2,\ t\big), \qquad
          x_t = x_0 \exp\big(-\tfrac t2 + \sqrt t\, z\big),\ z \sim N(0, 1),

so ``x_t / x_0`` is log-normal with mean 1 and variance ``e^t - 1`` (a martingale in ``x``). Time here
*is* the accumulated variance of ``log x`` (the quadratic variation); the paper's time-dependent
volatility ``dx = a(t) x dW`` is the time change ``t -> int a^2``, which a sampler's grid provides.

**The drift is a known shift.** ``w_t = u_t + t/2 = u_0 + sqrt(t) z`` is exactly a variance-exploding
process (``alpha = 1``, ``sigma^2 = t``), so :class:`GBMSchedule` is a
:class:`~sdekit.diffusion.Schedule` of ``w``, and everything in the diffusion layer applies unchanged:
:class:`~sdekit.diffusion.DenoisingScoreMatching` trains on ``u_0 = log x_0`` (it forms
``w_t = u_0 + sigma eps`` itself), the denoiser ``D(w, t) = E[u_0 | w_t = w]`` is the log-domain
restoration, and every sampler of :data:`~sdekit.diffusion.SAMPLERS` runs the reverse process of ``w``.
The reverse SDE of ``u`` with the drift ``-1/2`` (the paper's step ``u + Delta/2 - Delta eps/sigma +
sqrt(Delta) z``) is the reverse SDE of ``w`` read through ``u = w - t/2``: the same numbers, no extra code.

**Noise level to time.** :func:`despeckle` starts the reverse process at the time ``t*`` at which the
forward process's log-noise matches the observation's (non-blind, as the paper). For speckle with
``L`` looks, ``n ~ Gamma(L, 1/L)`` (mean 1, variance ``1/L``), the log-noise has

.. math:: E[\log n] = \psi(L) - \log L, \qquad \operatorname{Var}[\log n] = \psi'(L)

(digamma and trigamma). The notes' alternative ``t* = ln(1 + 1/L)`` matches the *intensity* moments
(a log-normal with mean 1 and variance ``1/L``); it is exact for log-normal noise but under-states the
log-domain variance of Gamma speckle by 58% at ``L = 1`` (``ln 2 = 0.693`` against
``psi'(1) = pi^2/6 = 1.645``), 21% at ``L = 4`` and 9% at ``L = 10``. Since the diffusion model acts
on ``log y``, we match the log-domain moments: ``t* = psi'(L)`` and ``w_{t*} = log y - E[log n]``
(for log-normal noise, :class:`LogNormalSpeckle`, both recipes coincide: ``t* = v`` and
``-E[log n] = v / 2`` is the GBM's shift). The log of Gamma speckle is skewed, not Gaussian, so at
``L = 1`` the model's Gaussian likelihood is an approximation whatever the matching.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import numpy as np
import torch
from scipy import special

from ..diffusion import DDIM, Prediction, SampleInfo, Sampler, Schedule, TimeGrid, TimeTensor, get_time_grid, sample

__all__ = ["GBMSchedule", "Speckle", "GammaSpeckle", "LogNormalSpeckle", "despeckle"]


def _real(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or (positive and v <= 0.0):
        raise ValueError(f"{name} must be {'a positive' if positive else 'a'} finite number, got {value!r}")
    return v


def _time(t: float | torch.Tensor, name: str = "t") -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        if t.dim() > 1:
            raise ValueError(f"{name} must be a float, a 0-d tensor or a (batch,) tensor; got shape {tuple(t.shape)}")
        return t if t.is_floating_point() else t.to(torch.float64)
    return torch.tensor(_real(name, t), dtype=torch.float64)


def _per_sample(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``c`` (0-d or ``(batch,)``) shaped to broadcast against ``x: (batch, *event)``."""
    if c.dim() == 1:
        if x.dim() == 0 or c.shape[0] != x.shape[0]:
            raise ValueError(f"a per-sample time must have shape (batch,) = ({x.shape[0] if x.dim() else '?'},) "
                             f"for x of shape {tuple(x.shape)}; got {tuple(c.shape)}")
        c = c.reshape(c.shape[0], *([1] * (x.dim() - 1)))
    return c.to(dtype=x.dtype, device=x.device)


def _check_state(name: str, x: Any, *, positive: bool = False) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension, (batch, *event); got a 0-d tensor")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise ValueError(f"{name} must be finite; got {int((~finite).sum())} non-finite values")
    if positive:
        bad = x <= 0
        if bool(bad.any()):
            raise ValueError(
                f"{name} must be positive everywhere (multiplicative noise is removed in the log domain, "
                f"log {name}); got {int(bad.sum())} values <= 0 (min {float(x.min()):.4g}). Shift or floor "
                "the intensities before despeckling")
    return x


class GBMSchedule(Schedule):
    r"""The GBM ``dx = x dW`` of multiplicative noise, read as a schedule of the shifted log-intensity.

    In ``u = log x`` the process is ``u_t = u_0 - t/2 + sqrt(t) z`` (Vuong & Nguyen 2024, arXiv
    2408.10283, section 3; time = accumulated log-variance). The schedule describes
    ``w_t = u_t + t/2 = u_0 + sqrt(t) z``:

    .. math:: \alpha = 1,\quad \sigma(t) = \sqrt t,\quad \lambda(t) = -\tfrac12\log t,\quad
              f = 0,\quad g^2 = 1,

    the variance-exploding SDE ``dw = dW``, so the diffusion layer's losses and samplers apply to ``w``
    (train on ``u_0 = log x_0``; the network sees ``w_t`` and ``t``). :meth:`forward_log`,
    :meth:`forward`, :meth:`to_shifted` and :meth:`from_shifted` convert between ``x``, ``u`` and ``w``.
    Why a shift and not a drift: ``-t/2`` does not depend on the state, so it moves every marginal
    rigidly and the score of ``u_t`` is the score of ``w_t`` at ``u + t/2``; a sampler on ``w`` is the
    paper's reverse SDE / ODE on ``u`` exactly.

    Arguments:
        t_min, t_max: the interval samplers and training use (default ``[1e-4, 2]``: log-noise standard
            deviations 0.01 to 1.41, which hold Gamma speckle from one look, ``psi'(1) = 1.645``, up).

    Times are floats, 0-d tensors or ``(batch,)`` tensors, as for every schedule.
    """

    def __init__(self, *, t_min: float = 1e-4, t_max: float = 2.0) -> None:
        self._set_interval(t_min, t_max, lo=0.0)

    # -- the schedule of w ---------------------------------------------------------------------
    def log_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(_time(t))

    def alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.ones_like(_time(t))

    def log_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.log(_time(t))

    def sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.sqrt(_time(t))

    def d_alpha(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(_time(t))

    def d_sigma(self, t: float | torch.Tensor) -> torch.Tensor:
        return 0.5 / torch.sqrt(_time(t))

    def f(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(_time(t))

    def g2(self, t: float | torch.Tensor) -> torch.Tensor:
        return torch.ones_like(_time(t))

    def log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        return -0.5 * torch.log(_time(t))

    def d_log_snr(self, t: float | torch.Tensor) -> torch.Tensor:
        return -0.5 / _time(t)

    def t_of_log_snr(self, lam: float | torch.Tensor) -> torch.Tensor:
        return torch.exp(-2.0 * _time(lam, "lam"))

    def default_grid(self) -> tuple[str, dict]:
        """Uniform in the log-SNR, i.e. geometric in the log-noise level ``sqrt(t)``."""
        return "logsnr", {}

    def log_time(self, t: float | torch.Tensor) -> torch.Tensor:
        """``(log t - log t_min) / (log t_max - log t_min)``: 0 at ``t_min``, 1 at ``t_max``. Times span
        four decades here, so a network with a sinusoidal embedding made for ``t`` in ``[0, 1]``
        (:class:`~sdekit.nn.UNet`) should see this: pass ``time_input=schedule.log_time`` to the loss,
        to :func:`despeckle` and to :func:`~sdekit.diffusion.sample` alike."""
        lo, hi = math.log(self.t_min) if self.t_min > 0 else math.log(1e-12), math.log(self.t_max)
        return (torch.log(_time(t)) - lo) / (hi - lo)

    # -- the GBM in u = log x and x ----------------------------------------------------------------
    def variance(self, t: float | torch.Tensor) -> torch.Tensor:
        """``Var[log x_t | x_0] = t``."""
        return _time(t).clone()

    def t_of_variance(self, variance: float | torch.Tensor) -> torch.Tensor:
        """The time at which the log-domain noise variance is ``variance`` (the identity)."""
        return _time(variance, "variance").clone()

    def shift(self, t: float | torch.Tensor) -> torch.Tensor:
        """The GBM's drift in the log domain integrated to ``t``, taken with a minus sign: ``t / 2``
        (``w_t = u_t + shift(t)``)."""
        return 0.5 * _time(t)

    def to_shifted(self, u: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``w = u + t/2``: the log-intensity at time ``t`` as the state the samplers see.
        ``u: (batch, *event)``, ``t`` 0-d or ``(batch,)``."""
        return u + _per_sample(self.shift(t), u)

    def from_shifted(self, w: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``u = w - t/2`` (the inverse of :meth:`to_shifted`)."""
        return w - _per_sample(self.shift(t), w)

    def forward_log(self, u0: torch.Tensor, t: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        r"""The GBM's transition in the log domain: ``u_t = u_0 - t/2 + sqrt(t) noise``.

        Arguments:
            u0: ``log x_0``, ``(batch, *event)``.
            t: 0-d or ``(batch,)`` times in ``[0, inf)``.
            noise: standard normal ``z`` of the shape of ``u0``.
        """
        if noise.shape != u0.shape:
            raise ValueError(f"noise must have the shape of u0, {tuple(u0.shape)}; got {tuple(noise.shape)}")
        tt = _time(t)
        return u0 - _per_sample(0.5 * tt, u0) + _per_sample(torch.sqrt(tt), u0) * noise

    def forward(self, x0: torch.Tensor, t: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        r"""The GBM's transition in the intensity: ``x_t = x_0 exp(-t/2 + sqrt(t) noise)``, so
        ``E[x_t | x_0] = x_0`` and ``Var[x_t | x_0] = x_0^2 (e^t - 1)``. ``x0 > 0``: ``(batch, *event)``."""
        x0 = _check_state("x0", x0, positive=True)
        return torch.exp(self.forward_log(torch.log(x0), t, noise))

    def __repr__(self) -> str:
        return f"GBMSchedule(t_min={self.t_min}, t_max={self.t_max})"


# ------------------------------------------------------------------------------------------------
# Speckle models
# ------------------------------------------------------------------------------------------------
class Speckle:
    """Positive multiplicative noise ``n`` with ``E[n] = 1``, described by the moments of ``log n``
    that :func:`despeckle` matches: :attr:`log_mean` and :attr:`log_variance`. Subclasses implement
    :meth:`_draw` (numpy, so every law draws reproducibly from a torch generator)."""

    log_mean: float
    log_variance: float

    def _draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def sample(self, shape: int | Sequence[int], generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Draw noise ``n`` of ``shape``; ``generator`` (a ``torch.Generator``) makes it reproducible
        (one integer is drawn from it to seed numpy's generator)."""
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        gen_device = generator.device if generator is not None else "cpu"
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_device).item())
        n = self._draw(np.random.default_rng(seed), shape)
        return torch.as_tensor(n, dtype=dtype, device=device)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The observation ``y = x * n`` of a positive image ``x: (batch, *event)``."""
        x = _check_state("x", x, positive=True)
        return x * self.sample(tuple(x.shape), generator, dtype=x.dtype, device=x.device)


class GammaSpeckle(Speckle):
    r"""Fully developed speckle averaged over ``L`` looks: ``n ~ Gamma(L, 1/L)`` (shape ``L``, scale
    ``1/L``), mean 1, variance ``1/L`` (Goodman 1976). In the log domain
    ``E[log n] = psi(L) - log L`` and ``Var[log n] = psi'(L)`` (digamma, trigamma).

    Arguments:
        looks: ``L > 0`` (1 = single-look, the strongest noise).
    """

    def __init__(self, looks: float) -> None:
        self.looks = _real("looks", looks, positive=True)
        self.log_mean = float(special.digamma(self.looks)) - math.log(self.looks)
        self.log_variance = float(special.polygamma(1, self.looks))

    def _draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.gamma(self.looks, 1.0 / self.looks, size=shape)

    def __repr__(self) -> str:
        return f"GammaSpeckle(looks={self.looks})"


class LogNormalSpeckle(Speckle):
    r"""The paper's noise, the GBM's own: ``n = exp(-v/2 + sqrt(v) z)``, mean 1, variance ``e^v - 1``;
    ``E[log n] = -v/2``, ``Var[log n] = v``. :meth:`from_looks` gives the ``v = ln(1 + 1/L)`` with the
    intensity mean and variance of ``L``-look Gamma speckle.

    Arguments:
        variance: ``v = Var[log n] > 0`` (the GBM time).
    """

    def __init__(self, variance: float) -> None:
        self.variance = _real("variance", variance, positive=True)
        self.log_mean = -0.5 * self.variance
        self.log_variance = self.variance

    @classmethod
    def from_looks(cls, looks: float) -> LogNormalSpeckle:
        """``v = ln(1 + 1/L)``: mean 1 and variance ``1/L`` in the intensity, as ``GammaSpeckle(L)``."""
        return cls(math.log1p(1.0 / _real("looks", looks, positive=True)))

    def _draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return np.exp(-0.5 * self.variance + math.sqrt(self.variance) * rng.standard_normal(shape))

    def __repr__(self) -> str:
        return f"LogNormalSpeckle(variance={self.variance})"


def _as_speckle(noise_level: Any) -> Speckle:
    if isinstance(noise_level, Speckle):
        return noise_level
    if isinstance(noise_level, bool) or not isinstance(noise_level, numbers.Real):
        raise TypeError(f"noise_level must be the number of looks L (a positive number) or a Speckle "
                        f"(GammaSpeckle, LogNormalSpeckle), got {type(noise_level).__name__}")
    if not (math.isfinite(float(noise_level)) and float(noise_level) > 0):
        raise ValueError(f"noise_level (the number of looks L) must be a positive finite number, got {noise_level!r}")
    return GammaSpeckle(float(noise_level))


# ------------------------------------------------------------------------------------------------
# Restoration
# ------------------------------------------------------------------------------------------------
@overload
def despeckle(model: Callable[..., torch.Tensor], y: torch.Tensor, noise_level: float | Speckle, *,
              schedule: GBMSchedule | None = ..., solver: str | Sampler | None = ..., steps: int = ...,
              timesteps: str | TimeGrid = ..., prediction: str | Prediction = ...,
              denoise_final: bool = ..., generator: torch.Generator | None = ..., bm: Any = ...,
              model_kwargs: dict[str, Any] | None = ...,
              time_input: Callable[[torch.Tensor], torch.Tensor] | None = ...,
              return_info: Literal[False] = ...) -> torch.Tensor: ...


@overload
def despeckle(model: Callable[..., torch.Tensor], y: torch.Tensor, noise_level: float | Speckle, *,
              schedule: GBMSchedule | None = ..., solver: str | Sampler | None = ..., steps: int = ...,
              timesteps: str | TimeGrid = ..., prediction: str | Prediction = ...,
              denoise_final: bool = ..., generator: torch.Generator | None = ..., bm: Any = ...,
              model_kwargs: dict[str, Any] | None = ...,
              time_input: Callable[[torch.Tensor], torch.Tensor] | None = ...,
              return_info: Literal[True]) -> tuple[torch.Tensor, SampleInfo]: ...


def despeckle(model: Callable[..., torch.Tensor], y: torch.Tensor, noise_level: float | Speckle, *,
              schedule: GBMSchedule | None = None, solver: str | Sampler | None = None, steps: int = 50,
              timesteps: str | TimeGrid = "logsnr", prediction: str | Prediction = "eps",
              denoise_final: bool = True, generator: torch.Generator | None = None, bm: Any = None,
              model_kwargs: dict[str, Any] | None = None,
              time_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
              return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
    r"""Remove multiplicative noise from ``y = x * n`` with a diffusion model of ``u = log x``
    (Vuong & Nguyen 2024, arXiv 2408.10283, non-blind: the noise level is given).

    1. ``t* = Var[log n]`` (:attr:`Speckle.log_variance`; ``psi'(L)`` for ``L`` looks, see the module
       docstring for why not ``ln(1 + 1/L)``), which must lie in ``(t_min, t_max]`` of ``schedule``;
    2. ``w_{t*} = log y - E[log n]`` (for the GBM's own noise this is ``log y + t*/2``, the shifted state
       of :class:`GBMSchedule`);
    3. run ``solver`` with :func:`~sdekit.diffusion.sample` on the grid ``timesteps`` from ``t*`` down
       to ``t_min``: a stochastic sampler (default ``DDIM(eta=1)``, ancestral sampling, the
       exponential-integrator step of the reverse SDE; ``"euler-maruyama"`` is the paper's step, which
       needs several times more steps for the same error) draws from the posterior ``p(u_0 | w_{t*})``;
       a deterministic one (``"ddim"``, ``"dpm++2m"``, ``PFODE(method="euler")`` the paper's, ...)
       follows the probability-flow ODE, a deterministic transport map;
    4. ``x = exp(u)`` with ``u = D(w, t_min)`` when ``denoise_final`` (one extra model call, exact
       shift-free), else ``u = w_{t_min} - t_min/2``.

    Nothing is clipped: the result is positive and may exceed the range of the clean images.

    Arguments:
        model: a network ``model(w, t, **model_kwargs)`` trained with
            ``DenoisingScoreMatching(schedule, prediction)`` on ``log x_0``, or a
            :class:`~sdekit.diffusion.Denoiser` (e.g. an oracle's ``as_denoiser(schedule)``).
        y: positive observations ``(batch, *event)`` (e.g. ``(batch, 1, H, W)``), floating point.
        noise_level: the number of looks ``L > 0`` (Gamma speckle) or a :class:`Speckle`.
        schedule: the :class:`GBMSchedule` the model was trained on (default ``GBMSchedule()``).
        solver: a sampler name of :data:`~sdekit.diffusion.SAMPLERS` or a
            :class:`~sdekit.diffusion.Sampler` (default ``None``: ``DDIM(eta=1.0)``).
        steps: grid steps (NFE = ``steps * nfe_per_step + denoise_final``).
        timesteps: a grid name (``"logsnr"``, ``"uniform"``, ``"karras"``) or a
            :class:`~sdekit.diffusion.TimeGrid`, laid from ``t*`` to ``t_min``.
        prediction, model_kwargs, time_input: as :func:`~sdekit.diffusion.sample`.
        denoise_final: end with the denoiser's estimate at ``t_min`` (see 4.).
        generator, bm: the sampler noise, as :func:`~sdekit.diffusion.sample`.
        return_info: also return the :class:`~sdekit.diffusion.SampleInfo` (``nfe``, the grid).

    Returns:
        ``x`` of the shape, dtype and device of ``y``, or ``(x, info)``.

    Raises:
        TypeError / ValueError naming the argument: ``y`` not a floating tensor with a batch dimension,
        non-finite or non-positive; ``noise_level`` not positive or outside the schedule's interval;
        a wrong ``schedule``, ``steps``, ``solver`` or ``timesteps`` (from the diffusion layer).
    """
    y = _check_state("y", y, positive=True)
    noise = _as_speckle(noise_level)
    schedule = GBMSchedule() if schedule is None else schedule
    if not isinstance(schedule, GBMSchedule):
        raise TypeError(f"schedule must be a GBMSchedule (the log-domain GBM the model was trained on), got "
                        f"{type(schedule).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    t_star = float(schedule.t_of_variance(noise.log_variance))
    if not schedule.t_min < t_star <= schedule.t_max:
        raise ValueError(
            f"noise_level {noise!r} has log-domain variance {noise.log_variance:.4g}, which is outside the "
            f"schedule's (t_min, t_max] = ({schedule.t_min}, {schedule.t_max}]; train on a GBMSchedule whose "
            "interval holds it")
    grid = get_time_grid(timesteps)
    if isinstance(grid, TimeTensor):
        raise TypeError("timesteps must be a grid name or a TimeGrid (the grid is laid from t* to t_min)")
    times = grid.times(schedule, steps, t_start=t_star)
    w = torch.log(y) - noise.log_mean
    solver = DDIM(eta=1.0) if solver is None else solver
    out, info = sample(model, schedule, w, solver=solver, timesteps=times, prediction=prediction,
                       denoise_final=denoise_final, generator=generator, bm=bm, model_kwargs=model_kwargs,
                       time_input=time_input, return_info=True)
    u = out if denoise_final else schedule.from_shifted(out, float(times[-1]))
    x = torch.exp(u)
    return (x, info) if return_info else x
