"""Stable neural SDEs for irregular time series, and the neural CDE / naive neural SDE baselines.

Oh, Lim, Kim, "Stable Neural Stochastic Differential Equations in Analyzing Irregular Time Series Data",
ICLR 2024. The latent state ``z: (B, hidden)`` follows one of three SDE classes whose drift sees the
control path ``X`` (a :class:`~sdekit.timeseries.CubicPath` of the observed series) through
``zbar = zeta(t, z, X(t))``:

* :class:`LSDE` (Langevin-type): ``dz = gamma(zbar) dt + sigma(t) dW``;
* :class:`LNSDE` (linear multiplicative noise): ``dz = gamma(t, zbar) dt + sigma(t) z dW``;
* :class:`GSDE` (geometric): ``dz / z = gamma(t, zbar) dt + sigma(t) dW``, i.e.
  ``dz = z gamma dt + z sigma dW``.

Each is a core :class:`sdekit.SDE` (diagonal Itô noise) solved by :func:`sdekit.sdeint`. The networks are
the paper's (the official code's ``input_option`` 2 / 4 / 6 and ``noise_option`` 16 / 17 / 17):

* ``zeta``: ``emb([lin_z(z) ; lin_x(X(t))])`` (LSDE), with ``lin_z`` also fed ``sin t, cos t`` (LNSDE, GSDE);
  then ReLU, ``layers - 1`` hidden ReLU layers and a linear map to ``hidden``; ``gamma = tanh(...)``
  (the official code's bounded drift);
* ``sigma(t) = tanh(sigmoid(theta) * relu(MLP(sin t, cos t)))``, a vector of ``hidden`` entries in [0, 1).

Two deliberate differences from the official code, both towards the paper's equations: the official GSDE
drift is ``tanh(gamma * (1 - sigmoid(z)))`` ("instead of z * y, using logistics"), here it is the paper's
``z * gamma``; and the official LNSDE / GSDE diffusion is ``tanh(sigmoid(theta) sigma(t) z)``, here it is
``sigma(t) z`` with the bounded ``sigma(t)`` above (so the noise is exactly linear in ``z``, as the
stability theorems assume).

Baselines: :class:`NaiveNeuralSDE` (the official baseline ``(3, 18)``: drift ``tanh(MLP(t, z))`` and diffusion
``tanh(sigmoid(theta) relu(MLP(t, z)))``, the control entering only through ``z(t_0)``, or also through
the drift with ``controlled=True``) and :class:`NeuralCDE` (Kidger et al., NeurIPS 2020:
``dz = F(z) dX/dt dt``, an ODE solved by :func:`sdekit.odeint`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core import SDE
from .splines import CubicPath

__all__ = ["LSDE", "LNSDE", "GSDE", "NaiveNeuralSDE", "NeuralCDE", "StableSDE"]


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _time_features(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(sin t, cos t)`` broadcast to ``like``'s batch: ``(*B, 2)``."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    feats = torch.stack([torch.sin(t), torch.cos(t)])
    return feats.expand(*like.shape[:-1], 2)


def _mlp(width: int, layers: int, out: int) -> nn.Sequential:
    """ReLU, ``layers - 1`` hidden ``Linear(width, width)`` + ReLU, ``Linear(width, out)``."""
    mods: list[nn.Module] = [nn.ReLU()]
    for _ in range(layers - 1):
        mods += [nn.Linear(width, width), nn.ReLU()]
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


class _TimeNoise(nn.Module):
    """``sigma(t) = tanh(sigmoid(theta) relu(MLP(sin t, cos t)))``: ``(*B, hidden)`` in [0, 1)."""

    def __init__(self, hidden: int, theta: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.theta = nn.Parameter(torch.tensor(float(theta)))

    def forward(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.sigmoid(self.theta) * torch.relu(self.net(_time_features(t, like))))


class StableSDE(SDE):
    """Shared parts of :class:`LSDE`, :class:`LNSDE` and :class:`GSDE` (diagonal Itô noise).

    Arguments:
        control_channels: channels ``C`` of the control path.
        hidden: size of the latent state ``z``.
        width: width of the drift network.
        layers: number of hidden layers of the drift network (>= 1).
        theta: initial value of the noise scale's logit.

    Set the control with :meth:`set_control` (or pass ``control=`` to the constructor) before solving.
    ``f(t, z)`` and ``g(t, z)`` take ``z: (*B, hidden)`` and return ``(*B, hidden)``.
    """

    time_in_drift = True

    def __init__(self, control_channels: int, hidden: int, width: int = 32, layers: int = 1, *,
                 theta: float = 1.0, control: CubicPath | None = None) -> None:
        _check_sizes(control_channels=control_channels, hidden=hidden, width=width, layers=layers)
        super().__init__(noise_type="diagonal", sde_type="ito")
        self.control_channels, self.hidden = control_channels, hidden
        self.lin_z = nn.Linear(hidden + (2 if self.time_in_drift else 0), width)
        self.lin_x = nn.Linear(control_channels, width)
        self.emb = nn.Linear(2 * width, width)
        self.net = _mlp(width, layers, hidden)
        self.sigma = _TimeNoise(hidden, theta)
        self.control: CubicPath | None = None
        if control is not None:
            self.set_control(control)

    def set_control(self, control: CubicPath) -> None:
        """Use ``control`` (``C = control_channels`` channels, batch ``B`` of the state) as ``X``."""
        if not isinstance(control, CubicPath):
            raise TypeError(f"control must be a CubicPath, got {type(control).__name__}")
        if control.channels != self.control_channels:
            raise ValueError(f"control must have {self.control_channels} channels, got {control.channels}")
        self.control = control

    def _x(self, t: torch.Tensor) -> torch.Tensor:
        if self.control is None:
            raise RuntimeError(f"{type(self).__name__}: call set_control(path) before solving")
        return self.control.evaluate(t)

    def gamma(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``gamma(t, zbar)`` with ``zbar = emb([lin_z(sin t, cos t, z) ; lin_x(X(t))])``: ``(*B, hidden)``."""
        zin = torch.cat([_time_features(t, z), z], -1) if self.time_in_drift else z
        zbar = self.emb(torch.cat([self.lin_z(zin), self.lin_x(self._x(t))], -1))
        return torch.tanh(self.net(zbar))


