"""The one time loop: ``sdeint`` and ``odeint``.

Both entry points check their inputs once, pack tuple states into one tensor, reverse time when
``ts`` decreases (solvers always step forward in ``s = -t``), and hand a ``step`` closure to one of
two loops: :func:`fixed_loop` (a precomputed grid) and :func:`_adaptive_loop` (step-size control
with an embedded error estimate, or step doubling for SDEs). Saving at ``ts``, non-finite detection,
the progress bar and the step limit live in these loops only.

With ``adjoint=...`` the checked call goes to the strategy (:mod:`sdekit.core.strategy`), which runs it
through the same pieces (:func:`run_sde`, :func:`fixed_sde`, :func:`fixed_loop`, ...); this module
imports no strategy.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Literal, overload

import torch

from ._grid import StepGrid, time_tensors
from .brownian import BrownianGrid, BrownianPath, _ChunkedBrownian
from .sde import FlippedProblem, Problem, _check_state, _Packer
from .solvers import ButcherTableau, ode_solver, sde_solver
from .solvers.base import ODESolver, SDESolver
from .strategy import AdjointStrategy, ODESolve, SDESolve, check_strategy

__all__ = ["sdeint", "odeint"]

_CHECK_EVERY = 16  # non-finite checks every this many steps; a failure is replayed to its exact step


# --------------------------------------------------------------------------------------------
# Boundary checks
# --------------------------------------------------------------------------------------------
def _check_ts(ts) -> list[float]:
    if isinstance(ts, torch.Tensor):
        if ts.dim() != 1:
            raise ValueError(f"ts must be a 1-D tensor of times, got shape {tuple(ts.shape)}")
        values = ts.detach().cpu().double().tolist()
    elif isinstance(ts, Sequence) and not isinstance(ts, (str, bytes)):
        values = []
        for i, t in enumerate(ts):
            if isinstance(t, torch.Tensor) and t.numel() == 1 and not t.is_complex():
                t = t.item()
            if isinstance(t, bool) or not isinstance(t, numbers.Real):
                raise TypeError(f"ts must be a 1-D tensor or a sequence of numbers; ts[{i}] is {t!r} "
                                f"({type(t).__name__})")
            values.append(float(t))
    else:
        raise TypeError(f"ts must be a 1-D tensor or a sequence of numbers, got {type(ts).__name__} {ts!r}")
    if len(values) < 2:
        raise ValueError(f"ts must hold at least two times (start and end), got {len(values)}")
    if not all(math.isfinite(t) for t in values):
        raise ValueError(f"ts must be finite, got {values}")
    sign = 1.0 if values[1] > values[0] else -1.0
    for i in range(1, len(values)):
        if not sign * (values[i] - values[i - 1]) > 0:
            kind = "increasing" if sign > 0 else "decreasing"
            rel = "<=" if sign > 0 else ">="
            raise ValueError(
                f"ts must be strictly monotone; ts starts {kind} but ts[{i}]={values[i]} {rel} "
                f"ts[{i - 1}]={values[i - 1]}"
            )
    return values


@overload
def _check_positive(name: str, value, allow_none: Literal[False]) -> float: ...
@overload
def _check_positive(name: str, value, allow_none: bool = True) -> float | None: ...
def _check_positive(name: str, value, allow_none: bool = True) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} is required")
    if isinstance(value, torch.Tensor):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


# --------------------------------------------------------------------------------------------
# Brownian adapters: every noise request goes through ``noise(k, t0, t1)``
# --------------------------------------------------------------------------------------------
def _noise_source(bm, flipped: bool, levy: bool, grid_obj: BrownianGrid | _ChunkedBrownian | None, shape, dtype,
                  device):
    if grid_obj is not None:
        return lambda k, ta, tb: grid_obj.increment(k, return_U=levy)

    def query(ta, tb):
        if levy:
            try:
                return bm(ta, tb, return_U=True)
            except TypeError:
                raise ValueError(
                    f"method needs the space-time Levy area but bm={type(bm).__name__} does not accept "
                    "return_U=True; pass BrownianPath(..., levy_area='space-time') or leave bm=None"
                ) from None
        return bm(ta, tb)

    checked = []

    def check(out):
        w = out[0] if levy else out
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != tuple(shape):
            got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"bm(ta, tb) must return increments of the Brownian shape {tuple(shape)}; got {got}")
        checked.append(True)
        return out

    if not flipped:
        def forward(k, ta, tb):
            out = query(float(ta), float(tb))
            return out if checked else check(out)
        return forward

    def backward(k, sa, sb):
        # s = -t: the reflected path's increment on [sa, sb] from the original path on [tb, ta].
        ta, tb = -float(sa), -float(sb)
        out = query(tb, ta)
        if not checked:
            check(out)
        if levy:
            W, U = out
            return -W, U - (ta - tb) * W
        return -out

    return backward


# --------------------------------------------------------------------------------------------
# The loops
# --------------------------------------------------------------------------------------------
def _non_finite(name: str, k: int, t: float, y: torch.Tensor) -> FloatingPointError:
    bad = (~torch.isfinite(y)).sum().item()
    return FloatingPointError(
        f"{name}: the state became non-finite at step {k} (t={t:.6g}): {bad} of {y.numel()} entries are "
        "NaN or inf. Reduce dt, check f and g for overflow, or use an adaptive or implicit method"
    )


def _all_finite(y: torch.Tensor) -> bool:
    """Whether every entry of ``y`` is finite: one reduction (a NaN or inf entry makes the sum NaN or
    inf), and the exact elementwise test only when the sum is not finite (it may have overflowed)."""
    return math.isfinite(y.detach().sum().item()) or bool(torch.isfinite(y).all())


def fixed_loop(step, y0, state0, grid, saves: list[int], t_of: Callable, name: str,
                progress: bool = False):
    """Run ``step(k, t0, t1, y, state) -> (y, state)`` over ``grid`` (a sequence of floats: a list, a
    :class:`~sdekit.core._grid.StepGrid` or a view of one); return ``y`` at the grid indices ``saves``.

    ``t_of(grid)`` gives the time tensors passed to ``step``; the state is checked for non-finite
    entries every ``_CHECK_EVERY`` steps and at the end, and a failure is replayed from the last good
    state to name the exact step."""
    t_tensors = t_of(grid)
    times = iter(t_tensors)
    out = [y0]
    next_save = 1
    y, state = y0, state0
    good_k, good_y, good_state = 0, y0, state0
    n = len(grid) - 1
    bar = progress_bar(progress, n, name)
    t1 = next(times)
    for k in range(n):
        t0, t1 = t1, next(times)
        y, state = step(k, t0, t1, y, state)
        kk = k + 1
        if kk == saves[next_save]:
            out.append(y)
            next_save += 1
        if kk % _CHECK_EVERY == 0 or kk == n:
            if not _all_finite(y):
                # Replay from the last finite state to name the exact step.
                y_r, s_r = good_y, good_state
                for j in range(good_k, kk):
                    y_r, s_r = step(j, t_tensors[j], t_tensors[j + 1], y_r, s_r)
                    if not _all_finite(y_r):
                        raise _non_finite(name, j + 1, grid[j + 1], y_r)
                raise _non_finite(name, kk, grid[kk], y)
            good_k, good_y, good_state = kk, y, state
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _error_ratio(err: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: float, atol: float) -> float:
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    ratio = torch.sqrt(torch.mean((err / scale) ** 2)).item()
    return ratio if math.isfinite(ratio) else math.inf


def _adaptive_loop(step_with_error, y0, state0, ts: list[float], t_of: Callable, *, h0: float, rtol: float,
                   atol: float, dt_min: float, error_order: float, max_steps: int, name: str,
                   progress: bool = False):
    """Integrate with step-size control, stepping exactly onto every output time.

    ``step_with_error(t0, t1, y, state) -> (y1, error, state1)``. A step is accepted when the RMS of
    ``error / (atol + rtol * max(|y0|, |y1|))`` is at most 1, or when it is already ``dt_min``.
    """
    y, state = y0, state0
    out = [y0]
    t = ts[0]
    h = h0
    steps = 0
    safety, grow, shrink = 0.9, 5.0, 0.2
    exponent = 1.0 / (error_order + 1.0)
    span = ts[-1] - ts[0]
    bar = progress_bar(progress, 1000, name)
    for target in ts[1:]:
        while t < target:
            if steps >= max_steps:
                raise RuntimeError(
                    f"{name}: reached max_steps={max_steps} at t={t:.6g} before ts end {ts[-1]}; "
                    "raise max_steps or loosen rtol/atol"
                )
            h_try = min(h, target - t)
            if target - (t + h_try) < 1e-10 * span:
                h_try = target - t
            t_next = target if h_try == target - t else t + h_try
            t0_t, t1_t = t_of([t, t_next])
            y_new, err, state_new = step_with_error(t0_t, t1_t, y, state)
            ratio = _error_ratio(err, y, y_new, rtol, atol)
            steps += 1
            at_floor = h_try <= dt_min * (1 + 1e-12)
            if ratio <= 1.0 or at_floor:
                if not bool(torch.isfinite(y_new).all()):
                    raise _non_finite(name, steps, t_next, y_new)
                y, state, t = y_new, state_new, t_next
                if bar is not None:
                    bar.n = int(1000 * (t - ts[0]) / span)
                    bar.refresh()
            factor = grow if ratio == 0 else min(grow, max(shrink, safety * ratio**-exponent))
            h = max(dt_min, h_try * factor) if ratio <= 1.0 or at_floor else max(dt_min, h_try * min(factor, 0.9))
        out.append(y)
    if bar is not None:
        bar.close()
    return out


def progress_bar(enabled: bool, total: int, name: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=name, leave=False)


# --------------------------------------------------------------------------------------------
# The fixed-step SDE solve, shared by the loop and the step-level strategies
# --------------------------------------------------------------------------------------------
class FixedSDE:
    """A fixed-step SDE solve as objects that can be queried again step by step (the strategies'
    backward passes do): the solver's view of the problem (time ``s`` increasing), the grid on that
    axis, ``noise(k, s0, s1)`` (the increment of step ``k``) and the time tensors ``t_of``."""

    def __init__(self, problem, solver: SDESolver, grid: StepGrid, noise: Callable, t_of: Callable, name: str,
                 progress: bool) -> None:
        self.problem, self.solver, self.grid, self.noise = problem, solver, grid, noise
        self.saves = grid.saves
        self.t_of, self.name, self.progress = t_of, name, progress
        solver_step = solver.step

        def step(k, t0, t1, y, state):
            return solver_step(problem, t0, t1, y, noise(k, t0, t1), state)

        self.step = step

    def init(self, y0):
        return self.solver.init(self.problem, self.t_of([self.grid[0]])[0], y0)

    def run(self, y0, step=None):
        """The forward solve; returns the states at ``saves`` and the final solver state."""
        step = step or self.step
        last = [None]

        def tracked(k, t0, t1, y, state):
            y, state = step(k, t0, t1, y, state)
            last[0] = state
            return y, state

        state0 = self.init(y0)
        last[0] = state0
        ys = fixed_loop(tracked, y0, state0, self.grid, self.saves, self.t_of, self.name, self.progress)
        return ys, last[0]


def fixed_sde(problem: Problem, solver: SDESolver, ts_list, dt, bm, progress: bool, *,
              bounded_memory: bool = False) -> FixedSDE:
    """The fixed grid and Brownian increments of :func:`sdeint` for output times ``ts_list``.

    ``bm=None`` becomes a :class:`BrownianGrid` on the whole grid, or with ``bounded_memory=True`` (the
    strategies, which query increments again in the backward pass) a seeded source of one
    :class:`BrownianGrid` per chunk of steps, so memory does not grow with the step count. A
    :class:`BrownianGrid` ``bm`` on this very grid is read by step index; any other source is queried
    at the grid times (reflected when ``ts`` decreases)."""
    flip = ts_list[1] < ts_list[0]
    prob = FlippedProblem(problem) if flip else problem
    ts_s = [-t for t in ts_list] if flip else list(ts_list)
    grid = StepGrid(ts_s, 1e-3 if dt is None else dt)
    levy = solver.levy_area
    shape, dtype, device = problem.brownian_shape, problem.dtype, problem.device
    grid_obj = None
    if bm is None:
        levy_area = "space-time" if levy else None
        if bounded_memory:
            grid_obj = _ChunkedBrownian(grid, shape, dtype, device, levy_area)
        else:
            grid_obj = BrownianGrid(list(grid), shape, dtype=dtype, device=device, levy_area=levy_area)
    elif isinstance(bm, BrownianGrid) and not flip and len(bm) == len(grid) - 1:
        times = torch.tensor(list(grid), dtype=torch.float64)
        if torch.allclose(bm.times, times, rtol=0, atol=1e-12 * abs(grid[-1] - grid[0])):
            if tuple(bm.shape) != tuple(shape):
                raise ValueError(f"bm has shape {bm.shape} but the SDE needs Brownian increments of "
                                 f"shape {tuple(shape)}")
            grid_obj = bm
    noise = _noise_source(bm, flip, levy, grid_obj, shape, dtype, device)
    return FixedSDE(prob, solver, grid, noise, time_tensors(dtype, device), f"sdeint[{solver.name}]", progress)


# --------------------------------------------------------------------------------------------
# sdeint
# --------------------------------------------------------------------------------------------
def _resolve_sde_solver(method, problem: Problem) -> SDESolver:
    solver = sde_solver(method, problem.sde_type)
    if problem.noise_type not in solver.noise_types:
        raise ValueError(
            f"method {solver.name!r} does not support noise_type={problem.noise_type!r}; it supports "
            f"{list(solver.noise_types)}. For {problem.noise_type} noise use one of "
            f"{_methods_for(problem.noise_type, problem.sde_type)}"
        )
    if solver.sde_type != problem.sde_type and problem.noise_type != "additive":
        raise ValueError(
            f"method {solver.name!r} solves {solver.sde_type} SDEs but sde.sde_type={problem.sde_type!r}; "
            f"for {problem.sde_type} SDEs with {problem.noise_type} noise use one of "
            f"{_methods_for(problem.noise_type, problem.sde_type)}"
        )
    return solver


def _methods_for(noise_type: str, sde_type: str) -> list[str]:
    from .solvers import SDE_METHODS

    names = []
    for name, make in SDE_METHODS.items():
        s = make(sde_type)
        if noise_type in s.noise_types and (s.sde_type == sde_type or noise_type == "additive"):
            names.append(name)
    return names


def sdeint(
    sde,
    y0,
    ts,
    *,
    method: str | SDESolver = "euler",
    dt: float | None = None,
    bm=None,
    adaptive: bool = False,
    rtol: float = 1e-3,
    atol: float = 1e-6,
    dt_min: float | None = None,
    progress: bool = False,
    max_steps: int = 1_000_000,
    adjoint: AdjointStrategy | None = None,
    logqp: bool = False,
    names: dict[str, str] | None = None,
):
    """Solve an SDE ``dy = f(t, y) dt + g(t, y) dW`` and return ``y`` at the times ``ts``.

    Arguments:
        sde: an object with ``f(t, y)``, ``g(t, y)``, ``noise_type`` and ``sde_type`` (the torchsde
            contract; a torchsde SDE works unchanged), optionally ``g_prod(t, y, v)``.
        y0: initial state, a tensor ``(*S, d)`` (any shape for diagonal noise) or a tuple of tensors.
        ts: strictly increasing or strictly decreasing output times, 1-D tensor or sequence.
        method: a name (``euler``, ``milstein``, ``milstein_grad_free``, ``srk``, ``heun``,
            ``midpoint``, ``reversible_heun``) or an :class:`~sdekit.core.solvers.SDESolver`.
        dt: step size (default ``1e-3``, as torchsde); with ``adaptive=True`` the first step.
        bm: Brownian source ``bm(ta, tb)``: a :class:`BrownianPath`, :class:`BrownianGrid`,
            ``torchsde.BrownianInterval`` or any callable returning increments of the Brownian shape.
            ``None`` draws a fresh path from torch's global generator.
        adaptive: step doubling with the error control below; rejected steps re-query the same path.
        rtol, atol, dt_min: error control for ``adaptive=True``.
        progress: show a tqdm progress bar.
        max_steps: limit of (accepted and rejected) adaptive steps.
        adjoint: gradient strategy (``None``/backprop through the steps, or an object from
            :mod:`sdekit.core.adjoint`).
        logqp: also return the KL path term of a latent SDE: ``sde`` then needs a prior drift
            ``h(t, y)`` and ``y0`` a leading batch dimension (see :mod:`sdekit.core.latent`).
        names: methods of ``sde`` to use under other names, as torchsde: keys ``drift``, ``diffusion``,
            ``prior_drift``, ``diffusion_prod``, ``drift_and_diffusion``, ``drift_and_diffusion_prod``;
            e.g. ``names={"drift": "h"}`` solves with the prior drift (see :mod:`sdekit.core.names`).

    Returns:
        A tensor ``(len(ts), *y0.shape)``, or a tuple of such for a tuple state. With ``logqp=True``
        ``(ys, log_ratio)``, ``log_ratio`` of shape ``(len(ts) - 1, batch)``: the increments of
        ``int 1/2 |(f - h) / g|^2 dt`` between consecutive output times (as torchsde).

    Raises:
        TypeError for ``ts`` that is not a 1-D tensor or a sequence of numbers; ValueError / TypeError
        at the boundary for malformed ``ts``, ``dt``, a non-finite ``y0`` (ValueError naming it), shapes
        of ``f`` and ``g``, or a method that does not fit the noise or SDE type; FloatingPointError naming
        the step and time when the state becomes non-finite later.
    """
    ts_list = _check_ts(ts)
    _check_state(y0)
    dt = _check_positive("dt", dt)
    rtol = _check_positive("rtol", rtol, allow_none=False)
    atol = _check_positive("atol", atol, allow_none=False)
    dt_min = _check_positive("dt_min", dt_min)
    if adjoint is not None:
        adjoint = check_strategy(adjoint)
    if names is not None:
        from .names import rename_methods

        sde = rename_methods(sde, names)
    if logqp:
        from .latent import _with_logqp

        sde, y0, bm, split = _with_logqp(sde, y0, bm)
        out = sdeint(sde, y0, ts_list, method=method, dt=dt, bm=bm, adaptive=adaptive, rtol=rtol, atol=atol,
                     dt_min=dt_min, progress=progress, max_steps=max_steps, adjoint=adjoint)
        return split(out)
    first = y0[0] if isinstance(y0, (tuple, list)) else y0
    t0 = torch.tensor(ts_list[0], dtype=first.dtype, device=first.device)
    problem = Problem(sde, y0, t0)
    solver = _resolve_sde_solver(method, problem)
    task = SDESolve(problem=problem, solver=solver, y0=problem.packer.pack(y0), ts=ts_list, dt=dt, bm=bm,
                    adaptive=adaptive, rtol=rtol, atol=atol, dt_min=dt_min, progress=progress,
                    max_steps=max_steps)
    ys = run_sde(task) if adjoint is None else adjoint.solve_sde(task)
    return problem.packer.unpack_series(ys)


def run_sde(task: SDESolve) -> torch.Tensor:
    """The solve ``task`` with autograd recording every step (``adjoint=None``, :class:`Backprop`);
    returns the packed states at ``task.ts``, stacked."""
    return torch.stack(_solve_sde(task.problem, task.solver, task.y0, task.ts, dt=task.dt, bm=task.bm,
                                  adaptive=task.adaptive, rtol=task.rtol, atol=task.atol, dt_min=task.dt_min,
                                  progress=task.progress, max_steps=task.max_steps))


def _solve_sde(problem, solver, y0, ts_list, *, dt, bm, adaptive, rtol, atol, dt_min, progress, max_steps):
    """Solve a checked problem from a packed state; returns the list of packed states at ``ts``."""
    if not adaptive:
        setup = fixed_sde(problem, solver, ts_list, dt, bm, progress)
        return fixed_loop(setup.step, y0, setup.init(y0), setup.grid, setup.saves, setup.t_of, setup.name,
                          progress)

    flip = ts_list[1] < ts_list[0]
    if flip:
        problem = FlippedProblem(problem)
        ts_list = [-t for t in ts_list]
    span = ts_list[-1] - ts_list[0]
    dt = 1e-3 if dt is None else dt
    levy = solver.levy_area
    t_of = time_tensors(problem.dtype, problem.device)
    name = f"sdeint[{solver.name}]"
    if bm is None:
        lo, hi = min(ts_list[0], ts_list[-1]), max(ts_list[0], ts_list[-1])
        bm = BrownianPath(lo, hi, problem.brownian_shape, dtype=problem.dtype, device=problem.device,
                          levy_area="space-time" if levy else None)
        flip_bm = False  # built on the s = -t axis directly
    else:
        flip_bm = flip
    noise = _noise_source(bm, flip_bm, levy, None, problem.brownian_shape, problem.dtype, problem.device)

    def step_with_error(t0, t1, y, state):
        tm = 0.5 * (t0 + t1)
        y_full, _ = solver.step(problem, t0, t1, y, noise(-1, t0, t1), state)
        y_half, s_half = solver.step(problem, t0, tm, y, noise(-1, t0, tm), state)
        y_two, s_two = solver.step(problem, tm, t1, y_half, noise(-1, tm, t1), s_half)
        return y_two, y_two - y_full, s_two

    order = solver.order_for(problem.noise_type)
    state0 = solver.init(problem, t_of([ts_list[0]])[0], y0)
    return _adaptive_loop(step_with_error, y0, state0, ts_list, t_of, h0=min(dt, span), rtol=rtol, atol=atol,
                          dt_min=dt_min if dt_min is not None else 1e-9 * span, error_order=order - 0.5,
                          max_steps=max_steps, name=name, progress=progress)


# --------------------------------------------------------------------------------------------
# odeint
# --------------------------------------------------------------------------------------------
def odeint(
    f: Callable,
    y0,
    ts,
    *,
    method: str | ODESolver | ButcherTableau = "dopri5",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    dt: float | None = None,
    dt_min: float | None = None,
    progress: bool = False,
    max_steps: int = 1_000_000,
    adjoint: AdjointStrategy | None = None,
):
    """Solve an ODE ``dy/dt = f(t, y)`` and return ``y`` at the times ``ts``.

    Arguments:
        f: a callable ``f(t, y)`` returning the shape (or tuple structure) of ``y``.
        y0: initial state, a tensor of any shape or a tuple of tensors.
        ts: strictly monotone output times; the solver steps exactly onto each of them.
        method: ``dopri5`` (default), ``tsit5``, ``bosh3``, ``heun`` (adaptive pairs) or ``euler``,
            ``midpoint``, ``rk4`` (fixed step, need ``dt``); or a ButcherTableau / ODESolver.
        rtol, atol: error control of adaptive methods.
        dt: step of fixed-step methods; initial step of adaptive ones (default: estimated).
        dt_min: smallest adaptive step; at that size a step is accepted whatever its error.
        progress, max_steps: as in :func:`sdeint`.
        adjoint: gradient strategy (``None``: backprop through the steps).

    Returns:
        A tensor ``(len(ts), *y0.shape)`` (a tuple of such for a tuple state).

    Raises:
        TypeError / ValueError at the boundary as :func:`sdeint` (``ts``, a non-finite ``y0``, ``dt``,
        tolerances); FloatingPointError naming the step when the state becomes non-finite later.
    """
    ts_list = _check_ts(ts)
    _check_state(y0)
    if not callable(f):
        raise TypeError(f"f must be a callable f(t, y), got {type(f).__name__}")
    rtol = _check_positive("rtol", rtol, allow_none=False)
    atol = _check_positive("atol", atol, allow_none=False)
    dt = _check_positive("dt", dt)
    dt_min = _check_positive("dt_min", dt_min)
    solver = ode_solver(method)
    if not solver.adaptive and dt is None:
        raise ValueError(f"method {solver.name!r} takes fixed steps: pass dt, or use an adaptive method "
                         "such as 'dopri5'")
    if adjoint is not None:
        adjoint = check_strategy(adjoint)
    packer = _Packer(y0, along_last=False)
    task = ODESolve(f=f, func=_packed_ode(f, packer), solver=solver, y0=packer.pack(y0), ts=ts_list, rtol=rtol,
                    atol=atol, dt=dt, dt_min=dt_min, progress=progress, max_steps=max_steps)
    ys = run_ode(task) if adjoint is None else adjoint.solve_ode(task)
    return packer.unpack_series(ys)


def run_ode(task: ODESolve) -> torch.Tensor:
    """The solve ``task`` with autograd recording every step (``adjoint=None``, :class:`Backprop`);
    returns the packed states at ``task.ts``, stacked."""
    return torch.stack(_solve_ode(task.func, task.solver, task.y0, task.ts, rtol=task.rtol, atol=task.atol,
                                  dt=task.dt, dt_min=task.dt_min, progress=task.progress,
                                  max_steps=task.max_steps))


def _packed_ode(f, packer: _Packer):
    if not packer.is_tuple:
        return f
    return lambda t, y: packer.pack(f(t, packer.unpack(y)))


def _check_ode_output(f, t0, y0):
    out = f(t0, y0)
    if not isinstance(out, torch.Tensor) or out.shape != y0.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"f(t, y) must return a tensor of the shape of y, {tuple(y0.shape)}; got {got}")
    if out.dtype != y0.dtype:
        raise ValueError(f"f(t, y) returned dtype {out.dtype} for a state of dtype {y0.dtype}")
    return out


def _solve_ode(func, solver, y0, ts_list, *, rtol, atol, dt, dt_min, progress, max_steps):
    flip = ts_list[1] < ts_list[0]
    if flip:
        user_func = func
        func = lambda s, y: -user_func(-s, y)  # noqa: E731
        ts_list = [-t for t in ts_list]
    span = ts_list[-1] - ts_list[0]
    t_of = time_tensors(y0.dtype, y0.device)
    name = f"odeint[{solver.name}]"
    t0 = t_of([ts_list[0]])[0]
    f0 = _check_ode_output(func, t0, y0)

    if not solver.adaptive:
        grid = StepGrid(ts_list, dt)

        def step(k, ta, tb, y, state):
            y1, _, state = solver.step(func, ta, tb, y, state)
            return y1, state

        return fixed_loop(step, y0, (), grid, grid.saves, t_of, name, progress)

    if dt is None:
        dt = _initial_step(func, t0, y0, f0, solver.order, rtol, atol, span)
    fsal = getattr(solver, "tableau", None) is not None and solver.tableau.fsal
    state0 = f0 if fsal else ()
    def step_with_error(ta, tb, y, state):
        return solver.step(func, ta, tb, y, state)

    return _adaptive_loop(step_with_error, y0, state0, ts_list, t_of, h0=min(dt, span), rtol=rtol, atol=atol,
                          dt_min=dt_min if dt_min is not None else 1e-12 * span,
                          error_order=solver.error_order, max_steps=max_steps, name=name, progress=progress)


def _initial_step(func, t0, y0, f0, order, rtol, atol, span) -> float:
    """Hairer, Norsett & Wanner, *Solving ODEs I*, II.4: a first step from two derivative norms."""
    with torch.no_grad():
        scale = atol + rtol * y0.abs()
        d0 = torch.sqrt(torch.mean((y0 / scale) ** 2)).item()
        d1 = torch.sqrt(torch.mean((f0 / scale) ** 2)).item()
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0 = min(h0, span)
        y1 = y0 + h0 * f0
        f1 = func(t0 + h0, y1)
        d2 = torch.sqrt(torch.mean(((f1 - f0) / scale) ** 2)).item() / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1, span)
