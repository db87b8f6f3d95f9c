"""Latent SDEs: the KL path term of ``sdeint(..., logqp=True)``.

For a posterior SDE ``dy = f(t, y) dt + g(t, y) dW`` and a prior with the same diffusion and drift
``h(t, y)``, Girsanov's theorem gives the log density ratio of the two path measures,

    log dP/dQ = int 1/2 |u|^2 dt + int u^T dW,     g u = f - h,

whose expectation under the posterior is ``KL(P || Q) = E int 1/2 |u|^2 dt`` (Li, Wong, Chen &
Duvenaud, "Scalable gradients for stochastic differential equations", AISTATS 2020, section 5;
Tzen & Raginsky 2019). The integral is carried as an extra state with zero diffusion, so any solver and
any ``adjoint=`` strategy handles it; ``u`` is ``(f - h) / g`` for diagonal noise and the
least-squares solution ``pinv(g) (f - h)`` otherwise (as torchsde does). The same formula holds for
Stratonovich SDEs: the Ito-Stratonovich correction depends on ``g`` only and cancels in ``f - h``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__: list[str] = []


def _safe_divide(num: torch.Tensor, den: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``num / den`` with ``|den|`` kept at least ``eps`` (sign kept, zero counted positive)."""
    small = den.detach().abs() <= eps
    return num / torch.where(small, torch.where(den >= 0, eps, -eps).to(den.dtype), den)


class _LogqpMixin:
    """The augmented SDE on ``(y, l)``: ``dl = 1/2 |u|^2 dt`` with no noise."""

    base: Any  # the user's SDE, duck-typed: f, g, h, noise_type, sde_type

    def _setup(self, sde) -> None:
        self.noise_type = sde.noise_type
        self.sde_type = sde.sde_type
        self._diagonal = sde.noise_type == "diagonal"

    def f(self, t, state):
        y, _ = state
        sde = self.base
        f, g, h = sde.f(t, y), sde.g(t, y), sde.h(t, y)
        if self._diagonal:
            u = _safe_divide(f - h, g)
            rate = 0.5 * (u**2).flatten(1).sum(1, keepdim=True)
        else:
            u = (torch.linalg.pinv(g) @ (f - h).unsqueeze(-1)).squeeze(-1)
            rate = 0.5 * (u**2).sum(-1, keepdim=True)
        return f, rate

    def g(self, t, state):
        y, l = state
        g = self.base.g(t, y)
        if self._diagonal:
            return g, torch.zeros_like(l)
        return g, g.new_zeros(*l.shape, g.shape[-1])


class _LogqpModule(_LogqpMixin, torch.nn.Module):
    def __init__(self, sde: torch.nn.Module) -> None:
        super().__init__()
        self.base = sde  # registered, so .parameters() are the SDE's
        self._setup(sde)


class _LogqpPlain(_LogqpMixin):
    def __init__(self, sde) -> None:
        self.base = sde
        self._setup(sde)


class _PaddedBrownian:
    """For diagonal noise the packed state ``(y, l)`` is flat, and so is its Brownian motion: this
    source returns the user's increments flattened, followed by zeros for ``l`` (which has none)."""

    def __init__(self, bm, pad: int) -> None:
        self.bm = bm
        self.pad = pad

    def _padded(self, w: torch.Tensor) -> torch.Tensor:
        return torch.cat([w.reshape(-1), w.new_zeros(self.pad)])

    def __call__(self, ta, tb=None, return_U: bool = False):
        if return_U:
            W, U = self.bm(ta, tb, return_U=True)
            return self._padded(W), self._padded(U)
        return self._padded(self.bm(ta, tb))


def _with_logqp(sde, y0, bm):
    """Wrap ``sde``, ``y0`` and ``bm`` for ``logqp=True``; return them and the function that turns the
    solution into ``(ys, log_ratio)``."""
    if not callable(getattr(sde, "h", None)):
        raise TypeError(f"logqp=True needs the prior drift h(t, y) on the sde; {type(sde).__name__} has no "
                        "callable h")
    if not isinstance(y0, torch.Tensor):
        raise TypeError(f"logqp=True needs a tensor y0 of shape (batch, ...), got {type(y0).__name__}")
    if y0.dim() < 2:
        raise ValueError(f"logqp=True needs y0 of shape (batch, ...) with at least 2 dimensions, got shape "
                         f"{tuple(y0.shape)}")
    diagonal = getattr(sde, "noise_type", None) == "diagonal"
    wrapped = _LogqpModule(sde) if isinstance(sde, torch.nn.Module) else _LogqpPlain(sde)
    l0 = y0.new_zeros(y0.shape[0], 1) if diagonal else y0.new_zeros(*y0.shape[:-1], 1)
    if diagonal and bm is not None:
        bm = _PaddedBrownian(bm, l0.numel())

    def split(out):
        ys, ls = out
        return ys, (ls[1:] - ls[:-1]).squeeze(-1)

    return wrapped, (y0, l0), bm, split
