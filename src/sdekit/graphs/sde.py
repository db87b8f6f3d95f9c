r"""The system of SDEs of GDSS: one forward SDE per component of the graph state ``(X, A)``.

Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the System of Stochastic Differential
Equations", ICML 2022, eq. (3): node features and adjacency diffuse with their own linear SDEs

.. math:: dX_t = f_X(t) X_t\,dt + g_X(t)\,dW^X_t, \qquad dA_t = f_A(t) A_t\,dt + g_A(t)\,dW^A_t,

driven by independent Brownian motions, ``W^A`` symmetric (one motion per unordered node pair, zero
diagonal) and both masked by the node flags. Each component has a schedule of
:mod:`sdekit.diffusion` (``x_t = alpha(t) x_0 + sigma(t) eps``), so the forward transition has the
closed form

.. math:: X_t \mid X_0 \sim N(\alpha_X(t) X_0, \sigma_X(t)^2 I), \qquad
          A_t \mid A_0 \sim N(\alpha_A(t) A_0, \sigma_A(t)^2 I) \text{ on the upper triangle.}

The reverse process (eq. 5) uses the partial scores ``grad_X log p_t(X, A)`` and
``grad_A log p_t(X, A)``: ``dX = [f_X X - g_X^2 s_X] dt + g_X dW̄``, and the same for ``A``.
"""

from __future__ import annotations

import torch

from ..diffusion import VP, Schedule
from .state import mask_adjs, mask_x, symmetric_noise

__all__ = ["GraphSDE", "GDSS_SDE_PRESETS"]

#: the forward SDEs of the GDSS configs (``config/*.yaml`` of the official code): ``(X, A)`` schedules as
#: ``(beta_min, beta_max)`` of a linear VP, ``T = 1``
GDSS_SDE_PRESETS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "community_small": ((0.1, 1.0), (0.1, 1.0)),
    "ego_small": ((0.1, 1.0), (0.1, 1.0)),
    "grid": ((0.1, 1.0), (0.2, 0.8)),
}


def _batch_time(t, batch: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        t = t.to(device=like.device, dtype=like.dtype)
        if t.dim() == 0:
            return t.expand(batch)
        if tuple(t.shape) != (batch,):
            raise ValueError(f"t must be a number, a 0-d tensor or a (batch,) = ({batch},) tensor; got shape "
                             f"{tuple(t.shape)}")
        return t
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError(f"t must be a number or a tensor, got {type(t).__name__}")
    return torch.full((batch,), float(t), device=like.device, dtype=like.dtype)


class GraphSDE:
    r"""The forward system of GDSS: a schedule for the node features and one for the adjacency.

    Arguments:
        x: schedule of ``X`` (a :class:`sdekit.diffusion.Schedule`, e.g. ``VP(0.1, 1.0)``).
        adj: schedule of ``A``.
        t_min: the data end of sampling (GDSS samples down to ``1e-4``) and the lower end of training
            times (GDSS: ``1e-5``; :class:`~sdekit.graphs.GraphScoreMatching` has its own ``eps``).
        t_max: the noise end (GDSS: 1).

    Note: with the GDSS configs (linear VP, ``beta_max = 1``) the marginal at ``t = 1`` is far from the
    ``N(0, I)`` the samplers start from (``alpha = 0.76``, ``sigma = 0.65`` at ``beta = 0.1 -> 1``); this is
    the paper's setting and is kept (``prior_mismatch`` reports it).
    """

    def __init__(self, x: Schedule, adj: Schedule, *, t_min: float = 1e-4, t_max: float = 1.0) -> None:
        for name, s in (("x", x), ("adj", adj)):
            if not isinstance(s, Schedule):
                raise TypeError(f"{name} must be a sdekit.diffusion.Schedule (e.g. VP(0.1, 1.0)), got "
                                f"{type(s).__name__}")
        if not (isinstance(t_min, (int, float)) and isinstance(t_max, (int, float)) and 0 < t_min < t_max):
            raise ValueError(f"need 0 < t_min < t_max; got t_min={t_min!r}, t_max={t_max!r}")
        self.x, self.adj = x, adj
        self.t_min, self.t_max = float(t_min), float(t_max)

    @classmethod
    def gdss(cls, dataset: str) -> GraphSDE:
        """The forward system of the GDSS config for ``dataset`` (a key of ``GDSS_SDE_PRESETS``)."""
        if dataset not in GDSS_SDE_PRESETS:
            raise ValueError(f"dataset must be one of {sorted(GDSS_SDE_PRESETS)}, got {dataset!r}")
        (xb0, xb1), (ab0, ab1) = GDSS_SDE_PRESETS[dataset]
        return cls(VP(xb0, xb1, t_min=1e-5), VP(ab0, ab1, t_min=1e-5))

    def prior_mismatch(self) -> dict[str, tuple[float, float]]:
        """``(alpha(t_max), sigma(t_max))`` of each component: how far the marginal at ``t_max`` is from
        the ``N(0, I)`` prior (``(0, 1)`` would be exact)."""
        return {name: (float(s.alpha(self.t_max)), float(s.sigma(self.t_max)))
                for name, s in (("x", self.x), ("adj", self.adj))}

    def marginal(self, t: float | torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(alpha_X, sigma_X, alpha_A, sigma_A)`` at ``t``, each ``(batch,)`` in the dtype of ``like
        (batch, ...)``."""
        tb = _batch_time(t, like.shape[0], like)
        return tuple(c(tb).to(like.dtype) for c in (self.x.alpha, self.x.sigma, self.adj.alpha, self.adj.sigma))

    def perturb(self, x0: torch.Tensor, adj0: torch.Tensor, flags: torch.Tensor, t: float | torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        r"""Draw from the forward transition: ``X_t = alpha_X X_0 + sigma_X z_X``,
        ``A_t = alpha_A A_0 + sigma_A z_A`` with ``z_X`` masked and ``z_A`` from
        :func:`sdekit.graphs.symmetric_noise`.

        Arguments:
            x0: ``(B, N, F)``; adj0: ``(B, N, N)``; flags: ``(B, N)``.
            t: a time or per-graph times ``(B,)``.
            generator: for reproducible draws.

        Returns:
            ``(x_t, adj_t, z_x, z_adj)``: the noisy state and the standard noise that made it.
        """
        ax, sx, aa, sa = self.marginal(t, x0)
        z_x = mask_x(torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device), flags)
        z_a = symmetric_noise(adj0.shape, flags, generator, dtype=adj0.dtype, device=adj0.device)
        x_t = mask_x(ax[:, None, None] * x0, flags) + sx[:, None, None] * z_x
        adj_t = mask_adjs(aa[:, None, None] * adj0, flags) + sa[:, None, None] * z_a
        return x_t, adj_t, z_x, z_a

    def __repr__(self) -> str:
        return f"GraphSDE(x={self.x!r}, adj={self.adj!r}, t_min={self.t_min}, t_max={self.t_max})"
