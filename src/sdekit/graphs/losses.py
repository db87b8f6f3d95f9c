r"""Denoising score matching on both components of the graph state.

Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the System of Stochastic Differential
Equations", ICML 2022, eq. (7)-(8): with ``t ~ U[eps, T]`` and ``(X_t, A_t)`` drawn from the forward
transition, each network regresses the standard noise of its component,

.. math:: L = E\Big[\tfrac12 \lVert \sigma_X(t) s_X + z_X \rVert^2\Big]
            + E\Big[\tfrac12 \lVert \sigma_A(t) s_A + z_A \rVert^2\Big], \qquad s = -\hat\varepsilon / \sigma(t),

the squared norms summed over a graph's entries (all ``N x N`` entries of the symmetric ``z_A``, as
GDSS does) and averaged over graphs; entries of padding nodes are zero on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .sde import GraphSDE
from .state import check_graph_state

__all__ = ["GraphScoreMatching", "score_function", "GraphScoreFn"]

#: ``score_fn(x, adj, flags, t) -> (s_x, s_adj)`` with ``t`` of shape ``(B,)``
GraphScoreFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def score_function(model: Callable[..., tuple[torch.Tensor, torch.Tensor]], sde: GraphSDE) -> GraphScoreFn:
    """Turn a noise-predicting pair network ``model(x, adj, flags) -> (eps_x, eps_adj)`` (e.g.
    :class:`sdekit.graphs.GDSSNetwork`) into ``score_fn(x, adj, flags, t) -> (-eps_x / sigma_X(t),
    -eps_adj / sigma_A(t))``."""
    if not callable(model):
        raise TypeError(f"model must be callable model(x, adj, flags) -> (eps_x, eps_adj), got {type(model).__name__}")
    if not isinstance(sde, GraphSDE):
        raise TypeError(f"sde must be a GraphSDE, got {type(sde).__name__}")

    def score_fn(x: torch.Tensor, adj: torch.Tensor, flags: torch.Tensor,
                 t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps_x, eps_a = model(x, adj, flags)
        _, sx, _, sa = sde.marginal(t, x)
        return -eps_x / sx[:, None, None], -eps_a / sa[:, None, None]

    return score_fn


class GraphScoreMatching:
    r"""The GDSS loss as a ``loss_fn`` for :class:`sdekit.train.Trainer`: ``loss(model, batch)`` with
    ``batch = (x0, adj0, flags)`` (the Trainer passes tuple data batched this way) returns the sum of the
    two components' losses (see the module docstring).

    Arguments:
        sde: the :class:`~sdekit.graphs.GraphSDE`.
        eps: training times are ``U[eps, t_max]`` (GDSS: ``1e-5``).
        reduce_mean: average the squared error over entries instead of summing it (GDSS: sum).
        check_data: validate the first batch with :func:`sdekit.graphs.check_graph_state` (binary ``A``).

    After each call ``last`` holds the two components' losses as floats (``{"x": ..., "adj": ...}``).
    """

    def __init__(self, sde: GraphSDE, *, eps: float = 1e-5, reduce_mean: bool = False, check_data: bool = True) -> None:
        if not isinstance(sde, GraphSDE):
            raise TypeError(f"sde must be a GraphSDE, got {type(sde).__name__}")
        if not (isinstance(eps, (int, float)) and 0 < eps < sde.t_max):
            raise ValueError(f"eps must lie in (0, t_max={sde.t_max}), got {eps!r}")
        self.sde, self.eps, self.reduce_mean = sde, float(eps), bool(reduce_mean)
        self.check_data = check_data
        self.last: dict[str, float] = {}

    def __call__(self, model: nn.Module | Callable[..., Any], batch: tuple[torch.Tensor, ...],
                 generator: torch.Generator | None = None, model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise TypeError("batch must be a tuple (x0 (B, N, F), adj0 (B, N, N), flags (B, N)); got "
                            f"{type(batch).__name__}")
        x0, adj0, flags = batch
        if self.check_data:
            check_graph_state(x0, adj0, flags, binary=True)
            self.check_data = False
        B = x0.shape[0]
        u = torch.rand(B, generator=generator, dtype=x0.dtype, device=x0.device)
        t = u * (self.sde.t_max - self.eps) + self.eps
        x_t, adj_t, z_x, z_a = self.sde.perturb(x0, adj0, flags, t, generator)
        eps_x, eps_a = model(x_t, adj_t, flags, **(model_kwargs or {}))
        err_x = (eps_x - z_x).square().flatten(1)
        err_a = (eps_a - z_a).square().flatten(1)
        if self.reduce_mean:
            lx, la = err_x.mean(1), err_a.mean(1)
        else:
            lx, la = 0.5 * err_x.sum(1), 0.5 * err_a.sum(1)
        lx, la = lx.mean(), la.mean()
        self.last = {"x": float(lx.detach()), "adj": float(la.detach())}
        return lx + la
