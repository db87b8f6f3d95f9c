"""Small self-contained losses for trainer tests (independent of sdekit.diffusion)."""

from __future__ import annotations

import torch


def vp_eps_loss(model, x0, generator=None, model_kwargs=None):
    """Denoising score matching (eps target) under the linear VP schedule, written out by hand."""
    b = x0.shape[0]
    t = 1e-3 + (1 - 1e-3) * torch.rand(b, generator=generator, dtype=x0.dtype, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    log_alpha = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1
    alpha = log_alpha.exp().reshape(b, *([1] * (x0.dim() - 1)))
    sigma = (1 - alpha**2).sqrt()
    pred = model(alpha * x0 + sigma * eps, t, **(model_kwargs or {}))
    return ((pred - eps) ** 2).mean()


def regression_loss(model, x0, generator=None, model_kwargs=None):
    """A noise-free loss: fit model(x, t=0.5) to sin(x)."""
    t = torch.full((x0.shape[0],), 0.5, dtype=x0.dtype, device=x0.device)
    return ((model(x0, t, **(model_kwargs or {})) - torch.sin(3 * x0)) ** 2).mean()
