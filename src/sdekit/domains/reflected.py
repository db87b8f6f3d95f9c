r"""Reflected diffusion models on a box (Lou & Ermon 2023, "Reflected Diffusion Models", ICML,
arXiv 2304.04740): training against the reflected kernel's score, reverse-time samplers that reflect
after every step, the probability-flow ODE with the paper's boundary treatment, classifier-free guidance,
and thresholding (clip after every step) as the baseline.

The forward process is the VE SDE ``dx = g(t) dW`` reflected at the faces of the box, so
``x_t = reflect(x_0 + sigma(t) z)`` (:func:`~sdekit.domains.reflected_perturb`), and its prior at
``sigma_max`` (several box widths) is the uniform law on the box. Its reverse is the reflected SDE
``dx = -g^2 grad log p_t(x) dt + g dW_bar`` (the paper's eq. 8): any reverse step followed by the
reflection. A network trained by :class:`ReflectedScoreMatching` with ``prediction="eps"`` outputs
``-sigma grad log p_t``, and the samplers of :mod:`sdekit.diffusion` see it through the usual denoiser
``D = x + sigma^2 grad log p_t`` (for ``alpha = 1``), so every sampler step is the diffusion layer's own;
this module only adds the reflection (or the clip) after it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..diffusion.losses import DenoisingScoreMatching, TimeSampling, WeightFunction
from ..diffusion.prediction import Denoiser, Prediction
from ..diffusion.samplers import PFODE, PredictorCorrector, Sampler, SamplerContext, get_sampler
from ..diffusion.schedules import Schedule
from ._box import Box
from ._kernel import reflected_kernel_score

__all__ = [
    "ReflectedScoreMatching", "LabelDropout", "ReflectedSampler", "ThresholdedSampler", "ReflectedPFODE",
    "ClassifierFreeGuidance",
]


def _per_sample(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A 0-d or ``(batch,)`` coefficient shaped to broadcast against ``x: (batch, *event)``."""
    c = c.to(dtype=x.dtype, device=x.device)
    return c.reshape(-1, *([1] * (x.dim() - 1))) if c.dim() == 1 else c


