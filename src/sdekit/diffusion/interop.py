r"""Drive diffusers models with sdekit samplers (diffusers is an optional dependency, imported lazily).

A diffusers noise-prediction network (e.g. ``UNet2DModel``) is a discrete-time model: it was trained
on ``x_n = sqrt(abar_n) x_0 + sqrt(1 - abar_n) eps`` at integer steps ``n = 0..N-1`` with the
``alphas_cumprod`` ``abar`` of its scheduler, and it predicts what the scheduler's
``prediction_type`` names. :func:`from_diffusers` reads that scheduler and returns the pieces
:func:`~sdekit.diffusion.sample` needs: the network as ``model(x, t_in)``, the
:class:`~sdekit.diffusion.DiscreteVP` schedule (step ``n`` at ``t = (n + 1) / N``), the prediction
name and ``time_input = schedule.timestep`` (``t -> N t - 1``, the step index the network expects).

Example::

    model, schedule, prediction, time_input = from_diffusers(unet, scheduler)
    x_T = schedule.prior_sample((16, 3, 32, 32))
    x = sample(model, schedule, x_T, solver="dpm++2m", steps=20, prediction=prediction,
               time_input=time_input)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from .schedules import DiscreteVP

__all__ = ["from_diffusers", "DiffusersModel", "PREDICTION_TYPES"]

PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
"""diffusers' ``prediction_type`` -> sdekit's prediction name."""


def _require_diffusers() -> None:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise ImportError(
            "sdekit.diffusion.from_diffusers needs the optional dependency diffusers; install it with "
            "`pip install diffusers` (or `pip install sdekit[bench]`)"
        ) from None


class DiffusersModel(NamedTuple):
    """What :func:`from_diffusers` returns; unpacks as ``(model, schedule, prediction, time_input)``."""

    model: Callable[..., torch.Tensor]
    schedule: DiscreteVP
    prediction: str
    time_input: Callable[[torch.Tensor], torch.Tensor]


class _UNetCall:
    """``model(x, t_in, **model_kwargs)`` for a diffusers network: the ``sample`` field of its output,
    in the dtype of ``x``; the first ``C`` channels when the network also predicts a variance."""

    def __init__(self, net) -> None:
        self.net = net

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **model_kwargs) -> torch.Tensor:
        try:
            dtype = next(self.net.parameters()).dtype
        except (AttributeError, StopIteration):
            dtype = x.dtype
        out = self.net(x.to(dtype), t.to(dtype), return_dict=False, **model_kwargs)[0]
        if out.dim() == x.dim() and x.dim() >= 2 and out.shape[1] == 2 * x.shape[1]:
            out = out[:, : x.shape[1]]          # learned variance ("learned" / "learned_range"): keep the mean
        return out.to(x.dtype)

    def __repr__(self) -> str:
        return f"diffusers:{type(self.net).__name__}"


def _scheduler_from(scheduler_or_config: Any) -> Any:
    """A diffusers scheduler object from a scheduler or its config (dict / FrozenDict)."""
    _require_diffusers()
    if hasattr(scheduler_or_config, "alphas_cumprod") and hasattr(scheduler_or_config, "config"):
        return scheduler_or_config
    if isinstance(scheduler_or_config, dict):
        # DDPMScheduler computes alphas_cumprod from any beta_schedule / trained_betas of the config.
        # (from its module: pyright does not see the names diffusers' lazy top-level module exports)
        from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

        return DDPMScheduler.from_config(dict(scheduler_or_config))
    raise TypeError(
        "scheduler_config must be a diffusers scheduler (e.g. DDIMScheduler) or its config dict, got "
        f"{type(scheduler_or_config).__name__}"
    )


def from_diffusers(net: Callable[..., Any], scheduler_config: Any, *,
                   prediction_type: str | None = None) -> DiffusersModel:
    r"""The pieces to sample a diffusers network with sdekit samplers.

    Arguments:
        net: a diffusers network called as ``net(x, timestep, return_dict=False, **kwargs)`` (e.g.
            ``UNet2DModel``, ``UNet2DConditionModel`` with ``model_kwargs={"encoder_hidden_states": ...}``).
        scheduler_config: the scheduler the network was trained with, or its ``config``: its
            ``alphas_cumprod`` (from ``betas``, ``beta_schedule`` or ``trained_betas``) define the
            schedule and its ``prediction_type`` the prediction.
        prediction_type: override the config's (``"epsilon"``, ``"v_prediction"`` or ``"sample"``).

    Returns:
        :class:`DiffusersModel` ``(model, schedule, prediction, time_input)`` for
        ``sample(model, schedule, x_T, prediction=prediction, time_input=time_input)``.

    Raises:
        ImportError when diffusers is not installed; TypeError / ValueError for a network that is not
        callable, a config that is not a scheduler's or an unknown prediction type.
    """
    if not callable(net):
        raise TypeError(f"net must be a callable diffusers network, got {type(net).__name__}")
    scheduler = _scheduler_from(scheduler_config)
    kind = prediction_type or scheduler.config.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction_type {kind!r}; sdekit reads {sorted(PREDICTION_TYPES)}")
    schedule = DiscreteVP(torch.as_tensor(scheduler.alphas_cumprod).detach().to("cpu", torch.float64))
    return DiffusersModel(_UNetCall(net), schedule, PREDICTION_TYPES[kind], schedule.timestep)
