"""The adjoint SDE of the continuous adjoint (Li, Wong, Chen & Duvenaud, AISTATS 2020): the augmented
system on the flat state ``(y, a, a_theta)``, a Stratonovich SDE defined through ``f`` and ``g_prod``,
solved backwards in time by the core's solvers in the one loop (see :mod:`sdekit.core.adjoint`)."""

from __future__ import annotations

import math

import torch

from ..sde import Problem
from ._autograd import jvp, vjp


class AdjointSDE:
    """The augmented adjoint system of a forward SDE, in the original time ``t`` (solved with
    decreasing times, so the loop reverses it and reflects the Brownian path). Only ``f`` and
    ``g_prod`` are defined: midpoint, Heun and Euler need nothing else."""

    noise_type = "general"
    sde_type = "stratonovich"

    def __init__(self, problem: Problem, params: tuple) -> None:
        self.base = problem
        self.params = params
        self.shape = problem.state_shape
        self.ny = math.prod(self.shape)
        self.np = sum(p.numel() for p in params)
        self.brownian_shape = problem.brownian_shape
        self.dtype, self.device = problem.dtype, problem.device
        self.state_shape = (2 * self.ny + self.np,)
        self.prod = None
        self._ito = problem.sde_type == "ito" and problem.noise_type != "additive"

    def pack(self, y, a, a_params: torch.Tensor) -> torch.Tensor:
        return torch.cat([y.reshape(-1), a.reshape(-1), a_params])

    def unpack(self, z):
        ny = self.ny
        return z[:ny].view(self.shape), z[ny:2 * ny].view(self.shape), z[2 * ny:]

    def stratonovich_drift(self, t, y):
        """The forward drift in Stratonovich form (Ito drift minus 1/2 sum_j (dg_j/dy) g_j)."""
        f = self.base.f(t, y)
        if not self._ito:
            return f
        g = self.base.g(t, y)
        if not g.requires_grad:
            return f
        if self.base.noise_type == "diagonal":
            (gdg,) = torch.autograd.grad(g, y, g, create_graph=True, allow_unused=True)
            return f if gdg is None else f - 0.5 * gdg
        correction = sum(jvp(g[..., j], y, g[..., j]) for j in range(g.shape[-1]))
        return f - 0.5 * correction

    def _augmented(self, out, y, a):
        grads = vjp(out, (y, *self.params), a)
        pieces = [out.detach().reshape(-1), -grads[0].reshape(-1)]
        pieces.extend(-g.reshape(-1) for g in grads[1:])
        return torch.cat(pieces)

    def f(self, t, z):
        y, a, _ = self.unpack(z)
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            return self._augmented(self.stratonovich_drift(t, y), y, a)

    def g_prod(self, t, z, v):
        y, a, _ = self.unpack(z)
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            return self._augmented(self.base.g_prod(t, y, v), y, a)

    def g(self, t, z):
        raise RuntimeError("the adjoint SDE defines g_prod only; solve it with midpoint, heun or euler")

    def gdg_prod(self, t, z, v1, v2):
        raise RuntimeError("the adjoint SDE defines g_prod only; solve it with midpoint, heun or euler")
