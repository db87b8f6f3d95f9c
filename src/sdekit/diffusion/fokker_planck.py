r"""The Fokker–Planck residual of a learned score, a loss regularised by it, and the ODE–SDE gap.

Deveney, Stanczuk, Kreusser, Budd & Schönlieb, "Closing the ODE–SDE gap in score-based diffusion models
through the Fokker–Planck equation" (arXiv 2311.15996, 2023; Philosophical Transactions of the Royal
Society A 383, 2025). For the forward SDE ``dx = f(t) x dt + g(t) dW`` of a schedule the marginal density
``p_t`` solves the Fokker–Planck equation ``d_t p = -div(f x p) + 1/2 g^2 Lap p``; divided by ``p`` it
is an equation for ``log p``:

.. math:: \partial_t \log p = -d\,f - f\,x\cdot\nabla\log p
          + \tfrac12 g^2\big(\Delta\log p + |\nabla\log p|^2\big).

A score ``s = grad u`` of a scalar network ``u`` (:class:`~sdekit.diffusion.PotentialScore`) is the score of *some*
family of densities ``e^u / Z_t`` at every ``t``, but only when ``u`` solves this equation is that family
the law of the forward process, and only then do the probability-flow ODE and the reverse SDE driven by
``s`` produce the same distribution. The residual

.. math:: R_u = \partial_t u + d\,f + f\,x\cdot\nabla u - \tfrac12 g^2\big(\Delta u + |\nabla u|^2\big)

(:func:`~sdekit.diffusion.log_density_residual`) is zero for ``u = log p_t`` and measures how far from it a learned
potential is; the paper bounds ``W2(ODE law, SDE law)`` by it and adds ``w * mean(R^2)`` to denoising
score matching (:class:`~sdekit.diffusion.FokkerPlanckLoss`). A score network that is not a gradient has the gradient of
the same equation as its residual (the "score Fokker–Planck equation", Lai et al. 2023, "FP-Diffusion",
ICML), :func:`~sdekit.diffusion.score_residual`:

.. math:: R_s = \partial_t s + \nabla_x\Big[f\,x\cdot s - \tfrac12 g^2\big(\nabla\cdot s + |s|^2\big)\Big]
          \qquad (R_s = \nabla_x R_u \text{ when } s = \nabla u).

The Laplacian / divergence is exact (``d`` backward passes, small ``d``) or the Hutchinson estimate
``v^T (d s / d x) v`` with Rademacher or Gaussian probes (``probes`` of them averaged); the residual is
linear in it, so the Hutchinson residual is unbiased (its square is not: it is biased up by the probe
variance). :func:`~sdekit.diffusion.ode_sde_gap` samples the same model with the probability-flow ODE and
with the reverse SDE and measures the exact ``W2`` between the two sample sets with POT.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._utils import batch_time, check_real, check_tensor, jacobian_trace
from .losses import DenoisingScoreMatching, TimeSampling, WeightFunction
from .prediction import Denoiser, Prediction
from .schedules import Schedule

__all__ = ["PotentialScore", "PotentialMLP", "log_density_residual", "score_residual", "FokkerPlanckLoss",
           "ode_sde_gap", "ODESDEGap", "DIVERGENCES"]

#: how the Laplacian / divergence is computed: exactly or by Hutchinson's estimator with one probe law
DIVERGENCES = ("exact", "rademacher", "gaussian")


# ------------------------------------------------------------------------------------------------
# Argument checks
# ------------------------------------------------------------------------------------------------
def _check_schedule(schedule) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
    return schedule


def _check_divergence(divergence) -> str:
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES} ('exact' or a Hutchinson probe law), got "
                         f"{divergence!r}")
    return divergence


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _check_x(x) -> torch.Tensor:
    check_tensor("x", x, min_dim=2, finite=True)
    return x


# ------------------------------------------------------------------------------------------------
# Scores from scalar potentials
# ------------------------------------------------------------------------------------------------
class PotentialScore(nn.Module):
    r"""A score that is the gradient of a scalar network: ``s(x, t) = grad_x u(x, t)`` (a conservative
    field, as in Deveney et al. 2023), usable wherever a score network is (``prediction="score"``).

    With ``schedule`` given, the potential is ``u = phi(x, t) / sigma(t)`` so that ``phi`` works in noise
    units (``-sigma s = -grad phi`` is the noise prediction) and stays of order one near ``t_min``.

    Arguments:
        potential: a module or callable ``phi(x, t)`` returning ``(batch,)`` (or ``(batch, 1)``) for
            ``x: (batch, *event)`` and ``t: (batch,)``.
        schedule: optional :class:`~sdekit.diffusion.Schedule` for the ``1 / sigma(t)`` scaling.

    Call:
        ``score(x, t, **kwargs)`` -> ``(batch, *event)``; the gradient is taken with ``create_graph``
        when gradients are enabled outside (training) and detached otherwise (sampling under
        ``torch.no_grad()``). ``score.potential(x, t)`` gives ``u``.
    """

    def __init__(self, potential: Callable[..., torch.Tensor], schedule: Schedule | None = None) -> None:
        super().__init__()
        if not callable(potential):
            raise TypeError(f"potential must be a callable phi(x, t), got {type(potential).__name__}")
        if schedule is not None:
            _check_schedule(schedule)
        self.net = potential
        self.schedule = schedule

    def potential(self, x: torch.Tensor, t: float | torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``u(x, t)``, ``(batch,)``."""
        tb = batch_time(t, x)
        u = self.net(x, tb, **kwargs)
        if not isinstance(u, torch.Tensor) or u.shape not in ((x.shape[0],), (x.shape[0], 1)):
            got = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise ValueError(f"potential(x, t) must return a (batch,) or (batch, 1) tensor, batch={x.shape[0]}; "
                             f"got {got}")
        u = u.reshape(x.shape[0])
        if self.schedule is not None:
            u = u / self.schedule.sigma(tb).to(u.dtype)
        return u

    def forward(self, x: torch.Tensor, t: float | torch.Tensor, **kwargs: Any) -> torch.Tensor:
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            u = self.potential(xg, t, **kwargs)
            (grad,) = torch.autograd.grad(u.sum(), xg, create_graph=outer)
        return grad if outer else grad.detach()


