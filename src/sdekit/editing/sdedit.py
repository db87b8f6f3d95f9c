"""SDEdit (Meng et al. 2022): noise a guide to an intermediate time, then run a reverse sampler from there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

import torch

from ..diffusion.prediction import Prediction
from ..diffusion.samplers import sample
from ..diffusion.samplers.base import BrownianSource, SampleInfo, Sampler
from ..diffusion.schedules import Schedule
from ..diffusion.timesteps import TimeGrid
from ._checks import check_schedule, check_state, check_time, grid_from
from ._forward import diffuse

__all__ = ["sdedit"]


@overload
def sdedit(model: Callable[..., torch.Tensor], schedule: Schedule, x_guide: torch.Tensor, t0: float, *,
           solver: str | Sampler = ..., steps: int, timesteps: str | TimeGrid | None = ...,
           t_end: float | None = ..., prediction: str | Prediction = ..., generator: torch.Generator | None = ...,
           bm: BrownianSource | None = ..., model_kwargs: dict[str, Any] | None = ...,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., denoise_final: bool = ...,
           return_info: Literal[False] = ..., return_trajectory: Literal[False] = ...
           ) -> torch.Tensor: ...


@overload
def sdedit(model: Callable[..., torch.Tensor], schedule: Schedule, x_guide: torch.Tensor, t0: float, *,
           solver: str | Sampler = ..., steps: int, timesteps: str | TimeGrid | None = ...,
           t_end: float | None = ..., prediction: str | Prediction = ..., generator: torch.Generator | None = ...,
           bm: BrownianSource | None = ..., model_kwargs: dict[str, Any] | None = ...,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., denoise_final: bool = ...,
           return_info: Literal[True], return_trajectory: bool = ...
           ) -> tuple[torch.Tensor, SampleInfo]: ...


@overload
def sdedit(model: Callable[..., torch.Tensor], schedule: Schedule, x_guide: torch.Tensor, t0: float, *,
           solver: str | Sampler = ..., steps: int, timesteps: str | TimeGrid | None = ...,
           t_end: float | None = ..., prediction: str | Prediction = ..., generator: torch.Generator | None = ...,
           bm: BrownianSource | None = ..., model_kwargs: dict[str, Any] | None = ...,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., denoise_final: bool = ...,
           return_info: bool = ..., return_trajectory: Literal[True]
           ) -> tuple[torch.Tensor, SampleInfo]: ...


@overload
def sdedit(model: Callable[..., torch.Tensor], schedule: Schedule, x_guide: torch.Tensor, t0: float, *,
           solver: str | Sampler = ..., steps: int, timesteps: str | TimeGrid | None = ...,
           t_end: float | None = ..., prediction: str | Prediction = ..., generator: torch.Generator | None = ...,
           bm: BrownianSource | None = ..., model_kwargs: dict[str, Any] | None = ...,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., denoise_final: bool = ...,
           return_info: bool = ..., return_trajectory: bool = ...
           ) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]: ...


def sdedit(model: Callable[..., torch.Tensor], schedule: Schedule, x_guide: torch.Tensor, t0: float, *,
           solver: str | Sampler = "sde-dpm++2m", steps: int, timesteps: str | TimeGrid | None = None,
           t_end: float | None = None, prediction: str | Prediction = "eps", generator: torch.Generator | None = None,
           bm: BrownianSource | None = None, model_kwargs: dict[str, Any] | None = None,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = None, denoise_final: bool = False,
           return_info: bool = False, return_trajectory: bool = False
           ) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
    r"""SDEdit: perturb a guide with the forward process to ``t0``, then reverse from ``t0``.

    .. math:: x_{t_0} = \alpha(t_0)\,x_{\text{guide}} + \sigma(t_0)\,z,\quad z \sim N(0, I),

    followed by any sampler of :data:`~sdekit.diffusion.SAMPLERS` on a grid from ``t0`` down to ``t_end``
    (:func:`sdekit.diffusion.sample`; a stochastic sampler gives SDEdit, a deterministic one the ODE
    baseline). Meng et al., "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential
    Equations", ICLR 2022 (arXiv 2108.01073). The edited start ``q_{t0}`` differs from the model's marginal
    ``p_{t0}``; Nie et al., "The Blessing of Randomness: SDE Beats ODE in General Diffusion-based Image
    Editing", ICLR 2024 (arXiv 2311.01410), show that ``KL(q_t || p_t)`` decreases toward ``t = 0`` under
    the reverse SDE and stays at its ``t0`` value under the probability-flow ODE
    (``benchmarks/methods/sde_editing.py`` measures both against the exact curve).

    Arguments:
        model: the network ``model(x, t, **model_kwargs)`` (its output named by ``prediction``) or a
            :class:`~sdekit.diffusion.Denoiser`.
        schedule: the :class:`~sdekit.diffusion.Schedule`.
        x_guide: the guide ``(batch, *event)`` (data space, time 0).
        t0: the edit time, in ``(t_min, t_max]``; larger means more realism, less faithfulness.
        solver: a sampler name or object (default ``"sde-dpm++2m"``).
        steps: number of grid steps from ``t0`` to ``t_end``.
        timesteps: a grid name or :class:`~sdekit.diffusion.TimeGrid` (default: the schedule's grid).
        t_end: where to stop (default ``t_min``), in ``[t_min, t0)``.
        prediction, bm, model_kwargs, time_input, denoise_final, return_info, return_trajectory: as
            :func:`~sdekit.diffusion.sample`.
        generator: seeds the forward noise and then the sampler noise (when ``bm`` is ``None``).

    Returns:
        the edit ``(batch, *event)``, or ``(x, info)`` with ``info.nfe`` the model calls.

    Raises:
        ValueError naming ``t0`` / ``t_end`` outside the schedule's interval; TypeError / ValueError from
        :func:`~sdekit.diffusion.sample` for the rest.
    """
    check_schedule(schedule)
    check_state("x_guide", x_guide)
    t0 = check_time("t0", t0, schedule)
    if t_end is not None:
        if isinstance(t_end, bool) or not isinstance(t_end, (int, float)) or not (schedule.t_min <= t_end < t0):
            raise ValueError(f"t_end must lie in [t_min, t0) = [{schedule.t_min}, {t0}); got t_end={t_end!r}")
    times = grid_from(schedule, timesteps, steps, t0, None if t_end is None else float(t_end))
    x_t0 = diffuse(schedule, x_guide, t0, generator)
    return sample(model, schedule, x_t0, solver=solver, timesteps=times, prediction=prediction,
                  generator=generator, bm=bm, model_kwargs=model_kwargs, time_input=time_input,
                  denoise_final=denoise_final, return_info=return_info, return_trajectory=return_trajectory)
