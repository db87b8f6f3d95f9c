r"""What a network predicts, and the one model contract inside samplers: the denoiser ``D(x, t)``.

With ``x = alpha x_0 + sigma eps`` (coefficients at time ``t`` of a
:class:`~sdekit.diffusion.Schedule`), a network may predict

==============  ===========================================  =========================================
prediction      network output                               data prediction ``D``
==============  ===========================================  =========================================
``x0``          ``x_0``                                      ``out``
``eps``         ``eps``  (Ho et al. 2020)                    ``(x - sigma out) / alpha``
``v``           ``alpha eps - sigma x_0``  (Salimans & Ho    ``(alpha x - sigma out) / (alpha^2 + sigma^2)``
                2022)
``score``       ``grad log p_t = -eps / sigma``  (Song       ``(x + sigma^2 out) / alpha``
                et al. 2021)
``velocity``    ``alpha' x_0 + sigma' eps``  (Lipman et al.  ``(sigma' x - sigma out) /
                2023, flow matching)                         (sigma' alpha - sigma alpha')``
``karras``      ``D(x / alpha, sigma / alpha)``, a           ``out``
                k-diffusion style denoiser of ``sigma``
``edm``         ``F`` of EDM's preconditioning (Karras et    ``c_skip x~ + c_out F(c_in x~, c_noise)``
                al. 2022, Table 1), ``x~ = x / alpha``
==============  ===========================================  =========================================

Each prediction is a small object (:class:`Prediction`) that maps a network's output to ``D`` and
back, gives the regression target for training and the factor ``c`` with
``D - x_0 = c (out - target)`` (used to express every loss weighting on the denoiser's error).
Samplers only ever see ``D(x, t)``: :class:`Denoiser` wraps a network, given its prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._utils import as_time, batch_time, broadcast_like, check_real, resolve_name
from .schedules import Schedule

__all__ = [
    "Prediction", "X0Prediction", "EpsPrediction", "VPrediction", "ScorePrediction", "VelocityPrediction",
    "KarrasPrediction", "EDMPrediction", "PREDICTIONS", "get_prediction", "Denoiser", "as_denoiser",
    "convert", "x0_from_eps", "eps_from_x0", "x0_from_score", "score_from_x0", "x0_from_v", "v_from_x0",
    "x0_from_velocity", "velocity_from_x0", "eps_from_score", "score_from_eps",
]


def _coef(fn, t: float | torch.Tensor, x: torch.Tensor):
    return broadcast_like(fn(t), x)


class Prediction:
    """Base class of network parameterisations.

    Methods (``x: (batch, *event)``, ``t`` a 0-d or ``(batch,)`` tensor):
        model_inputs(x, t, schedule): ``(x_in, t_in)`` the network is called with (``t_in``:
            ``(batch,)``).
        to_x0(out, x, t, schedule): the data prediction ``D`` from the network output.
        from_x0(x0, x, t, schedule): the output that corresponds to the data prediction ``x0``.
        target(x0, noise, x, t, schedule): the regression target when ``x = alpha x0 + sigma noise``.
        x0_error_scale(t, schedule): ``c`` with ``D - x0 = c (out - target)``.
    """

    name: str = ""

    def model_inputs(self, x: torch.Tensor, t: float | torch.Tensor,
                     schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
        return x, batch_time(t, x)

    def to_x0(self, out: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        raise NotImplementedError

    def from_x0(self, x0: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        raise NotImplementedError

    def target(self, x0: torch.Tensor, noise: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor,
               schedule: Schedule) -> torch.Tensor:
        raise NotImplementedError

    def x0_error_scale(self, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class X0Prediction(Prediction):
    """The network predicts the data ``x_0`` directly: ``D = out``."""

    name = "x0"

    def to_x0(self, out: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return out

    def from_x0(self, x0: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return x0

    def target(self, x0: torch.Tensor, noise: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor,
               schedule: Schedule) -> torch.Tensor:
        return x0

    def x0_error_scale(self, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return torch.ones_like(as_time(t))


class EpsPrediction(Prediction):
    """The network predicts the noise ``eps`` (Ho et al. 2020): ``D = (x - sigma out) / alpha``."""

    name = "eps"

    def to_x0(self, out: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return (x - _coef(schedule.sigma, t, x) * out) / _coef(schedule.alpha, t, x)

    def from_x0(self, x0: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return (x - _coef(schedule.alpha, t, x) * x0) / _coef(schedule.sigma, t, x)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor,
               schedule: Schedule) -> torch.Tensor:
        return noise

    def x0_error_scale(self, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return -schedule.sigma(t) / schedule.alpha(t)


class VPrediction(Prediction):
    """The network predicts ``v = alpha eps - sigma x_0`` (Salimans & Ho 2022, "Progressive
    distillation", appendix D): ``D = (alpha x - sigma v) / (alpha^2 + sigma^2)`` (for any schedule;
    the denominator is 1 for variance-preserving ones)."""

    name = "v"

    def to_x0(self, out: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        a, s = _coef(schedule.alpha, t, x), _coef(schedule.sigma, t, x)
        return (a * x - s * out) / (a * a + s * s)

    def from_x0(self, x0: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        a, s = _coef(schedule.alpha, t, x), _coef(schedule.sigma, t, x)
        return a * (x - a * x0) / s - s * x0

    def target(self, x0: torch.Tensor, noise: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor,
               schedule: Schedule) -> torch.Tensor:
        a, s = _coef(schedule.alpha, t, x), _coef(schedule.sigma, t, x)
        return a * noise - s * x0

    def x0_error_scale(self, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        a, s = schedule.alpha(t), schedule.sigma(t)
        return -s / (a * a + s * s)


class ScorePrediction(Prediction):
    """The network predicts the score ``grad log p_t(x) = -eps / sigma`` (Song et al. 2021):
    ``D = (x + sigma^2 out) / alpha``."""

    name = "score"

    def to_x0(self, out: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return (x + _coef(schedule.sigma, t, x) ** 2 * out) / _coef(schedule.alpha, t, x)

    def from_x0(self, x0: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return (_coef(schedule.alpha, t, x) * x0 - x) / _coef(schedule.sigma, t, x) ** 2

    def target(self, x0: torch.Tensor, noise: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor,
               schedule: Schedule) -> torch.Tensor:
        return -noise / _coef(schedule.sigma, t, x)

    def x0_error_scale(self, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return schedule.sigma(t) ** 2 / schedule.alpha(t)


class VelocityPrediction(Prediction):
    """The network predicts the conditional velocity ``u = alpha' x_0 + sigma' eps`` of flow matching
    (Lipman et al. 2023; for :class:`~sdekit.diffusion.LinearFlow` ``u = eps - x_0``), whose conditional
    mean is the probability-flow ODE drift: ``D = (sigma' x - sigma u) / (sigma' alpha - sigma alpha')``."""

    name = "velocity"

    def to_x0(self, out: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        a, s = _coef(schedule.alpha, t, x), _coef(schedule.sigma, t, x)
        da, ds = _coef(schedule.d_alpha, t, x), _coef(schedule.d_sigma, t, x)
        return (ds * x - s * out) / (ds * a - s * da)

    def from_x0(self, x0: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        a, s = _coef(schedule.alpha, t, x), _coef(schedule.sigma, t, x)
        da, ds = _coef(schedule.d_alpha, t, x), _coef(schedule.d_sigma, t, x)
        return da * x0 + ds * (x - a * x0) / s

    def target(self, x0: torch.Tensor, noise: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor,
               schedule: Schedule) -> torch.Tensor:
        return _coef(schedule.d_alpha, t, x) * x0 + _coef(schedule.d_sigma, t, x) * noise

    def x0_error_scale(self, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        a, s = schedule.alpha(t), schedule.sigma(t)
        return -s / (schedule.d_sigma(t) * a - s * schedule.d_alpha(t))


class KarrasPrediction(X0Prediction):
    """A k-diffusion style denoiser ``D~(x~, sigma~)`` of the variance-exploding form: it is called
    with the scaled state ``x~ = x / alpha`` and ``sigma~ = sigma / alpha`` (Karras et al. 2022, eq. 4:
    ``x / alpha = x_0 + (sigma / alpha) eps``) and returns the data prediction. For VE and EDM
    schedules ``alpha = 1`` and it gets ``(x, sigma)``."""

    name = "karras"

    def model_inputs(self, x: torch.Tensor, t: float | torch.Tensor,
                     schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
        return x / _coef(schedule.alpha, t, x), batch_time(schedule.sigma_tilde(t), x, "sigma")


class EDMPrediction(Prediction):
    r"""The raw network ``F`` of EDM's preconditioning (Karras et al. 2022, Table 1 and eq. 7), on the
    scaled state ``x~ = x / alpha`` with ``sigma~ = sigma / alpha``:

    .. math:: D = c_{skip} x~ + c_{out} F(c_{in} x~, c_{noise}),\quad
              c_{skip} = \frac{\sigma_d^2}{\sigma~^2 + \sigma_d^2},\
              c_{out} = \frac{\sigma~ \sigma_d}{\sqrt{\sigma~^2 + \sigma_d^2}},\
              c_{in} = \frac{1}{\sqrt{\sigma~^2 + \sigma_d^2}},\ c_{noise} = \tfrac14 \ln\sigma~.

    With the weighting ``"edm"`` the training target of ``F`` has unit weight.

    Arguments:
        sigma_data: standard deviation of the data (default 0.5).
    """

    name = "edm"

    def __init__(self, sigma_data: float = 0.5) -> None:
        self.sigma_data = check_real("sigma_data", sigma_data, positive=True)

    def _scaled(self, t: float | torch.Tensor, schedule: Schedule):
        st = schedule.sigma_tilde(t)
        sd = self.sigma_data
        norm = torch.sqrt(st * st + sd * sd)
        return st, sd * sd / (st * st + sd * sd), st * sd / norm, 1.0 / norm

    def model_inputs(self, x: torch.Tensor, t: float | torch.Tensor,
                     schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor]:
        st, _, _, c_in = self._scaled(t, schedule)
        x_tilde = x / _coef(schedule.alpha, t, x)
        return broadcast_like(c_in, x) * x_tilde, batch_time(0.25 * torch.log(st), x, "c_noise")

    def to_x0(self, out: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        _, c_skip, c_out, _ = self._scaled(t, schedule)
        x_tilde = x / _coef(schedule.alpha, t, x)
        return broadcast_like(c_skip, x) * x_tilde + broadcast_like(c_out, x) * out

    def from_x0(self, x0: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        _, c_skip, c_out, _ = self._scaled(t, schedule)
        x_tilde = x / _coef(schedule.alpha, t, x)
        return (x0 - broadcast_like(c_skip, x) * x_tilde) / broadcast_like(c_out, x)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor,
               schedule: Schedule) -> torch.Tensor:
        return self.from_x0(x0, x, t, schedule)

    def x0_error_scale(self, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return self._scaled(t, schedule)[2]

    def __repr__(self) -> str:
        return f"EDMPrediction(sigma_data={self.sigma_data})"


PREDICTIONS = {
    "x0": X0Prediction,
    "eps": EpsPrediction,
    "v": VPrediction,
    "score": ScorePrediction,
    "velocity": VelocityPrediction,
    "karras": KarrasPrediction,
    "k-diffusion": KarrasPrediction,
    "edm": EDMPrediction,
}


def get_prediction(prediction: str | Prediction) -> Prediction:
    """Resolve a prediction name (see :data:`PREDICTIONS`) or pass a :class:`Prediction` through."""
    resolved = resolve_name(prediction, PREDICTIONS, Prediction, "prediction", " or pass a Prediction object")
    if resolved is not None:
        return resolved
    raise TypeError(f"prediction must be a name or a Prediction object, got {type(prediction).__name__}")


def _check_schedule(schedule) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
    return schedule


def _check_model_kwargs(model_kwargs) -> dict:
    if model_kwargs is None:
        return {}
    if not isinstance(model_kwargs, dict):
        raise TypeError(f"model_kwargs must be a dict or None, got {type(model_kwargs).__name__}")
    return model_kwargs


def evaluate_model(model, prediction: Prediction, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule,
                   model_kwargs: dict, time_input=None):
    """Call a network as ``prediction`` says and check its output; returns the raw output."""
    x_in, t_in = prediction.model_inputs(x, t, schedule)
    if time_input is not None:
        t_in = time_input(t_in)
    out = model(x_in, t_in, **model_kwargs)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model(x, t) must return a tensor of the shape of x, {tuple(x.shape)}; got {got}")
    return out


class Denoiser:
    r"""The data prediction ``D(x, t) = E[x_0 | x_t = x]`` of a network, the one contract samplers use.

    The network is called as ``model(x_in, t_in, **model_kwargs)`` with ``t_in`` of shape
    ``(batch,)`` (for ``"karras"``/``"edm"`` predictions the noise level instead of ``t``, see
    :mod:`~sdekit.diffusion.prediction`); its output is mapped to ``D`` by the prediction.

    Arguments:
        model: the network, a callable.
        schedule: the :class:`~sdekit.diffusion.Schedule` it was trained with.
        prediction: a name in :data:`PREDICTIONS` or a :class:`Prediction` object.
        model_kwargs: extra keyword arguments for every call (class labels, conditioning), a dict.
        time_input: optional map of ``t_in`` before the call, e.g. ``DiscreteVP.timestep`` for a
            network trained on integer steps.

    Call:
        ``D(x, t)`` with ``x: (batch, *event)`` and ``t`` a float, 0-d or ``(batch,)`` tensor; returns
        ``(batch, *event)``. :meth:`score` and :meth:`eps` give the other views of the same output.
    """

    def __init__(self, model: Callable[..., torch.Tensor], schedule: Schedule, prediction: str | Prediction = "eps", *,
                 model_kwargs: dict[str, Any] | None = None,
                 time_input: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
        if time_input is not None and not callable(time_input):
            raise TypeError(f"time_input must be a callable or None, got {type(time_input).__name__}")
        self.model = model
        self.schedule = _check_schedule(schedule)
        self.prediction = get_prediction(prediction)
        self.model_kwargs = _check_model_kwargs(model_kwargs)
        self.time_input = time_input

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        t = as_time(t)
        out = evaluate_model(self.model, self.prediction, x, t, self.schedule, self.model_kwargs,
                             self.time_input)
        return self.prediction.to_x0(out, x, t, self.schedule)

    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``grad log p_t(x) = (alpha D - x) / sigma^2``."""
        return score_from_x0(x, t, self(x, t), self.schedule)

    def eps(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``eps_hat = (x - alpha D) / sigma``."""
        return eps_from_x0(x, t, self(x, t), self.schedule)

    def __repr__(self) -> str:
        return f"Denoiser({self.model!r}, {self.schedule!r}, prediction={self.prediction!r})"


def as_denoiser(model: Callable[..., torch.Tensor], schedule: Schedule, prediction: str | Prediction = "eps", *,
                model_kwargs: dict[str, Any] | None = None,
                time_input: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Denoiser:
    """Wrap a network as a :class:`Denoiser`; a :class:`Denoiser` passes through unchanged.

    Arguments:
        model, schedule, prediction, model_kwargs, time_input: as :class:`Denoiser`.

    Raises:
        ValueError if ``model`` is a :class:`Denoiser` for another schedule, or if ``model_kwargs`` or
        ``time_input`` are given for one (bind them when building it).
    """
    if isinstance(model, Denoiser):
        if model.schedule is not schedule:
            raise ValueError(f"the Denoiser was built for {model.schedule!r} but schedule={schedule!r}; "
                             "pass the same schedule object")
        if model_kwargs is not None or time_input is not None:
            raise ValueError("model is already a Denoiser: pass model_kwargs / time_input when building it")
        return model
    return Denoiser(model, schedule, prediction, model_kwargs=model_kwargs, time_input=time_input)


# ------------------------------------------------------------------------------------------------
# Conversions between parameterisations: (x, t, value, schedule) -> value in the other form
# ------------------------------------------------------------------------------------------------
def convert(x: torch.Tensor, t: float | torch.Tensor, value: torch.Tensor, schedule: Schedule, *,
            source: str | Prediction, target: str | Prediction) -> torch.Tensor:
    """Convert a prediction ``value`` at ``(x, t)`` from parameterisation ``source`` to ``target``
    (names in :data:`PREDICTIONS` or :class:`Prediction` objects), through the data prediction."""
    t = as_time(t)
    _check_schedule(schedule)
    x0 = get_prediction(source).to_x0(value, x, t, schedule)
    return get_prediction(target).from_x0(x0, x, t, schedule)


def _converter(source: str, target: str, doc: str):
    def fn(x: torch.Tensor, t: float | torch.Tensor, value: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        return convert(x, t, value, schedule, source=source, target=target)

    fn.__name__ = f"{target}_from_{source}"
    fn.__doc__ = (doc + "\n\nArguments: ``x: (batch, *event)``, ``t``, ``value`` (shape of ``x``), "
                  "``schedule``.")
    return fn


x0_from_eps = _converter("eps", "x0", "``x0 = (x - sigma eps) / alpha``.")
eps_from_x0 = _converter("x0", "eps", "``eps = (x - alpha x0) / sigma``.")
x0_from_score = _converter("score", "x0", "``x0 = (x + sigma^2 score) / alpha``.")
score_from_x0 = _converter("x0", "score", "``score = (alpha x0 - x) / sigma^2``.")
x0_from_v = _converter("v", "x0", "``x0 = (alpha x - sigma v) / (alpha^2 + sigma^2)``.")
v_from_x0 = _converter("x0", "v", "``v = alpha eps - sigma x0`` with ``eps = (x - alpha x0) / sigma``.")
x0_from_velocity = _converter("velocity", "x0", "``x0 = (sigma' x - sigma u) / (sigma' alpha - sigma "
                              "alpha')``.")
velocity_from_x0 = _converter("x0", "velocity", "``u = alpha' x0 + sigma' (x - alpha x0) / sigma``.")
eps_from_score = _converter("score", "eps", "``eps = -sigma score``.")
score_from_eps = _converter("eps", "score", "``score = -eps / sigma``.")