class LSDE(StableSDE):
    """Langevin-type SDE ``dz = gamma(zbar) dt + sigma(t) dW`` (Oh et al. 2024, eq. for LSDE; official
    options (2, 16)). The drift has no explicit time input; the noise is additive. See :class:`StableSDE`."""

    time_in_drift = False

    def f(self, t, z):
        return self.gamma(t, z)

    def g(self, t, z):
        return self.sigma(t, z).expand_as(z)


class LNSDE(StableSDE):
    """Linear-noise SDE ``dz = gamma(t, zbar) dt + sigma(t) z dW`` (Oh et al. 2024; official options
    (4, 17)). See :class:`StableSDE`."""

    def f(self, t, z):
        return self.gamma(t, z)

    def g(self, t, z):
        return self.sigma(t, z) * z


class GSDE(StableSDE):
    """Geometric SDE ``dz = z gamma(t, zbar) dt + z sigma(t) dW`` (Oh et al. 2024; official options (6, 17)
    with the paper's ``z * gamma`` drift). A zero entry of ``z`` stays zero. See :class:`StableSDE`."""

    def f(self, t, z):
        return z * self.gamma(t, z)

    def g(self, t, z):
        return self.sigma(t, z) * z


class NaiveNeuralSDE(SDE):
    """The naive neural SDE baseline ``dz = gamma(t, z) dt + sigma(t, z) dW`` (official options (3, 18)).

    ``gamma = tanh(MLP(sin t, cos t, z))`` (with ``controlled=True`` the control is mixed in as in
    :class:`LNSDE`), ``sigma = tanh(sigmoid(theta) relu(MLP(sin t, cos t, z)))``: a state-dependent
    diffusion with none of the stable classes' structure. Without ``controlled`` the data enter only
    through ``z(t_0)``, as in the official baseline.

    Arguments:
        control_channels, hidden, width, layers, theta: as :class:`StableSDE`.
        controlled: also feed ``X(t)`` to the drift.
    """

    def __init__(self, control_channels: int, hidden: int, width: int = 32, layers: int = 1, *,
                 theta: float = 1.0, controlled: bool = False) -> None:
        _check_sizes(control_channels=control_channels, hidden=hidden, width=width, layers=layers)
        super().__init__(noise_type="diagonal", sde_type="ito")
        self.control_channels, self.hidden, self.controlled = control_channels, hidden, controlled
        self.lin_z = nn.Linear(hidden + 2, width)
        self.lin_x = nn.Linear(control_channels, width) if controlled else None
        self.emb = nn.Linear(2 * width, width) if controlled else None
        self.net = _mlp(width, layers, hidden)
        self.noise = nn.Sequential(nn.Linear(hidden + 2, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.theta = nn.Parameter(torch.tensor(float(theta)))
        self.control: CubicPath | None = None

    set_control = StableSDE.set_control

    def f(self, t, z):
        h = self.lin_z(torch.cat([_time_features(t, z), z], -1))
        if self.controlled:
            assert self.lin_x is not None and self.emb is not None and self.control is not None
            h = self.emb(torch.cat([h, self.lin_x(self.control.evaluate(t))], -1))
        return torch.tanh(self.net(h))

    def g(self, t, z):
        raw = torch.relu(self.noise(torch.cat([_time_features(t, z), z], -1)))
        return torch.tanh(torch.sigmoid(self.theta) * raw)


class NeuralCDE(nn.Module):
    """The neural CDE vector field ``dz/dt = F(z) dX/dt`` (Kidger et al., NeurIPS 2020), an ODE for
    :func:`sdekit.odeint`.

    ``F(z) = tanh(MLP(z))`` reshaped to ``(hidden, C)``; ``MLP`` = ``Linear(hidden, width)``, ReLU,
    ``layers - 1`` hidden layers, ``Linear(width, hidden * C)``. Call it as ``f(t, z)`` after
    :meth:`set_control`; returns ``(*B, hidden)``.
    """

    def __init__(self, control_channels: int, hidden: int, width: int = 32, layers: int = 1) -> None:
        _check_sizes(control_channels=control_channels, hidden=hidden, width=width, layers=layers)
        super().__init__()
        self.control_channels, self.hidden = control_channels, hidden
        self.net = nn.Sequential(nn.Linear(hidden, width), _mlp(width, layers, hidden * control_channels))
        self.control: CubicPath | None = None

    set_control = StableSDE.set_control

    def forward(self, t, z):
        if self.control is None:
            raise RuntimeError("NeuralCDE: call set_control(path) before solving")
        F = torch.tanh(self.net(z)).reshape(*z.shape[:-1], self.hidden, self.control_channels)
        return (F @ self.control.derivative(t)[..., None])[..., 0]
