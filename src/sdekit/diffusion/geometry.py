r"""The geometry of sampling trajectories (Chen, Zhou, Ye, Wang, Lyu, Chen, "A geometric perspective on
diffusion models", arXiv:2305.19947, 2023).

**Mean shift.** On a finite data set ``{y_i}`` the optimal denoiser of the smoothed marginal
``p_t = (1/n) sum_i N(alpha y_i, sigma^2 I)`` is

.. math:: D^*(x, t) = \sum_i \mathrm{softmax}_i\Big(-\frac{|x/\alpha - y_i|^2}{2 (\sigma/\alpha)^2}\Big) y_i
          = m_{\sigma/\alpha}(x / \alpha),

one step of Gaussian-kernel mean shift ``m_h(z) = sum_i K_h(z - y_i) y_i / sum_i K_h(z - y_i)`` from
``z = x / alpha`` with bandwidth ``h = sigma / alpha`` (:func:`mean_shift`; :class:`EmpiricalData` computes
the same thing with a streaming softmax). An Euler step of the probability-flow ODE in ``sigma`` (variance
exploding, ``alpha = 1``; DDIM is that step) from ``sigma`` to ``sigma'`` is
``x' = (sigma'/sigma) x + (1 - sigma'/sigma) m_sigma(x)``, a convex combination of the point and its
mean-shift image: sampling with the optimal denoiser is annealed mean shift with shrinking bandwidths
(:func:`annealed_mean_shift`), and it ends on a training point (memorisation).

**Denoising trajectory.** Beside the sampling trajectory ``x_{t_k}``, the denoiser's outputs
``D(x_{t_k}, t_k)`` form the denoising trajectory (``sample(..., return_denoised=True)`` returns both, in
``info.trajectory`` and ``info.denoised``). It reaches the neighbourhood of the final sample in fewer steps
(:func:`trajectory_convergence` measures both), which suggests stopping the ODE early and returning the
denoiser's output ("ODE-jump", :func:`ode_jump`). :func:`score_deviation` measures how far a trained model's
denoiser is from a reference one (e.g. the optimal denoiser of the training set) along a trajectory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._utils import check_tensor
from .oracles import EmpiricalData
from .prediction import Prediction, as_denoiser
from .samplers import SampleInfo, Sampler, sample
from .schedules import Schedule
from .timesteps import TimestepsLike, resolve_timesteps

__all__ = ["mean_shift", "annealed_mean_shift", "trajectory_convergence", "ode_jump", "score_deviation"]


def _check_points(x: torch.Tensor, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_tensor("data", data, min_dim=2, finite=True)
    check_tensor("x", x, min_dim=2, finite=True)
    if data.shape[0] < 1:
        raise ValueError("data must hold at least one point")
    if tuple(x.shape[1:]) != tuple(data.shape[1:]):
        raise ValueError(f"x must have shape (batch, *{tuple(data.shape[1:])}) like data, got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1), data.reshape(data.shape[0], -1).to(x.dtype)


def _check_bandwidth(bandwidth: float) -> float:
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0 \
            or bandwidth == float("inf"):
        raise ValueError(f"bandwidth must be a finite number > 0, got {bandwidth!r}")
    return float(bandwidth)


def mean_shift(x: torch.Tensor, data: torch.Tensor, bandwidth: float) -> torch.Tensor:
    r"""One step of Gaussian-kernel mean shift: ``m_h(x) = sum_i w_i y_i`` with
    ``w = softmax_i(-|x - y_i|^2 / (2 h^2))`` (computed from the squared distances directly, with a
    log-sum-exp; use float64 for small ``h``).

    Arguments:
        x: ``(batch, *event)`` query points.
        data: ``(n, *event)`` the data set ``{y_i}``.
        bandwidth: ``h > 0``.

    Returns:
        ``(batch, *event)`` in the dtype of ``x``.

    Raises:
        ValueError: shapes that do not match, non-finite input, ``bandwidth <= 0``.
    """
    h = _check_bandwidth(bandwidth)
    flat, y = _check_points(x, data)
    d2 = (flat[:, None, :] - y[None, :, :]).pow(2).sum(-1)                     # (batch, n)
    w = torch.softmax(-d2 / (2.0 * h * h), dim=1)
    return (w @ y).reshape(x.shape)


def annealed_mean_shift(x: torch.Tensor, data: torch.Tensor, bandwidths: torch.Tensor | list[float], *,
                        return_trajectory: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Mean shift with shrinking bandwidths ``h_0 > h_1 > ... > h_K``:
    ``x_{k+1} = (h_{k+1}/h_k) x_k + (1 - h_{k+1}/h_k) m_{h_k}(x_k)``, which is the Euler (= DDIM) step of the
    variance-exploding probability-flow ODE with the optimal denoiser of ``data`` on the grid
    ``sigma_k = h_k`` (module docstring).

    Arguments:
        x: ``(batch, *event)`` starting points (at bandwidth ``h_0``).
        data: ``(n, *event)``.
        bandwidths: strictly decreasing positive bandwidths (``h_K = 0`` is allowed: the last step then
            returns ``m_{h_{K-1}}``).
        return_trajectory: also return the ``(K + 1, batch, *event)`` iterates.

    Returns:
        the last iterate (and the trajectory).
    """
    flat, _ = _check_points(x, data)
    hs = torch.as_tensor(bandwidths, dtype=torch.float64).reshape(-1)
    if hs.numel() < 2 or not bool(torch.isfinite(hs).all()) or bool((hs[:-1] <= 0).any()) or hs[-1] < 0 \
            or not bool((hs.diff() < 0).all()):
        raise ValueError(f"bandwidths must be at least two strictly decreasing numbers, positive but the last "
                         f"(which may be 0), got {hs.tolist()}")
    out = [x]
    for h0, h1 in zip(hs[:-1].tolist(), hs[1:].tolist()):
        r = h1 / h0
        x = r * x + (1.0 - r) * mean_shift(x, data, h0)
        out.append(x)
    return (x, torch.stack(out)) if return_trajectory else x


