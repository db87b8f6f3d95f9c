"""Autograd helpers shared by the strategies' backward passes."""

from __future__ import annotations

import torch

from .._autodiff import jvp as jvp  # re-exported: the solvers use it too, so it lives in core._autodiff


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

