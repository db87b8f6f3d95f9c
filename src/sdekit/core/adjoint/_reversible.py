"""The reversible adjoint: reversible Heun steps inverted one by one in the backward pass (Kidger,
Foster, Li & Lyons, NeurIPS 2021). The inverse is the solver's own
:meth:`~sdekit.core.solvers.ReversibleHeun.inverse_step`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from ..integrate import FixedSDE, fixed_loop, fixed_sde
from ..solvers.sde_solvers import ReversibleHeun
from ..strategy import AdjointStrategy, ODESolve, SDESolve
from ._autograd import vjp
from ._params import check_params, resolve_params


class ReversibleAdjoint(AdjointStrategy):
    """Exact gradients for ``method="reversible_heun"`` by inverting its steps (Kidger et al. 2021).

    Memory does not depend on the number of steps; the gradient equals :class:`Backprop`'s through
    the same reversible Heun steps up to floating-point rounding. Fixed steps only.

    Arguments:
        params: tensors to differentiate besides ``y0`` (default: the parameters of the SDE and the
            tensors its functions capture, see the module docstring).
    """

    def __init__(self, *, params=None) -> None:
        self.params = check_params(params)

    def solve_sde(self, task: SDESolve) -> torch.Tensor:
        solver = task.solver
        if not isinstance(solver, ReversibleHeun):
            raise ValueError(
                f"ReversibleAdjoint() inverts the steps of the algebraically reversible method "
                f"'reversible_heun', but method={solver.name!r}; pass method='reversible_heun' "
                f"(Stratonovich), or use ContinuousAdjoint() or Checkpointed() with {solver.name!r}"
            )
        if task.adaptive:
            raise ValueError("ReversibleAdjoint() needs fixed steps (adaptive=False); with adaptive=True use "
                             "ContinuousAdjoint() or Backprop()")
        params = resolve_params(self, task.problem.sde, "the sde")
        spec = _ReversibleSpec(fixed_sde(task.problem, solver, task.ts, task.dt, task.bm, task.progress,
                                         bounded_memory=True), solver)
        return _ReversibleAdjointFn.apply(spec, task.y0, *params)

    def solve_ode(self, task: ODESolve) -> torch.Tensor:
        raise ValueError("ReversibleAdjoint() needs an algebraically reversible SDE solver "
                         "(sdeint(..., method='reversible_heun')); for odeint use ContinuousAdjoint(), "
                         "Checkpointed() or Backprop()")


def _prod_transpose(noise_type: str, cotangent: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Cotangent of ``g`` in ``prod(g, v)`` (elementwise for diagonal noise, matrix-vector else)."""
    if noise_type == "diagonal":
        return cotangent * v
    return cotangent.unsqueeze(-1) * v.unsqueeze(-2)


class _Taped:
    """The solver's problem as :meth:`ReversibleHeun.inverse_step` sees it in the backward pass: ``f``
    and ``g`` are evaluated with grad enabled at a leaf copy of the state (one leaf per state tensor),
    their graphs are kept (``leaf``, ``f_graph``, ``g_graph``) for the vector-Jacobian products of the
    step, and their detached values are returned."""

    def __init__(self, problem) -> None:
        self.base, self.prod, self.noise_type = problem, problem.prod, problem.noise_type
        self._state = self.leaf = self.f_graph = self.g_graph = None

    def _leaf(self, z: torch.Tensor) -> torch.Tensor:
        if z is not self._state or self.leaf is None:
            self._state, self.leaf = z, z.detach().requires_grad_(True)
        return self.leaf

    def f(self, t, z):
        leaf = self._leaf(z)
        with torch.enable_grad():
            self.f_graph = self.base.f(t, leaf)
        return self.f_graph.detach()

    def g(self, t, z):
        leaf = self._leaf(z)
        with torch.enable_grad():
            self.g_graph = self.base.g(t, leaf)
        return self.g_graph.detach()

    def graphs(self):
        """``(leaf, f_graph, g_graph)`` of the last state evaluated."""
        return self.leaf, self.f_graph, self.g_graph


@dataclass
class _ReversibleSpec:
    setup: FixedSDE
    solver: ReversibleHeun  # setup.solver, whose inverse_step rebuilds the path
    trace: list | None = None  # tests: collects the reconstructed states, from the end backwards


