r"""Training losses as small callables: denoising score matching and flow matching.

Denoising score matching (Vincent 2011; Ho et al. 2020; Song et al. 2021; Karras et al. 2022): draw
``t`` and ``eps``, form ``x_t = alpha x_0 + sigma eps`` and regress the network output on the target
of its parameterisation (:mod:`~sdekit.diffusion.prediction`). Every parameterisation's error is a
rescaled denoiser error, ``D - x_0 = c(t) (out - target)``, so a weighting is stated once on the
denoiser error and means the same objective whatever the network predicts:

.. math:: L = E_{t, x_0, \epsilon}\Big[\, w(t)\, \tfrac1d \|D(x_t, t) - x_0\|^2 \Big]
            = E\Big[\, w(t)\, c(t)^2\, \tfrac1d \|\mathrm{out} - \mathrm{target}\|^2 \Big].

``weighting=None`` (the default) is the plain mean-squared error on the prediction's own target
(``w = 1 / c^2``; DDPM's ``L_simple`` for ``"eps"``). The minimiser is ``D = E[x_0 | x_t]`` for every
positive weighting, and the minimum at time ``t`` is ``w(t) tr Cov[x_0 | x_t] / d``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import torch

from ._utils import as_time, broadcast_like, check_real, check_tensor, resolve_name
from .prediction import Prediction, _check_model_kwargs, evaluate_model, get_prediction
from .schedules import LinearFlow, Schedule

__all__ = [
    "Weighting", "X0Weighting", "SNRWeighting", "VWeighting", "ScoreWeighting", "LikelihoodWeighting",
    "EDMWeighting",
    "MinSNRWeighting", "WEIGHTINGS", "get_weighting", "TimeSampling", "UniformTimeSampling",
    "LogNormalSampling", "TIME_SAMPLINGS", "get_time_sampling", "DenoisingScoreMatching", "FlowMatchingLoss",
]


# ------------------------------------------------------------------------------------------------
# Weightings: w(t) on the mean squared denoiser error
# ------------------------------------------------------------------------------------------------
class Weighting:
    """A weight ``w(t)`` on ``|D - x_0|^2 / d``: ``weighting(t, schedule)`` -> tensor shaped like ``t``."""

    def __call__(self, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class X0Weighting(Weighting):
    """``w = 1``: plain mean-squared error of the data prediction."""

    def __call__(self, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return torch.ones_like(as_time(t))


class SNRWeighting(Weighting):
    """``w = alpha^2 / sigma^2`` (the SNR): equal to the plain MSE on ``eps`` (DDPM's ``L_simple``)."""

    def __call__(self, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return torch.exp(2.0 * schedule.log_snr(t))


class VWeighting(Weighting):
    """``w = (alpha^2 + sigma^2)^2 / sigma^2``: equal to the plain MSE on ``v`` (``SNR + 1`` for VP)."""

    def __call__(self, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        a, s = schedule.alpha(t), schedule.sigma(t)
        return (a * a + s * s) ** 2 / (s * s)


class ScoreWeighting(Weighting):
    """``w = alpha^2 / sigma^4``: equal to the plain MSE on the score."""

    def __call__(self, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return schedule.alpha(t) ** 2 / schedule.sigma(t) ** 4


class LikelihoodWeighting(Weighting):
    """``w = g(t)^2 alpha^2 / sigma^4``: the maximum-likelihood weighting ``lambda(t) = g(t)^2`` on the
    score error (Song, Durkan, Murray & Ermon 2021, "Maximum likelihood training of score-based
    diffusion models", Theorem 1)."""

    def __call__(self, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return schedule.g2(t) * schedule.alpha(t) ** 2 / schedule.sigma(t) ** 4


class EDMWeighting(Weighting):
    """``w = (sigma~^2 + sigma_data^2) / (sigma~ sigma_data)^2`` with ``sigma~ = sigma / alpha``
    (Karras et al. 2022, Table 1, ``lambda(sigma)``): unit weight on EDM's preconditioned network.

    Arguments:
        sigma_data: standard deviation of the data (default 0.5).
    """

    def __init__(self, sigma_data: float = 0.5) -> None:
        self.sigma_data = check_real("sigma_data", sigma_data, positive=True)

    def __call__(self, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        st = schedule.sigma_tilde(t)
        sd = self.sigma_data
        return (st * st + sd * sd) / (st * sd) ** 2

    def __repr__(self) -> str:
        return f"EDMWeighting(sigma_data={self.sigma_data})"


class MinSNRWeighting(Weighting):
    """``w = min(SNR, gamma)`` (Hang et al. 2023, "Efficient diffusion training via Min-SNR weighting").

    Arguments:
        gamma: the clip (default 5).
    """

    def __init__(self, gamma: float = 5.0) -> None:
        self.gamma = check_real("gamma", gamma, positive=True)

    def __call__(self, t: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return torch.exp(2.0 * schedule.log_snr(t)).clamp(max=self.gamma)

    def __repr__(self) -> str:
        return f"MinSNRWeighting(gamma={self.gamma})"


WEIGHTINGS = {
    "x0": X0Weighting,
    "snr": SNRWeighting,
    "eps": SNRWeighting,
    "v": VWeighting,
    "score": ScoreWeighting,
    "likelihood": LikelihoodWeighting,
    "edm": EDMWeighting,
    "min-snr": MinSNRWeighting,
}


#: a loss weighting: a :class:`Weighting` or any callable ``w(t, schedule)`` -> weights of the shape of ``t``
WeightFunction: TypeAlias = Callable[[torch.Tensor, Schedule], torch.Tensor]


def get_weighting(weighting: str | WeightFunction | None) -> WeightFunction | None:
    """Resolve a weighting name (see :data:`WEIGHTINGS`), ``None`` (the prediction's plain MSE), a
    :class:`Weighting` or a callable ``w(t, schedule)``."""
    if weighting is None:
        return None
    resolved = resolve_name(weighting, WEIGHTINGS, Weighting, "weighting",
                            ", None, or pass a callable w(t, schedule)")
    if resolved is not None:
        return resolved
    if callable(weighting):
        return weighting
    raise TypeError(f"weighting must be None, a name or a callable w(t, schedule), got "
                    f"{type(weighting).__name__}")


# ------------------------------------------------------------------------------------------------
# Time sampling
# ------------------------------------------------------------------------------------------------
class TimeSampling:
    """Draws training times: ``sampling(batch, schedule, generator, dtype, device)`` -> ``(batch,)``."""

    def __call__(self, batch: int, schedule: Schedule, generator: torch.Generator | None, dtype: torch.dtype,
                 device: torch.device | str) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UniformTimeSampling(TimeSampling):
    """``t ~ U[t_min, t_max]`` (Song et al. 2021)."""

    def __call__(self, batch: int, schedule: Schedule, generator: torch.Generator | None, dtype: torch.dtype,
                 device: torch.device | str) -> torch.Tensor:
        u = torch.rand(batch, generator=generator, dtype=torch.float64, device=_gen_device(generator, device))
        return (schedule.t_min + (schedule.t_max - schedule.t_min) * u).to(dtype=dtype, device=device)


class LogNormalSampling(TimeSampling):
    """EDM's noise distribution, ``ln sigma~ ~ N(p_mean, p_std^2)`` (Karras et al. 2022, Table 1),
    on the schedule-independent noise level ``sigma~ = sigma / alpha = exp(-lambda)``; ``t`` is then
    ``t_of_log_snr(-ln sigma~)`` clamped to ``[t_min, t_max]``. The same noise levels are drawn under
    any schedule, whatever the preconditioning.

    Arguments:
        p_mean, p_std: mean and standard deviation of ``ln sigma~`` (default -1.2, 1.2).
    """

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        self.p_mean = check_real("p_mean", p_mean)
        self.p_std = check_real("p_std", p_std, positive=True)

    def __call__(self, batch: int, schedule: Schedule, generator: torch.Generator | None, dtype: torch.dtype,
                 device: torch.device | str) -> torch.Tensor:
        dev = _gen_device(generator, device)
        z = torch.randn(batch, generator=generator, dtype=torch.float64, device=dev)
        log_sigma = self.p_mean + self.p_std * z
        t = schedule.t_of_log_snr(-log_sigma).clamp(schedule.t_min, schedule.t_max)
        return t.to(dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"LogNormalSampling(p_mean={self.p_mean}, p_std={self.p_std})"


TIME_SAMPLINGS = {"uniform": UniformTimeSampling, "lognormal": LogNormalSampling}


def get_time_sampling(time_sampling: str | TimeSampling) -> TimeSampling:
    """Resolve a name (``"uniform"``, ``"lognormal"``) or pass a :class:`TimeSampling` through."""
    resolved = resolve_name(time_sampling, TIME_SAMPLINGS, TimeSampling, "time_sampling",
                            " or pass a TimeSampling object")
    if resolved is not None:
        return resolved
    raise TypeError(f"time_sampling must be a name or a TimeSampling, got {type(time_sampling).__name__}")


def _gen_device(generator, device):
    return generator.device if generator is not None else device


# ------------------------------------------------------------------------------------------------
# The losses
# ------------------------------------------------------------------------------------------------
class DenoisingScoreMatching:
    r"""Denoising score matching with any parameterisation, weighting and time distribution.

    .. math:: L = E_{t, x_0, \epsilon}\big[ w(t)\, c(t)^2\, \tfrac1d\|F(x_t, t) - \mathrm{target}\|^2 \big],
              \qquad x_t = \alpha(t) x_0 + \sigma(t) \epsilon,

    where ``F`` is the network, ``target`` its parameterisation's target and ``c`` the factor with
    ``D - x_0 = c (F - target)`` (see the module docstring). EDM's loss (Karras et al. 2022, eq. 2 and
    Table 1) is ``DenoisingScoreMatching(EDM(), prediction="edm", weighting="edm",
    time_sampling="lognormal")``, see :meth:`edm`.

    Arguments:
        schedule: the :class:`~sdekit.diffusion.Schedule`.
        prediction: what the network predicts (name or Prediction object; default ``"eps"``).
        weighting: ``None`` (plain MSE on the target), a name in :data:`WEIGHTINGS` or a callable
            ``w(t, schedule)`` on the denoiser error.
        time_sampling: ``"uniform"`` (default), ``"lognormal"`` or a :class:`TimeSampling`.
        time_input: optional map of the time before it reaches the network (as in
            :class:`~sdekit.diffusion.Denoiser`).

    Call:
        ``loss(model, x0, generator=None, model_kwargs=None)`` -> scalar (mean over the batch);
        :meth:`per_sample` gives the ``(batch,)`` losses and accepts fixed ``t`` and ``noise``.
    """

    def __init__(self, schedule: Schedule, prediction: str | Prediction = "eps",
                 weighting: str | WeightFunction | None = None, time_sampling: str | TimeSampling = "uniform", *,
                 time_input: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
        if time_input is not None and not callable(time_input):
            raise TypeError(f"time_input must be a callable or None, got {type(time_input).__name__}")
        self.schedule = schedule
        self.prediction = get_prediction(prediction)
        self.weighting = get_weighting(weighting)
        self.time_sampling = get_time_sampling(time_sampling)
        self.time_input = time_input

    @classmethod
    def edm(cls, schedule: Schedule | None = None, sigma_data: float = 0.5, p_mean: float = -1.2,
            p_std: float = 1.2) -> DenoisingScoreMatching:
        """EDM's training loss (Karras et al. 2022, section 5): preconditioned network, ``lambda(sigma)``
        weighting and log-normal noise levels; ``schedule`` defaults to :class:`~sdekit.diffusion.EDM`."""
        from .prediction import EDMPrediction
        from .schedules import EDM

        schedule = EDM() if schedule is None else schedule
        return cls(schedule, EDMPrediction(sigma_data), EDMWeighting(sigma_data),
                   LogNormalSampling(p_mean, p_std))

    def per_sample(self, model: Callable[..., torch.Tensor], x0: torch.Tensor, *,
                   t: float | torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None,
                   model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        """Per-sample losses ``(batch,)``.

        Arguments:
            model: the network ``model(x, t, **model_kwargs)``.
            x0: data ``(batch, *event)``.
            t: training times (float, 0-d or ``(batch,)``); ``None`` draws them from ``time_sampling``.
            noise: ``eps`` of the shape of ``x0``; ``None`` draws it.
            generator: a ``torch.Generator`` for the draws.
            model_kwargs: keyword arguments for the model (a dict).
        """
        check_tensor("x0", x0, min_dim=1)
        model_kwargs = _check_model_kwargs(model_kwargs)
        batch = x0.shape[0]
        if t is None:
            t = self.time_sampling(batch, self.schedule, generator, x0.dtype, x0.device)
        else:
            t = as_time(t)
            if t.dim() == 1 and t.shape[0] != batch:
                raise ValueError(f"t has {t.shape[0]} per-sample times but x0 has batch size {batch}")
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype,
                                device=_gen_device(generator, x0.device)).to(x0.device)
        elif not isinstance(noise, torch.Tensor) or noise.shape != x0.shape:
            raise ValueError(f"noise must be a tensor of the shape of x0, {tuple(x0.shape)}")
        s = self.schedule
        x_t, x0_target, noise_target = self.perturb(x0, noise, t)
        out = evaluate_model(model, self.prediction, x_t, t, s, model_kwargs, self.time_input)
        target = self.prediction.target(x0_target, noise_target, x_t, t, s)
        err = (out - target).pow(2).reshape(batch, -1).mean(1)
        if self.weighting is None:
            return err
        w = self.weighting(t, s) * self.prediction.x0_error_scale(t, s) ** 2
        return broadcast_like(w, err) * err

    def perturb(self, x0: torch.Tensor, noise: torch.Tensor,
                t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""The noisy state and the pair the network's target is built from: ``(x_t, x0_target, noise_target)``
        with ``x_t = alpha x0_target + sigma noise_target``. Here ``x_t = alpha x_0 + sigma eps`` and the
        pair is ``(x_0, eps)``. A forward process with another transition kernel overrides this: e.g. the
        reflected diffusion of :class:`sdekit.domains.ReflectedScoreMatching` returns
        ``noise_target = -sigma grad log p(x_t | x_0)`` (the kernel's score in eps units) and the matching
        ``x0_target``, so every parameterisation regresses the kernel's score.

        Arguments:
            x0: data ``(batch, *event)``; noise: ``eps`` of its shape; t: ``(batch,)`` or 0-d times.
        """
        s = self.schedule
        x_t = broadcast_like(s.alpha(t), x0) * x0 + broadcast_like(s.sigma(t), x0) * noise
        return x_t, x0, noise

    def __call__(self, model: Callable[..., torch.Tensor], x0: torch.Tensor,
                 generator: torch.Generator | None = None,
                 model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        return self.per_sample(model, x0, generator=generator, model_kwargs=model_kwargs).mean()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.schedule!r}, prediction={self.prediction!r}, "
                f"weighting={self.weighting!r}, time_sampling={self.time_sampling!r})")


class FlowMatchingLoss(DenoisingScoreMatching):
    r"""Conditional flow matching (Lipman et al. 2023, "Flow matching for generative modeling", eq. 9;
    Liu et al. 2023, rectified flow): regress the velocity ``u_t = alpha' x_0 + sigma' eps`` of the
    interpolant ``x_t = alpha x_0 + sigma eps``, ``t ~ U[t_min, t_max]``:

    .. math:: L = E\big[\tfrac1d\|v_\theta(x_t, t) - (\epsilon - x_0)\|^2\big]
              \quad\text{for } \alpha = 1 - t,\ \sigma = t.

    Arguments:
        schedule: the interpolant (default :class:`~sdekit.diffusion.LinearFlow`).
        time_sampling: ``"uniform"`` (default) or a :class:`TimeSampling`.
    """

    def __init__(self, schedule: Schedule | None = None, time_sampling: str | TimeSampling = "uniform", *,
                 time_input: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__(LinearFlow() if schedule is None else schedule, "velocity", None, time_sampling,
                         time_input=time_input)

