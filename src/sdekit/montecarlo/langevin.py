"""Langevin samplers for unnormalised targets, run by the core's :func:`~sdekit.core.sdeint`.

Two SDEs and one splitting step serve every sampler of this package (this module and
:mod:`sdekit.montecarlo.multiscale`):

* :class:`OverdampedLangevin`: ``dX = c F(t, X) dt + sqrt(2 c) dW`` (``c`` a speed per coordinate; a
  slow-fast system has ``c = 1`` on its slow and ``1 / eps`` on its fast block). With ``F = grad log pi`` and
  ``c = 1`` its Euler-Maruyama discretisation is the unadjusted Langevin algorithm (:class:`ULA`), run by
  ``sdeint(..., method="euler")``: one force evaluation per step.
* :class:`KineticLangevin`: the underdamped (kinetic) Langevin SDE on the stacked state ``(q, p)``
  (a tensor ``(2, *q.shape)``), unit mass, friction ``Gamma(t)`` and speed ``c``::

      dq = c p dt,    dp = c (F(t, q) - Gamma p) dt + sqrt(2 Gamma c) dW.

  Euler-Maruyama of it is a valid but poor sampler (unstable friction part, first weak order); the
  standard scheme is the OBABO splitting (:class:`OBABO`): an exact Ornstein-Uhlenbeck half step for the
  momentum (O), a half kick (B), a drift (A), a half kick, an O half step. It is not a function of the
  Euler data ``(f, g dW)``, so it is a bespoke :class:`~sdekit.core.solvers.SDESolver` step, but it runs
  inside the core's one time loop (``sdeint(sde, y0, ts, method=OBABO())``), with the core's Brownian
  sources: each step draws the increment of the stacked state; the O half steps use its ``p`` block and its
  ``q`` block (which the SDE multiplies by ``g_q = 0``, so it is an independent Gaussian) as their two
  independent normals. The force at the end of a step is kept as solver state and reused at the start of
  the next (one force evaluation per step).

Samplers (each ``sample(target, x0, n_steps, seed=...)`` returns a :class:`SampleResult` with the exact
number of target-gradient evaluations; ``sdeint`` calls the drift once more at its boundary to check shapes,
and OBABO once more to start, both counted):

* :class:`ULA`: ``n_steps + 1`` gradients.
* :class:`ULMC` (OBABO): ``n_steps + 2`` gradients.
* :class:`AnnealedLangevin`: overdamped or underdamped Langevin along ``mu_lambda(t) = Law(sqrt(lambda) X
  + sqrt(1 - lambda) Z)``, with the exact score of ``mu_lambda`` (targets with
  ``diffused_grad_log_prob``: :class:`~sdekit.montecarlo.Gaussian`,
  :class:`~sdekit.montecarlo.GaussianMixture`); it is the averaged limit ``eps -> 0`` of MultALMC.

References: ULA: Roberts & Tweedie, Bernoulli 2(4), 1996. OBABO: Bussi & Parrinello, Phys. Rev. E 75, 2007;
Leimkuhler & Matthews, *Molecular Dynamics*, Springer 2015, ch. 7. Annealed Langevin and the schedules:
Cordero-Encinar, Duncan, Reich, Akyildiz, arXiv 2508.15069, 2025.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core import SDE, BrownianGrid, sdeint
from ..core.solvers.base import SDESolver
from .targets import Target, as_target

__all__ = [
    "OverdampedLangevin", "KineticLangevin", "OBABO", "AnnealingSchedule", "SampleResult",
    "ULA", "ULMC", "AnnealedLangevin",
]

Force = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_positive(name: str, value, *, integer: bool = False) -> float:
    """``value`` as a positive finite number (an int when ``integer``), else TypeError / ValueError naming
    ``name`` and the value."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    kind = "int" if integer else "number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise TypeError(f"{name} must be a positive {kind}, got {value!r} ({type(value).__name__})")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite {kind}, got {value}")
    return value


