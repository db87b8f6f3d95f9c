"""Exponential moving average of a model's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Keeps ``theta_ema <- d_k theta_ema + (1 - d_k) theta`` after every optimiser step.

    With ``warmup=True`` the decay of update ``k`` (counting from 0) is
    ``d_k = min(decay, (1 + k) / (10 + k))``, so early averages are not dominated by the random
    initialisation (as in TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``). Buffers
    are copied, not averaged. The decay depends only on ``k``, so resuming needs only the weights
    and ``k``.

    Arguments:
        model: the model whose weights are averaged; a frozen copy is kept in :attr:`model`.
        decay: the target decay in ``[0, 1)``.
        warmup: ramp the decay up as above.

    Raises:
        ValueError: ``decay`` outside ``[0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *, warmup: bool = True) -> None:
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ema decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.updates = 0
        self._pairs = None

    def current_decay(self) -> float:
        """The decay the next update will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average."""
        weight = 1.0 - self.current_decay()
        if self._pairs is None or self._pairs[0] is not model:
            params = list(zip(self.model.parameters(), model.parameters()))
            buffers = list(zip(self.model.buffers(), model.buffers()))
            self._pairs = (model, params, buffers)
        _, params, buffers = self._pairs
        for e, p in params:
            e.lerp_(p.detach(), weight)
        for e, b in buffers:
            e.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        """The averaged weights and the update count."""
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
