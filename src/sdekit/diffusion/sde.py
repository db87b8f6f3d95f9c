r"""The forward SDE, the reverse-time SDE and the probability-flow ODE of a schedule, as problems
for :func:`sdekit.sdeint` and :func:`sdekit.odeint`.

Song et al. 2021 ("Score-based generative modeling through SDEs", eqs. 5, 6 and 13): for the forward
SDE ``dx = f(t) x dt + g(t) dW`` with score ``s(x, t) = grad log p_t(x)``,

* reverse SDE: ``dx = [f(t) x - g(t)^2 s(x, t)] dt + g(t) dW`` run from ``t_max`` down to ``t_min``;
* probability-flow ODE: ``dx/dt = f(t) x - g(t)^2 s(x, t) / 2``.

With a denoiser ``D(x, t)`` (data prediction), ``s = (alpha D - x) / sigma^2`` and the ODE drift is the
flow-matching velocity ``u = alpha' D + sigma' (x - alpha D) / sigma``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._utils import broadcast_like
from .schedules import Schedule

__all__ = ["ForwardSDE", "ReverseSDE", "ProbabilityFlowODE"]


def _check_schedule(schedule) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
    return schedule


class ForwardSDE:
    """The forward SDE ``dx = f(t) x dt + g(t) dW`` of a schedule (diagonal noise, Ito), for
    :func:`sdekit.sdeint`: starting from ``x_s ~ N(alpha(s) x_0, sigma(s)^2 I)`` its solution at ``t``
    is ``N(alpha(t) x_0, sigma(t)^2 I)``. The state may have any shape.

    Arguments:
        schedule: a :class:`~sdekit.diffusion.Schedule`.
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = _check_schedule(schedule)

    def f(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return broadcast_like(self.schedule.f(t), y) * y

    def g(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return broadcast_like(self.schedule.g(t), y).expand_as(y)


class ReverseSDE:
    """The reverse-time SDE ``dx = [f x - g^2 score] dt + g dW`` of a schedule for a denoiser ``D``,
    with ``score = (alpha D(x, t) - x) / sigma^2``; integrate it with :func:`sdekit.sdeint` on
    decreasing ``ts`` (diagonal noise, Ito).

    Arguments:
        denoiser: a callable ``D(x, t)`` returning the data prediction (e.g. from
            :func:`~sdekit.diffusion.as_denoiser` or an oracle's ``as_denoiser``).
        schedule: the :class:`~sdekit.diffusion.Schedule`.
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, denoiser: Callable[[torch.Tensor, Any], torch.Tensor], schedule: Schedule) -> None:
        if not callable(denoiser):
            raise TypeError(f"denoiser must be a callable D(x, t), got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.schedule = _check_schedule(schedule)

    def f(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = self.schedule
        d = self.denoiser(y, t)
        score = (broadcast_like(s.alpha(t), y) * d - y) / broadcast_like(s.sigma(t) ** 2, y)
        return broadcast_like(s.f(t), y) * y - broadcast_like(s.g2(t), y) * score

    def g(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return broadcast_like(self.schedule.g(t), y).expand_as(y)


class ProbabilityFlowODE:
    r"""The probability-flow ODE of a schedule for a denoiser ``D``, a callable ``f(t, x)`` for
    :func:`sdekit.odeint`:

    .. math:: \frac{dx}{dt} = f x - \tfrac12 g^2 \nabla\log p_t
              = \frac{\sigma'}{\sigma} x + \Big(\alpha' - \frac{\sigma'\alpha}{\sigma}\Big) D(x, t),

    the second form (the velocity ``alpha' D + sigma' eps_hat``) stays finite where ``alpha = 0``
    (e.g. :class:`~sdekit.diffusion.LinearFlow` at ``t = 1``). Karras et al. 2022 eq. 4 is the
    ``alpha = 1, sigma = t`` case ``dx/dt = (x - D) / t``.

    Arguments:
        denoiser: a callable ``D(x, t)`` (data prediction).
        schedule: the :class:`~sdekit.diffusion.Schedule`.
    """

    def __init__(self, denoiser: Callable[[torch.Tensor, Any], torch.Tensor], schedule: Schedule) -> None:
        if not callable(denoiser):
            raise TypeError(f"denoiser must be a callable D(x, t), got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.schedule = _check_schedule(schedule)

    def __call__(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s = self.schedule
        sigma = s.sigma(t)
        rate = s.d_sigma(t) / sigma
        c_x = broadcast_like(rate, x)
        c_d = broadcast_like(s.d_alpha(t) - rate * s.alpha(t), x)
        return c_x * x + c_d * self.denoiser(x, t)