class PotentialMLP(nn.Module):
    """A small smooth scalar network ``phi(x, t)`` for :class:`~sdekit.diffusion.PotentialScore`: an MLP with SiLU
    activations (twice differentiable, as the Fokker–Planck residual needs) on ``x`` and Fourier features
    ``sin / cos(pi k t / t_scale)``, ``k = 1..num_freqs``, of the time.

    Arguments:
        dim: data dimension ``d`` (``x: (batch, d)``).
        hidden: width; depth: number of hidden layers.
        num_freqs: number of time frequencies; t_scale: the time range (1 for ``t`` in ``[0, 1]``).
        seed: if given, initialise the parameters from this seed without touching the global RNG.
    """

    freqs: torch.Tensor

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, num_freqs: int = 8, t_scale: float = 1.0,
                 seed: int | None = None) -> None:
        super().__init__()
        _check_int("dim", dim)
        _check_int("hidden", hidden)
        _check_int("depth", depth)
        _check_int("num_freqs", num_freqs)
        self.dim = dim
        self.t_scale = check_real("t_scale", t_scale, positive=True)
        self.register_buffer("freqs", math.pi * torch.arange(1, num_freqs + 1, dtype=torch.float32))
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            layers: list[nn.Module] = []
            width = dim + 1 + 2 * num_freqs
            for _ in range(depth):
                layers += [nn.Linear(width, hidden), nn.SiLU()]
                width = hidden
            layers.append(nn.Linear(width, 1))
            self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        tb = batch_time(t, x)[:, None] / self.t_scale
        ang = tb * self.freqs.to(x.dtype)
        h = torch.cat([x, tb, torch.sin(ang), torch.cos(ang)], dim=1)
        return self.body(h).squeeze(1)


# ------------------------------------------------------------------------------------------------
# Derivatives
# ------------------------------------------------------------------------------------------------
def _flat(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1)