def _as_speed(speed, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(speed, dtype=like.dtype, device=like.device)


class OverdampedLangevin(SDE):
    """``dX = c F(t, X) dt + sqrt(2 c) dW`` (diagonal noise): overdamped Langevin at speed ``c``; for
    ``F = grad log pi`` its invariant law is ``pi`` whatever ``c``.

    Arguments:
        force: ``F(t, x)``, ``x: (n, d)`` -> ``(n, d)``.
        speed: ``c``, a positive number or a tensor broadcastable to ``x`` (per-coordinate speeds, as the
            fast block of a slow-fast system).
    """

    def __init__(self, force: Force, speed: float | torch.Tensor = 1.0) -> None:
        super().__init__(noise_type="diagonal", sde_type="ito")
        self.force, self.speed = force, speed

    def f(self, t, x):
        return _as_speed(self.speed, x) * self.force(t, x)

    def g(self, t, x):
        return torch.sqrt(2 * _as_speed(self.speed, x)).expand_as(x)


class KineticLangevin(SDE):
    """Underdamped Langevin on the stacked state ``y = (q, p)`` of shape ``(2, n, D)`` (unit mass)::

        dq = c p dt,    dp = c (F(t, q) - Gamma(t) p) dt + sqrt(2 Gamma(t) c) dW.

    For ``F = grad log pi`` and constant ``Gamma`` its invariant law is ``pi(q) N(p; 0, I)`` whatever the
    speed ``c``. Diagonal noise on the stacked state, with ``g = 0`` on the ``q`` block.

    Arguments:
        force: ``F(t, q)``, ``(n, D)`` -> ``(n, D)``.
        friction: ``Gamma(t)``, a callable of the time tensor returning a number or a tensor broadcastable to
            ``q``, or a positive number.
        speed: ``c``, a positive number or a tensor broadcastable to ``q``.
    """

    def __init__(self, force: Force, friction: float | Callable, speed: float | torch.Tensor = 1.0) -> None:
        super().__init__(noise_type="diagonal", sde_type="ito")
        self.force, self.speed = force, speed
        self._friction = friction if callable(friction) else (lambda t: friction)

    def friction(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``Gamma(t)`` as a tensor on ``like``'s dtype and device."""
        return torch.as_tensor(self._friction(t), dtype=like.dtype, device=like.device)

    def f(self, t, y):
        q, p = y[0], y[1]
        c = _as_speed(self.speed, q)
        return torch.stack([(c * p).expand_as(q), c * (self.force(t, q) - self.friction(t, q) * p)])

    def g(self, t, y):
        q = y[0]
        noise = torch.sqrt(2 * self.friction(t, q) * _as_speed(self.speed, q)).expand_as(q)
        return torch.stack([torch.zeros_like(q), noise])


class OBABO(SDESolver):
    """The OBABO splitting of :class:`KineticLangevin` (the one splitting step of this package).

    With ``h = t1 - t0``, ``a = exp(-Gamma c h / 2)`` (``Gamma`` at the midpoint) and the increment
    ``dW = (dW_q, dW_p)`` of the stacked state::

        p <- a p + sqrt(1 - a^2) dW_p / sqrt(h)        (O: exact OU half step)
        p <- p + (c h / 2) F(t0, q)                     (B)
        q <- q + c h p                                  (A)
        p <- p + (c h / 2) F(t1, q)                     (B)
        p <- a p + sqrt(1 - a^2) dW_q / sqrt(h)        (O)

    ``dW_q`` is multiplied by ``g_q = 0`` in the SDE, so it is an independent ``N(0, h)`` the second O half
    step can use. Weak order 2 (second-order accurate invariant measure for smooth ``F``); the two normals are
    not the integral of the path, so the scheme is not a strong approximation of the SDE driven by ``bm``
    (``strong_order = 0``). One force evaluation per step (FSAL: the force at ``(t1, q1)`` is the solver state),
    plus one in ``init``.

    Only for :class:`KineticLangevin` with increasing times (``sdeint`` raises otherwise).

    Reference: Bussi & Parrinello, Phys. Rev. E 75, 056707, 2007; Leimkuhler & Matthews, *Molecular
    Dynamics*, 2015, section 7.
    """

    name = "obabo"
    sde_type = "ito"
    noise_types = ("diagonal",)
    strong_order = 0.0
    additive_strong_order = 0.0
    weak_order = 2.0

    @staticmethod
    def _sde(problem) -> KineticLangevin:
        sde = getattr(problem, "sde", None)
        if not isinstance(sde, KineticLangevin):
            raise TypeError("method OBABO integrates a KineticLangevin SDE forward in time; got "
                            f"{type(sde).__name__ if sde is not None else type(problem).__name__}")
        return sde

    def init(self, problem, t0, y0):
        return self._sde(problem).force(t0, y0[0])

    def step(self, problem, t0, t1, y0, dW, state):
        sde = self._sde(problem)
        q, p = y0[0], y0[1]
        h = t1 - t0
        c = _as_speed(sde.speed, q)
        a = torch.exp(-sde.friction(0.5 * (t0 + t1), q) * c * h / 2)
        b = torch.sqrt(1 - a**2) / torch.sqrt(h)
        p = a * p + b * dW[1]
        p = p + 0.5 * c * h * state
        q = q + c * h * p
        force = sde.force(t1, q)
        p = p + 0.5 * c * h * force
        p = a * p + b * dW[0]
        return torch.stack([q.expand_as(p), p]), force


@dataclass(frozen=True)
class AnnealingSchedule:
    """``lambda(tau)`` for the fraction ``tau = t / T`` of the run: ``lam_min + (lam_max - lam_min) s(r)``,
    ``r = min(tau / (1 - hold), 1)`` (the last ``hold`` fraction of the run stays at ``lam_max``),
    ``s(r) = r`` (linear) or ``(1 - cos(pi r)) / 2`` (``cosine=True``); ``lambda`` stays in
    ``[lam_min, lam_max]``, away from 0 (the fast target then needs ``grad V`` at ``y / sqrt(lambda)``) and from
    1 (where it degenerates to a point mass). The paper's ``lambda_delta = 0.01`` gives the defaults.

    Attributes:
        lam_min, lam_max: ``0 < lam_min < lam_max <= 1``.
        cosine: the cosine-like shape (slower at both ends).
        hold: the fraction of the run held at ``lam_max`` at the end, ``0 <= hold < 1`` (default 0).
    """

    lam_min: float = 0.01
    lam_max: float = 0.99
    cosine: bool = False
    hold: float = 0.0

    def __post_init__(self) -> None:
        check_positive("lam_min", self.lam_min)
        check_positive("lam_max", self.lam_max)
        if not (self.lam_min < self.lam_max <= 1):
            raise ValueError(f"need 0 < lam_min < lam_max <= 1; got lam_min={self.lam_min}, lam_max={self.lam_max}")
        if isinstance(self.hold, bool) or not isinstance(self.hold, (int, float)) or not 0 <= self.hold < 1:
            raise ValueError(f"hold must be a number in [0, 1), got {self.hold!r}")

    def __call__(self, tau: float) -> float:
        r = min(max(float(tau), 0.0) / (1 - self.hold), 1.0)
        s = (1 - math.cos(math.pi * r)) / 2 if self.cosine else r
        return self.lam_min + (self.lam_max - self.lam_min) * s


def friction_schedule(friction, name: str = "friction") -> Callable[[float], float]:
    """``Gamma(tau)``: a positive number (constant), or ``(gamma_min, gamma_max)``: held at ``gamma_min``
    for the first half of the run, then linear to ``gamma_max`` (the paper's schedule)."""
    if isinstance(friction, tuple):
        if len(friction) != 2:
            raise ValueError(f"{name} must be a number or a pair (gamma_min, gamma_max), got {friction!r}")
        lo, hi = (check_positive(f"{name}[{i}]", v) for i, v in enumerate(friction))
        return lambda tau: lo if tau <= 0.5 else lo + (hi - lo) * (2 * tau - 1)
    value = check_positive(name, friction)
    return lambda tau: value


@dataclass(frozen=True)
class SampleResult:
    """What a sampler returns.

    Attributes:
        samples: ``(n, d)``, the final states of the ``n`` chains.
        grad_evals: target-gradient evaluations per chain (batched calls), counted on the target.
        n_steps: the number of time steps.
    """

    samples: torch.Tensor
    grad_evals: int
    n_steps: int


def run(sde, y0: torch.Tensor, n_steps: int, step_size: float, method, seed: int | None) -> torch.Tensor:
    """``n_steps`` steps of ``step_size`` from ``y0`` through ``sdeint`` with a seeded
    :class:`~sdekit.core.BrownianGrid` on the step grid; the final state."""
    total = n_steps * step_size
    times = torch.linspace(0.0, total, n_steps + 1, dtype=torch.float64)
    bm = BrownianGrid(times, tuple(y0.shape), seed=seed, dtype=y0.dtype, device=y0.device)
    return sdeint(sde, y0, [0.0, total], method=method, dt=step_size, bm=bm)[-1]


def check_run(target, x0, n_steps) -> tuple[Target, int]:
    """The checked target and step count of a ``sample`` call."""
    n = int(check_positive("n_steps", n_steps, integer=True))
    return as_target(target, x0), n


class ULA:
    """Unadjusted Langevin: ``X_{k+1} = X_k + h grad log pi(X_k) + sqrt(2 h) xi_k``, the Euler-Maruyama
    discretisation of :class:`OverdampedLangevin` (run by ``sdeint(method="euler")``).

    Its stationary law is biased at ``O(h)``; for ``pi = N(m, s^2)`` it is exactly
    ``N(m, s^2 / (1 - h / (2 s^2)))`` (stable for ``h < 2 s^2``).

    Arguments:
        step_size: ``h > 0``.
    """

    def __init__(self, step_size: float) -> None:
        self.step_size = float(check_positive("step_size", step_size))

    def sample(self, target, x0: torch.Tensor, n_steps: int, *, seed: int | None = None) -> SampleResult:
        """Run ``x0: (n, d)`` chains for ``n_steps``; ``n_steps + 1`` gradient evaluations."""
        target, n_steps = check_run(target, x0, n_steps)
        start = target.grad_evals
        sde = OverdampedLangevin(lambda t, x: target.grad_log_prob(x))
        x = run(sde, x0, n_steps, self.step_size, "euler", seed)
        return SampleResult(x, target.grad_evals - start, n_steps)


class ULMC:
    """Underdamped Langevin Monte Carlo: :class:`KineticLangevin` with ``F = grad log pi``, unit mass,
    friction ``Gamma``, integrated by :class:`OBABO` from ``p = 0``.

    Arguments:
        step_size: ``h > 0``.
        friction: ``Gamma > 0``, or ``(gamma_min, gamma_max)`` (held, then linear; see
            :func:`friction_schedule`).
    """

    def __init__(self, step_size: float, friction: float | tuple[float, float] = 1.0) -> None:
        self.step_size = float(check_positive("step_size", step_size))
        self.friction = friction_schedule(friction)

    def sample(self, target, x0: torch.Tensor, n_steps: int, *, seed: int | None = None) -> SampleResult:
        """Run ``x0: (n, d)`` chains for ``n_steps``; ``n_steps + 2`` gradient evaluations."""
        target, n_steps = check_run(target, x0, n_steps)
        start = target.grad_evals
        total = n_steps * self.step_size
        sde = KineticLangevin(lambda t, q: target.grad_log_prob(q), lambda t: self.friction(float(t) / total))
        y = run(sde, torch.stack([x0, torch.zeros_like(x0)]), n_steps, self.step_size, OBABO(), seed)
        return SampleResult(y[0], target.grad_evals - start, n_steps)


class AnnealedLangevin:
    """Annealed Langevin along ``mu_lambda = Law(sqrt(lambda) X + sqrt(1 - lambda) Z)``, ``X ~ pi``,
    ``Z ~ N(0, I)``, ``lambda = lambda(t / T)`` from an :class:`AnnealingSchedule`, with the exact score
    ``grad log mu_lambda`` (``target.diffused_grad_log_prob(x, lam)``; one counted gradient per call).

    Overdamped (``friction=None``): ``dX = grad log mu_lambda(t)(X) dt + sqrt(2) dW`` by Euler-Maruyama
    (``n_steps + 1`` gradients). Underdamped (``friction`` given): :class:`KineticLangevin` with
    ``F(t, q) = grad log mu_lambda(t)(q)`` by :class:`OBABO` (``n_steps + 2`` gradients).
    This is the ``eps -> 0`` limit of :class:`~sdekit.montecarlo.MultALMC` (its averaged dynamics), which
    needs no diffused score (Cordero-Encinar et al., arXiv 2508.15069, section 3). Ends at ``lam_max``, so
    its samples are of ``mu_{lam_max}``.

    Arguments:
        step_size: ``h > 0``.
        schedule: the ``lambda`` path (default :class:`AnnealingSchedule` ``()``).
        friction: ``None`` (overdamped) or as in :class:`ULMC`.
    """

    def __init__(self, step_size: float, schedule: AnnealingSchedule | None = None,
                 friction: float | tuple[float, float] | None = None) -> None:
        self.step_size = float(check_positive("step_size", step_size))
        self.schedule = AnnealingSchedule() if schedule is None else schedule
        if not isinstance(self.schedule, AnnealingSchedule):
            raise TypeError(f"schedule must be an AnnealingSchedule, got {type(schedule).__name__}")
        self.friction = None if friction is None else friction_schedule(friction)

    def sample(self, target, x0: torch.Tensor, n_steps: int, *, seed: int | None = None) -> SampleResult:
        """Run ``x0: (n, d)`` chains for ``n_steps``."""
        target, n_steps = check_run(target, x0, n_steps)
        score: Callable[[torch.Tensor, float], torch.Tensor] | None = getattr(target, "diffused_grad_log_prob", None)
        if not callable(score):
            raise TypeError(f"AnnealedLangevin needs the exact score of mu_lambda: target.diffused_grad_log_prob(x, "
                            f"lam); {type(target).__name__} has none (use MultALMC, which estimates it)")
        start = target.grad_evals
        total = n_steps * self.step_size

        def force(t, x):
            assert score is not None
            return score(x, self.schedule(float(t) / total))

        if self.friction is None:
            x = run(OverdampedLangevin(force), x0, n_steps, self.step_size, "euler", seed)
        else:
            fr = self.friction
            sde = KineticLangevin(force, lambda t: fr(float(t) / total))
            x = run(sde, torch.stack([x0, torch.zeros_like(x0)]), n_steps, self.step_size, OBABO(), seed)[0]
        return SampleResult(x, target.grad_evals - start, n_steps)
