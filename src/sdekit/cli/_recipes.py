"""The one place where command-line strings become objects: models, schedules, losses, samplers.

A run is described by a :class:`RunSpec` (JSON-serialisable, stored in every checkpoint), so that
``sdekit sample`` can rebuild exactly the network, schedule and prediction a checkpoint was
trained with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..data import get_dataset
from ..nn import MLPDenoiser, UNet

if TYPE_CHECKING:
    from ..diffusion import DenoisingScoreMatching, Schedule

__all__ = ["RunSpec", "SCHEDULES", "PREDICTIONS_FOR", "MODELS", "SOLVERS", "DTYPES"]

# Schedules by name; the time the network sees lies in [0, 1] except for EDM (c_noise = ln(sigma) / 4).
SCHEDULES = ("vp", "cosine", "subvp", "ve", "edm", "flow")
PREDICTIONS_FOR = {
    "vp": ("eps", "x0", "v"),
    "cosine": ("eps", "x0", "v"),
    "subvp": ("eps", "x0", "v"),
    "ve": ("eps", "x0"),
    "edm": ("edm",),
    "flow": ("velocity",),
}
_TIME_SCALE = {"edm": 250.0}
MODELS = ("auto", "mlp", "unet")
SOLVERS = ("ode", "ddim", "euler-maruyama")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class SpecError(ValueError):
    """A run description that does not fit together."""


def _int(name: str, v, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SpecError(f"{name} must be an int >= {low}, got {v!r}")
    return v


@dataclass
class RunSpec:
    """What is trained: data set, network, schedule and parameterisation.

    Attributes:
        data: a registered data set name (``sdekit.data.dataset_names()``).
        n_train: number of training samples (``None``: the data set's default).
        data_seed: seed of the toy data draws.
        schedule: one of :data:`SCHEDULES`.
        prediction: what the network predicts (``None``: the schedule's first choice in
            :data:`PREDICTIONS_FOR`).
        model: ``"mlp"``, ``"unet"`` or ``"auto"`` (MLP for vectors, UNet for images).
        width: MLP hidden width or UNet base channels.
        depth: MLP residual blocks or UNet levels.
        dtype: ``"float32"`` or ``"float64"``.
    """

    data: str = "moons"
    n_train: int | None = None
    data_seed: int = 0
    schedule: str = "vp"
    prediction: str | None = None
    model: str = "auto"
    width: int | None = None
    depth: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        try:
            info = get_dataset(self.data)
        except ValueError as e:
            raise SpecError(str(e)) from None
        if self.n_train is not None:
            _int("n_train", self.n_train)
        _int("data_seed", self.data_seed, low=0)
        if self.schedule not in SCHEDULES:
            raise SpecError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        allowed = PREDICTIONS_FOR[self.schedule]
        if self.prediction is None:
            self.prediction = allowed[0]
        if self.prediction not in allowed:
            raise SpecError(
                f"prediction {self.prediction!r} does not fit schedule {self.schedule!r}; "
                f"choose one of {', '.join(allowed)}"
            )
        if self.model not in MODELS:
            raise SpecError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        image = len(info.event_shape) == 3
        if self.model == "auto":
            self.model = "unet" if image else "mlp"
        shape = info.event_shape
        if self.model == "mlp" and len(shape) != 1:
            raise SpecError(f"model 'mlp' needs vector data; {self.data!r} has samples of shape {shape}")
        if self.model == "unet" and not image:
            raise SpecError(f"model 'unet' needs image data; {self.data!r} has samples of shape {shape}")
        if self.width is None:
            self.width = 128 if self.model == "mlp" else 32
        if self.depth is None:
            self.depth = 3 if self.model == "mlp" else 2
        _int("width", self.width)
        _int("depth", self.depth)
        if self.model == "unet" and self.width % 8:
            raise SpecError(f"width (UNet base channels) must be a multiple of 8, got {self.width}")
        if self.dtype not in DTYPES:
            raise SpecError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> RunSpec:
        """The spec a :meth:`to_dict` output describes (``d`` is checked: a SpecError for anything else)."""
        if not isinstance(d, dict):
            raise SpecError(f"a run description must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SpecError(f"unknown run settings {unknown}")
        return cls(**d)

    @property
    def prediction_name(self) -> str:
        """The prediction (``__post_init__`` resolves ``None`` to the schedule's first choice)."""
        assert self.prediction is not None  # set by __post_init__
        return self.prediction

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def model_config(self) -> dict[str, Any]:
        """Name and keyword arguments of the network (stored with the checkpoint)."""
        info = get_dataset(self.data)
        time_scale = _TIME_SCALE.get(self.schedule, 1000.0)
        if self.model == "mlp":
            kwargs = dict(dim=info.event_shape[0], hidden=self.width, depth=self.depth, time_scale=time_scale)
        else:
            mults = [1, 2, 2, 2][: self.depth]
            side = min(info.event_shape[1:])
            if side % (2 ** (len(mults) - 1)):
                raise SpecError(f"depth={self.depth} UNet levels do not fit images of side {side}")
            kwargs = dict(in_channels=info.event_shape[0], base_channels=self.width, channel_mults=mults,
                          time_scale=time_scale)
            if info.num_classes is not None:
                kwargs["num_classes"] = info.num_classes
        return {"name": self.model, "kwargs": kwargs}

    def build_model(self, seed: int) -> nn.Module:
        return build_model(self.model_config(), seed=seed).to(self.torch_dtype)

    def build_schedule(self) -> Schedule:
        from .. import diffusion

        return {
            "vp": diffusion.VP, "cosine": diffusion.CosineVP, "subvp": diffusion.SubVP, "ve": diffusion.VE,
            "edm": diffusion.EDM, "flow": diffusion.LinearFlow,
        }[self.schedule]()

    def build_loss(self, schedule: Schedule) -> DenoisingScoreMatching:
        from .. import diffusion

        if self.schedule == "flow":
            return diffusion.FlowMatchingLoss(schedule)
        if self.schedule == "edm":
            return diffusion.DenoisingScoreMatching.edm(schedule)
        return diffusion.DenoisingScoreMatching(schedule, prediction=self.prediction_name)

    def describe(self) -> str:
        shape = "x".join(str(s) for s in get_dataset(self.data).event_shape)
        if self.model == "mlp":
            net = f"MLP {self.width}x{self.depth}"
        else:
            net = f"UNet {self.width} channels x {self.depth} levels"
        return f"{self.data} ({shape}), {net}, {self.schedule} schedule, {self.prediction} prediction, {self.dtype}"


def build_model(config: Any, seed: int | None = None) -> nn.Module:
    """Rebuild a network from :meth:`RunSpec.model_config` output.

    Raises:
        SpecError: an unknown name or arguments that the network rejects.
    """
    ok = isinstance(config, dict) and config.get("name") in ("mlp", "unet") and isinstance(config.get("kwargs"), dict)
    if not ok:
        raise SpecError(f"model configuration must be {{'name': 'mlp' | 'unet', 'kwargs': {{...}}}}, got {config!r}")
    cls = MLPDenoiser if config["name"] == "mlp" else UNet
    try:
        return cls(**config["kwargs"], seed=seed)
    except (TypeError, ValueError) as e:
        raise SpecError(f"cannot build {config['name']} from {config['kwargs']}: {e}") from None


def build_sampler(solver: str, ode_method: str = "dopri5", rtol: float = 1e-5):
    """A sampler object for a CLI solver name."""
    from .. import diffusion

    if solver == "ode":
        return diffusion.PFODE(method=ode_method, rtol=rtol, atol=rtol)
    if solver == "ddim":
        return diffusion.DDIM()
    if solver == "euler-maruyama":
        return diffusion.EulerMaruyama()
    raise SpecError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")


def default_steps(solver: str, ode_method: str = "dopri5") -> int | None:
    """Grid steps used when ``--steps`` is not given (``None``: one adaptive interval)."""
    if solver == "ode":
        return None if ode_method in ("dopri5", "tsit5", "bosh3", "heun") else 100
    return 50 if solver == "ddim" else 500

