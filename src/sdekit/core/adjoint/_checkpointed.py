"""Checkpointed backpropagation: groups of steps recomputed with a graph in the backward pass."""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from .._grid import StepGrid, time_tensors
from ..integrate import _solve_ode, fixed_loop, fixed_sde, progress_bar
from ..solvers.base import ODESolver
from ..strategy import AdjointStrategy, ODESolve, SDESolve
from ._autograd import vjp
from ._params import check_params, resolve_params


class Checkpointed(AdjointStrategy):
    """Backpropagation with recomputation: only the state at the ends of ``segments`` groups of
    steps is kept; each group is run again, with a graph, during the backward pass.

    The gradient equals :class:`Backprop`'s exactly (same steps, same Brownian increments); memory is
    ``O(segments + n / segments)`` for ``n`` steps, ``O(sqrt(n))`` with the default
    ``segments = round(sqrt(n))``, at the cost of a second forward pass.

    For SDEs it needs fixed steps; for adaptive ODE methods the accepted step grid is recorded in a
    first pass without gradients and then replayed in groups (same values, same gradients).

    Arguments:
        segments: number of groups of steps (default ``round(sqrt(n))``).
        params: tensors to differentiate besides ``y0`` (default: the parameters of the SDE / ODE
            function and the tensors its functions capture, see the module docstring); the
            recomputation differentiates with respect to these explicitly.

    Reference: Griewank & Walther, "Algorithm 799: revolve", ACM TOMS 26(1), 2000 (the classical
    sqrt(n) schedule is its one-level special case); Chen, Xu, Zhang & Guestrin, "Training deep nets
    with sublinear memory cost", 2016.
    """

    def __init__(self, segments: int | None = None, *, params=None) -> None:
        if segments is not None and (isinstance(segments, bool) or not isinstance(segments, int)
                                     or segments < 1):
            raise ValueError(f"segments must be a positive int or None, got {segments!r}")
        self.segments = segments
        self.params = check_params(params)

    def __repr__(self) -> str:
        return f"Checkpointed(segments={self.segments})"

    def solve_sde(self, task: SDESolve) -> torch.Tensor:
        if task.adaptive:
            raise ValueError("Checkpointed() needs fixed steps for SDEs (adaptive=False); with adaptive=True "
                             "use ContinuousAdjoint() or Backprop()")
        setup = fixed_sde(task.problem, task.solver, task.ts, task.dt, task.bm, task.progress, bounded_memory=True)
        params = resolve_params(self, task.problem.sde, "the sde")
        ys = _checkpointed_loop(setup.step, task.y0, setup.init(task.y0), setup.grid, setup.saves, setup.t_of,
                                setup.name, task.progress, self.segments, params)
        return torch.stack(ys)

    def solve_ode(self, task: ODESolve) -> torch.Tensor:
        ys = _checkpointed_ode(task.func, task.solver, task.y0, task.ts, rtol=task.rtol, atol=task.atol,
                               dt=task.dt, dt_min=task.dt_min, progress=task.progress, max_steps=task.max_steps,
                               segments=self.segments, params=resolve_params(self, task.f, "f"))
        return torch.stack(ys)


def _state_tensors(state) -> tuple:
    """Solver states are ``()``, a tensor or a flat tuple of tensors; return them as a tuple."""
    if isinstance(state, torch.Tensor):
        return (state,)
    if isinstance(state, tuple) and all(isinstance(s, torch.Tensor) for s in state):
        return state
    raise TypeError(f"Checkpointed supports solver states that are tensors or tuples of tensors, got "
                    f"{type(state).__name__}")


class _SegmentFn(torch.autograd.Function):
    """One group of steps run without a graph; the backward pass re-runs it with one and
    backpropagates through it, so a single group's graph exists at any time. (``torch.utils.checkpoint``
    without reentrancy keeps every step's autograd nodes, about 1 kB each, which makes memory grow
    linearly again; its reentrant form does not work with ``torch.autograd.grad``.)"""

    @staticmethod
    def forward(ctx, run, n_state: int, y, *state_and_params):
        ctx.run, ctx.n_state = run, n_state
        ctx.save_for_backward(y, *state_and_params)
        return run(y, *state_and_params[:n_state])

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs):
        y, *rest = ctx.saved_tensors
        state, params = rest[:ctx.n_state], rest[ctx.n_state:]
        inputs = [y.detach().requires_grad_(True), *(s.detach().requires_grad_(True) for s in state)]
        with torch.enable_grad():
            outputs = ctx.run(*inputs)
            grads = vjp(outputs, (*inputs, *params), [torch.zeros_like(o) if g is None else g
                                                       for o, g in zip(outputs, grad_outputs)])
        return (None, None, *grads)


