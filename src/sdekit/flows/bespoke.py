r"""Bespoke solvers: a scale-time transform of a flow's ODE, learned for one model and one budget.

Shaul, Perez, Chen, Thabet, Pumarola & Lipman, "Bespoke Solvers for Generative Flow Models", ICLR 2024.

**Flow form.** Every Gaussian path ``x_t = alpha(t) x_0 + sigma(t) eps`` is, after the rescaling
``y = x / (alpha + sigma)``, the linear interpolant of flow matching ``y = (1 - tau) x_0 + tau eps`` at the flow
time ``tau = sigma / (alpha + sigma)`` (:class:`~sdekit.diffusion.LinearFlow` is its own flow form). Its
probability-flow ODE is ``dy/dtau = u(y, tau) = (y - D(x, t)) / tau`` with ``D`` the model's data prediction, so
any model reaches the bespoke solver through the prediction adapters (``prediction="velocity"`` for a flow,
``"eps"``, ``"v"``, ... otherwise). The solver runs in a normalised time ``t in [0, 1]`` from noise (``t = 0``,
``tau = tau_start``) to data (``t = 1``, ``tau = tau_end``), where the field is
``v(y, t) = (tau_end - tau_start) u(y, tau(t))`` (the paper's orientation: noise at 0, data at 1).

**Scale-time transform** (paper, section 2). ``ybar(r) = s_r y(t_r)`` for ``r in [0, 1]`` with ``t_r`` increasing
from ``t_0 = 0`` to ``t_1 = 1`` and ``s_r > 0``, ``s_0 = 1``, solves

.. math:: \frac{d\bar y}{dr} = \bar u_r(\bar y) = \frac{\dot s_r}{s_r}\bar y + \dot t_r s_r\,
          v\big(\bar y / s_r, t_r\big).

A base solver takes ``n`` uniform steps of ``h = 1/n`` in ``r`` and divides by ``s`` at the end. With the values of
``t, t', s, s'`` at the grid points ``r_i = i h`` (RK2 adds the half-steps ``r_{i+1/2}``) as the parameters:

* RK1 (Euler, paper eq. 16): ``y_{i+1} = ((s_i + h s'_i) y_i + h t'_i s_i v(y_i, t_i)) / s_{i+1}``;
* RK2 (midpoint, eqs. 17-20): ``z = (s_i + h s'_i / 2) y_i + (h/2) s_i t'_i v(y_i, t_i)``,
  ``y_{i+1} = (s_i y_i + h [(s'/s)_{i+1/2} z + t'_{i+1/2} s_{i+1/2} v(z / s_{i+1/2}, t_{i+1/2})]) / s_{i+1}``.

The transform is valid by construction: ``t`` is the normalised cumulative sum of positive increments
(``softplus``), ``t' = softplus(.) > 0``, ``s = exp(.)`` with ``s_0 = 1`` and ``s'`` free; ``4 m`` numbers for ``m``
grid intervals (``m = n`` for RK1, ``2 n`` for RK2; the paper counts ``4m - 1``, one increment scale is redundant
here). The identity transform (uniform ``t``, ``t' = 1``, ``s = 1``, ``s' = 0``) is the plain base solver on a
uniform grid in flow time, and ``from_grid`` starts from the plain base solver on any grid.

**Loss** (paper, Theorem 2.3 and eq. 23; ``objective="bound"``). Ground-truth paths ``y(t)`` are solved once from
training noise with an
adaptive :func:`sdekit.odeint` (dopri5) through a fine node grid and read at any ``t`` by cubic Hermite
interpolation (the path's values and velocities at the nodes; differentiable in ``t``, so the gradient reaches
``t_i`` through ``dy/dt = v``). Every step is taken from the true state ``y(t_i)`` at once (all ``n`` steps in one
batched model call per stage), its local error is ``d_i = E ||step_i(y(t_i)) - y(t_{i+1})||`` (RMS over the
event), and the loss bounds the global error,

.. math:: \mathcal L = \sum_{i=0}^{n-1} M_i d_i,\qquad M_i = \prod_{j=i+1}^{n-1} L_j,

with ``L_j`` the Lipschitz constant of step ``j``: RK1 ``(s_j / s_{j+1})(1 + h L_{u,j})``, RK2
``(s_j / s_{j+1})(1 + h L_{u,j+1/2}(1 + h L_{u,j} / 2))``, ``L_{u} = |s'| / s + t' L_v`` and ``L_v`` the assumed
Lipschitz constant of ``v`` (the paper takes 1). Adam on the ``4m`` numbers, a few hundred iterations.
``objective="global"`` (not the paper's) instead fits the endpoint error of the whole run from the training noise
(``n`` sequential steps, backpropagated): on mixtures, where a few paths that change mode carry the RMSE, it is the
better fit (``benchmarks/results/bespoke.md``).

A trained :class:`sdekit.flows.BespokeSolver` is a :class:`~sdekit.diffusion.Sampler`:
``solver.sample(model, schedule, x_T)`` (or :func:`sdekit.diffusion.sample` with ``solver=solver,
timesteps=solver.timesteps(schedule)``) with any model of the same flow-time interval; it saves to
``.safetensors`` + ``.json``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import torch

from ..core import odeint
from ..diffusion import (
    LinearFlow,
    Prediction,
    SampleInfo,
    Sampler,
    SamplerContext,
    Schedule,
    TimeGrid,
    as_denoiser,
    get_time_grid,
    sample,
)

__all__ = ["BespokeSolver"]

BASES = {"rk1": 1, "rk2": 2}
_FORMAT = "sdekit.flows.BespokeSolver/1"


# ------------------------------------------------------------------------------------------------
# small checks (the diffusion layer's are private to it)
# ------------------------------------------------------------------------------------------------
def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    return value


def _check_base(base) -> str:
    if base not in BASES:
        raise ValueError(f"base must be one of {sorted(BASES)}, got {base!r}")
    return base


def _softplus_inv(y: torch.Tensor) -> torch.Tensor:
    """``softplus^{-1}(y) = y + log(1 - exp(-y))`` for ``y > 0``."""
    return y + torch.log(-torch.expm1(-y))


# ------------------------------------------------------------------------------------------------
# the flow form of a schedule
# ------------------------------------------------------------------------------------------------
def flow_time(schedule: Schedule, t: float | torch.Tensor) -> torch.Tensor:
    """The flow time ``tau = sigma / (alpha + sigma)`` of schedule time ``t`` (``tau = t`` for LinearFlow)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if isinstance(schedule, LinearFlow):
        return t.clone()
    a, s = schedule.alpha(t).to(torch.float64), schedule.sigma(t).to(torch.float64)
    return s / (a + s)


