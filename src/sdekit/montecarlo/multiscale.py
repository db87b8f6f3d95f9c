"""Training-free multiscale samplers: MultALMC and MultCDiff (sampling by averaging).

Cordero-Encinar, Duncan, Reich, Akyildiz, "Sampling by averaging: A multiscale approach to score
estimation", arXiv 2508.15069, 2025.

For a target ``pi ∝ exp(-V)`` and a noise law ``nu`` (standard Gaussian, or Student-t for heavy tails), the
diffusion path ``mu_lambda = Law(sqrt(lambda) X + sqrt(1 - lambda) Z)``, ``X ~ pi``, ``Z ~ nu``, has the score

    grad log mu_lambda(x) = E_{rho_{lambda,x}}[ (1 / sqrt(1 - lambda)) (grad log nu)((x - Y) / sqrt(1 - lambda)) ]
                          = E_{rho_{lambda,x}}[ grad log pi_lambda(Y) ],
    grad log pi_lambda(y) = grad log pi(y / sqrt(lambda)) / sqrt(lambda),

    rho_{lambda,x}(y) ∝ nu((x - y) / sqrt(1 - lambda)) exp(-V(y / sqrt(lambda)))

(the law of ``sqrt(lambda) X`` given ``sqrt(lambda) X + sqrt(1 - lambda) Z = x``; the second form is the
convolution identity ``grad (pi_lambda * nu_s) = (grad pi_lambda) * nu_s``). Instead of estimating the
expectation, a fast process ``Y`` runs Langevin at speed ``1 / eps`` on ``rho_{lambda,X}`` next to the slow
process ``X``, whose drift uses the current ``Y``; as ``eps -> 0`` the slow process sees the average, the
exact score (averaging principle; the paper's Thm 4.1). The first form (free: no gradient) is used for
``lambda < switch`` and the second (the gradient the fast drift needs anyway) for ``lambda >= switch``: the
first blows up as ``lambda -> 1`` (``1 / (1 - lambda)``), the second as ``lambda -> 0`` (``1 / sqrt(lambda)``);
the paper's ``lambda~ = 0.6`` is the default (our reading of its regime switch).

* :class:`MultALMC`: the slow process is annealed Langevin on ``mu_lambda(t / T)``
  (:class:`~sdekit.montecarlo.AnnealingSchedule`). Overdamped (``friction=None``): slow and fast are one
  :class:`~sdekit.montecarlo.OverdampedLangevin` on ``(X, Y)`` with speeds ``(1, 1 / eps)``, Euler-Maruyama
  through ``sdeint``. Underdamped: one :class:`~sdekit.montecarlo.KineticLangevin` on ``q = (X, Y)``,
  ``p = (V, U)`` with speeds ``(1, 1 / eps)`` and frictions ``(Gamma(t), fast_friction)``, integrated by the
  same :class:`~sdekit.montecarlo.OBABO` step (the paper uses OBABO for the slow part and SROCK with 5 stages
  for the fast part; OBABO is used for both here: its stability limit for the fast block,
  ``(h / eps) sqrt(lambda / (1 - lambda)) < 2``, is met by the paper's ``h / eps <= 0.1`` up to ``lambda = 0.99``).
* :class:`MultCDiff`: the slow process is the time reversal of the Ornstein-Uhlenbeck process
  ``dX = -X ds + sqrt(2) dW`` (whose law at time ``s`` is ``mu_{exp(-2 s)}``), run from ``lambda = lam_min``
  to ``lam_max`` in ``T = n_steps h`` at speed ``kappa = log(lam_max / lam_min) / (2 T)``:
  ``dX = kappa (X + 2 grad log mu_lambda(X)) dt + sqrt(2 kappa) dW``, ``lambda(t) = lam_min exp(2 kappa t)``,
  the score from the fast process as above; overdamped (Euler-Maruyama through ``sdeint``), Gaussian noise.
  The paper's MultCDiff is underdamped (a critically damped Langevin diffusion, ``Gamma^2 = 4 M``); that
  variant is not built here.

Overdamped fast processes need ``(h / eps) / (1 - lam_max) < 1`` for a stable Euler step (the fast target's
curvature is ``1 / (1 - lambda)``), underdamped ones ``(h / eps) / sqrt(1 - lam_max) < 2``; the samplers refuse
settings beyond these. The Student-t noise variant uses
plain Langevin on the Student-t ``rho`` (the paper's modified Ito fast process, after He et al. 2024, is not
built). Each step evaluates ``grad log pi`` once (at ``Y / sqrt(lambda)``), so budgets compare with
:class:`~sdekit.montecarlo.ULA` / :class:`~sdekit.montecarlo.ULMC` step for step.
"""

