r"""The probability-flow ODE through the core ODE solvers (Song et al. 2021, eq. 13)."""

from __future__ import annotations

from typing import Any

import torch

from ...core.integrate import odeint
from ...core.solvers import ode_solver
from .._utils import check_real
from ..sde import ProbabilityFlowODE
from .base import Sampler, SamplerContext, schedule_point


class PFODE(Sampler):
    r"""Solve the probability-flow ODE ``dx/dt = f x - g^2 score / 2`` (see
    :class:`~sdekit.diffusion.ProbabilityFlowODE`) between consecutive grid times with a core ODE
    method.

    * Adaptive methods (``dopri5``, ``tsit5``, ``bosh3``, ``heun``): each grid interval is one
      :func:`sdekit.odeint` call with error control ``rtol``, ``atol``; ``nfe_per_step`` is ``None`` and
      the model calls are counted. With ``steps=None``, :func:`~sdekit.diffusion.sample` uses the single
      interval ``[t_max, t_min]``.
    * Fixed-step methods (``euler``, ``midpoint``, ``rk4`` or any Butcher tableau): one step of the
      method per grid interval, ``nfe_per_step`` = its number of stages, ``order`` = its order.

    The drift ``sigma'/sigma (x - alpha D) + alpha' D`` is ``0/0`` where ``sigma = 0`` (``t = 0`` of
    :class:`~sdekit.diffusion.VP`, :class:`~sdekit.diffusion.CosineVP`, ... with ``t_min=0``): a grid
    ending there is refused (ValueError) for methods that evaluate the drift at the end of a step
    (adaptive ones, ``rk4``, ...); ``euler`` and ``midpoint`` never do, and the exponential-integrator
    samplers (``ddim``, ``dpm++2m``, ...) step onto ``sigma = 0`` exactly.

    Arguments:
        method: a core ODE method name, :class:`~sdekit.core.solvers.ButcherTableau` or
            :class:`~sdekit.core.solvers.ODESolver` (default ``"dopri5"``).
        rtol, atol: tolerances of adaptive methods (default ``1e-5``).
    """

    name = "ode"

    def __init__(self, method="dopri5", *, rtol: float = 1e-5, atol: float = 1e-5) -> None:
        self.solver = ode_solver(method)
        self.method = method
        self.rtol = check_real("rtol", rtol, positive=True)
        self.atol = check_real("atol", atol, positive=True)
        self.order = float(self.solver.order)
        tableau = getattr(self.solver, "tableau", None)
        self.nfe_per_step = None if self.solver.adaptive or tableau is None else len(tableau.b)

    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        tableau = getattr(self.solver, "tableau", None)
        at_end = self.solver.adaptive or tableau is None or any(c == 1.0 for c in tableau.c)
        t_last = ctx.times[-1]
        if at_end and schedule_point(ctx.schedule, t_last).sigma == 0.0:
            raise ValueError(
                f"PFODE(method={self.solver.name!r}) evaluates the probability-flow drift at the end of a step, "
                f"and the grid ends at t={t_last}, where sigma = 0 and the drift is 0/0; end the grid at a "
                f"time with sigma > 0 (the schedule's t_min > 0), or use PFODE(method='euler' or 'midpoint') "
                "or an exponential-integrator sampler ('ddim', 'dpm++2m', ...), which step onto sigma = 0"
            )
        return ()

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        drift = ProbabilityFlowODE(ctx.denoiser, ctx.schedule)
        if self.solver.adaptive:
            return odeint(drift, x, [t0, t1], method=self.solver, rtol=self.rtol, atol=self.atol)[-1], state
        x1, _, _ = self.solver.step(drift, t0, t1, x, ())
        return x1, state

    def __repr__(self) -> str:
        return f"PFODE(method={self.solver.name!r}, rtol={self.rtol}, atol={self.atol})"
