"""Autograd helpers shared by the strategies' backward passes."""

from __future__ import annotations

import torch


def vjp(outputs, inputs, cotangents, *, create_graph: bool = False, retain_graph: bool | None = None):
    """Vector-Jacobian products of ``outputs`` (tensor or tuple) in ``inputs``; zeros where unused."""
    if isinstance(outputs, torch.Tensor):
        outputs, cotangents = (outputs,), (cotangents,)
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return [torch.zeros_like(x) for x in inputs]
    grads = torch.autograd.grad([o for o, _ in pairs], inputs, [c for _, c in pairs], allow_unused=True,
                                create_graph=create_graph, retain_graph=retain_graph)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def unflat(vector: torch.Tensor, like) -> list[torch.Tensor]:
    """Split a flat ``vector`` into views shaped like the tensors ``like``."""
    out, i = [], 0
    for p in like:
        n = p.numel()
        out.append(vector[i:i + n].view_as(p))
        i += n
    return out


def jvp(out: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(d out / d y) v`` by the double-vjp trick, differentiable in ``y`` and parameters."""
    if not out.requires_grad:
        return torch.zeros_like(out)
    u = torch.zeros_like(out, requires_grad=True)
    (w,) = torch.autograd.grad(out, y, u, create_graph=True, allow_unused=True)
    if w is None:
        return torch.zeros_like(out)
    (j,) = torch.autograd.grad(w, u, v, create_graph=True, allow_unused=True)
    return torch.zeros_like(out) if j is None else j