from __future__ import annotations

import math

import torch

from .langevin import (
    OBABO,
    AnnealingSchedule,
    KineticLangevin,
    OverdampedLangevin,
    SampleResult,
    check_positive,
    check_run,
    friction_schedule,
    run,
)
from .targets import Target, _check_points

__all__ = ["GaussianNoise", "StudentTNoise", "ConditionalTarget", "MultALMC", "MultCDiff"]


class GaussianNoise:
    """``nu = N(0, I)``: ``log nu(u) = -|u|^2 / 2``, ``grad log nu(u) = -u``."""

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return -0.5 * (u**2).sum(-1)

    def grad_log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return -u

    def __repr__(self) -> str:
        return "GaussianNoise()"


class StudentTNoise:
    """Multivariate Student-t ``nu`` with ``df`` degrees of freedom (identity scale), for heavy-tailed
    targets: ``log nu(u) = -(df + d)/2 log(1 + |u|^2 / df)``, ``grad log nu(u) = -(df + d) u / (df + |u|^2)``."""

    def __init__(self, df: float = 3.0) -> None:
        self.df = float(check_positive("df", df))

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return -0.5 * (self.df + u.shape[-1]) * torch.log1p((u**2).sum(-1) / self.df)

    def grad_log_prob(self, u: torch.Tensor) -> torch.Tensor:
        return -(self.df + u.shape[-1]) * u / (self.df + (u**2).sum(-1, keepdim=True))

    def __repr__(self) -> str:
        return f"StudentTNoise(df={self.df})"


Noise = GaussianNoise | StudentTNoise


def _check_noise(noise) -> Noise:
    if not isinstance(noise, (GaussianNoise, StudentTNoise)):
        raise TypeError(f"noise must be GaussianNoise() or StudentTNoise(df), got {type(noise).__name__}")
    return noise


def _check_lam(lam) -> float:
    lam = float(check_positive("lam", lam))
    if not lam < 1:
        raise ValueError(f"lam must lie in (0, 1) (the fast target is a point mass at lam = 1), got {lam}")
    return lam


def fast_terms(target: Target, noise: Noise, x: torch.Tensor, y: torch.Tensor, lam: float):
    """The fast drift and the two score estimators at ``(x, y)``, one gradient of ``log pi``:

    returns ``(grad_y log rho_{lam,x}(y), noise_form, target_form)`` with
    ``noise_form = (grad log nu)(u) / sqrt(1 - lam)``, ``u = (x - y) / sqrt(1 - lam)``, and
    ``target_form = grad log pi(y / sqrt(lam)) / sqrt(lam)``; all ``(n, d)``."""
    s1, sl = math.sqrt(1 - lam), math.sqrt(lam)
    noise_form = noise.grad_log_prob((x - y) / s1) / s1
    target_form = target.grad_log_prob(y / sl) / sl
    return target_form - noise_form, noise_form, target_form