def trajectory_convergence(trajectory: torch.Tensor, final: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mean distance to the final sample along a trajectory: ``mean_b |traj[k, b] - final[b]|`` for every
    ``k`` (Chen et al.'s measure of how fast the sampling and the denoising trajectory approach the
    sample).

    Arguments:
        trajectory: ``(steps + 1, batch, *event)`` (``info.trajectory`` or ``info.denoised`` of
            :func:`sdekit.diffusion.sample` with ``return_denoised=True``).
        final: ``(batch, *event)``; default the last entry of ``trajectory``.

    Returns:
        ``(steps + 1,)`` float64.
    """
    check_tensor("trajectory", trajectory, min_dim=3)
    final = trajectory[-1] if final is None else final
    if not isinstance(final, torch.Tensor) or tuple(final.shape) != tuple(trajectory.shape[1:]):
        raise ValueError(f"final must have shape {tuple(trajectory.shape[1:])} (one state of the trajectory), got "
                         f"{tuple(final.shape) if isinstance(final, torch.Tensor) else type(final).__name__}")
    diff = (trajectory - final[None]).reshape(trajectory.shape[0], trajectory.shape[1], -1).double()
    return diff.norm(dim=-1).mean(dim=1)


def ode_jump(model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *, steps: int,
             jump_after: int, solver: str | Sampler = "ddim", timesteps: TimestepsLike = None,
             prediction: str | Prediction = "eps", model_kwargs: dict[str, Any] | None = None,
             return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
    r"""ODE-jump (Chen et al. 2023, section 5): run ``solver`` over the first ``jump_after`` steps of a grid of
    ``steps`` steps, then return the denoiser's output ``D(x_{t_j}, t_j)`` at the time reached, i.e. jump
    onto the denoising trajectory instead of finishing the sampling one. Model calls: the sampler's for
    ``jump_after`` steps plus one.

    Arguments:
        model, schedule, x_T, solver, prediction, model_kwargs: as :func:`sdekit.diffusion.sample`.
        steps: the number of steps of the full grid (``timesteps``, default the schedule's grid).
        jump_after: the number of steps taken before the jump, ``1 <= jump_after <= steps``
            (``jump_after = steps`` is ``sample(..., denoise_final=True)``).
        return_info: also return the :class:`~sdekit.diffusion.SampleInfo` (its ``nfe`` includes the jump).

    Returns:
        ``(batch, *event)``, or ``(x, info)``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(jump_after, bool) or not isinstance(jump_after, int) or not 1 <= jump_after <= steps:
        raise ValueError(f"jump_after must be an int in 1 .. steps = {steps}, got {jump_after!r}")
    grid = resolve_timesteps(timesteps, schedule, steps)
    x, info = sample(model, schedule, x_T, solver=solver, timesteps=grid[: jump_after + 1], prediction=prediction,
                     model_kwargs=model_kwargs, denoise_final=True, return_info=True)
    return (x, info) if return_info else x


def score_deviation(model: Callable[..., torch.Tensor], reference: Callable[..., torch.Tensor] | EmpiricalData,
                    schedule: Schedule, x: torch.Tensor, t: float, *, prediction: str | Prediction = "eps",
                    reference_prediction: str | Prediction = "eps") -> torch.Tensor:
    r"""Per-sample distance ``|D_model(x, t) - D_ref(x, t)|`` between two denoisers at the same states (Chen et
    al.'s deviation of a trained model from the optimal denoiser of its training set, which is small at large
    noise and regime-dependent elsewhere).

    Arguments:
        model: a network or :class:`~sdekit.diffusion.Denoiser` (``prediction`` names its output).
        reference: another one, or an :class:`~sdekit.diffusion.EmpiricalData` (its optimal denoiser).
        schedule: the schedule both use. x: ``(batch, *event)`` states at time ``t``.
        t: the time.

    Returns:
        ``(batch,)`` distances.
    """
    check_tensor("x", x, min_dim=2, finite=True)
    den = as_denoiser(model, schedule, prediction)
    ref = reference.as_denoiser(schedule) if isinstance(reference, EmpiricalData) else \
        as_denoiser(reference, schedule, reference_prediction)
    return (den(x, t) - ref(x, t)).reshape(x.shape[0], -1).norm(dim=-1)
