"""Sequence-to-label models on a control path: ``z(t_0) = Lin(X(t_0))``, solve, then a head on ``z(T)``.

As in the stable neural SDE paper's benchmark code (Oh, Lim, Kim, ICLR 2024): the initial latent is a
linear map of the control path at the first time, the latent is carried to the last time by
:func:`sdekit.sdeint` (an SDE: :class:`~sdekit.timeseries.LSDE`, :class:`~sdekit.timeseries.LNSDE`,
:class:`~sdekit.timeseries.GSDE`, :class:`~sdekit.timeseries.NaiveNeuralSDE`) or :func:`sdekit.odeint`
(a :class:`~sdekit.timeseries.NeuralCDE`), and the head ``Linear - BatchNorm - ReLU - Dropout(0.1) -
Linear`` maps ``z(T)`` to class logits (classification) or to values (regression).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core import odeint, sdeint
from .splines import CubicPath
from .stable import NaiveNeuralSDE, NeuralCDE, StableSDE

__all__ = ["PathClassifier", "classification_loss"]


class PathClassifier(nn.Module):
    """Logits ``(B, outputs)`` of packed control paths ``(B, L, 1 + 4 C)`` (:meth:`CubicPath.pack`).

    Arguments:
        field: the latent dynamics: a :class:`StableSDE` subclass or :class:`NaiveNeuralSDE` instance (solved
            by :func:`sdekit.sdeint`, Euler-Maruyama) or a :class:`NeuralCDE` (solved by :func:`sdekit.odeint`).
        outputs: number of classes (or regression targets).
        dt: solver step (the official code uses ``max(min gap, 1e-3)``; a coarser step is cheaper).
        method: the core solver's name (default ``"euler"`` for SDEs and ODEs alike).
        dropout: dropout of the head.

    The Brownian path is drawn from torch's global generator (seeded per step by
    :class:`sdekit.train.Trainer`); pass ``bm=`` to :meth:`forward` to fix it.
    """

    def __init__(self, field: StableSDE | NaiveNeuralSDE | NeuralCDE, outputs: int, *, dt: float = 0.05,
                 method: str = "euler", dropout: float = 0.1) -> None:
        super().__init__()
        if not isinstance(field, (StableSDE, NaiveNeuralSDE, NeuralCDE)):
            raise TypeError("field must be an LSDE, LNSDE, GSDE, NaiveNeuralSDE or NeuralCDE, "
                            f"got {type(field).__name__}")
        if not isinstance(outputs, int) or outputs < 1:
            raise ValueError(f"outputs must be a positive int, got {outputs!r}")
        if not (isinstance(dt, (int, float)) and dt > 0):
            raise ValueError(f"dt must be a positive number, got {dt!r}")
        self.field, self.dt, self.method = field, float(dt), method
        hidden = field.hidden
        self.initial = nn.Linear(field.control_channels, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, outputs))

    def latent(self, packed: torch.Tensor, bm=None) -> torch.Tensor:
        """``z(T)``: ``(B, hidden)``."""
        path = CubicPath.unpack(packed)
        if path.channels != self.field.control_channels:
            raise ValueError(f"packed paths have {path.channels} channels, the model expects "
                             f"{self.field.control_channels}")
        times = path.times
        t0, t1 = times[..., 0].reshape(-1)[0], times[..., -1].reshape(-1)[0]
        if times.dim() > 1 and not (torch.all(times[..., 0] == t0) and torch.all(times[..., -1] == t1)):
            raise ValueError("every path of a batch must start and end at the same times")
        ts = torch.stack([t0, t1])
        self.field.set_control(path)
        z0 = self.initial(path.evaluate(t0))
        if isinstance(self.field, NeuralCDE):
            return odeint(self.field, z0, ts, method=self.method, dt=self.dt)[-1]
        return sdeint(self.field, z0, ts, method=self.method, dt=self.dt, bm=bm)[-1]

    def forward(self, packed: torch.Tensor, bm=None) -> torch.Tensor:
        return self.head(self.latent(packed, bm))


def classification_loss(model: nn.Module, x0: torch.Tensor, generator: torch.Generator | None = None,
                        model_kwargs: dict | None = None) -> torch.Tensor:
    """Cross-entropy of ``model(x0)`` against ``model_kwargs["class_labels"]``: a
    :class:`sdekit.train.Trainer` loss (``Trainer(model, classification_loss, packed, labels=y)``)."""
    if not model_kwargs or "class_labels" not in model_kwargs:
        raise ValueError("classification_loss needs model_kwargs['class_labels'] (pass labels= to the Trainer)")
    return nn.functional.cross_entropy(model(x0), model_kwargs["class_labels"])
