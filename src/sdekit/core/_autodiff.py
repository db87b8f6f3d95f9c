"""Directional derivatives by autograd, shared by the solvers (log-ODE's Lie bracket) and the adjoint SDE."""

from __future__ import annotations

import torch


def jvp(out: torch.Tensor, y: torch.Tensor, v: torch.Tensor, *, create_graph: bool = True) -> torch.Tensor:
    """``(d out / d y) v`` by the double vector-Jacobian product (zeros where ``out`` does not depend on
    ``y``); differentiable in ``y`` and parameters when ``create_graph``."""
    if not out.requires_grad:
        return torch.zeros_like(out)
    u = torch.zeros_like(out, requires_grad=True)
    (w,) = torch.autograd.grad(out, y, u, create_graph=True, allow_unused=True)
    if w is None:
        return torch.zeros_like(out)
    (j,) = torch.autograd.grad(w, u, v, create_graph=create_graph, allow_unused=True)
    return torch.zeros_like(out) if j is None else j
