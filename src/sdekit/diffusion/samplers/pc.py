r"""The predictor–corrector sampler of score_sde (Song et al. 2021, "Score-based generative modeling
through stochastic differential equations", ICLR, Algorithms 2-3 and appendix G): a reverse-diffusion
predictor and a Langevin corrector with a signal-to-noise ratio."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .._utils import check_real
from .base import Sampler, SamplerContext, schedule_point, substep_edges

__all__ = ["PredictorCorrector"]


def _normals(ctx, k: int, t0: float, t1: float, m: int) -> list[torch.Tensor]:
    """``m`` independent standard normals for step ``k``: the Brownian increments over the ``m`` equal
    sub-intervals of ``[t1, t0]``, each divided by its ``sqrt|dt|``."""
    edges = substep_edges(t0, t1, m)
    return [ctx.noise(k, edges[j], edges[j + 1]) / math.sqrt(abs(edges[j + 1] - edges[j])) for j in range(m)]


def _per_sample_norm(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1).norm(dim=1).reshape(v.shape[0], *([1] * (v.dim() - 1)))


class PredictorCorrector(Sampler):
    r"""score_sde's PC sampler: at each grid time ``t_0``, ``corrector_steps`` Langevin corrector steps,
    then one reverse-diffusion predictor step to ``t_1``.

    With the score ``s(x, t) = (alpha D - x) / sigma^2`` and the exact forward transition of the step,
    ``x_{t_0} = a x_{t_1} + G z``, ``a = alpha_0 / alpha_1``, ``G^2 = sigma_0^2 - a^2 sigma_1^2`` (for VP
    this is DDPM's ``a = sqrt(1 - beta_i)``, ``G^2 = beta_i``; for VE ``a = 1``,
    ``G^2 = sigma_i^2 - sigma_{i-1}^2``, as score_sde's ``discretize``):

    * **corrector** (Langevin, Algorithm 4 of the paper): ``x <- x + eps s(x, t_0) + sqrt(2 eps) z`` with
      the step ``eps = 2 a^2 (snr |z| / |s|)^2``;
    * **predictor** (reverse diffusion): ``x_1 = x - (a - 1) x + G^2 s(x, t_0) + G z``.

    score_sde takes ``|z|`` and ``|s|`` as batch means of per-sample norms, which makes a sample depend on
    its batch. Here ``norms="expected"`` (default) replaces the ratio by its typical value
    ``|z| / |s| ~ sigma`` (as ``|s| = |eps_hat| / sigma`` and ``|eps_hat| ~ |z|``), i.e.
    ``eps = 2 a^2 (snr sigma_0)^2``, the annealed-Langevin step of NCSN; ``norms="sample"`` uses each
    sample's own norms (close to score_sde in high dimension, where norms concentrate; unstable in low
    dimension, where ``|s|`` of a single sample can be near 0). Every ``z`` is an independent standard
    normal from the Brownian source: step ``k`` is split into ``corrector_steps + 1`` equal sub-intervals
    (it declares ``noise_substeps = corrector_steps + 1``, and the noise sources of
    :func:`~sdekit.diffusion.sample` and :func:`~sdekit.diffusion.sample_sharded` serve those
    sub-intervals), the correctors use the
    first ones and the predictor the last. The last step adds noise too: pass ``denoise_final=True`` to
    :func:`~sdekit.diffusion.sample` for the usual final denoising.

    Arguments:
        snr: the corrector's signal-to-noise ratio (``> 0``, default 0.16 as score_sde's configs).
        corrector_steps: Langevin steps per grid time (``>= 0``, default 1; 0 is the predictor alone).
        norms: ``"expected"`` (default) or ``"sample"``, see above.
        project: an optional map ``x -> x`` applied after every corrector step and after the predictor
            (default ``None``: none), e.g. the reflection onto a box of reflected diffusion
            (:class:`sdekit.domains.ReflectedSampler`), whose corrector must stay in the box too.

    Declares order 1 (weak), ``corrector_steps + 1`` model calls per step.
    """

    name = "pc"
    order = 1.0
    stochastic = True

    def __init__(self, snr: float = 0.16, corrector_steps: int = 1, *, norms: str = "expected",
                 project: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.snr = check_real("snr", snr, positive=True)
        if project is not None and not callable(project):
            raise TypeError(f"project must be a callable x -> x or None, got {type(project).__name__}")
        self.project = project
        if norms not in ("expected", "sample"):
            raise ValueError(f"norms must be 'expected' or 'sample', got {norms!r}")
        self.norms = norms
        if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or corrector_steps < 0:
            raise ValueError(f"corrector_steps must be an int >= 0, got {corrector_steps!r}")
        self.corrector_steps = corrector_steps
        self.nfe_per_step = corrector_steps + 1
        self.noise_substeps = corrector_steps + 1

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        p0, p1 = schedule_point(ctx.schedule, t0), schedule_point(ctx.schedule, t1)
        a = p0.alpha / p1.alpha
        g2 = max(p0.sigma**2 - (a * p1.sigma) ** 2, 0.0)
        zs = _normals(ctx, k, t0, t1, self.noise_substeps)
        for j in range(self.corrector_steps):
            score = (p0.alpha * ctx.denoiser(x, t0) - x) / p0.sigma**2
            z = zs[j]
            if self.norms == "expected":
                eps = 2.0 * a * a * (self.snr * p0.sigma) ** 2
                x = x + eps * score + math.sqrt(2.0 * eps) * z
            else:
                grad_norm = _per_sample_norm(score).clamp_min(torch.finfo(x.dtype).tiny)
                eps = 2.0 * a * a * (self.snr * _per_sample_norm(z) / grad_norm) ** 2
                x = x + eps * score + torch.sqrt(2.0 * eps) * z
            if self.project is not None:
                x = self.project(x)
        score = (p0.alpha * ctx.denoiser(x, t0) - x) / p0.sigma**2
        x = (2.0 - a) * x + g2 * score + math.sqrt(g2) * zs[-1]
        return (x if self.project is None else self.project(x)), state

    def __repr__(self) -> str:
        extra = "" if self.project is None else f", project={self.project!r}"
        return (f"PredictorCorrector(snr={self.snr}, corrector_steps={self.corrector_steps}, "
                f"norms={self.norms!r}{extra})")