def _probe(like: torch.Tensor, law: str, generator: torch.Generator | None) -> torch.Tensor:
    dev = generator.device if generator is not None else like.device
    if law == "rademacher":
        v = torch.randint(0, 2, like.shape, generator=generator, device=dev).to(like.dtype) * 2 - 1
    else:
        v = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=dev)
    return v.to(like.device)


def _divergence(field_: torch.Tensor, x: torch.Tensor, divergence: str, probes: int,
                generator: torch.Generator | None) -> torch.Tensor:
    """``div_x field`` per sample, exact or by Hutchinson; ``field_`` has the shape of ``x`` and a graph."""
    vs = None if divergence == "exact" else [_probe(field_, divergence, generator) for _ in range(probes)]
    return jacobian_trace(field_, x, vs, create_graph=True)


def _time_derivative(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``d out / d t`` per sample for ``out: (batch, ...)`` depending on its own ``t[b]`` only (two
    reverse passes: the Jacobian-vector product from a vector-Jacobian product)."""
    w = torch.zeros_like(out, requires_grad=True)
    (gt,) = torch.autograd.grad((out * w).sum(), t, create_graph=True)
    (dt,) = torch.autograd.grad(gt.sum(), w, create_graph=True)
    return dt


def _leaves(x: torch.Tensor, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xg = x.detach().requires_grad_(True)
    tg = batch_time(t, x).detach().requires_grad_(True)
    return xg, tg


def _coefficients(schedule: Schedule, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    td = t.detach().to(torch.float64)
    f, g2, sigma = schedule.f(td), schedule.g2(td), schedule.sigma(td)
    return f.to(t.dtype), g2.to(t.dtype), sigma.to(t.dtype)


def _finish(r: torch.Tensor, create_graph: bool | None) -> torch.Tensor:
    keep = torch.is_grad_enabled() if create_graph is None else create_graph
    return r if keep else r.detach()


# ------------------------------------------------------------------------------------------------
# Residuals
# ------------------------------------------------------------------------------------------------
def log_density_residual(potential: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor,
                         t: float | torch.Tensor, *, divergence: str = "exact", probes: int = 1,
                         generator: torch.Generator | None = None, normalize: bool = False,
                         create_graph: bool | None = None) -> torch.Tensor:
    r"""The residual of the log-density Fokker–Planck equation of the forward process for a scalar
    potential ``u`` (Deveney et al. 2023):

    .. math:: R_u = \partial_t u + d\,f + f\,x\cdot\nabla u - \tfrac12 g^2\big(\Delta u + |\nabla u|^2\big),

    zero for ``u = log p_t`` (e.g. ``GaussianMixture.log_prob``); a ``u`` off by a
    function of ``t`` alone has the residual ``c'(t)``.

    Arguments:
        potential: ``u(x, t)`` -> ``(batch,)`` with ``t: (batch,)`` (a :class:`~sdekit.diffusion.PotentialScore`'s
            ``potential``, a bound oracle ``log_prob``, ...).
        schedule: the forward process (its ``f`` and ``g^2``).
        x: points ``(batch, *event)``; t: a float, 0-d or ``(batch,)`` time (inside ``(0, t_max]``).
        divergence: ``"exact"`` (``d`` reverse passes) or a Hutchinson probe law, ``"rademacher"`` or
            ``"gaussian"`` (an unbiased estimate of ``Lap u``, hence of ``R_u``).
        probes: Hutchinson probes averaged per point (>= 1).
        generator: seeds the probes.
        normalize: multiply by ``sigma(t)^2 / g(t)^2``, which makes every term of order one at every time
            (the raw residual grows like ``1 / t`` near ``t = 0`` for VP).
        create_graph: keep the graph to the parameters (default: when gradients are enabled).

    Returns:
        ``(batch,)``.
    """
    _check_schedule(schedule)
    _check_x(x)
    if not callable(potential):
        raise TypeError(f"potential must be a callable u(x, t), got {type(potential).__name__}")
    divergence = _check_divergence(divergence)
    probes = _check_int("probes", probes)
    with torch.enable_grad():
        xg, tg = _leaves(x, t)
        u = potential(xg, tg)
        if not isinstance(u, torch.Tensor) or u.shape not in ((x.shape[0],), (x.shape[0], 1)):
            got = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise ValueError(f"potential(x, t) must return a (batch,) tensor, batch={x.shape[0]}; got {got}")
        u = u.reshape(x.shape[0])
        gx, gt = torch.autograd.grad(u.sum(), (xg, tg), create_graph=True)
        lap = _divergence(gx, xg, divergence, probes, generator)
        f, g2, sigma = _coefficients(schedule, tg)
        d = _flat(xg).shape[1]
        r = gt + d * f + f * _flat(xg * gx).sum(1) - 0.5 * g2 * (lap + _flat(gx * gx).sum(1))
        if normalize:
            r = r * sigma**2 / g2
    return _finish(r, create_graph)


def score_residual(score: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor,
                   t: float | torch.Tensor, *, divergence: str = "exact", probes: int = 1,
                   generator: torch.Generator | None = None, normalize: bool = False,
                   create_graph: bool | None = None) -> torch.Tensor:
    r"""The residual of the score Fokker–Planck equation (the gradient of the log-density one; Lai et
    al. 2023, "FP-Diffusion", ICML; Deveney et al. 2023) for any score field ``s(x, t)``:

    .. math:: R_s = \partial_t s + \nabla_x\Big[f\,x\cdot s - \tfrac12 g^2\big(\nabla\cdot s + |s|^2\big)\Big],

    zero for the true score; for ``s = grad u`` it equals ``grad_x R_u``
    (:func:`~sdekit.diffusion.log_density_residual`).

    Arguments:
        score: ``s(x, t)`` -> ``(batch, *event)`` with ``t: (batch,)`` (e.g. a
            :class:`~sdekit.diffusion.Denoiser`'s ``score`` or an oracle's bound ``score``).
        schedule, x, t, divergence, probes, generator, create_graph: as :func:`~sdekit.diffusion.log_density_residual`.
        normalize: multiply by ``sigma^3 / g^2`` (order one at every time).

    Returns:
        ``(batch, *event)``.
    """
    _check_schedule(schedule)
    _check_x(x)
    if not callable(score):
        raise TypeError(f"score must be a callable s(x, t), got {type(score).__name__}")
    divergence = _check_divergence(divergence)
    probes = _check_int("probes", probes)
    with torch.enable_grad():
        xg, tg = _leaves(x, t)
        s = score(xg, tg)
        if not isinstance(s, torch.Tensor) or s.shape != x.shape:
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(f"score(x, t) must return a tensor of the shape of x, {tuple(x.shape)}; got {got}")
        div = _divergence(s, xg, divergence, probes, generator)
        f, g2, sigma = _coefficients(schedule, tg)
        phi = f * _flat(xg * s).sum(1) - 0.5 * g2 * (div + _flat(s * s).sum(1))
        (grad_phi,) = torch.autograd.grad(phi.sum(), xg, create_graph=True)
        r = _time_derivative(s, tg) + grad_phi
        if normalize:
            shape = (-1,) + (1,) * (x.dim() - 1)
            r = r * (sigma**3 / g2).reshape(shape)
    return _finish(r, create_graph)


# ------------------------------------------------------------------------------------------------
# The regularised loss
# ------------------------------------------------------------------------------------------------
class FokkerPlanckLoss:
    r"""Denoising score matching plus the Fokker–Planck residual (Deveney et al. 2023):

    .. math:: L = L_\mathrm{DSM} + w\,E_{t, x_t}\big[R(x_t, t)^2\big],

    with the residual taken at the same noisy points ``x_t = alpha x_0 + sigma eps`` and times as the DSM
    term. For a :class:`~sdekit.diffusion.PotentialScore` model (``form="auto"`` or ``"potential"``) ``R`` is
    :func:`~sdekit.diffusion.log_density_residual` of its potential; for any other network (``"score"``) it is
    :func:`~sdekit.diffusion.score_residual` of the score its prediction implies, ``R^2`` averaged over the
    event entries.
    The same interface as :class:`~sdekit.diffusion.DenoisingScoreMatching`, so it plugs into
    :class:`sdekit.train.Trainer`.

    Arguments:
        schedule: the :class:`~sdekit.diffusion.Schedule`.
        weight: ``w >= 0`` (``0``: plain DSM, the residual is not computed).
        prediction, weighting, time_sampling, time_input: as
            :class:`~sdekit.diffusion.DenoisingScoreMatching` (default ``prediction="score"``).
        form: ``"auto"``, ``"potential"`` or ``"score"``.
        divergence: ``"exact"``, ``"rademacher"`` or ``"gaussian"`` (Hutchinson; the squared residual is
            then biased up by the probe variance, which ``probes`` reduces).
        probes: Hutchinson probes per point.
        normalize: scale the residual to order one at every time (see :func:`~sdekit.diffusion.log_density_residual`;
            default ``True``).
        spread: if given, half of the residual points are ``alpha x_0 + spread * sigma * eps'`` instead
            (wider than the data at every time, e.g. ``2.0``: the tails that probability-flow trajectories
            started in the prior's tails cross, where DSM sees few points).

    Call:
        ``loss(model, x0, generator=None, model_kwargs=None)`` -> scalar; ``per_sample`` gives
        ``(batch,)`` and accepts fixed ``t`` and ``noise``; ``residual(model, x, t)`` the residual alone.
    """

    def __init__(self, schedule: Schedule, weight: float = 1.0, prediction: str | Prediction = "score",
                 weighting: str | WeightFunction | None = None, time_sampling: str | TimeSampling = "uniform", *,
                 form: str = "auto", divergence: str = "exact", probes: int = 1, normalize: bool = True,
                 spread: float | None = None,
                 time_input: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.dsm = DenoisingScoreMatching(schedule, prediction, weighting, time_sampling, time_input=time_input)
        self.schedule = schedule
        self.weight = check_real("weight", weight, nonnegative=True)
        if form not in ("auto", "potential", "score"):
            raise ValueError(f"form must be 'auto', 'potential' or 'score', got {form!r}")
        self.form = form
        self.divergence = _check_divergence(divergence)
        self.probes = _check_int("probes", probes)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        self.normalize = normalize
        self.spread = None if spread is None else check_real("spread", spread, positive=True)
        self.time_input = time_input

    def _form(self, model) -> str:
        if self.form != "auto":
            if self.form == "potential" and not isinstance(model, PotentialScore):
                raise TypeError(f"form='potential' needs a sdekit.diffusion.PotentialScore model, got "
                                f"{type(model).__name__}")
            return self.form
        return "potential" if isinstance(model, PotentialScore) else "score"

    def residual(self, model: Callable[..., torch.Tensor], x: torch.Tensor, t: float | torch.Tensor, *,
                 generator: torch.Generator | None = None, model_kwargs: dict[str, Any] | None = None,
                 create_graph: bool | None = None) -> torch.Tensor:
        """The residual of ``model`` at ``(x, t)``: ``(batch,)`` for the potential form, ``(batch, *event)``
        for the score form."""
        kwargs = dict(model_kwargs or {})
        ti = self.time_input
        opts = dict(divergence=self.divergence, probes=self.probes, generator=generator, normalize=self.normalize,
                    create_graph=create_graph)
        if self._form(model) == "potential":
            assert isinstance(model, PotentialScore)
            pot = model

            def u(xx: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
                return pot.potential(xx, ti(tt) if ti is not None else tt, **kwargs)
            if ti is not None and pot.schedule is not None:
                raise ValueError("time_input with a sigma-scaled PotentialScore is ambiguous; use one of them")
            return log_density_residual(u, self.schedule, x, t, **opts)  # type: ignore[arg-type]
        den = Denoiser(model, self.schedule, self.dsm.prediction, model_kwargs=kwargs or None, time_input=ti)
        return score_residual(den.score, self.schedule, x, t, **opts)  # type: ignore[arg-type]

    def per_sample(self, model: Callable[..., torch.Tensor], x0: torch.Tensor, *,
                   t: float | torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None,
                   model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        """``(batch,)`` losses: the DSM term plus ``weight * R^2`` at the same ``(x_t, t)``."""
        check_tensor("x0", x0, min_dim=2)
        batch = x0.shape[0]
        if t is None:
            t = self.dsm.time_sampling(batch, self.schedule, generator, x0.dtype, x0.device)
        if noise is None:
            dev = generator.device if generator is not None else x0.device
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
        dsm = self.dsm.per_sample(model, x0, t=t, noise=noise, generator=generator, model_kwargs=model_kwargs)
        if self.weight == 0.0:
            return dsm
        tt = batch_time(t, x0)
        x_t = self.dsm.perturb(x0, noise, tt)[0].detach()
        r = self.residual(model, x_t, tt, generator=generator, model_kwargs=model_kwargs)
        r2 = _flat(r * r).mean(1) if r.dim() > 1 else r * r
        if self.spread is not None:
            dev = generator.device if generator is not None else x0.device
            wide = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
            x_w = self.dsm.perturb(x0, self.spread * wide, tt)[0].detach()
            rw = self.residual(model, x_w, tt, generator=generator, model_kwargs=model_kwargs)
            r2 = 0.5 * (r2 + (_flat(rw * rw).mean(1) if rw.dim() > 1 else rw * rw))
        return dsm + self.weight * r2

    def __call__(self, model: Callable[..., torch.Tensor], x0: torch.Tensor,
                 generator: torch.Generator | None = None,
                 model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        return self.per_sample(model, x0, generator=generator, model_kwargs=model_kwargs).mean()

    def __repr__(self) -> str:
        return (f"FokkerPlanckLoss({self.schedule!r}, weight={self.weight}, prediction={self.dsm.prediction!r}, "
                f"form={self.form!r}, divergence={self.divergence!r}, normalize={self.normalize})")


# ------------------------------------------------------------------------------------------------
# The ODE-SDE gap
# ------------------------------------------------------------------------------------------------
@dataclass
class ODESDEGap:
    """What :func:`~sdekit.diffusion.ode_sde_gap` measured (exact W2 with POT, over ``repeats`` independent draws).

    Attributes:
        w2: mean ``W2(ODE samples, SDE samples)``; w2_std: its standard deviation over the repeats.
        w2_values: the per-repeat values.
        w2_ode_data, w2_sde_data: mean ``W2`` of each sampler to ``data`` (``None`` without data), and
            ``w2_ode_data_std``, ``w2_sde_data_std`` their standard deviations.
        n: samples per set; repeats: number of draws.
    """

    w2: float
    w2_std: float
    w2_values: list[float] = field(default_factory=list)
    w2_ode_data: float | None = None
    w2_ode_data_std: float | None = None
    w2_sde_data: float | None = None
    w2_sde_data_std: float | None = None
    n: int = 0
    repeats: int = 0


def _w2(ot, a: torch.Tensor, b: torch.Tensor) -> float:
    import numpy as np

    a_np = a.detach().to("cpu", torch.float64).reshape(a.shape[0], -1).numpy()
    b_np = b.detach().to("cpu", torch.float64).reshape(b.shape[0], -1).numpy()
    cost = ot.dist(a_np, b_np)
    wa = np.full(a_np.shape[0], 1.0 / a_np.shape[0])
    wb = np.full(b_np.shape[0], 1.0 / b_np.shape[0])
    return float(math.sqrt(max(float(ot.emd2(wa, wb, cost, numItermax=10_000_000)), 0.0)))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def ode_sde_gap(model: Callable[..., torch.Tensor], schedule: Schedule, n: int = 1000, *,
                shape: Sequence[int] | None = None, prediction: str | Prediction = "score",
                ode_solver: Any = None, sde_solver: Any = "euler-maruyama", ode_steps: int | None = 100,
                sde_steps: int = 500, repeats: int = 3, seed: int = 0, data: torch.Tensor | None = None,
                denoise_final: bool = True, dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> ODESDEGap:
    """The ODE–SDE gap of a model (Deveney et al. 2023, section 5): sample ``n`` points with the
    probability-flow ODE and ``n`` with the reverse SDE from the same prior draws, and measure the exact
    ``W2`` between them (POT's ``emd2`` on the squared Euclidean cost), ``repeats`` times with fresh
    draws; with ``data``, also ``W2`` of each sample set to it.

    An exact score has a gap of the solvers' discretisation error plus the finite-sample ``W2`` of two
    ``n``-point sets (which does not vanish: it decays like ``n^(-1/d)`` in ``d >= 3`` dimensions, slower
    than ``n^(-1/2)`` in two); compare gaps at the same ``n``.

    Arguments:
        model: the network (or a :class:`~sdekit.diffusion.Denoiser`), as :func:`sdekit.diffusion.sample`.
        schedule: its :class:`~sdekit.diffusion.Schedule`.
        n: samples per set; shape: the event shape (default: that of ``data``, which then is required).
        prediction: what ``model`` predicts (default ``"score"``).
        ode_solver: a sampler for the ODE (default ``PFODE("rk4")``); sde_solver: for the SDE (default
            ``"euler-maruyama"``).
        ode_steps, sde_steps: grid steps (``ode_steps=None`` for an adaptive ODE solver in one interval).
        repeats: independent draws (>= 1); seed: seeds them.
        data: optional reference samples ``(m, *event)``.
        denoise_final: end both samplers with ``D(x, t_min)``.
        dtype, device: of the samples.

    Returns:
        an :class:`~sdekit.diffusion.ODESDEGap`.

    Needs POT (``pip install 'sdekit[bench]'``).
    """
    from ..extras import require
    from .samplers import PFODE, sample

    _check_schedule(schedule)
    n = _check_int("n", n)
    repeats = _check_int("repeats", repeats)
    sde_steps = _check_int("sde_steps", sde_steps)
    if ode_steps is not None:
        ode_steps = _check_int("ode_steps", ode_steps)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if data is not None:
        check_tensor("data", data, min_dim=2, finite=True)
        if shape is not None and tuple(data.shape[1:]) != tuple(shape):
            raise ValueError(f"shape={tuple(shape)} does not match data of event shape {tuple(data.shape[1:])}")
        shape = tuple(data.shape[1:])
    if shape is None:
        raise ValueError("pass shape (the event shape of a sample) or data")
    shape = tuple(int(s) for s in shape)
    ode = PFODE("rk4") if ode_solver is None else ode_solver
    ot = require("ot", "bench", "sdekit.diffusion.ode_sde_gap")
    gaps, to_data_ode, to_data_sde = [], [], []
    for r in range(repeats):
        gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + r)
        x_T = schedule.prior_sample((n, *shape), gen).to(dtype=dtype, device=device)
        with torch.no_grad():
            x_ode = sample(model, schedule, x_T, solver=ode, steps=ode_steps, prediction=prediction,
                           denoise_final=denoise_final)
            x_sde = sample(model, schedule, x_T, solver=sde_solver, steps=sde_steps, prediction=prediction,
                           denoise_final=denoise_final, generator=torch.Generator(device="cpu").manual_seed(
                               seed * 1_000_003 + r + 7919))
        if not (bool(torch.isfinite(x_ode).all()) and bool(torch.isfinite(x_sde).all())):
            raise FloatingPointError("the ODE or SDE samples are not finite; check the model and steps")
        gaps.append(_w2(ot, x_ode, x_sde))
        if data is not None:
            to_data_ode.append(_w2(ot, x_ode, data))
            to_data_sde.append(_w2(ot, x_sde, data))
    w2, w2_std = _mean_std(gaps)
    out = ODESDEGap(w2=w2, w2_std=w2_std, w2_values=gaps, n=n, repeats=repeats)
    if data is not None:
        out.w2_ode_data, out.w2_ode_data_std = _mean_std(to_data_ode)
        out.w2_sde_data, out.w2_sde_data_std = _mean_std(to_data_sde)
    return out