def _check_box(box) -> Box:
    if not isinstance(box, Box):
        raise TypeError(f"box must be a sdekit.domains.Box, got {type(box).__name__}")
    return box


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
class ReflectedScoreMatching(DenoisingScoreMatching):
    r"""Denoising score matching against the reflected kernel (Lou & Ermon 2023, eq. 11, the "generalised
    score matching" of section 3.2):

    .. math:: L = E_{t, x_0, z}\Big[\lambda(t)\,\big\|s_\theta(x_t, t) - \nabla_x \log p_{\sigma(t)}(x_t \mid x_0)
              \big\|^2\Big],\qquad x_t = \mathrm{reflect}(x_0 + \sigma(t) z),

    with the kernel's closed-form score (:func:`~sdekit.domains.reflected_kernel_score`). It is the
    diffusion layer's :class:`~sdekit.diffusion.DenoisingScoreMatching` with another forward kernel: its
    :meth:`perturb` returns the reflected ``x_t`` and the kernel's score in ``eps`` units,
    ``eps* = -sigma grad log p(x_t | x_0)`` (``= z`` away from the faces), so every parameterisation and
    weighting of the diffusion layer applies. With ``prediction="eps"`` and ``weighting=None`` (the
    defaults) the loss is ``sigma^2 |s_theta - grad log p|^2 / d``, the paper's weighting; the paper's
    network (output divided by ``sigma``) is exactly the ``"eps"`` parameterisation.

    Arguments:
        schedule: a schedule with ``alpha = 1`` (:class:`~sdekit.diffusion.VE`; the paper:
            ``VE(sigma_min=0.01, sigma_max=5)`` on ``[0, 1]^d``).
        box: the :class:`~sdekit.domains.Box` of the data.
        prediction, weighting, time_sampling, time_input: as
            :class:`~sdekit.diffusion.DenoisingScoreMatching`.

    Call: ``loss(model, x0, generator=None, model_kwargs=None)``, ``x0: (batch, d)`` in the box.

    Raises:
        TypeError / ValueError: a schedule with ``alpha != 1``, data outside the box or of the wrong shape.
    """

    def __init__(self, schedule: Schedule, box: Box, prediction: str | Prediction = "eps",
                 weighting: str | WeightFunction | None = None, time_sampling: str | TimeSampling = "uniform", *,
                 time_input: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__(schedule, prediction, weighting, time_sampling, time_input=time_input)
        probe = torch.linspace(schedule.t_min, schedule.t_max, 5, dtype=torch.float64)
        if not bool(torch.all(schedule.alpha(probe) == 1.0)):
            raise ValueError(f"reflected diffusion needs a schedule with alpha(t) = 1 (variance exploding, e.g. "
                             f"sdekit.diffusion.VE); got {schedule!r}")
        self.box = _check_box(box)

    def perturb(self, x0: torch.Tensor, noise: torch.Tensor,
                t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x_t = reflect(x0 + sigma z)``, ``noise_target = -sigma grad log p(x_t | x0)`` and
        ``x0_target = x_t - sigma noise_target`` (see the class docstring)."""
        self.box.check("x0", x0)
        sigma = self.schedule.sigma(t)
        sig_b = _per_sample(sigma, x0)
        x_t = self.box.reflect(x0 + sig_b * noise)
        score = reflected_kernel_score(x_t, x0, sigma.to(x0.device), self.box)
        eps = -sig_b * score
        return x_t, x_t - sig_b * eps, eps

    def __repr__(self) -> str:
        return f"ReflectedScoreMatching({self.schedule!r}, {self.box!r}, prediction={self.prediction!r})"


class LabelDropout:
    r"""Classifier-free guidance training (Ho & Salimans 2022): replace each sample's class label by the
    null label with probability ``p`` before calling ``loss``, so one network learns the conditional and
    the unconditional score. The paper trains with ``p = 0.2``.

    Arguments:
        loss: a loss ``loss(model, x0, generator=None, model_kwargs=None)`` (e.g.
            :class:`ReflectedScoreMatching`).
        p: the drop probability in ``[0, 1]``.
        null_label: the label meaning "no class" (for :class:`~sdekit.nn.MLPDenoiser` it is
            ``num_classes``).
        label_key: the model keyword holding the labels (default ``"class_labels"``, as the trainer).
    """

    def __init__(self, loss: Callable[..., torch.Tensor], p: float, null_label: int, *,
                 label_key: str = "class_labels") -> None:
        if not callable(loss):
            raise TypeError(f"loss must be callable, got {type(loss).__name__}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        if isinstance(null_label, bool) or not isinstance(null_label, int):
            raise TypeError(f"null_label must be an int, got {type(null_label).__name__}")
        self.loss, self.p, self.null_label, self.label_key = loss, float(p), null_label, label_key

    def __call__(self, model: Callable[..., torch.Tensor], x0: torch.Tensor, generator: torch.Generator | None = None,
                 model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        kwargs = dict(model_kwargs or {})
        labels = kwargs.get(self.label_key)
        if labels is None:
            raise ValueError(f"LabelDropout needs labels in model_kwargs[{self.label_key!r}] (pass labels= to the "
                             "Trainer)")
        dev = generator.device if generator is not None else labels.device
        drop = torch.rand(labels.shape, generator=generator, device=dev).to(labels.device) < self.p
        kwargs[self.label_key] = torch.where(drop, torch.full_like(labels, self.null_label), labels)
        return self.loss(model, x0, generator=generator, model_kwargs=kwargs)

    def __repr__(self) -> str:
        return f"LabelDropout({self.loss!r}, p={self.p}, null_label={self.null_label})"


# ------------------------------------------------------------------------------------------------
# Guidance
# ------------------------------------------------------------------------------------------------
class ClassifierFreeGuidance(Denoiser):
    r"""The classifier-free guided denoiser ``D_w = (1 + w) D(x, t | c) - w D(x, t | null)`` (Ho & Salimans
    2022; Lou & Ermon 2023, section 5.3: ``s_w = (1 + w) s_c - w s_u``, the same as the denoisers are
    affine in the score). Both branches run as one batched model call of ``2 * batch`` rows. The official
    code uses class 0 as its "unconditional" branch; here it is the null label the network was trained with
    (:class:`LabelDropout`).

    Arguments:
        model: the class-conditional network ``model(x, t, **{label_key: labels})``.
        schedule, prediction, time_input: as :class:`~sdekit.diffusion.Denoiser`.
        labels: ``(batch,)`` integer class labels (the batch of ``x`` at sampling time).
        null_label: the "no class" label.
        weight: the guidance weight ``w >= 0`` (0: the conditional model).
        label_key: the model keyword for the labels.
    """

    def __init__(self, model: Callable[..., torch.Tensor], schedule: Schedule, labels: torch.Tensor, null_label: int,
                 weight: float, *, prediction: str | Prediction = "eps", label_key: str = "class_labels",
                 time_input: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__(model, schedule, prediction, time_input=time_input)
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
            raise TypeError("labels must be an integer tensor of shape (batch,)")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        self.labels, self.null_label, self.weight, self.label_key = labels, int(null_label), float(weight), label_key

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.labels.shape[0]:
            raise ValueError(f"x has batch {x.shape[0]} but labels has {self.labels.shape[0]} entries")
        if self.weight == 0.0:
            self.model_kwargs = {self.label_key: self.labels}
            return super().__call__(x, t)
        t_in = t if not (isinstance(t, torch.Tensor) and t.dim() == 1) else torch.cat([t, t])
        self.model_kwargs = {self.label_key: torch.cat([self.labels, torch.full_like(self.labels, self.null_label)])}
        d = super().__call__(torch.cat([x, x]), t_in)
        d_c, d_u = d[: x.shape[0]], d[x.shape[0]:]
        return (1.0 + self.weight) * d_c - self.weight * d_u

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidance(weight={self.weight}, null_label={self.null_label})"


# ------------------------------------------------------------------------------------------------
# Samplers
# ------------------------------------------------------------------------------------------------
class _ProjectedSampler(Sampler):
    """A sampler of the diffusion layer followed, after every step, by a map onto the box."""

    kind = ""

    def __init__(self, inner: str | Sampler, box: Box, *, denoise_final: bool = False) -> None:
        inner = get_sampler(inner)
        self.box = _check_box(box)
        if isinstance(inner, PredictorCorrector):
            # the Langevin corrector must stay in the box too: rebuild the sampler with the projection hook
            inner = PredictorCorrector(inner.snr, inner.corrector_steps, norms=inner.norms, project=self.project)
        if isinstance(inner, _ProjectedSampler):
            raise TypeError("inner is already projected onto a box; pass the plain sampler")
        self.inner = inner
        self.denoise_final = bool(denoise_final)
        self.name = f"{self.kind}[{inner.name}]"
        self.order = inner.order
        self.nfe_per_step = inner.nfe_per_step
        self.stochastic = inner.stochastic
        self.noise_substeps = inner.noise_substeps

    def project(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def reverse_sde_tau2(self) -> float | None:
        """``None``: a projected step is not a step of the unconstrained reverse-SDE family."""
        return None

    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        return self.inner.init(ctx, x)

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        x1, state = self.inner.step(ctx, k, t0, t1, x, state)
        x1 = self.project(x1)
        if self.denoise_final and k == len(ctx.times) - 2:
            x1 = self.project(ctx.denoiser(x1, t1))
        return x1, state

    def nfe(self, steps: int) -> int | None:
        n = self.inner.nfe(steps)
        return None if n is None else n + int(self.denoise_final)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, {self.box!r}, denoise_final={self.denoise_final})"


class ReflectedSampler(_ProjectedSampler):
    r"""Reverse-time sampling of reflected diffusion (Lou & Ermon 2023, section 4.1): a step of any sampler
    of the diffusion layer, then the reflection onto the box. With
    :class:`~sdekit.diffusion.EulerMaruyama` this is the paper's reflected Euler–Maruyama,
    ``x_1 = reflect(x_0 + g^2 s_theta(x_0, t_0) |dt| + g dW)``; with
    :class:`~sdekit.diffusion.PredictorCorrector` the Langevin corrector is reflected too (through the
    sampler's ``project`` hook). Every grid step is taken, the last included (the official code's loop
    ``i < N - 1`` drops it), and ``denoise_final=True`` ends with ``reflect(D(x, t_min))``, one more model
    call (the official code computes it and returns the noisy state).

    Use with :func:`~sdekit.diffusion.sample`, starting from the uniform prior ``box.uniform((n, d))``:
    ``sample(model, VE(0.01, 5), box.uniform((n, 2)), solver=ReflectedSampler("euler-maruyama", box),
    prediction="eps", steps=100)``.

    Arguments:
        inner: a sampler name or :class:`~sdekit.diffusion.Sampler` (e.g. ``EulerMaruyama()``,
            ``PredictorCorrector(snr=0.01)``).
        box: the :class:`~sdekit.domains.Box`.
        denoise_final: end with the reflected denoiser output (one extra model call).

    Raises:
        ValueError (from :meth:`init`) when ``x_T`` is not in the box or not ``(batch, d)``.
    """

    kind = "reflected"

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The reflection onto the box."""
        return self.box.reflect(x)

    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        self.box.check("x_T", x)
        return self.inner.init(ctx, x)


class ThresholdedSampler(_ProjectedSampler):
    """Thresholding, the baseline of reflected diffusion (Saharia et al. 2022's static thresholding; Lou &
    Ermon 2023, section 2.2): a step of an unconstrained VE/VP sampler, then ``clip`` to the box. The
    model is trained without any boundary; the clip is applied at sampling only, after every step
    (``denoise_final`` as in :class:`ReflectedSampler`).

    Arguments: as :class:`ReflectedSampler`; ``x_T`` is the unconstrained prior (not checked against the box).
    """

    kind = "thresholded"

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The clip to the box."""
        return self.box.clip(x)


class ReflectedPFODE(Sampler):
    r"""The probability-flow ODE of reflected diffusion with the paper's boundary treatment (Lou & Ermon
    2023, section 4.2 and its code): the drift ``-g^2 s_theta / 2`` is multiplied, per coordinate, by the
    bump ``b(u) = exp((4 - 1 / (u (1 - u))) / scale)`` of the unit coordinate ``u`` (``b = 1`` at the
    centre, ``0`` on the faces, so the flow never leaves the box in continuous time), and the start is
    squeezed from ``U[0, 1]`` to ``U[margin, 1 - margin]``. It is the diffusion layer's
    :class:`~sdekit.diffusion.PFODE` on the bumped denoiser ``D_b = (x + b (alpha D - x)) / alpha``
    (the score times ``b``); a step that a coarse grid pushes past a face is reflected back.

    Arguments:
        method: a core ODE method (default ``"rk4"``; the paper: RK45 with tolerance ``1e-5``, here
            ``"dopri5"``).
        box: the :class:`~sdekit.domains.Box`.
        scale: the bump's scale (default 200, the official code's).
        margin: the start squeeze (default 0.01, the official code's).
        rtol, atol: tolerances of adaptive methods.
    """

    name = "reflected-ode"

    def __init__(self, box: Box, method="rk4", *, scale: float = 200.0, margin: float = 0.01,
                 rtol: float = 1e-5, atol: float = 1e-5) -> None:
        self.box = _check_box(box)
        self.inner = PFODE(method, rtol=rtol, atol=atol)
        if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        if not (isinstance(margin, (int, float)) and 0.0 <= margin < 0.5):
            raise ValueError(f"margin must lie in [0, 0.5), got {margin!r}")
        self.scale, self.margin = float(scale), float(margin)
        self.order = self.inner.order
        self.nfe_per_step = self.inner.nfe_per_step

    def bump(self, x: torch.Tensor) -> torch.Tensor:
        """``b(u) = exp((4 - 1/(u(1-u))) / scale)`` of the unit coordinates of ``x`` (0 on the faces)."""
        u = self.box.to_unit(x).clamp(0.0, 1.0)
        return torch.exp((4.0 - 1.0 / (u * (1.0 - u))) / self.scale)

    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        self.box.check("x_T", x)
        return self.inner.init(self._bumped(ctx), x)

    def _bumped(self, ctx: SamplerContext) -> SamplerContext:
        schedule = ctx.schedule

        def denoiser(x: torch.Tensor, t: float) -> torch.Tensor:
            alpha = _per_sample(schedule.alpha(t), x)
            return (x + self.bump(x) * (alpha * ctx.denoiser(x, t) - x)) / alpha

        return SamplerContext(denoiser=denoiser, schedule=schedule, times=ctx.times, noise=ctx.noise)

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        if k == 0 and self.margin > 0:
            x = self.box.from_unit(self.margin + (1.0 - 2.0 * self.margin) * self.box.to_unit(x))
        x1, state = self.inner.step(self._bumped(ctx), k, t0, t1, x, state)
        return self.box.reflect(x1), state

    def __repr__(self) -> str:
        return f"ReflectedPFODE({self.box!r}, method={self.inner.method!r}, scale={self.scale}, margin={self.margin})"