def schedule_time(schedule: Schedule, tau: torch.Tensor) -> torch.Tensor:
    """The schedule time of flow time ``tau`` (through the log-SNR ``lambda = log((1 - tau) / tau)``)."""
    if isinstance(schedule, LinearFlow):
        return tau
    return schedule.t_of_log_snr(torch.log1p(-tau) - torch.log(tau))


def _scale(schedule: Schedule, t: torch.Tensor) -> torch.Tensor:
    """``alpha + sigma`` at schedule time ``t`` (``x = (alpha + sigma) y``); 1 for LinearFlow."""
    if isinstance(schedule, LinearFlow):
        return torch.ones_like(t)
    return schedule.alpha(t) + schedule.sigma(t)


class FlowField:
    """``v(y, t) = (tau_end - tau_start) (y - D(x, s)) / tau`` in normalised time ``t`` (0: noise, 1: data), with
    ``tau = tau_start + (tau_end - tau_start) t``, ``s`` its schedule time and ``x = (alpha + sigma)(s) y``.

    ``t`` is a float, a 0-d tensor or a ``(batch,)`` tensor (one time per sample); gradients flow through it."""

    def __init__(self, denoiser: Callable[[torch.Tensor, Any], torch.Tensor], schedule: Schedule,
                 tau_start: float, tau_end: float) -> None:
        self.denoiser, self.schedule = denoiser, schedule
        self.tau_start, self.tau_end = tau_start, tau_end
        self.span = tau_end - tau_start
        self.calls = 0

    def tau(self, t):
        return self.tau_start + self.span * t

    def __call__(self, y: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        tau = self.tau(torch.as_tensor(t, dtype=torch.float64, device=y.device))
        s = schedule_time(self.schedule, tau)
        c = _scale(self.schedule, s)
        if tau.dim() == 1:
            shape = (-1,) + (1,) * (y.dim() - 1)
            tau_b, c_b = tau.reshape(shape), c.reshape(shape)
        else:
            tau_b, c_b = tau, c
        x = y * c_b.to(y.dtype)
        d = self.denoiser(x, s if s.dim() == 1 or s.requires_grad else float(s))
        self.calls += 1
        if not isinstance(d, torch.Tensor) or d.shape != y.shape:
            got = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
            raise ValueError(f"the model's data prediction must have the shape of x, {tuple(y.shape)}; got {got} "
                             "(check the model's output shape and the prediction= it is read with)")
        return (self.span * (y - d) / tau_b.to(y.dtype)).to(y.dtype)


# ------------------------------------------------------------------------------------------------
# ground-truth paths and their Hermite interpolant
# ------------------------------------------------------------------------------------------------
class _Paths:
    """Ground-truth ODE paths ``y(t)`` at fine nodes with their velocities; ``at(t)`` is the cubic Hermite
    interpolant (``t``: ``(q,)``, differentiable), ``(q, batch, *event)``."""

    def __init__(self, nodes: torch.Tensor, values: torch.Tensor, velocities: torch.Tensor) -> None:
        self.nodes, self.values, self.velocities = nodes, values, velocities

    def at(self, t: torch.Tensor) -> torch.Tensor:
        nodes = self.nodes
        k = torch.searchsorted(nodes, t.detach().contiguous(), right=True).sub(1).clamp(0, nodes.numel() - 2)
        t0, dt = nodes[k], nodes[k + 1] - nodes[k]
        u = (t - t0) / dt
        shape = (-1,) + (1,) * (self.values.dim() - 1)
        u, dt = u.reshape(shape).to(self.values.dtype), dt.reshape(shape).to(self.values.dtype)
        u2, u3 = u * u, u * u * u
        h00, h10, h01, h11 = 2 * u3 - 3 * u2 + 1, u3 - 2 * u2 + u, -2 * u3 + 3 * u2, u3 - u2
        return (h00 * self.values[k] + h10 * dt * self.velocities[k] + h01 * self.values[k + 1]
                + h11 * dt * self.velocities[k + 1])


def _fine_nodes(tau_start: float, tau_end: float, count: int) -> torch.Tensor:
    """Normalised times: half uniform in ``t``, half uniform in the flow's log-SNR (dense near the data)."""
    half = max(count // 2, 2)
    uniform = torch.linspace(0.0, 1.0, half + 1, dtype=torch.float64)
    lam0, lam1 = math.log((1 - tau_start) / tau_start) if tau_start < 1 else -30.0, math.log((1 - tau_end) / tau_end)
    lam = torch.linspace(lam0, lam1, half + 1, dtype=torch.float64)
    tau = torch.sigmoid(-lam)
    snr = ((tau - tau_start) / (tau_end - tau_start)).clamp(0.0, 1.0)
    nodes = torch.unique(torch.cat([uniform, snr]).mul(1e12).round().div(1e12))
    return nodes


# ------------------------------------------------------------------------------------------------
# the solver
# ------------------------------------------------------------------------------------------------
class BespokeSolver(Sampler):
    r"""A bespoke RK1 / RK2 solver: a learned scale-time transform of a flow's ODE for ``steps`` uniform steps in
    ``r`` (Shaul et al., "Bespoke Solvers for Generative Flow Models", ICLR 2024; the maths
    is on the method page, "Bespoke solvers for flows").

    Build one with ``fit`` (training), ``from_grid`` (the plain base solver on a grid: the identity
    transform for ``"uniform"``) or ``load``. As a :class:`~sdekit.diffusion.Sampler` it runs in
    :func:`sdekit.diffusion.sample` on its own grid, ``timesteps=solver.timesteps(schedule)`` (``sample``
    does that), with any model whose schedule has the same flow-time interval ``[tau_end, tau_start]``.

    Arguments:
        base: ``"rk1"`` (Euler, 1 model call per step) or ``"rk2"`` (midpoint, 2 calls per step).
        steps: ``n``, the number of steps (NFE ``n`` for RK1, ``2n`` for RK2).
        tau_start, tau_end: the flow times of the first (noise) and last (data) grid points,
            ``1 >= tau_start > tau_end > 0``.
        params: the raw (unconstrained) parameters, float64 ``(4, m)`` with ``m = n`` (RK1) or ``2n`` (RK2):
            rows ``t`` increments (through softplus), ``t'`` (softplus), ``log s`` at ``r_1..r_m`` and ``s'`` at
            ``r_0..r_{m-1}``; ``None``: the identity transform.
        lipschitz: ``L_v`` of the loss bound (default 1, the paper's).
        error: how a step's error is averaged over the training paths: ``"mean"`` (the paper's
            ``E ||e||``) or ``"rms"`` (``sqrt E ||e||^2``; the bound holds for it too, by Minkowski's inequality,
            and it is the error the endpoint RMSE measures).
        objective: ``"bound"`` (the paper's loss, all steps in parallel from the true states) or ``"global"``
            (not in the paper: the endpoint error of the whole ``n``-step run from the training noise, with
            gradients through the ``n`` sequential steps).

    Attributes:
        order, nfe_per_step: 1 / 1 (RK1) or 2 / 2 (RK2).
        history: the training loss per iteration (after ``fit``).
        fit_info: what the fit did (iterations, model calls, wall seconds, losses before and after).
    """

    name = "bespoke"
    stochastic = False

    def __init__(self, base: str = "rk2", steps: int = 4, *, tau_start: float = 1.0, tau_end: float = 1e-3,
                 params: torch.Tensor | None = None, lipschitz: float = 1.0, error: str = "mean",
                 objective: str = "bound") -> None:
        self.base = _check_base(base)
        self.steps = _check_int("steps", steps, 1)
        self.tau_start = _check_positive("tau_start", tau_start)
        self.tau_end = _check_positive("tau_end", tau_end)
        if not 1.0 >= self.tau_start > self.tau_end:
            raise ValueError(f"need 1 >= tau_start > tau_end > 0 (flow time: 1 noise, 0 data); got tau_start="
                             f"{tau_start}, tau_end={tau_end}")
        self.lipschitz = _check_positive("lipschitz", lipschitz)
        if error not in ("mean", "rms"):
            raise ValueError(f"error must be 'mean' (the paper's E||.||) or 'rms' (sqrt E||.||^2), got {error!r}")
        self.error = error
        if objective not in ("bound", "global"):
            raise ValueError(f"objective must be 'bound' (the paper's loss) or 'global', got {objective!r}")
        self.objective = objective

        self.order = float(BASES[self.base])
        self.nfe_per_step = BASES[self.base]
        m = self.intervals
        if params is None:
            params = torch.stack([torch.zeros(m, dtype=torch.float64),
                                  _softplus_inv(torch.ones(m, dtype=torch.float64)),
                                  torch.zeros(m, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)])
        if not isinstance(params, torch.Tensor) or not params.is_floating_point():
            raise TypeError(f"params must be a floating-point tensor, got {type(params).__name__}")
        if tuple(params.shape) != (4, m):
            raise ValueError(f"params must have shape (4, {m}) for base={base!r} with steps={steps}; got "
                             f"{tuple(params.shape)}")
        if not bool(torch.isfinite(params).all()):
            raise ValueError("params must be finite")
        self.params = params.detach().to("cpu", torch.float64).clone()
        self.history: list[float] = []
        self.fit_info: dict[str, Any] = {}

    # -- the transform ---------------------------------------------------------------------------
    @property
    def intervals(self) -> int:
        """``m``: grid intervals in ``r`` (``n`` for RK1, ``2n`` for RK2, whose half-steps are grid points)."""
        return self.steps * BASES[self.base]

    def nfe(self, steps: int | None = None) -> int:
        """Model calls of ``steps`` steps (default: its own ``n``): ``n`` for RK1, ``2n`` for RK2."""
        return (self.steps if steps is None else steps) * BASES[self.base]

    @staticmethod
    def _values(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        inc = torch.nn.functional.softplus(params[0])
        t = torch.cat([inc.new_zeros(1), torch.cumsum(inc, 0) / inc.sum()])
        t = torch.cat([t[:-1], t.new_ones(1)])                  # t_m = 1 exactly
        dt = torch.nn.functional.softplus(params[1])
        s = torch.cat([params.new_ones(1), torch.exp(params[2])])
        return t, dt, s, params[3]

    def transform(self) -> dict[str, torch.Tensor]:
        """The transform's values on the ``m + 1`` grid points ``r_j = j / m``: ``t`` and ``s`` ``(m + 1,)``,
        ``dt`` and ``ds`` (the r-derivatives ``t'``, ``s'``) ``(m,)``; float64."""
        t, dt, s, ds = self._values(self.params)
        return {"r": torch.linspace(0, 1, self.intervals + 1, dtype=torch.float64), "t": t, "dt": dt, "s": s,
                "ds": ds.clone()}

    def flow_times(self) -> torch.Tensor:
        """The flow times ``tau`` of the ``n + 1`` step ends (decreasing from ``tau_start`` to ``tau_end``)."""
        t = self._values(self.params)[0][:: BASES[self.base]]
        return self.tau_start + (self.tau_end - self.tau_start) * t

    def timesteps(self, schedule: Schedule) -> torch.Tensor:
        """The solver's grid in ``schedule``'s time: float64 ``(n + 1,)``, strictly decreasing; pass it as
        ``timesteps=`` to :func:`sdekit.diffusion.sample`.

        Raises:
            ValueError if the schedule's flow-time interval ``[tau(t_min), tau(t_max)]`` does not hold the
            solver's.
        """
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
        lo, hi = float(flow_time(schedule, schedule.t_min)), float(flow_time(schedule, schedule.t_max))
        tol = 1e-9
        if self.tau_start > hi * (1 + tol) or self.tau_end < lo * (1 - tol):
            raise ValueError(f"this BespokeSolver runs over flow times [{self.tau_end}, {self.tau_start}], outside "
                             f"the interval [{lo}, {hi}] of {schedule!r}")
        times = schedule_time(schedule, self.flow_times()).to(torch.float64)
        times[0], times[-1] = self._ends(schedule, times)
        return times

    def _ends(self, schedule: Schedule, times: torch.Tensor) -> tuple[float, float]:
        # snap the ends onto the schedule's interval where they agree to rounding
        t0, t1 = float(times[0]), float(times[-1])
        if abs(t0 - schedule.t_max) <= 1e-9 * max(1.0, abs(schedule.t_max)):
            t0 = schedule.t_max
        if abs(t1 - schedule.t_min) <= 1e-9 * max(1.0, abs(schedule.t_min)):
            t1 = schedule.t_min
        return t0, t1

    # -- one step (shared by sampling and the loss) ------------------------------------------------
    def _step(self, field: Callable[[torch.Tensor, Any], torch.Tensor], y: torch.Tensor, i: Any,
              vals: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], h: float,
              time: Callable[[torch.Tensor], Any]) -> torch.Tensor:
        """The base step in original variables from ``y`` at grid index ``i`` (int, or a ``(k,)`` index tensor
        with ``y: (k, batch, *event)``); ``time(t)`` turns transform times into the field's time argument."""
        t, dt, s, ds = vals
        w = BASES[self.base]
        j = i * w

        def c(v, idx):
            v = v[idx]
            if v.dim() == 1:
                v = v.reshape((-1,) + (1,) * (y.dim() - 1))
            return v.to(y.dtype)

        s0, s1, ds0, dt0 = c(s, j), c(s, j + w), c(ds, j), c(dt, j)
        u0 = field(y, time(t[j]))
        if self.base == "rk1":
            return ((s0 + h * ds0) * y + h * dt0 * s0 * u0) / s1
        sm, dsm, dtm = c(s, j + 1), c(ds, j + 1), c(dt, j + 1)
        z = (s0 + 0.5 * h * ds0) * y + 0.5 * h * s0 * dt0 * u0
        um = field(z / sm, time(t[j + 1]))
        return (s0 * y + h * ((dsm / sm) * z + dtm * sm * um)) / s1

    # -- the Sampler contract ----------------------------------------------------------------------
    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        expected = self.timesteps(ctx.schedule)
        got = torch.tensor(ctx.times, dtype=torch.float64)
        if got.numel() != expected.numel() or not torch.allclose(got, expected, rtol=1e-9, atol=1e-12):
            raise ValueError(
                f"BespokeSolver(base={self.base!r}, steps={self.steps}) runs on its own grid of {self.steps} steps "
                f"{expected.tolist()}; got timesteps {got.tolist()}. Pass timesteps=solver.timesteps(schedule) "
                "(or call solver.sample(...))")
        vals = tuple(v.detach() for v in self._values(self.params))
        return {"vals": vals, "field": FlowField(ctx.denoiser, ctx.schedule, self.tau_start, self.tau_end)}

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        field, vals = state["field"], state["vals"]
        c0 = float(_scale(ctx.schedule, torch.tensor(t0, dtype=torch.float64)))
        c1 = float(_scale(ctx.schedule, torch.tensor(t1, dtype=torch.float64)))
        y = x / c0 if c0 != 1.0 else x
        y1 = self._step(field, y, k, vals, 1.0 / self.steps, lambda t: float(t))
        return (y1 * c1 if c1 != 1.0 else y1), state

    @overload
    def sample(self, model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *,
               prediction: str | Prediction = ..., model_kwargs: dict[str, Any] | None = ...,
               time_input: Callable[[torch.Tensor], torch.Tensor] | None = ...,
               return_info: Literal[False] = ...) -> torch.Tensor: ...

    @overload
    def sample(self, model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *,
               prediction: str | Prediction = ..., model_kwargs: dict[str, Any] | None = ...,
               time_input: Callable[[torch.Tensor], torch.Tensor] | None = ...,
               return_info: Literal[True]) -> tuple[torch.Tensor, SampleInfo]: ...

    def sample(self, model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *,
               prediction: str | Prediction = "velocity", model_kwargs: dict[str, Any] | None = None,
               time_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
               return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
        """:func:`sdekit.diffusion.sample` with this solver on its grid.

        Arguments:
            model: a network (``prediction`` names its output; default ``"velocity"``, a flow) or a
                :class:`~sdekit.diffusion.Denoiser`.
            schedule: the model's schedule; ``x_T``: ``(batch, *event)`` at the grid's first time.
            prediction, model_kwargs, time_input, return_info: as for :func:`sdekit.diffusion.sample`.
        """
        return sample(model, schedule, x_T, solver=self, timesteps=self.timesteps(schedule), prediction=prediction,
                       model_kwargs=model_kwargs, time_input=time_input, return_info=return_info)

    # -- building ----------------------------------------------------------------------------------
    @classmethod
    def from_grid(cls, schedule: Schedule, nfe: int, *, base: str = "rk2", grid: str | TimeGrid = "uniform",
                  t_start: float | None = None, t_end: float | None = None, lipschitz: float = 1.0,
                  error: str = "mean", objective: str = "bound") -> BespokeSolver:
        """The plain base solver on a fixed grid as a bespoke solver (``s = 1``, ``s' = 0``, ``t`` on the grid's flow
        times, ``t'`` the step length over ``h``; RK2's half-steps at the middle of each step in flow time):
        ``grid="uniform"`` on :class:`~sdekit.diffusion.LinearFlow` is the identity transform.

        Arguments:
            schedule: the schedule; ``nfe``: the budget (a multiple of 2 for RK2, >= the base's order).
            base: ``"rk1"`` or ``"rk2"``; grid: a grid name or :class:`~sdekit.diffusion.TimeGrid`.
            t_start, t_end: the ends in schedule time (default ``t_max``, ``t_min``).
        """
        base = _check_base(base)
        steps = cls._steps_for(base, nfe)
        t_max = schedule.t_max if t_start is None else float(t_start)
        t_min = schedule.t_min if t_end is None else float(t_end)
        times = get_time_grid(grid).times(schedule, steps, t_start=t_max, t_end=t_min)
        tau = flow_time(schedule, times)
        tau_start, tau_end = float(tau[0]), float(tau[-1])
        if not tau_end > 0:
            raise ValueError(f"the grid ends at flow time 0 (sigma = 0 at t={t_min}), where the flow field is 0/0; "
                             "end it at a time with sigma > 0")
        t = (tau - tau_start) / (tau_end - tau_start)
        gaps = t[1:] - t[:-1]                                   # (n,)
        w = BASES[base]
        inc = gaps.repeat_interleave(w) / w
        dt = (gaps * steps).repeat_interleave(w)
        m = steps * w
        params = torch.stack([_softplus_inv(inc * m), _softplus_inv(dt), torch.zeros(m, dtype=torch.float64),
                              torch.zeros(m, dtype=torch.float64)])
        return cls(base, steps, tau_start=tau_start, tau_end=tau_end, params=params, lipschitz=lipschitz,
                   error=error, objective=objective)

    @staticmethod
    def _steps_for(base: str, nfe) -> int:
        w = BASES[base]
        if isinstance(nfe, bool) or not isinstance(nfe, int):
            raise TypeError(f"nfe must be an int, got {type(nfe).__name__}")
        if nfe < w:
            raise ValueError(f"nfe={nfe} is below the {w} model call(s) of one {base} step; pass nfe >= {w}")
        if nfe % w:
            raise ValueError(f"nfe={nfe} is not a multiple of the {w} model calls of one {base} step; pass nfe="
                             f"{nfe - nfe % w} or {nfe - nfe % w + w}")
        return nfe // w

    def loss(self, params: torch.Tensor, field: FlowField, paths: _Paths) -> torch.Tensor:
        """The paper's bound ``sum_i M_i d_i`` for raw parameters ``params`` (see the module docstring)."""
        vals = self._values(params)
        t, dt, s, ds = vals
        n, w, h = self.steps, BASES[self.base], 1.0 / self.steps
        if self.objective == "global":
            y = paths.values[0]
            for i in range(n):
                y = self._step(lambda yy, tt: field(yy, tt.expand(yy.shape[0])), y, i, vals, h, lambda tt: tt)
            sq = (y - paths.values[-1]).flatten(1).pow(2).mean(-1)
            return sq.mean().sqrt() if self.error == "rms" else sq.sqrt().mean()
        idx = torch.arange(n)
        ends = t[::w]                                           # (n + 1,)
        y0, y1 = paths.at(ends[:-1]), paths.at(ends[1:])        # (n, B, *event)
        batch = y0.shape[1]

        def flat_field(y, times):                               # y: (n, B, *e), times: (n,)
            out = field(y.reshape(n * batch, *y.shape[2:]), times.repeat_interleave(batch))
            return out.reshape(y.shape)

        pred = self._step(flat_field, y0, idx, vals, h, lambda tt: tt)
        sq = (pred - y1).flatten(2).pow(2).mean(-1)                        # (n, B)
        err = sq.mean(-1).sqrt() if self.error == "rms" else sq.sqrt().mean(-1)   # d_i, (n,)
        lu = ds.abs() / s[:-1] + dt * self.lipschitz                        # (m,)
        ratio = s[::w][:-1] / s[::w][1:]
        if self.base == "rk1":
            lip = ratio * (1 + h * lu)
        else:
            lip = ratio * (1 + h * lu[1::2] * (1 + h * lu[0::2] / 2))
        # M_i = prod_{j > i} L_j
        m_i = torch.cat([torch.flip(torch.cumprod(torch.flip(lip[1:], [0]), 0), [0]), lip.new_ones(1)])
        return (m_i * err).sum()

    @classmethod
    def fit(cls, model: Callable[..., torch.Tensor], schedule: Schedule, nfe: int, *, base: str = "rk2",
            shape: int | Sequence[int] | None = None, x_T: torch.Tensor | None = None, batch: int = 256,
            iterations: int = 300, lr: float = 2e-3, init: str | TimeGrid = "uniform", lipschitz: float = 1.0,
            error: str = "mean", objective: str = "bound",
            nodes: int = 200, rtol: float = 1e-7, atol: float = 1e-7, prediction: str | Prediction = "velocity",
            model_kwargs: dict[str, Any] | None = None,
            time_input: Callable[[torch.Tensor], torch.Tensor] | None = None, t_start: float | None = None,
            t_end: float | None = None, generator: torch.Generator | None = None,
            dtype: torch.dtype = torch.float32, progress: bool = False) -> BespokeSolver:
        """Train a bespoke solver for ``model`` and a budget of ``nfe`` model calls.

        Arguments:
            model: a network ``model(x, t)`` whose output ``prediction`` names (default ``"velocity"``: a flow) or a
                :class:`~sdekit.diffusion.Denoiser` (e.g. an oracle's ``as_denoiser(schedule)``).
            schedule: the model's :class:`~sdekit.diffusion.Schedule`.
            nfe: the budget: ``n = nfe`` RK1 steps or ``n = nfe / 2`` RK2 steps.
            base: ``"rk1"`` or ``"rk2"`` (default).
            shape: the event shape (training noise ``schedule.prior_sample((batch, *shape))``), or give ``x_T``.
            x_T: the training noise ``(batch, *event)`` at ``t_start`` (overrides ``shape``, ``batch``, ``dtype``).
            batch: number of ground-truth paths (default 256).
            iterations, lr: Adam steps and learning rate (default 300, 2e-3).
            init: the starting transform, the plain base solver on this grid (default ``"uniform"``: the
                identity; ``"logsnr"``, ``"karras"``, a :class:`~sdekit.diffusion.TimeGrid`, ...).
            lipschitz: ``L_v`` in the bound (default 1, the paper's).
            error, objective: as for :class:`sdekit.flows.BespokeSolver` (default ``"mean"``, ``"bound"``: the
                paper's loss).
            nodes: fine nodes the ground-truth paths are stored at (default 200).
            rtol, atol: the ground-truth solver's tolerances (dopri5; default 1e-7).
            prediction, model_kwargs, time_input: as for :func:`sdekit.diffusion.sample`.
            t_start, t_end: the interval in schedule time (default the schedule's ``t_max``, ``t_min``).
            generator: seeds the training noise; ``dtype``: its dtype (default float32).
            progress: print the loss every 50 iterations.

        Returns:
            the trained solver; ``history`` holds the loss per iteration and ``fit_info`` the cost (model calls
            of the ground truth and of training, wall seconds).

        Raises:
            ValueError / TypeError for an ``nfe`` below the base's order (or not a multiple of 2 for RK2), a
            model whose output is not of the shape of ``x``, bad sizes or a schedule ending at ``sigma = 0``.
        """
        start = time.perf_counter()
        base = _check_base(base)
        _check_int("iterations", iterations, 0)
        _check_int("nodes", nodes, 4)
        lr = _check_positive("lr", lr)
        solver = cls.from_grid(schedule, nfe, base=base, grid=init, t_start=t_start, t_end=t_end,
                               lipschitz=lipschitz, error=error, objective=objective)
        if x_T is None:
            if shape is None:
                raise ValueError("pass shape= (the event shape) or x_T= (the training noise)")
            event = (shape,) if isinstance(shape, int) else tuple(shape)
            _check_int("batch", batch, 1)
            x_T = schedule.prior_sample((batch, *event), generator, dtype=dtype)
        if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point() or x_T.dim() < 2:
            raise ValueError(f"x_T must be a floating-point tensor (batch, *event), got "
                             f"{tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__}")
        if not bool(torch.isfinite(x_T).all()):
            raise ValueError("x_T must be finite")
        denoiser = as_denoiser(model, schedule, prediction, model_kwargs=model_kwargs, time_input=time_input)
        field = FlowField(denoiser, schedule, solver.tau_start, solver.tau_end)
        t_first = float(schedule_time(schedule, torch.tensor(solver.tau_start, dtype=torch.float64)))
        y_T = x_T / float(_scale(schedule, torch.tensor(t_first, dtype=torch.float64)))

        # ground truth, once
        grid = _fine_nodes(solver.tau_start, solver.tau_end, nodes)
        with torch.no_grad():
            field(y_T[:1], 0.0)                                  # shape check before the long solve
            values = odeint(lambda tt, y: field(y, tt), y_T, grid, method="dopri5", rtol=rtol, atol=atol)
            assert isinstance(values, torch.Tensor)              # a tensor state gives a tensor
            gt_calls = field.calls
            flat = values.reshape(-1, *values.shape[2:])
            vel = field(flat, grid.repeat_interleave(values.shape[1])).reshape(values.shape)
        paths = _Paths(grid.to(values.device), values, vel)
        field.calls = 0

        params = solver.params.clone().to(values.device).requires_grad_(True)
        # Adam (Kingma & Ba, ICLR 2015) on the 4m numbers, written out: torch.optim imports torch._dynamo
        # (seconds) for a few hundred updates of a few dozen parameters
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        m1, m2 = torch.zeros_like(params), torch.zeros_like(params)
        history = []
        best, best_params = math.inf, params.detach().clone()
        for it in range(iterations + 1):
            loss = solver.loss(params, field, paths)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"the bespoke loss became {value} at iteration {it}; lower lr (={lr})")
            history.append(value)
            if value < best:
                best, best_params = value, params.detach().clone()
            if it == iterations:
                break
            (grad,) = torch.autograd.grad(loss, [params])
            m1.mul_(beta1).add_(grad, alpha=1 - beta1)
            m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = (m1 / (1 - beta1 ** (it + 1))) / ((m2 / (1 - beta2 ** (it + 1))).sqrt() + eps)
            with torch.no_grad():
                params.sub_(lr * step)
            if progress and it % 50 == 0:
                print(f"bespoke {base} nfe={nfe} iteration {it}: loss {value:.4e}", flush=True)
        solver.params = best_params.to("cpu", torch.float64)
        solver.history = history
        solver.fit_info = {"iterations": iterations, "lr": lr, "batch": int(y_T.shape[0]), "nodes": int(grid.numel()),
                           "init": repr(init), "ground_truth_calls": gt_calls, "training_calls": field.calls,
                           "loss_initial": history[0], "loss_final": best, "seconds": time.perf_counter() - start}
        return solver

    # -- saving ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.safetensors`` (the parameters) and ``<path>.json`` (base, steps, flow-time interval,
        ``lipschitz``, ``fit_info``); a ``.safetensors`` / ``.json`` suffix on ``path`` is dropped. Returns both
        paths. Each file is written to a temporary name and renamed, so a failed save leaves no half file."""
        from safetensors.torch import save_file

        stem = Path(path)
        if stem.suffix in (".safetensors", ".json"):
            stem = stem.with_suffix("")
        st_path, js_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
        meta = {"format": _FORMAT, "base": self.base, "steps": self.steps, "tau_start": self.tau_start,
                "tau_end": self.tau_end, "lipschitz": self.lipschitz, "error": self.error, "objective": self.objective,
                "fit_info": self.fit_info}
        tmp_st, tmp_js = st_path.with_name(st_path.name + ".tmp"), js_path.with_name(js_path.name + ".tmp")
        save_file({"params": self.params.contiguous()}, str(tmp_st))
        tmp_js.write_text(json.dumps(meta, indent=2, default=str))
        tmp_st.replace(st_path)
        tmp_js.replace(js_path)
        return st_path, js_path

    @classmethod
    def load(cls, path: str | Path) -> BespokeSolver:
        """Read a solver written by ``save`` (``path`` with or without a suffix).

        Raises:
            FileNotFoundError for a missing file; ValueError for a file that is not a saved BespokeSolver.
        """
        from safetensors.torch import load_file

        stem = Path(path)
        if stem.suffix in (".safetensors", ".json"):
            stem = stem.with_suffix("")
        st_path, js_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
        for p in (st_path, js_path):
            if not p.exists():
                raise FileNotFoundError(f"no saved BespokeSolver at {p}")
        try:
            meta = json.loads(js_path.read_text())
            tensors = load_file(str(st_path))
        except Exception as e:  # noqa: BLE001 - any parse failure is a corrupt file
            raise ValueError(f"{stem}: not a readable saved BespokeSolver ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT or "params" not in tensors:
            raise ValueError(f"{js_path} is not a saved BespokeSolver (format {_FORMAT!r})")
        solver = cls(meta["base"], int(meta["steps"]), tau_start=float(meta["tau_start"]),
                     tau_end=float(meta["tau_end"]), params=tensors["params"], lipschitz=float(meta["lipschitz"]),
                     error=str(meta.get("error", "mean")), objective=str(meta.get("objective", "bound")))
        solver.fit_info = dict(meta.get("fit_info") or {})
        return solver

    def __repr__(self) -> str:
        return (f"BespokeSolver(base={self.base!r}, steps={self.steps}, nfe={self.nfe()}, "
                f"tau_start={self.tau_start:g}, tau_end={self.tau_end:g}, objective={self.objective!r})")
