r"""Fine-tuning a flow by maximum likelihood of its reconstructions, and contracting residual fields (Li, Ding,
Li, Li, "Fine-Tuning Flow Matching via Maximum Likelihood Estimation of Reconstructions", arXiv:2510.02081,
2025).

**Why.** A flow's sampler integrates ``dx/dt = v_theta(x, t)`` with a few steps. If ``|v_theta - u| <= delta``
and the true field ``u`` is ``L``-Lipschitz, the error after the last of the steps ``tau_j`` is bounded by
``e^{L t} sum_j (delta tau_j + M tau_j^2 / 2)`` (the paper's Thm 1): the training error and the
discretisation error are amplified by the field's stiffness, which straight flow-matching paths between
multimodal targets make large. Flow matching never sees the solver; fine-tuning on reconstructions does.

**FT.** Each training point ``x`` is paired with the noise ``z`` the pre-trained flow's ODE maps to it
(:func:`flow_encode`: the ODE from data to noise, integrated accurately once). The fine-tuned field then decodes
``z`` with the sampler it will be used with (:func:`flow_decode`: ``steps`` Euler or midpoint steps through
:func:`sdekit.odeint`, backpropagated), and the loss is the Gaussian negative log-likelihood of the data under
the reconstruction, ``|x_hat - x|^2 / (2 s^2 d)`` per dimension (:class:`ReconstructionMLE`; the constant is
dropped). The pairing and the exact loss of the paper are not published; this is the reading of its text
(maximum likelihood of reconstructions, backpropagated through the solver) that sdekit implements.

**ResFT.** The pre-trained field is frozen and a residual is learned on top (:class:`ResidualFlow`):
``dx/ds = -v_pre(x, t) + r(x, t)`` in the sampling direction ``s = 1 - t``. The residual's architecture makes
its own dynamics contracting (:class:`ContractingResidual`): ``r(x) = -kappa x + W_2 tanh(W_1 x + b(t, c))``
with ``|W_2|_2 |W_1|_2 <= rho`` (spectral norms, enforced by construction, ``rho`` learned) and
``kappa = rho + c_r``, so the symmetric part of its Jacobian is at most
``-c_r I`` and two solutions of ``dx/ds = r(x, s)`` approach each
other at least as fast as ``e^{-c_r s}`` (a one-sided Lipschitz bound; Lohmiller & Slotine 1998). The paper
states the property with LMI constraints; this is the simplest architecture that has it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core import odeint
from ..diffusion import LinearFlow, Schedule

__all__ = ["flow_encode", "flow_decode", "ReconstructionMLE", "ContractingResidual", "ResidualFlow",
           "field_stiffness"]


def _field(model: Callable[..., torch.Tensor], model_kwargs: dict[str, Any] | None):
    kwargs = {} if model_kwargs is None else dict(model_kwargs)

    def f(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = model(x, t.to(x.dtype).expand(x.shape[0]), **kwargs)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the velocity field must return a tensor of the shape of x, {tuple(x.shape)}; got {got}")
        return out

    return f


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    return steps


def _check_method(method: str) -> str:
    if method not in ("euler", "midpoint", "rk4"):
        raise ValueError(f"method must be 'euler', 'midpoint' or 'rk4', got {method!r}")
    return method


def _check_state(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating tensor (batch, *event), got {got}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(x.shape)}")
    return x


def flow_encode(model: Callable[..., torch.Tensor], x0: torch.Tensor, *, schedule: Schedule | None = None,
                steps: int = 200, model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
    r"""The noise ``z`` that the flow's ODE ``dx/dt = v(x, t)`` maps to ``x0``: the ODE integrated from ``t_min``
    (data) to ``t_max`` (noise) with ``steps`` RK4 steps, without gradients.

    Arguments:
        model: the velocity field ``model(x, t, **model_kwargs)``, ``t: (batch,)``.
        x0: ``(batch, *event)`` data.
        schedule: the flow's schedule (default :class:`~sdekit.diffusion.LinearFlow`).
        steps: RK4 steps (4 model calls each).
        model_kwargs: e.g. the condition of a conditional flow.

    Returns:
        ``(batch, *event)``.
    """
    schedule = LinearFlow() if schedule is None else schedule
    _check_state("x0", x0)
    steps = _check_steps(steps)
    ts = torch.linspace(schedule.t_min, schedule.t_max, steps + 1, dtype=torch.float64)
    with torch.no_grad():
        return odeint(_field(model, model_kwargs), x0, ts, method="rk4", dt=float(ts[1] - ts[0]))[-1]


def flow_decode(model: Callable[..., torch.Tensor], z: torch.Tensor, *, schedule: Schedule | None = None,
                steps: int = 4, method: str = "euler", model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
    r"""The flow's sampler: ``steps`` fixed steps of ``method`` (``"euler"``, ``"midpoint"`` or ``"rk4"``) from
    ``t_max`` (noise ``z``) to ``t_min`` on a uniform grid, through :func:`sdekit.odeint` (differentiable).

    Arguments:
        model, schedule, model_kwargs: as :func:`flow_encode`.
        z: ``(batch, *event)`` noise.
        steps: the number of steps (model calls: ``steps`` x 1, 2 or 4).
        method: the fixed-step method.

    Returns:
        ``(batch, *event)`` samples.
    """
    schedule = LinearFlow() if schedule is None else schedule
    _check_state("z", z)
    steps = _check_steps(steps)
    _check_method(method)
    ts = torch.linspace(schedule.t_max, schedule.t_min, steps + 1, dtype=torch.float64)
    return odeint(_field(model, model_kwargs), z, ts, method=method, dt=float(ts[0] - ts[1]))[-1]


class ReconstructionMLE:
    r"""FT's loss (module docstring): the Gaussian negative log-likelihood, per dimension and without its
    constant, of data ``x`` under the ``steps``-step reconstruction ``x_hat`` of its encoded noise ``z``,
    ``|x_hat - x|^2 / (2 s^2 d)``. Usable with :class:`sdekit.train.Trainer` on tuple data ``(x, z)``
    (conditions through its ``labels``, which reach the model as ``model_kwargs``).

    Arguments:
        steps: the sampler's number of steps. method: its fixed-step method (:func:`flow_decode`).
        scale: the likelihood's standard deviation ``s > 0`` (only scales the loss).
        schedule: the flow's schedule (default LinearFlow).
    """

    def __init__(self, steps: int = 4, *, method: str = "euler", scale: float = 0.1,
                 schedule: Schedule | None = None) -> None:
        self.steps = _check_steps(steps)
        self.method = _check_method(method)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        self.schedule = LinearFlow() if schedule is None else schedule

    def per_sample(self, model: Callable[..., torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor], *,
                   model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        """``(batch,)`` negative log-likelihoods per dimension."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError("batch must be the pair (x, z) of data and its encoded noise (tuple data)")
        x, z = batch
        if not isinstance(x, torch.Tensor) or not isinstance(z, torch.Tensor) or x.shape != z.shape:
            raise ValueError("x and z must be tensors of one shape (batch, *event)")
        x_hat = flow_decode(model, z, schedule=self.schedule, steps=self.steps, method=self.method,
                            model_kwargs=model_kwargs)
        return (x_hat - x).pow(2).reshape(x.shape[0], -1).mean(1) / (2.0 * self.scale**2)

    def __call__(self, model: Callable[..., torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor],
                 generator: torch.Generator | None = None,
                 model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        return self.per_sample(model, batch, model_kwargs=model_kwargs).mean()

    def __repr__(self) -> str:
        return f"ReconstructionMLE(steps={self.steps}, method={self.method!r}, scale={self.scale})"


def _spectral_normalised(v: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """``v`` scaled so its spectral norm is at most ``bound`` (exactly, by the largest singular value)."""
    norm = torch.linalg.matrix_norm(v, ord=2)
    return v * (bound / torch.clamp(norm, min=bound))


class ContractingResidual(nn.Module):
    r"""A residual field whose dynamics contract (module docstring):
    ``r(x, t, c) = -kappa (x - m(t, c)) + W_2 tanh(W_1 x + b(t, c))`` with ``|W_1|_2, |W_2|_2 <= sqrt(rho)``
    (spectral norms, enforced by rescaling), a learned gain ``rho > 0`` and ``kappa = rho + rate``, so
    ``J_r + J_r^T <= -2 rate I`` everywhere: solutions of ``dx/ds = r`` approach each other at least as
    ``e^{-rate s}`` whatever the parameters. ``m`` and ``b`` are networks of the time and the condition only.
    With a small initial ``rho`` and ``rate`` the residual flow starts close to the pre-trained one.

    Arguments:
        dim: the state dimension.
        hidden: the width of ``W_1``.
        cond_dim: the size of a condition ``cond`` passed as a keyword (0: unconditional).
        rho: the initial gain bound of the nonlinear part (``> 0``; learned).
        rate: the guaranteed contraction rate (``> 0``; fixed).
        seed: initialises the parameters without touching the global generator.
    """

    def __init__(self, dim: int, hidden: int = 64, *, cond_dim: int = 0, rho: float = 0.1, rate: float = 0.05,
                 seed: int | None = None) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(cond_dim, bool) or not isinstance(cond_dim, int) or cond_dim < 0:
            raise ValueError(f"cond_dim must be an int >= 0, got {cond_dim!r}")
        for name, value in (("rho", rho), ("rate", rate)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        self.dim, self.cond_dim, self.hidden, self.rate = dim, cond_dim, hidden, float(rate)
        self.raw_rho = nn.Parameter(torch.tensor(math.log(math.expm1(float(rho)))))     # softplus^-1(rho)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.v1 = nn.Parameter(torch.randn(hidden, dim, generator=gen) / math.sqrt(dim))
        self.v2 = nn.Parameter(torch.randn(dim, hidden, generator=gen) / math.sqrt(hidden))
        with torch.random.fork_rng():
            if seed is not None:
                torch.manual_seed(seed)
            self.bias = nn.Sequential(nn.Linear(1 + cond_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden + dim))

    @property
    def rho(self) -> torch.Tensor:
        """The current gain bound ``rho = softplus(raw)``."""
        return nn.functional.softplus(self.raw_rho)

    @property
    def contraction_rate(self) -> float:
        """The guaranteed rate: ``J_r + J_r^T <= -2 rate I``."""
        return self.rate

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_1, W_2)`` with spectral norms at most ``sqrt(rho)`` each."""
        root = torch.sqrt(self.rho)
        return _spectral_normalised(self.v1, root), _spectral_normalised(self.v2, root)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1, 1).expand(x.shape[0], 1)
        if self.cond_dim:
            if cond is None:
                raise ValueError(f"this residual takes a condition cond of shape (batch, {self.cond_dim})")
            inp = torch.cat([t, cond.to(x.dtype).reshape(x.shape[0], self.cond_dim)], dim=1)
        else:
            inp = t
        w1, w2 = self.weights()
        w1, w2 = w1.to(x.dtype), w2.to(x.dtype)
        b, centre = self.bias.to(x.dtype)(inp).split([self.hidden, self.dim], dim=1)
        kappa = self.rho.to(x.dtype) + self.rate
        return -kappa * (x - centre) + torch.tanh(x @ w1.T + b) @ w2.T


class ResidualFlow(nn.Module):
    r"""ResFT's field (module docstring): ``v(x, t) = v_pre(x, t) - r(x, t)``, the pre-trained field frozen, so
    that the residual's dynamics in the sampling direction ``s = 1 - t`` are ``dx/ds = r``.

    Arguments:
        base: the pre-trained velocity field (its parameters are frozen).
        residual: a :class:`ContractingResidual` (or any module ``residual(x, t, **kwargs)``).
    """

    def __init__(self, base: nn.Module, residual: nn.Module) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.residual = residual

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.base(x, t, **kwargs) - self.residual(x, t, **kwargs)


def field_stiffness(model: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor | float, *,
                    model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
    r"""Per sample, the largest absolute eigenvalue (spectral radius) of the Jacobian ``dv/dx`` of a velocity
    field at ``(x, t)`` (the stiffness that amplifies a sampler's errors; exact Jacobians, so for small
    dimensions).

    Arguments:
        model: the field ``model(x, t, **model_kwargs)``. x: ``(batch, d)``. t: a time or ``(batch,)`` times.
        model_kwargs: per-sample keyword tensors (sliced with the batch).

    Returns:
        ``(batch,)``.
    """
    _check_state("x", x)
    if x.dim() != 2:
        raise ValueError(f"x must have shape (batch, d), got {tuple(x.shape)}")
    t = torch.as_tensor(t, dtype=x.dtype).reshape(-1).expand(x.shape[0])
    kwargs = {} if model_kwargs is None else model_kwargs
    out = []
    for b in range(x.shape[0]):
        kw = {k: v[b: b + 1] if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        jac = torch.autograd.functional.jacobian(lambda y, b=b, kw=kw: model(y, t[b: b + 1], **kw), x[b: b + 1])
        jac = jac.reshape(x.shape[1], x.shape[1])
        out.append(torch.linalg.eigvals(jac).abs().max())
    return torch.stack(out).to(x.dtype)
