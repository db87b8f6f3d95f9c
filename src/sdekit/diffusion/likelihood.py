r"""Likelihoods of a diffusion model: the probability-flow ODE with the instantaneous change of variables,
the ELBO of the reverse SDE, and bits per dimension.

**Probability-flow likelihood** (Song et al. 2021, "Score-based generative modeling through stochastic
differential equations", ICLR, section 4.3 and appendix D.2). The probability-flow ODE
``dx/dt = v(x, t) = f x - g^2 grad log p_t(x) / 2`` moves samples of ``p_s`` onto samples of ``p_t``, so along a
trajectory ``d log p_t(x_t) / dt = -div v(x_t, t)`` (the instantaneous change of variables of Chen et al. 2018),
and for data ``x`` at ``t_min``

.. math:: \log p_{t_{min}}(x) = \log \pi(x_{t_{max}}) + \int_{t_{min}}^{t_{max}} \nabla\cdot v(x_t, t)\,dt,

with ``pi`` the prior that stands in for ``p_{t_max}``. With the denoiser ``D``, ``v = (sigma'/sigma) x +
(alpha' - sigma' alpha / sigma) D`` and ``div v = d sigma'/sigma + (alpha' - sigma' alpha/sigma) tr(dD/dx)``.
The trace is exact (``d`` vector-Jacobian products, for small ``d``) or the Hutchinson–Skilling estimate
``E[e^T (dD/dx) e]`` with Rademacher or Gaussian probes ``e`` held fixed along the solve (Grathwohl et al.
2019, "FFJORD: free-form continuous dynamics for scalable reversible generative models", ICLR), which is
unbiased for the log-likelihood because the trajectory does not depend on the probes.

**ELBO** (Song, Durkan, Murray & Ermon 2021, "Maximum likelihood training of score-based diffusion models",
NeurIPS, Theorem 2 — the pointwise form of Theorem 1; the continuous-time VDM bound of Kingma et al. 2021,
"Variational diffusion models", NeurIPS, is the same bound written on the signal-to-noise ratio). For the
forward process started at ``x`` at ``t_min`` — ``x_t = a(t) x + s(t) e`` with ``a = alpha(t) / alpha(t_min)``
and ``s^2 = sigma(t)^2 - a^2 sigma(t_min)^2`` — the SDE model's log-likelihood is bounded below by

.. math:: \mathrm{ELBO}(x) = E[\log\pi(x_{t_{max}})] + d \log a(t_{max})
          - \tfrac12 \int_{t_{min}}^{t_{max}} g^2\, E\big[\|s_\theta\|^2 + 2 s_\theta\cdot e / s\big]\,dt,

the DSM form ``g^2 (|s_theta - grad log p(x_t|x)|^2 - |grad log p(x_t|x)|^2) - 2 div f`` with
``grad log p(x_t | x) = -e / s`` and ``int div f dt = d log a(t_max)``. With ``g^2 = -2 sigma^2 lambda'`` and
``s_theta = -eps_hat / sigma``, the integrand is ``lambda'(t) (|eps_hat|^2 - 2 (sigma / s) eps_hat . e)``,
which :func:`sdekit.diffusion.elbo` estimates by Monte Carlo over ``(t, e)`` with ``t`` drawn uniformly in the
log-SNR ``lambda`` (importance sampling with density ``-lambda'(t) / (lambda(t_min) - lambda(t_max))``, the
``g^2 / sigma^2`` proposal of Song et al. 2021 for the likelihood weighting) and antithetic pairs ``(e, -e)``,
which keep the variance finite where ``s -> 0`` at ``t_min``. With the exact score and the exact prior the
bound is tight for every ``x`` (the model's path measure then equals the forward one, so the conditional
path measures given ``x`` agree).

**Bits per dimension.** Data with ``L`` levels (``L = 2^bits``) stored on the grid ``lo + (hi - lo) k / (L - 1)``
(8-bit images scaled from ``[0, 255]`` to ``[-1, 1]`` as ``k / 127.5 - 1``) are dequantised by uniform noise over
a bin of width ``w = (hi - lo) / (L - 1)`` centred on each grid point (the bins of the discretised decoder of
Ho et al. 2020). Then ``log P(k) >= E_u[log p(x + u)] + d log w`` (Jensen), and

.. math:: \mathrm{bpd} = -\frac{\log p(x + u) + d \log w}{d \log 2}
          = -\frac{\log p - d\log 127.5}{d \log 2}\quad\text{(8 bits on } [-1, 1]).

score_sde (Song et al. 2021) dequantises ``(255 x + u) / 256`` instead, bins of width ``2 / 256`` on
``[-1, 1]``, an offset of 7 bits instead of ``log2(127.5) = 6.994``: the two conventions differ by
``log2(256 / 255) = 0.0056`` bits per dimension.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

import torch

from ..core.integrate import odeint
from ._utils import as_time, broadcast_like, check_real, check_tensor, jacobian_trace
from .prediction import Denoiser, Prediction, as_denoiser
from .schedules import Schedule

__all__ = ["LikelihoodInfo", "log_likelihood", "ELBOEstimate", "elbo", "bits_per_dim", "dequantize"]

PriorLogProb = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def _check_schedule(schedule) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
    return schedule


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def _check_generator(generator) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def _interval(schedule: Schedule, t_min, t_max) -> tuple[float, float]:
    lo = schedule.t_min if t_min is None else check_real("t_min", t_min)
    hi = schedule.t_max if t_max is None else check_real("t_max", t_max)
    if not lo < hi:
        raise ValueError(f"t_min must be < t_max; got t_min={lo}, t_max={hi}")
    return lo, hi


def _check_data(x, dtype) -> torch.Tensor:
    check_tensor("x", x, min_dim=2, finite=True)
    if x.shape[0] < 1 or x[0].numel() < 1:
        raise ValueError(f"x must have shape (batch, *event) with batch >= 1 and a non-empty event; got shape "
                         f"{tuple(x.shape)}")
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
        x = x.to(dtype)
    return x.detach()


def _gaussian_prior(std: float) -> PriorLogProb:
    def log_prob(z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(z.shape[0], -1)
        d = flat.shape[1]
        return -0.5 * (flat * flat).sum(1) / std**2 - 0.5 * d * math.log(2.0 * math.pi * std**2)

    return log_prob


def _prior(prior: PriorLogProb | None, schedule: Schedule) -> PriorLogProb:
    if prior is None:
        return _gaussian_prior(schedule.prior_std)
    if not callable(prior):
        raise TypeError(f"prior must be None or a callable log_prob(x) -> (batch,), got {type(prior).__name__}")
    return prior


def _evaluate_prior(log_prob: PriorLogProb, z: torch.Tensor) -> torch.Tensor:
    out = log_prob(z)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (z.shape[0],):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"prior(x) must return a (batch,) = ({z.shape[0]},) tensor of log-densities; got {got}")
    return out.to(z.dtype)


def _denoiser(model, schedule, prediction, model_kwargs, time_input) -> Denoiser:
    return as_denoiser(model, schedule, prediction, model_kwargs=model_kwargs, time_input=time_input)


# --------------------------------------------------------------------------------------------
# The probability-flow likelihood
# --------------------------------------------------------------------------------------------
@dataclass
class LikelihoodInfo:
    """What :func:`sdekit.diffusion.log_likelihood` measured besides ``log p``.

    Attributes:
        prior_log_prob: ``log pi(x_{t_max})``, ``(batch,)``.
        delta_log_prob: the integral of the divergence, ``(batch,)``; ``log p = prior_log_prob +
            delta_log_prob``.
        x_T: the end of the probability-flow trajectory at ``t_max``, ``(batch, *event)``.
        nfe: denoiser evaluations (each with its vector-Jacobian products: ``d`` for the exact divergence,
            ``probes`` for Hutchinson).
        t_min, t_max: the interval integrated over.
    """

    prior_log_prob: torch.Tensor
    delta_log_prob: torch.Tensor
    x_T: torch.Tensor
    nfe: int
    t_min: float
    t_max: float


def _probes(x: torch.Tensor, probes: int, noise: str, generator) -> torch.Tensor:
    shape = (probes, *x.shape)
    if noise == "gaussian":
        return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
    bits = torch.randint(0, 2, shape, generator=generator, device=x.device)
    return (2 * bits - 1).to(x.dtype)


@overload
def log_likelihood(model: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor, *,
                   prediction: str | Prediction = ..., model_kwargs: dict[str, Any] | None = ...,
                   time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., t_min: float | None = ...,
                   t_max: float | None = ..., divergence: str = ..., probes: int = ..., noise: str = ...,
                   prior: PriorLogProb | None = ..., method: str = ..., rtol: float = ..., atol: float = ...,
                   dtype: torch.dtype | None = ..., generator: torch.Generator | None = ...,
                   return_info: Literal[False] = ...) -> torch.Tensor: ...


@overload
def log_likelihood(model: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor, *,
                   prediction: str | Prediction = ..., model_kwargs: dict[str, Any] | None = ...,
                   time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., t_min: float | None = ...,
                   t_max: float | None = ..., divergence: str = ..., probes: int = ..., noise: str = ...,
                   prior: PriorLogProb | None = ..., method: str = ..., rtol: float = ..., atol: float = ...,
                   dtype: torch.dtype | None = ..., generator: torch.Generator | None = ...,
                   return_info: Literal[True]) -> tuple[torch.Tensor, LikelihoodInfo]: ...


def log_likelihood(model: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor, *,
                   prediction: str | Prediction = "eps", model_kwargs: dict[str, Any] | None = None,
                   time_input: Callable[[torch.Tensor], torch.Tensor] | None = None, t_min: float | None = None,
                   t_max: float | None = None, divergence: str = "exact", probes: int = 1,
                   noise: str = "rademacher", prior: PriorLogProb | None = None, method: str = "dopri5",
                   rtol: float = 1e-5, atol: float = 1e-5, dtype: torch.dtype | None = None,
                   generator: torch.Generator | None = None,
                   return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, LikelihoodInfo]:
    r"""The log-likelihood ``log p_{t_min}(x)`` of a diffusion model by its probability-flow ODE.

    Integrates the augmented state ``(x, int div v dt)`` from ``t_min`` to ``t_max`` with
    :func:`sdekit.odeint` (adaptive, one solve for the whole batch) and adds the prior log-density at
    ``t_max`` (Song et al. 2021, "Score-based generative modeling through SDEs", ICLR, appendix D.2; the
    divergence estimator of Grathwohl et al. 2019, "FFJORD", ICLR):

    .. math:: \log p_{t_{min}}(x) = \log \pi(x_{t_{max}}) + \int_{t_{min}}^{t_{max}} \nabla\cdot v(x_t, t)\,dt,
              \qquad v = \frac{\sigma'}{\sigma} x + \Big(\alpha' - \frac{\sigma'\alpha}{\sigma}\Big) D(x, t),

    the trace of ``dD/dx`` exact or ``E[e^T (dD/dx) e]`` with probes ``e`` held fixed along the solve (then the
    estimate is unbiased, the trajectory not depending on ``e``). The derivation is on the methods page
    "Likelihoods".

    Arguments:
        model: a network ``model(x, t, **model_kwargs)`` whose output ``prediction`` names, or a
            :class:`~sdekit.diffusion.Denoiser` (e.g. an oracle's ``as_denoiser(schedule)``). Samples must
            not interact inside the network (no batch statistics): the divergence is taken per sample.
        schedule: the :class:`~sdekit.diffusion.Schedule` the model was trained with.
        x: data ``(batch, *event)`` at ``t_min``, finite.
        prediction, model_kwargs, time_input: as :func:`sdekit.diffusion.sample`.
        t_min, t_max: the interval (default: the schedule's).
        divergence: ``"exact"`` (``d`` vector-Jacobian products per evaluation, ``d`` the event size) or
            ``"hutchinson"`` (``probes`` of them).
        probes: number of Hutchinson probes per sample (averaged), an int >= 1.
        noise: the probes' law, ``"rademacher"`` (default; the smaller variance) or ``"gaussian"``.
        prior: ``log pi(x)`` at ``t_max``, a callable ``(batch, *event) -> (batch,)``; ``None``: the
            schedule's prior ``N(0, prior_std^2 I)``.
        method, rtol, atol: the :func:`sdekit.odeint` solver and its error control (default ``dopri5`` with
            ``rtol = atol = 1e-5``, as score_sde).
        dtype: the dtype of the solve (``x`` is cast to it; e.g. ``torch.float64``, then the model must
            accept float64 input); ``None``: the dtype of ``x``.
        generator: seeds the Hutchinson probes (drawn once per sample and held along the solve).
        return_info: also return a :class:`~sdekit.diffusion.LikelihoodInfo` (prior term, integral, NFE).

    Returns:
        ``log p`` in nats, ``(batch,)``, detached; or ``(log p, info)``.

    Raises:
        TypeError / ValueError naming the argument: a wrong schedule, ``x`` not ``(batch, *event)`` or not
        finite, an unknown ``divergence`` or ``noise``, ``probes < 1``, ``t_min >= t_max``, a model or
        prior output of the wrong shape.
    """
    _check_schedule(schedule)
    x = _check_data(x, dtype)
    divergence = _check_choice("divergence", divergence, ("exact", "hutchinson"))
    probes = _check_int("probes", probes)
    noise = _check_choice("noise", noise, ("rademacher", "gaussian"))
    _check_generator(generator)
    lo, hi = _interval(schedule, t_min, t_max)
    log_prior = _prior(prior, schedule)
    den = _denoiser(model, schedule, prediction, model_kwargs, time_input)
    eps = _probes(x, probes, noise, generator) if divergence == "hutchinson" else None
    dim = x[0].numel()
    nfe = 0

    def drift(t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal nfe
        nfe += 1
        y = state[0]
        rate = schedule.d_sigma(t) / schedule.sigma(t)
        c_d = schedule.d_alpha(t) - rate * schedule.alpha(t)
        with torch.enable_grad():
            yg = y.detach().requires_grad_(True)
            d = den(yg, t)
            trace = jacobian_trace(d, yg, eps)
        v = broadcast_like(rate, y) * y + broadcast_like(c_d, y) * d.detach()
        div = dim * rate.to(y.dtype) + c_d.to(y.dtype) * trace.detach()
        return v, div.expand(y.shape[0])

    start = (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
    with torch.no_grad():
        xs, deltas = odeint(drift, start, [lo, hi], method=method, rtol=rtol, atol=atol)
        x_T, delta = xs[-1], deltas[-1]
        prior_lp = _evaluate_prior(log_prior, x_T)
    logp = prior_lp + delta
    if not return_info:
        return logp
    return logp, LikelihoodInfo(prior_log_prob=prior_lp, delta_log_prob=delta, x_T=x_T, nfe=nfe, t_min=lo,
                                t_max=hi)


# --------------------------------------------------------------------------------------------
# The ELBO
# --------------------------------------------------------------------------------------------
@dataclass
class ELBOEstimate:
    """A Monte Carlo estimate of the ELBO of :func:`sdekit.diffusion.elbo`, per data point.

    Attributes:
        elbo: the estimate in nats, ``(batch,)`` (the mean over ``samples`` draws of ``(t, e)``).
        stderr: its standard error, ``(batch,)`` (sample standard deviation over the draws / sqrt(samples)).
        prior_term: ``E[log pi(x_{t_max})]``, ``(batch,)`` (closed form for the default prior, else part of
            the Monte Carlo estimate).
        samples: draws of ``(t, e)`` per data point (each an antithetic pair when ``antithetic``).
        nfe: denoiser evaluations per data point.
    """

    elbo: torch.Tensor
    stderr: torch.Tensor
    prior_term: torch.Tensor
    samples: int
    nfe: int


def elbo(model: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor, *,
         prediction: str | Prediction = "eps", model_kwargs: dict[str, Any] | None = None,
         time_input: Callable[[torch.Tensor], torch.Tensor] | None = None, t_min: float | None = None,
         t_max: float | None = None, samples: int = 64, time_sampling: str = "log_snr", antithetic: bool = True,
         prior: PriorLogProb | None = None, chunk: int = 4096, dtype: torch.dtype | None = None,
         generator: torch.Generator | None = None) -> ELBOEstimate:
    r"""The evidence lower bound of the reverse SDE on ``log p(x)`` for data ``x`` at ``t_min``: the
    likelihood-weighted denoising score matching loss (Song, Durkan, Murray & Ermon 2021, "Maximum likelihood
    training of score-based diffusion models", NeurIPS, Theorems 1 and 2; Kingma et al. 2021, "Variational
    diffusion models", NeurIPS, the continuous-time bound), estimated by Monte Carlo over the time and the noise.
    For the forward process from ``x`` at ``t_min``, ``x_t = a x + s e`` (``a = alpha(t) / alpha(t_min)``,
    ``s^2 = sigma(t)^2 - a^2 sigma(t_min)^2``), the DSM form of the bound is

    .. math:: \mathrm{ELBO}(x) = E[\log\pi(x_{t_{max}})] + d \log a(t_{max})
              + \int_{t_{min}}^{t_{max}} \lambda'(t)\, E\big[\|\hat\epsilon\|^2
              - 2 (\sigma / s)\, \hat\epsilon\cdot e\big]\,dt,

    ``lambda = log(alpha / sigma)`` and ``eps_hat = (x_t - alpha D) / sigma`` the model's noise prediction
    (``g^2 = -2 sigma^2 lambda'``). With the exact score and the exact prior it equals ``log p(x)`` for every
    ``x``. The derivation is on the methods page "Likelihoods".

    Each draw takes ``t`` with density ``q(t)`` and ``e ~ N(0, I)``, evaluates the integrand at
    ``x_t = a x + s e`` (and at ``a x - s e`` when ``antithetic``) and weights it by ``1 / q(t)``:
    ``time_sampling="log_snr"`` draws ``lambda = log(alpha / sigma)`` uniformly (``q = -lambda' / Delta lambda``,
    the importance sampling of Song et al. 2021 for this weighting), ``"uniform"`` draws ``t`` uniformly.
    Three variance reductions keep it unbiased: the draws are stratified in ``q`` (two per stratum, which also
    gives an unbiased standard error), the antithetic pair removes the ``1 / s`` blow-up of the noise term at
    ``t_min``, and the control variate ``c(lambda) (|e|^2 - d)`` (mean zero; ``c = sigma^2 / (sigma^2 + alpha^2
    v)``, the shrinkage of Gaussian data with the batch's per-coordinate variance ``v``) removes the chi-square
    noise where the signal is gone. The result is differentiable in the model's parameters (no gradient mode
    is forced), so ``-elbo(...).elbo.mean()`` is a likelihood-training loss.

    Arguments:
        model, prediction, model_kwargs, time_input: as :func:`sdekit.diffusion.log_likelihood`.
        schedule: the :class:`~sdekit.diffusion.Schedule`; ``alpha(t_max)`` must be positive (for
            :class:`~sdekit.diffusion.LinearFlow` pass ``t_max < 1``).
        x: data ``(batch, *event)``, finite.
        t_min, t_max: the interval (default: the schedule's).
        samples: draws of ``(t, e)`` per data point, an even int >= 2.
        time_sampling: ``"log_snr"`` (default) or ``"uniform"``.
        antithetic: evaluate each draw at ``e`` and ``-e`` (two evaluations per draw; keeps the variance finite
            near ``t_min``).
        prior: ``log pi(x)`` at ``t_max`` (``(batch, *event) -> (batch,)``); ``None``: the schedule's Gaussian
            prior, whose expectation is closed form.
        chunk: largest number of model inputs per call.
        dtype: dtype of the computation (``x`` is cast to it); ``None``: that of ``x``.
        generator: seeds the draws.

    Returns:
        An :class:`~sdekit.diffusion.ELBOEstimate` (``elbo`` and ``stderr`` per data point, in nats).

    Raises:
        TypeError / ValueError naming the argument for a wrong schedule, data, ``samples`` odd or < 2, an unknown
        ``time_sampling``, or a time interval where ``alpha`` or the log-SNR is not finite.
    """
    _check_schedule(schedule)
    x = _check_data(x, dtype)
    samples = _check_int("samples", samples, low=2)
    if samples % 2:
        raise ValueError(f"samples must be even (pairs of draws per stratum of the time), got {samples}")
    chunk = _check_int("chunk", chunk)
    time_sampling = _check_choice("time_sampling", time_sampling, ("log_snr", "uniform"))
    if not isinstance(antithetic, bool):
        raise TypeError(f"antithetic must be a bool, got {type(antithetic).__name__}")
    _check_generator(generator)
    lo, hi = _interval(schedule, t_min, t_max)
    den = _denoiser(model, schedule, prediction, model_kwargs, time_input)
    batch, dim = x.shape[0], x[0].numel()
    dt, dev = x.dtype, x.device

    t_lo, t_hi = as_time(lo).double(), as_time(hi).double()
    lam_lo, lam_hi = schedule.log_snr(t_lo), schedule.log_snr(t_hi)      # lambda(t_min) > lambda(t_max)
    log_a_T = schedule.log_alpha(t_hi) - schedule.log_alpha(t_lo)
    if not (torch.isfinite(lam_lo) and torch.isfinite(lam_hi) and torch.isfinite(log_a_T)):
        raise ValueError(f"elbo needs a finite log-SNR and alpha > 0 at t_min={lo} and t_max={hi}; got "
                         f"lambda(t_min)={float(lam_lo)}, lambda(t_max)={float(lam_hi)}, "
                         f"log alpha(t_max)/alpha(t_min)={float(log_a_T)} (pass t_min > 0 or t_max < 1)")

    # the draws: t (samples, batch) and e (samples, batch, *event)
    # stratified: draws 2j and 2j + 1 share the stratum [j, j + 1) / (samples / 2) of u
    strata = samples // 2
    u = torch.rand(samples, batch, generator=generator, dtype=torch.float64)
    u = ((torch.arange(samples, dtype=torch.float64) // 2)[:, None] + u) / strata
    u = u.reshape(-1)
    if time_sampling == "log_snr":
        lam = lam_hi + (lam_lo - lam_hi) * u
        t = schedule.t_of_log_snr(lam).clamp(lo, hi)
        lam = schedule.log_snr(t)
        weight = -(lam_lo - lam_hi).expand_as(t)               # lambda' / q = -Delta lambda
    else:
        t = lo + (hi - lo) * u
        lam = schedule.log_snr(t)
        weight = schedule.d_log_snr(t) * (hi - lo)              # lambda' / q
    e = torch.randn(samples * batch, *x.shape[1:], generator=generator, dtype=dt).to(dev)

    # the forward process from x at t_min: x_t = a x + s e, s^2 = sigma^2 (1 - exp(2 (lambda - lambda_min)))
    sigma = schedule.sigma(t)
    a = torch.exp(schedule.log_alpha(t) - schedule.log_alpha(t_lo))
    s = sigma * torch.sqrt(-torch.expm1(2.0 * (lam - lam_lo)))
    ratio = (sigma / s).to(dt).to(dev)
    # the control variate's coefficient: the shrinkage sigma^2 / (sigma^2 + alpha^2 v) of Gaussian data whose
    # per-coordinate variance v is that of the batch (1 for a single point); it changes the variance only
    v = float(x.double().var(0).mean()) if batch > 1 else 1.0
    cv = torch.sigmoid(-2.0 * lam - math.log(max(v, 1e-12))).to(dt).to(dev)
    x_rep = x.unsqueeze(0).expand(samples, *x.shape).reshape(-1, *x.shape[1:])

    def eps_hat(z: torch.Tensor, idx: slice) -> torch.Tensor:
        tt = t[idx].to(dt).to(dev)
        d = den(z, tt)
        return (z - broadcast_like(schedule.alpha(tt), z) * d) / broadcast_like(schedule.sigma(tt), z)

    values = []
    for i in range(0, samples * batch, chunk):
        idx = slice(i, i + chunk)
        ei, xi = e[idx], x_rep[idx]
        ai = broadcast_like(a[idx], xi)
        si = broadcast_like(s[idx], xi)
        eh = eps_hat(ai * xi + si * ei, idx)
        r = ratio[idx]
        h = (eh * eh).reshape(eh.shape[0], -1).sum(1) - 2.0 * r * (eh * ei).reshape(eh.shape[0], -1).sum(1)
        if antithetic:
            em = eps_hat(ai * xi - si * ei, idx)
            hm = (em * em).reshape(em.shape[0], -1).sum(1) + 2.0 * r * (em * ei).reshape(em.shape[0], -1).sum(1)
            h = 0.5 * (h + hm)
        # control variate c (|e|^2 - d), mean zero: h ~ -c |e|^2 for Gaussian data of variance v
        h = h + cv[idx] * ((ei * ei).reshape(ei.shape[0], -1).sum(1) - dim)
        values.append(weight[idx].to(dt).to(dev) * h)
    integral = torch.cat(values).reshape(samples, batch)

    # the prior term E[log pi(a_T x + s_T e)] and d log a_T
    a_T = float(torch.exp(log_a_T))
    s_T2 = float(schedule.sigma(t_hi) ** 2 * -torch.expm1(2.0 * (lam_hi - lam_lo)))
    flat = x.reshape(batch, -1)
    if prior is None:
        std2 = schedule.prior_std**2
        prior_term = (-0.5 * dim * math.log(2.0 * math.pi * std2)
                      - (a_T**2 * (flat * flat).sum(1) + dim * s_T2) / (2.0 * std2))
        prior_draws = prior_term.unsqueeze(0)
    else:
        log_prior = _prior(prior, schedule)
        e_T = torch.randn(samples, batch, *x.shape[1:], generator=generator, dtype=dt).to(dev)
        z = a_T * x.unsqueeze(0) + math.sqrt(s_T2) * e_T
        lp = _evaluate_prior(log_prior, z.reshape(-1, *x.shape[1:])).reshape(samples, batch)
        if antithetic:
            zm = a_T * x.unsqueeze(0) - math.sqrt(s_T2) * e_T
            lp = 0.5 * (lp + _evaluate_prior(log_prior, zm.reshape(-1, *x.shape[1:])).reshape(samples, batch))
        prior_draws = lp
        prior_term = lp.mean(0)
    draws = prior_draws + dim * float(log_a_T) + integral
    # the variance of a stratified mean: per stratum (v_1 - v_2)^2 / 2 estimates the within-stratum variance
    pairs = draws.reshape(strata, 2, batch)
    within = 0.5 * (pairs[:, 0] - pairs[:, 1]) ** 2
    stderr = torch.sqrt(within.sum(0) / (2.0 * strata**2))
    return ELBOEstimate(elbo=draws.mean(0), stderr=stderr, prior_term=prior_term,
                        samples=samples, nfe=(2 if antithetic else 1) * samples)


# --------------------------------------------------------------------------------------------
# Bits per dimension
# --------------------------------------------------------------------------------------------
def _levels(bits, levels) -> int:
    if levels is not None:
        return _check_int("levels", levels, low=2)
    return 2 ** _check_int("bits", bits)


def _range(data_range) -> tuple[float, float]:
    try:
        lo, hi = data_range
    except (TypeError, ValueError):
        raise TypeError(f"data_range must be a pair (lo, hi), got {data_range!r}") from None
    lo, hi = check_real("data_range[0]", lo), check_real("data_range[1]", hi)
    if not lo < hi:
        raise ValueError(f"data_range must have lo < hi, got {data_range!r}")
    return lo, hi


def bits_per_dim(logp: torch.Tensor, dim: int, *, bits: int = 8, levels: int | None = None,
                 data_range: tuple[float, float] = (-1.0, 1.0), dequantization: str = "uniform") -> torch.Tensor:
    r"""Bits per dimension of quantised data from the log-density of its dequantised version.

    Data with ``L = 2^bits`` levels (or ``levels``) on the grid ``lo + (hi - lo) k / (L - 1)``, dequantised with
    :func:`sdekit.diffusion.dequantize` (uniform noise over the bin of width ``w = (hi - lo) / (L - 1)`` around
    each grid point, the bins of Ho et al. 2020's discretised decoder), have
    ``log P(k) >= E[log p(x + u)] + d log w``, so

    .. math:: \mathrm{bpd} = -\frac{\log p + d \log w}{d \log 2};

    for 8-bit data scaled from ``[0, 255]`` to ``[-1, 1]`` (``w = 1 / 127.5``)
    ``bpd = -(log p - d log 127.5) / (d log 2) = -log p / (d log 2) + 6.994``. score_sde's convention
    (Song et al. 2021, "Score-based generative modeling through SDEs", ICLR: ``(255 x + u) / 256``, bins of
    ``2 / 256``) adds 7 instead. ``dequantization="none"`` gives the continuous ``-log p / (d log 2)``.

    Arguments:
        logp: log-densities in nats (e.g. from :func:`sdekit.diffusion.log_likelihood` or the ``elbo`` of
            :func:`sdekit.diffusion.elbo`), a tensor of any shape, finite.
        dim: number of dimensions ``d`` of one sample, an int >= 1.
        bits: bits per value (``L = 2^bits``), an int >= 1.
        levels: the number of levels ``L`` when it is not a power of two (e.g. 17 for the 8x8 digits, pixel
            values 0..16); overrides ``bits``.
        data_range: ``(lo, hi)``, the values of the lowest and highest level.
        dequantization: ``"uniform"`` or ``"none"``.

    Returns:
        Bits per dimension, the shape of ``logp``.

    Raises:
        TypeError / ValueError naming the argument.
    """
    if not isinstance(logp, torch.Tensor) or not logp.is_floating_point():
        raise TypeError(f"logp must be a floating-point tensor, got {type(logp).__name__}")
    if not bool(torch.isfinite(logp).all()):
        raise ValueError("logp must be finite")
    d = _check_int("dim", dim)
    mode = _check_choice("dequantization", dequantization, ("uniform", "none"))
    L = _levels(bits, levels)
    lo, hi = _range(data_range)
    log_w = math.log((hi - lo) / (L - 1)) if mode == "uniform" else 0.0
    return -(logp + d * log_w) / (d * math.log(2.0))


def dequantize(x: torch.Tensor, *, bits: int = 8, levels: int | None = None,
               data_range: tuple[float, float] = (-1.0, 1.0), generator: torch.Generator | None = None,
               tolerance: float = 1e-4) -> torch.Tensor:
    """Uniform dequantisation of data on the grid ``lo + (hi - lo) k / (L - 1)``, ``L = 2^bits`` (or
    ``levels``): ``x + w (u - 1/2)`` with ``u ~ U[0, 1)`` and the bin width ``w = (hi - lo) / (L - 1)``, the
    convention :func:`sdekit.diffusion.bits_per_dim` states (Ho et al. 2020, "Denoising diffusion probabilistic
    models", NeurIPS, section 3.3; Theis et al. 2016, "A note on the evaluation of generative models", ICLR).

    Arguments:
        x: data ``(batch, *event)`` with every value in ``data_range`` and on the grid.
        bits, levels, data_range: as :func:`sdekit.diffusion.bits_per_dim`.
        generator: seeds ``u``.
        tolerance: largest distance to the grid accepted, in units of ``w``.

    Returns:
        The dequantised data, the shape and dtype of ``x``.

    Raises:
        ValueError naming the first value outside ``data_range`` or off the grid.
    """
    check_tensor("x", x, min_dim=1, finite=True)
    L = _levels(bits, levels)
    lo, hi = _range(data_range)
    _check_generator(generator)
    tolerance = check_real("tolerance", tolerance, nonnegative=True)
    w = (hi - lo) / (L - 1)
    xd = x.detach().double()
    slack = tolerance * w
    outside = (xd < lo - slack) | (xd > hi + slack)
    if bool(outside.any()):
        first = tuple(int(i) for i in torch.nonzero(outside)[0])
        raise ValueError(f"x must lie in data_range [{lo}, {hi}] (the {L} levels of the stated convention); "
                         f"{int(outside.sum())} values do not, the first x[{', '.join(map(str, first))}]="
                         f"{x[first].item()}")
    k = (xd - lo) / w
    off = (k - k.round()).abs() > tolerance
    if bool(off.any()):
        first = tuple(int(i) for i in torch.nonzero(off)[0])
        raise ValueError(f"x must lie on the grid {lo} + {w:.6g} k, k = 0..{L - 1} ({L} levels); "
                         f"{int(off.sum())} values do not, the first x[{', '.join(map(str, first))}]="
                         f"{x[first].item()}; pass the quantised data, or levels= / data_range= that fit")
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64)
    return (xd + w * (u - 0.5)).to(dtype=x.dtype, device=x.device)