class ConditionalTarget(Target):
    """The fast target ``rho_{lam,x}(y) ∝ nu((x - y) / sqrt(1 - lam)) pi(y / sqrt(lam))`` for fixed
    ``x: (n, d)`` (one conditional law per row) and ``0 < lam < 1``: a :class:`~sdekit.montecarlo.Target`
    on ``y: (n, d)`` whose gradient costs one gradient of ``pi`` (counted on ``pi`` too).

    ``score_estimates(y)`` gives the two unbiased estimators of ``grad log mu_lam(x)`` whose averages under
    ``rho_{lam,x}`` equal the score (see the module docstring).
    """

    def __init__(self, target: Target, x: torch.Tensor, lam: float, noise: Noise | None = None) -> None:
        if not isinstance(target, Target):
            raise TypeError(f"target must be a Target, got {type(target).__name__}")
        _check_points(x, target.dim)
        super().__init__(target.dim)
        self.target, self.x, self.lam = target, x, _check_lam(lam)
        self.noise = _check_noise(GaussianNoise() if noise is None else noise)

    def _log_prob(self, y):
        s1, sl = math.sqrt(1 - self.lam), math.sqrt(self.lam)
        return self.noise.log_prob((self.x - y) / s1) + self.target.log_prob(y / sl)

    def _grad_log_prob(self, y):
        return fast_terms(self.target, self.noise, self.x, y, self.lam)[0]

    def score_estimates(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noise_form, target_form)`` at ``y: (n, d)``: each averages to ``grad log mu_lam(x)``."""
        _check_points(y, self.dim, "y")
        return fast_terms(self.target, self.noise, self.x, y, self.lam)[1:]


def _check_switch(switch) -> float:
    if isinstance(switch, bool) or not isinstance(switch, (int, float)) or not 0 <= switch <= 1:
        raise ValueError(f"switch must be a number in [0, 1], got {switch!r}")
    return float(switch)


def _check_fast_stability(step_size: float, eps: float, lam_max: float, noise: Noise, name: str,
                          underdamped: bool = False) -> None:
    """Refuse a fast step beyond the stability limit of its scheme on the curvature ``1 / (1 - lam_max)`` of
    the Gaussian factor of ``rho`` (Euler: ``(h / eps) K < 2``, required ``< 1`` to leave room for the curvature
    of ``pi``; OBABO: ``(h / eps) sqrt(K) < 2``, the Verlet limit, which the paper's ``h = 0.005``,
    ``eps = 0.05`` meets at ``lam_max = 0.99`` with ``(h / eps) sqrt(K) = 1``)."""
    if underdamped:
        ratio = step_size / (eps * math.sqrt(1 - lam_max))
        if ratio >= 2:
            raise ValueError(
                f"{name}: the underdamped fast step is unstable: step_size / (eps sqrt(1 - lam_max)) = {step_size} "
                f"/ ({eps} * {math.sqrt(1 - lam_max):.3g}) = {ratio:.3g} must be < 2; lower step_size, raise eps "
                "or lower lam_max")
        return
    ratio = step_size / (eps * (1 - lam_max))
    if isinstance(noise, GaussianNoise) and ratio >= 1:
        raise ValueError(
            f"{name}: the overdamped fast step is unstable: step_size / (eps (1 - lam_max)) = {step_size} / "
            f"({eps} * {1 - lam_max:.3g}) = {ratio:.3g} must be < 1; lower step_size, raise eps, lower lam_max "
            "or use the underdamped variant (friction=...)")


class MultALMC:
    """Multiscale annealed Langevin: annealed Langevin on ``mu_lambda(t/T)`` whose score is the running
    average of a fast Langevin process on ``rho_{lambda,X}`` (see the module docstring for the maths).

    Overdamped (``friction=None``), on ``(X, Y)`` with speeds ``(1, 1 / eps)``::

        dX = s(X, Y, lambda) dt + sqrt(2) dW,
        dY = (1 / eps) grad log rho_{lambda,X}(Y) dt + sqrt(2 / eps) dB,

    by Euler-Maruyama through ``sdeint`` (``n_steps + 1`` gradients). Underdamped (``friction`` given): the
    kinetic version of both, frictions ``(Gamma(t), fast_friction)``, by :class:`~sdekit.montecarlo.OBABO`
    through ``sdeint`` (``n_steps + 2`` gradients). ``s`` is the noise-form estimator for
    ``lambda < switch`` and the target-form one above. Starts at ``Y_0 = fast_start X_0``, zero momenta.

    Arguments:
        step_size: ``h > 0`` (the paper: 0.001, 0.003, 0.005).
        eps: the time-scale separation ``eps > 0`` (the paper: 0.05, 0.07, 0.1).
        schedule: the ``lambda`` path (default :class:`~sdekit.montecarlo.AnnealingSchedule` ``()``: 0.01 to 0.99).
        friction: ``None`` (overdamped), a number, or ``(gamma_min, gamma_max)`` (held for half the run, then
            linear; the paper's (0.01, 0.5) style).
        fast_friction: the fast block's friction (underdamped only).
        noise: :class:`GaussianNoise` (default) or :class:`StudentTNoise` (heavy tails; start ``x0`` from it).
        switch: ``lambda`` at which the slow drift changes estimator (default 0.6).
        fast_start: ``Y_0 = fast_start X_0`` (default 1). The fast process starts in the mode of ``rho`` it is
            put in and rarely leaves it at small ``lambda``: ``Y_0 = X_0`` (``Y_0 / sqrt(lam_min)`` spread at
            scale ``1 / sqrt(lam_min)``) spreads the chains over the modes of a wide mixture, while
            ``sqrt(lam_min)`` (``Y_0 / sqrt(lam_min) = X_0``) sends them all to the mode nearest the origin but
            keeps ``grad log pi(Y / sqrt(lambda))`` at ``O(1)`` arguments (needed for the funnel, whose gradient
            overflows far out).
    """

    def __init__(self, step_size: float, eps: float, schedule: AnnealingSchedule | None = None,
                 friction: float | tuple[float, float] | None = None, fast_friction: float = 2.0,
                 noise: Noise | None = None, switch: float = 0.6, fast_start: float = 1.0) -> None:
        self.step_size = float(check_positive("step_size", step_size))
        self.eps = float(check_positive("eps", eps))
        self.schedule = AnnealingSchedule() if schedule is None else schedule
        if not isinstance(self.schedule, AnnealingSchedule):
            raise TypeError(f"schedule must be an AnnealingSchedule, got {type(schedule).__name__}")
        if not self.schedule.lam_max < 1:
            raise ValueError(f"schedule.lam_max must be < 1 for a multiscale sampler, got {self.schedule.lam_max}")
        self.friction = None if friction is None else friction_schedule(friction)
        self.fast_friction = float(check_positive("fast_friction", fast_friction))
        self.noise = _check_noise(GaussianNoise() if noise is None else noise)
        self.switch = _check_switch(switch)
        self.fast_start = float(check_positive("fast_start", fast_start))
        _check_fast_stability(self.step_size, self.eps, self.schedule.lam_max, self.noise, "MultALMC",
                              underdamped=self.friction is not None)

    def sample(self, target, x0: torch.Tensor, n_steps: int, *, seed: int | None = None) -> SampleResult:
        """Run ``x0: (n, d)`` chains for ``n_steps``; ``samples`` are the slow states ``X_T``."""
        target, n_steps = check_run(target, x0, n_steps)
        start = target.grad_evals
        total, d = n_steps * self.step_size, x0.shape[1]
        sched, noise, switch = self.schedule, self.noise, self.switch

        def force(t, q):
            lam = sched(float(t) / total)
            x, y = q[:, :d], q[:, d:]
            fast, noise_form, target_form = fast_terms(target, noise, x, y, lam)
            return torch.cat([noise_form if lam < switch else target_form, fast], 1)

        speed = torch.cat([torch.ones(d), torch.full((d,), 1 / self.eps)]).to(x0)
        q0 = torch.cat([x0, self.fast_start * x0], 1)
        if self.friction is None:
            q = run(OverdampedLangevin(force, speed), q0, n_steps, self.step_size, "euler", seed)
        else:
            fr, fast_fr = self.friction, self.fast_friction

            def friction(t):
                return torch.cat([torch.full((d,), fr(float(t) / total)), torch.full((d,), fast_fr)]).to(x0)

            sde = KineticLangevin(force, friction, speed)
            q = run(sde, torch.stack([q0, torch.zeros_like(q0)]), n_steps, self.step_size, OBABO(), seed)[0]
        return SampleResult(q[:, :d], target.grad_evals - start, n_steps)


class MultCDiff:
    """Multiscale diffusion sampler: the reverse Ornstein-Uhlenbeck (VP) diffusion from ``lambda = lam_min``
    to ``lam_max``, its score the running average of a fast Langevin process on ``rho_{lambda,X}``::

        dX = kappa (X + 2 s(X, Y, lambda)) dt + sqrt(2 kappa) dW,
        dY = (1 / eps) grad log rho_{lambda,X}(Y) dt + sqrt(2 / eps) dB,

    ``lambda(t) = lam_min exp(2 kappa t)``, ``kappa = log(lam_max / lam_min) / (2 T)``, ``T = n_steps h``:
    one :class:`~sdekit.montecarlo.OverdampedLangevin` on ``(X, Y)`` with speeds ``(kappa, 1 / eps)`` and force
    ``(X + 2 s, grad log rho)``, Euler-Maruyama through ``sdeint`` (``n_steps + 1`` gradients). Gaussian noise;
    overdamped only (the paper's critically damped variant is not built). ``x0`` should be ``N(0, I)`` draws;
    the fast process starts at ``Y_0 = fast_start X_0``.

    Arguments:
        step_size: ``h > 0``.
        eps: the time-scale separation ``eps > 0``.
        lam_min, lam_max: the ``lambda`` range, ``0 < lam_min < lam_max < 1`` (defaults 0.01, 0.99).
        switch, fast_start: as in :class:`MultALMC` (defaults 0.6 and 1).
    """

    def __init__(self, step_size: float, eps: float, lam_min: float = 0.01, lam_max: float = 0.99,
                 switch: float = 0.6, fast_start: float = 1.0) -> None:
        self.step_size = float(check_positive("step_size", step_size))
        self.eps = float(check_positive("eps", eps))
        self.schedule = AnnealingSchedule(lam_min, lam_max)
        if not lam_max < 1:
            raise ValueError(f"lam_max must be < 1 for a multiscale sampler, got {lam_max}")
        self.switch = _check_switch(switch)
        self.fast_start = float(check_positive("fast_start", fast_start))
        _check_fast_stability(self.step_size, self.eps, lam_max, GaussianNoise(), "MultCDiff")

    def sample(self, target, x0: torch.Tensor, n_steps: int, *, seed: int | None = None) -> SampleResult:
        """Run ``x0: (n, d)`` chains for ``n_steps``; ``samples`` are the slow states ``X_T``."""
        target, n_steps = check_run(target, x0, n_steps)
        start = target.grad_evals
        total, d = n_steps * self.step_size, x0.shape[1]
        lam_min, lam_max = self.schedule.lam_min, self.schedule.lam_max
        kappa = math.log(lam_max / lam_min) / (2 * total)
        noise, switch = GaussianNoise(), self.switch

        def force(t, q):
            lam = min(lam_min * math.exp(2 * kappa * float(t)), lam_max)
            x, y = q[:, :d], q[:, d:]
            fast, noise_form, target_form = fast_terms(target, noise, x, y, lam)
            return torch.cat([x + 2 * (noise_form if lam < switch else target_form), fast], 1)

        speed = torch.cat([torch.full((d,), kappa), torch.full((d,), 1 / self.eps)]).to(x0)
        q0 = torch.cat([x0, self.fast_start * x0], 1)
        q = run(OverdampedLangevin(force, speed), q0, n_steps, self.step_size, "euler", seed)
        return SampleResult(q[:, :d], target.grad_evals - start, n_steps)
