"""Inpainting by replacement: the known region is overwritten by the forward-noised known data at every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

import torch

from ..diffusion.prediction import Prediction
from ..diffusion.samplers import sample
from ..diffusion.samplers.base import BrownianSource, SampleInfo, Sampler
from ..diffusion.samplers.registry import get_sampler
from ..diffusion.schedules import Schedule
from ..diffusion.timesteps import TimestepsLike
from ._checks import check_count, check_mask, check_schedule, check_state
from ._forward import Replacing, diffuse

__all__ = ["inpaint"]


@overload
def inpaint(model: Callable[..., torch.Tensor], schedule: Schedule, x_known: torch.Tensor, mask: torch.Tensor, *,
            solver: str | Sampler = ..., steps: int | None = ..., timesteps: TimestepsLike = ...,
            resample: int = ..., prediction: str | Prediction = ..., generator: torch.Generator | None = ...,
            bm: BrownianSource | None = ..., model_kwargs: dict[str, Any] | None = ...,
            time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., return_info: Literal[False] = ...
            ) -> torch.Tensor: ...


@overload
def inpaint(model: Callable[..., torch.Tensor], schedule: Schedule, x_known: torch.Tensor, mask: torch.Tensor, *,
            solver: str | Sampler = ..., steps: int | None = ..., timesteps: TimestepsLike = ...,
            resample: int = ..., prediction: str | Prediction = ..., generator: torch.Generator | None = ...,
            bm: BrownianSource | None = ..., model_kwargs: dict[str, Any] | None = ...,
            time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., return_info: Literal[True]
            ) -> tuple[torch.Tensor, SampleInfo]: ...


def inpaint(model: Callable[..., torch.Tensor], schedule: Schedule, x_known: torch.Tensor, mask: torch.Tensor, *,
            solver: str | Sampler = "sde-dpm++2m", steps: int | None = None, timesteps: TimestepsLike = None,
            resample: int = 1, prediction: str | Prediction = "eps", generator: torch.Generator | None = None,
            bm: BrownianSource | None = None, model_kwargs: dict[str, Any] | None = None,
            time_input: Callable[[torch.Tensor], torch.Tensor] | None = None, return_info: bool = False
            ) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
    r"""Fill in the region ``mask == 0`` of ``x_known`` by reverse sampling with replacement.

    Starting from the prior at the first grid time, after every sampler step to ``t`` the known region is
    set to a fresh draw of the forward marginal of the known data,

    .. math:: x_t \leftarrow m \odot \big(\alpha(t)\,x_{\text{known}} + \sigma(t)\,z\big) + (1 - m) \odot x_t,

    so the unknown coordinates follow the model's reverse dynamics driven by the known ones (Song et al.
    2021, "Score-Based Generative Modeling through SDEs", appendix I.2; the ODE version with a
    deterministic sampler is the usual baseline). With ``resample = r > 1`` every step is repeated ``r``
    times, carrying the replaced state back to the step's start by the forward transition in between
    (Lugmayr et al. 2022, "RePaint", CVPR); all ``r`` model calls count in the NFE. Nie et al. 2024
    ("The Blessing of Randomness", ICLR 2024, arXiv 2311.01410) compare the SDE and ODE versions at equal
    NFE. The returned sample holds ``x_known`` exactly on the known region.

    Arguments:
        model, schedule, solver, steps, timesteps, prediction, bm, model_kwargs, time_input: as
            :func:`~sdekit.diffusion.sample` (default solver ``"sde-dpm++2m"``; grid from ``t_max``).
        x_known: ``(batch, *event)`` data; its values on ``mask == 0`` are ignored (but must be finite).
        mask: ``(batch, *event)`` or ``(*event,)``, exactly 0 or 1 (or bool); 1 marks the known region.
        resample: rounds per step (``>= 1``; model calls ``resample * steps * nfe_per_step``).
        generator: seeds the prior, the known-region noise and the resampling (and, with ``bm=None``, the
            sampler noise).
        return_info: also return the :class:`~sdekit.diffusion.SampleInfo` (``info.nfe``).

    Returns:
        ``(batch, *event)``, or ``(x, info)``.

    Raises:
        ValueError naming ``mask`` (wrong shape, entries other than 0/1), ``resample``, ``x_known``.
    """
    check_schedule(schedule)
    check_state("x_known", x_known)
    m = check_mask(mask, x_known)
    rounds = check_count("resample", resample)
    inner = get_sampler(solver)
    known = torch.where(m.bool(), x_known, torch.zeros_like(x_known))

    def noised(k: int, t: float) -> torch.Tensor:
        return diffuse(schedule, known, t, generator)

    wrapped = Replacing(inner, m, noised, rounds=rounds, generator=generator)
    t_start = schedule.t_max
    if isinstance(timesteps, torch.Tensor):
        t_start = float(timesteps[0])
    elif isinstance(timesteps, (list, tuple)) and timesteps:
        t_start = float(timesteps[0])
    prior = schedule.prior_sample(tuple(x_known.shape), generator, dtype=x_known.dtype, device=x_known.device)
    x_T = torch.where(m.bool(), noised(0, t_start), prior)
    out = sample(model, schedule, x_T, solver=wrapped, steps=steps, timesteps=timesteps, prediction=prediction,
                 generator=generator, bm=bm, model_kwargs=model_kwargs, time_input=time_input, return_info=True)
    x, info = out
    x = torch.where(m.bool(), x_known, x)
    info.solver = inner
    return (x, info) if return_info else x
