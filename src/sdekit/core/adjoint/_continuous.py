"""The continuous adjoint: the adjoint SDE (Li et al. 2020) or ODE (Chen et al. 2018) solved backwards
in time by the core's solvers (see :mod:`sdekit.core.adjoint`)."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from .._grid import GridView
from ..brownian import BrownianPath
from ..integrate import FixedSDE, _solve_ode, _solve_sde, fixed_loop, fixed_sde
from ..sde import FlippedProblem, Problem
from ..solvers import ode_solver, sde_solver
from ..solvers.base import ODESolver, SDESolver
from ..solvers.ode_solvers import ButcherTableau
from ..solvers.sde_solvers import Euler, Heun, Midpoint
from ..strategy import AdjointStrategy, ODESolve, SDESolve
from ._adjoint_sde import AdjointSDE
from ._autograd import unflat, vjp
from ._params import check_params, resolve_params


def _check_optional_positive(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number or None, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


class ContinuousAdjoint(AdjointStrategy):
    """Solve the adjoint SDE (Li et al. 2020) or adjoint ODE (Chen et al. 2018) backwards in time.

    Memory does not depend on the number of steps (only the outputs at ``ts`` are kept); the
    gradient approximates that of the exact solution and agrees with :class:`Backprop` up to the
    discretisation error of the forward and backward solves.

    Arguments:
        method: solver of the backward solve. SDEs: ``"midpoint"`` (default), ``"heun"``, or
            ``"euler"`` for additive noise (the adjoint is solved as a Stratonovich SDE). ODEs: any
            ODE method (default: the forward one).
        dt: step of the backward solve (default: the forward ``dt``; for adaptive ODE methods the
            initial step).
        adaptive: adaptive steps for the backward SDE solve (step doubling; needs a Brownian source
            queryable at any time, which is created when ``bm=None``). ODE methods adapt by
            themselves.
        rtol, atol, dt_min: error control of adaptive backward solves (default: the forward ones).
        params: tensors to differentiate besides ``y0`` (default: the parameters of the SDE / ODE
            function and the tensors its functions capture, see the module docstring).
    """

    def __init__(self, method=None, *, dt: float | None = None, adaptive: bool = False,
                 rtol: float | None = None, atol: float | None = None, dt_min: float | None = None,
                 params=None) -> None:
        if method is not None and not isinstance(method, (str, SDESolver, ODESolver, ButcherTableau)):
            raise TypeError(f"method must be None, a name or a solver object, got {type(method).__name__}")
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {type(adaptive).__name__}")
        self.method = method
        self.dt = _check_optional_positive("dt", dt)
        self.adaptive = adaptive
        self.rtol = _check_optional_positive("rtol", rtol)
        self.atol = _check_optional_positive("atol", atol)
        self.dt_min = _check_optional_positive("dt_min", dt_min)
        self.params = check_params(params)

    def __repr__(self) -> str:
        return (f"ContinuousAdjoint(method={self.method!r}, dt={self.dt}, adaptive={self.adaptive}, "
                f"rtol={self.rtol}, atol={self.atol})")

    def solve_sde(self, task: SDESolve) -> torch.Tensor:
        problem, solver, ts_list, dt, bm = task.problem, task.solver, task.ts, task.dt, task.bm
        adjoint_solver = _adjoint_sde_solver(self.method, problem.noise_type)
        backward_dt = self.dt if self.dt is not None else dt
        mirror = not task.adaptive and not self.adaptive and backward_dt == dt
        if bm is None and not mirror:
            # Both solves query a path at times of their own: one path queryable anywhere.
            lo, hi = min(ts_list[0], ts_list[-1]), max(ts_list[0], ts_list[-1])
            bm = BrownianPath(lo, hi, problem.brownian_shape, dtype=problem.dtype, device=problem.device,
                              levy_area="space-time" if solver.levy_area else None)
        fixed = None if task.adaptive else fixed_sde(problem, solver, ts_list, dt, bm, task.progress,
                                                     bounded_memory=True)
        adjoint_bm = bm
        if fixed is not None and not mirror:
            adjoint_bm = _SnapToGrid(bm, fixed, -1.0 if ts_list[1] < ts_list[0] else 1.0)
        params = resolve_params(self, problem.sde, "the sde")
        spec = _ContinuousSpec(
            problem=problem, solver=solver, ts=list(ts_list), fixed=fixed, mirror=mirror, dt=dt, bm=bm,
            rtol=task.rtol, atol=task.atol, dt_min=task.dt_min, progress=task.progress, max_steps=task.max_steps,
            adjoint_solver=adjoint_solver, adjoint_bm=adjoint_bm, adjoint_dt=backward_dt,
            adjoint_adaptive=self.adaptive,
            adjoint_rtol=self.rtol if self.rtol is not None else task.rtol,
            adjoint_atol=self.atol if self.atol is not None else task.atol,
            adjoint_dt_min=self.dt_min if self.dt_min is not None else task.dt_min,
        )
        return _SDEContinuousAdjointFn.apply(spec, task.y0, *params)

    def solve_ode(self, task: ODESolve) -> torch.Tensor:
        if self.method is not None and isinstance(self.method, SDESolver):
            raise TypeError(f"ContinuousAdjoint(method=...) for an ODE must be an ODE method, "
                            f"got {self.method!r}")
        adjoint_solver = task.solver if self.method is None else ode_solver(self.method)
        adjoint_dt = self.dt if self.dt is not None else task.dt
        if not adjoint_solver.adaptive and adjoint_dt is None:
            raise ValueError(f"ContinuousAdjoint(method={adjoint_solver.name!r}) takes fixed steps: pass "
                             "ContinuousAdjoint(dt=...), or use an adaptive method such as 'dopri5'")
        params = resolve_params(self, task.f, "f")
        spec = _ODESpec(
            task=task, adjoint_solver=adjoint_solver, adjoint_dt=adjoint_dt,
            adjoint_rtol=self.rtol if self.rtol is not None else task.rtol,
            adjoint_atol=self.atol if self.atol is not None else task.atol,
            adjoint_dt_min=self.dt_min if self.dt_min is not None else task.dt_min,
        )
        return _ODEContinuousAdjointFn.apply(spec, task.y0, *params)


_ADJOINT_SDE_METHODS = ("midpoint", "heun", "euler (additive noise only)")


def _adjoint_sde_solver(method, noise_type: str) -> SDESolver:
    if method is None:
        return Midpoint()
    if isinstance(method, (ODESolver, ButcherTableau)):
        raise TypeError(f"ContinuousAdjoint(method=...) for an SDE must be an SDE method "
                        f"({', '.join(_ADJOINT_SDE_METHODS)}), got {method!r}")
    solver = sde_solver(method, "stratonovich")
    if isinstance(solver, (Midpoint, Heun)) or (isinstance(solver, Euler) and noise_type == "additive"):
        return solver
    raise ValueError(
        f"ContinuousAdjoint(method={getattr(solver, 'name', method)!r}) cannot solve the adjoint SDE, a "
        f"Stratonovich SDE with {noise_type} forward noise given through g_prod only; use one of "
        f"{', '.join(_ADJOINT_SDE_METHODS)}"
    )


@dataclass
class _ContinuousSpec:
    problem: Problem
    solver: SDESolver
    ts: list
    fixed: FixedSDE | None  # the forward solve on a fixed grid (None: adaptive)
    mirror: bool  # the backward solve steps on the forward grid, with the forward increments
    dt: float | None
    bm: object
    rtol: float
    atol: float
    dt_min: float | None
    progress: bool
    max_steps: int
    adjoint_solver: SDESolver
    adjoint_bm: object
    adjoint_dt: float | None
    adjoint_adaptive: bool
    adjoint_rtol: float
    adjoint_atol: float
    adjoint_dt_min: float | None


class _SDEContinuousAdjointFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: _ContinuousSpec, y0: torch.Tensor, *params):
        if spec.fixed is not None:
            ys, _ = spec.fixed.run(y0.detach())
        else:
            ys = _solve_sde(spec.problem, spec.solver, y0.detach(), spec.ts, dt=spec.dt, bm=spec.bm,
                            adaptive=True, rtol=spec.rtol, atol=spec.atol, dt_min=spec.dt_min,
                            progress=spec.progress, max_steps=spec.max_steps)
        ys = torch.stack(ys)
        ctx.spec = spec
        ctx.save_for_backward(ys, *params)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys):
        spec: _ContinuousSpec = ctx.spec
        ys, *params = ctx.saved_tensors
        params = tuple(params)
        if spec.mirror:
            return (None, *_mirrored_backward(spec, ys, grad_ys, params))
        adjoint = AdjointSDE(spec.problem, params)
        a = grad_ys[-1]
        a_params = torch.zeros(adjoint.np, dtype=ys.dtype, device=ys.device)
        for i in range(len(spec.ts) - 1, 0, -1):
            z = adjoint.pack(ys[i], a, a_params)
            zs = _solve_sde(adjoint, spec.adjoint_solver, z, [spec.ts[i], spec.ts[i - 1]], dt=spec.adjoint_dt,
                            bm=spec.adjoint_bm, adaptive=spec.adjoint_adaptive, rtol=spec.adjoint_rtol,
                            atol=spec.adjoint_atol, dt_min=spec.adjoint_dt_min, progress=spec.progress,
                            max_steps=spec.max_steps)
            _, a, a_params = adjoint.unpack(zs[-1])
            a = a + grad_ys[i - 1]
        return (None, a, *unflat(a_params, params))


def _mirrored_backward(spec: _ContinuousSpec, ys, grad_ys, params):
    """The backward solve on the forward grid: backward step ``j`` of an output interval undoes forward
    step ``K`` and is driven by the same increment, reflected (``-dW_K``), so the Brownian path is the
    same by construction, whatever the source. The adjoint is that of the problem the forward solver
    saw (for decreasing ``ts``, the time-reversed one), integrated in ``u = -s``."""
    fixed = spec.fixed
    if fixed is None:
        raise RuntimeError("the mirrored backward pass needs the forward solve's fixed grid")
    adjoint = AdjointSDE(fixed.problem, params)
    backward_problem = FlippedProblem(adjoint)
    solver = spec.adjoint_solver
    forward_times = fixed.t_of(fixed.grid)
    levy = fixed.solver.levy_area
    saves = fixed.saves
    a = grad_ys[-1]
    a_params = torch.zeros(adjoint.np, dtype=ys.dtype, device=ys.device)
    for i in range(len(saves) - 1, 0, -1):
        lo, hi = saves[i - 1], saves[i]

        def step(j, u0, u1, z, state, hi=hi):
            K = hi - 1 - j
            dW = fixed.noise(K, forward_times[K], forward_times[K + 1])
            dW = dW[0] if levy else dW
            return solver.step(backward_problem, u0, u1, z, -dW, state)

        view = GridView(fixed.grid, range(hi, lo - 1, -1), -1.0)
        z = adjoint.pack(ys[i], a, a_params)
        state0 = solver.init(backward_problem, fixed.t_of([view[0]])[0], z)
        z = fixed_loop(step, z, state0, view, [0, hi - lo], fixed.t_of, f"adjoint[{solver.name}]",
                        fixed.progress)[-1]
        _, a, a_params = adjoint.unpack(z)
        a = a + grad_ys[i - 1]
    return (a, *unflat(a_params, params))


class _SnapToGrid:
    """A Brownian source whose query times are moved onto the forward grid's times when within
    rounding of them: a :class:`BrownianPath` draws a point inside a leaf from noise keyed by the exact
    time, so a backward solve on a finer grid must hit the shared points in the very same float."""

    def __init__(self, bm, fixed: FixedSDE, sign: float) -> None:
        self.bm, self.grid, self.sign = bm, fixed.grid, sign
        self.dtype, self.device = fixed.problem.dtype, fixed.problem.device
        self.ends = [b for _, b, _ in self.grid.pieces]
        self.min_step = min((b - a) / n for a, b, n in self.grid.pieces)
        self.eps = torch.finfo(self.dtype).eps

    def _snap(self, t: float) -> float:
        s = self.sign * t
        i = min(bisect.bisect_left(self.ends, s), len(self.ends) - 1)
        a, b, n = self.grid.pieces[i]
        k = self.grid.saves[i] + min(n, max(0, round((s - a) / (b - a) * n)))
        on_grid = self.grid[k]
        tol = min(0.25 * self.min_step, max(1e-3 * self.min_step, 8 * self.eps * (1 + abs(s))))
        if abs(on_grid - s) <= tol:
            return self.sign * float(torch.tensor(on_grid, dtype=self.dtype))
        return t

    def __call__(self, ta, tb, return_U: bool = False):
        ta, tb = self._snap(float(ta)), self._snap(float(tb))
        return self.bm(ta, tb, return_U=True) if return_U else self.bm(ta, tb)



@dataclass
class _ODESpec:
    task: ODESolve  # the checked odeint call: the forward solve
    adjoint_solver: ODESolver
    adjoint_dt: float | None
    adjoint_rtol: float
    adjoint_atol: float
    adjoint_dt_min: float | None


class _ODEContinuousAdjointFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: _ODESpec, y0: torch.Tensor, *params):
        task = spec.task
        ys = _solve_ode(task.func, task.solver, y0.detach(), task.ts, rtol=task.rtol, atol=task.atol,
                        dt=task.dt, dt_min=task.dt_min, progress=task.progress, max_steps=task.max_steps)
        ys = torch.stack(ys)
        ctx.spec = spec
        ctx.save_for_backward(ys, *params)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys):
        spec: _ODESpec = ctx.spec
        task = spec.task
        ys, *params = ctx.saved_tensors
        params = tuple(params)
        shape = ys.shape[1:]
        ny = math.prod(shape)

        def augmented(t, z):
            # (dy/dt, da/dt, da_theta/dt) = (f, -a^T df/dy, -a^T df/dtheta)
            y, a = z[:ny].view(shape), z[ny:2 * ny].view(shape)
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                out = task.func(t, y)
                grads = vjp(out, (y, *params), a)
            return torch.cat([out.detach().reshape(-1), *(-g.reshape(-1) for g in grads)])

        a = grad_ys[-1]
        a_params = torch.zeros(sum(p.numel() for p in params), dtype=ys.dtype, device=ys.device)
        for i in range(len(task.ts) - 1, 0, -1):
            z = torch.cat([ys[i].reshape(-1), a.reshape(-1), a_params])
            zs = _solve_ode(augmented, spec.adjoint_solver, z, [task.ts[i], task.ts[i - 1]],
                            rtol=spec.adjoint_rtol, atol=spec.adjoint_atol, dt=spec.adjoint_dt,
                            dt_min=spec.adjoint_dt_min, progress=task.progress, max_steps=task.max_steps)
            a = zs[-1][ny:2 * ny].view(shape) + grad_ys[i - 1]
            a_params = zs[-1][2 * ny:]
        return (None, a, *unflat(a_params, params))