def _checkpointed_loop(step, y0, state0, grid, saves, t_of, name, progress, segments, params):
    """Run ``step`` over ``grid`` in groups of steps, each a :class:`_SegmentFn`; return ``y`` at the
    grid indices ``saves`` (``saves[0] == 0``)."""
    n = len(grid) - 1
    count = min(n, segments if segments is not None else max(1, round(math.sqrt(n))))
    bounds = sorted({round(i * n / count) for i in range(count + 1)})
    state_is_tensor = isinstance(state0, torch.Tensor)

    def rebuild(flat):
        return flat[0] if state_is_tensor else tuple(flat)

    outputs = [y0]
    y, flat_state = y0, _state_tensors(state0)
    bar = progress_bar(progress, len(bounds) - 1, name)
    for a, b in zip(bounds[:-1], bounds[1:]):
        inner = [j - a for j in saves if a < j < b]
        local_saves = [0, *inner, b - a]

        def segment(y_in, *state_in, a=a, b=b, local_saves=local_saves):
            last = [rebuild(state_in)]

            def local_step(k, t0, t1, y_k, s_k):
                y_k, s_k = step(a + k, t0, t1, y_k, s_k)
                last[0] = s_k
                return y_k, s_k

            ys = fixed_loop(local_step, y_in, rebuild(state_in), grid[a:b + 1], local_saves, t_of, name)
            return (*ys[1:], *_state_tensors(last[0]))

        result = _SegmentFn.apply(segment, len(flat_state), y, *flat_state, *params)
        outputs.extend(result[:len(inner)])
        y = result[len(inner)]
        flat_state = tuple(result[len(inner) + 1:])
        if b in saves:
            outputs.append(y)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return outputs



class _RecordingODESolver(ODESolver):
    """Delegates to an ODE solver and records the times of every attempted step."""

    def __init__(self, inner: ODESolver) -> None:
        self.inner = inner
        self.name, self.order, self.error_order = inner.name, inner.order, inner.error_order
        self.tableau = getattr(inner, "tableau", None)
        self.calls: list[tuple[float, float]] = []

    def init(self, f, t0, y0):
        return self.inner.init(f, t0, y0)

    def step(self, f, t0, t1, y0, state):
        self.calls.append((float(t0), float(t1)))
        return self.inner.step(f, t0, t1, y0, state)


def _accepted_grid(calls, targets):
    """The accepted step grid of an adaptive run from its attempted steps: an attempt is accepted when
    the next attempt starts where it ended (a rejected one is retried from its own start)."""
    grid = [calls[0][0]]
    for i, (_, t1) in enumerate(calls):
        if i == len(calls) - 1 or calls[i + 1][0] == t1:
            grid.append(t1)
    saves, j = [0], 0
    for target in targets:
        while grid[j] != target:
            j += 1
        saves.append(j)
    return grid, saves



def _checkpointed_ode(func, solver: ODESolver, y0, ts_list, *, rtol, atol, dt, dt_min, progress, max_steps,
                      segments, params):
    flip = ts_list[1] < ts_list[0]
    ts_s = [-t for t in ts_list] if flip else list(ts_list)
    func_s = (lambda s, y: -func(-s, y)) if flip else func
    t_of = time_tensors(y0.dtype, y0.device)
    name = f"odeint[{solver.name}]"
    if solver.adaptive:
        # Record the accepted grid without gradients, then replay it with checkpointing.
        recorder = _RecordingODESolver(solver)
        with torch.no_grad():
            _solve_ode(func, recorder, y0.detach(), ts_list, rtol=rtol, atol=atol, dt=dt, dt_min=dt_min,
                       progress=progress, max_steps=max_steps)
        targets = [float(t) for t in t_of(ts_s[1:])]
        grid, saves = _accepted_grid(recorder.calls, targets)
    else:
        grid = StepGrid(ts_s, dt)
        saves = grid.saves
    tableau = getattr(solver, "tableau", None)
    fsal = tableau is not None and tableau.fsal and solver.adaptive
    state0 = func_s(t_of([grid[0]])[0], y0) if fsal else ()

    def step(k, t0, t1, y, state):
        y1, _, state = solver.step(func_s, t0, t1, y, state)
        return y1, state

    return _checkpointed_loop(step, y0, state0, grid, saves, t_of, name, progress, segments, params)