class _ReversibleAdjointFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: _ReversibleSpec, y0: torch.Tensor, *params):
        ys, (f_end, g_end, z_end) = spec.setup.run(y0.detach())
        ys = torch.stack(ys)
        ctx.spec = spec
        ctx.save_for_backward(ys, f_end, g_end, z_end, *params)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys):
        spec: _ReversibleSpec = ctx.spec
        s = spec.setup
        ys, f_end, g_end, z_end, *params = ctx.saved_tensors
        params = tuple(params)
        solver, noise_type = spec.solver, s.problem.noise_type
        taped = _Taped(s.problem)
        n = len(s.grid) - 1
        inject = {k: j for j, k in enumerate(s.saves) if k < n}

        def reverse_step(k, t_hi, t_lo, a_y1, state):
            # Step K maps (y0, z0, f(z0), g(z0)) at t_lo to (y1, z1, f(z1), g(z1)) at t_hi:
            #   z1 = 2 y0 - z0 + f0 dt + g0 dW,  y1 = y0 + (f0 + f1) dt/2 + (g0 + g1) dW/2.
            K = n - 1 - k
            y1, z1, f1, g1, leaf1, f1_graph, g1_graph, a_z1, a_f1, a_g1, a_params = state
            dt = t_hi - t_lo
            dW = s.noise(K, t_lo, t_hi)
            half = 0.5 * dW
            # Cotangents of f(z1), g(z1): as state entries and through y1.
            c_f = a_f1 + a_y1 * (0.5 * dt)
            c_g = a_g1 + _prod_transpose(noise_type, a_y1, half)
            grads = vjp((f1_graph, g1_graph), (leaf1, *params), (c_f, c_g), retain_graph=True)
            a_z1_total = a_z1 + grads[0]
            a_params = tuple(ap + gp for ap, gp in zip(a_params, grads[1:]))
            # Invert the step: z0 from the end state, then y0 from f(z0), g(z0) (graphs kept).
            y0, (f0, g0, z0) = solver.inverse_step(taped, t_lo, t_hi, y1, dW, (f1, g1, z1))
            leaf0, f0_graph, g0_graph = taped.graphs()
            a_y0 = a_y1 + 2 * a_z1_total
            a_z0 = -a_z1_total
            a_f0 = a_z1_total * dt + a_y1 * (0.5 * dt)
            a_g0 = _prod_transpose(noise_type, a_z1_total, dW) + _prod_transpose(noise_type, a_y1, half)
            j = inject.get(K)
            if j is not None:
                a_y0 = a_y0 + grad_ys[j]
            if spec.trace is not None:
                spec.trace.append(y0)
            return a_y0, (y0, z0, f0, g0, leaf0, f0_graph, g0_graph, a_z0, a_f0, a_g0, a_params)

        t_end = s.t_of([s.grid[n]])[0]
        taped.f(t_end, z_end)
        taped.g(t_end, z_end)
        leaf_end, f_graph, g_graph = taped.graphs()
        zeros = torch.zeros_like
        state = (ys[-1], z_end, f_end, g_end, leaf_end, f_graph, g_graph, zeros(z_end), zeros(f_end),
                 zeros(g_end), tuple(zeros(p) for p in params))
        last = [state]

        def loop_step(k, t_hi, t_lo, a_y, st):
            a_y, st = reverse_step(k, t_hi, t_lo, a_y, st)
            last[0] = st
            return a_y, st

        a_y = fixed_loop(loop_step, grad_ys[-1], state, s.grid[::-1], [0, n], s.t_of,
                         s.name + " reverse", s.progress)[-1]
        _, _, _, _, leaf0, f0_graph, g0_graph, a_z0, a_f0, a_g0, a_params = last[0]
        # The initial state (f(y0), g(y0), z0 = y0).
        grads = vjp((f0_graph, g0_graph), (leaf0, *params), (a_f0, a_g0))
        grad_y0 = a_y + a_z0 + grads[0]
        a_params = tuple(ap + gp for ap, gp in zip(a_params, grads[1:]))
        return (None, grad_y0, *a_params)
