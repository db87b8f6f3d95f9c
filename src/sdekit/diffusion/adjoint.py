r"""Gradients through diffusion sampling: the ``adjoint=`` strategies of :func:`~sdekit.diffusion.sample`.

``sample(model, schedule, x_T, ..., adjoint=...)`` returns a sample that is differentiable with respect
to ``x_T``, the tensors in ``model_kwargs`` that require grad (a class embedding, a conditioning
vector) and the model's parameters.

==============================  =========================================  ==============================
strategy                        gradient                                   memory in the step count n
==============================  =========================================  ==============================
``None`` / :class:`Backprop`    autograd through every sampler step:       O(n) model activations
                                exact for the discrete sampler
:class:`AdjointDEIS`            the continuous adjoint equations solved    ODE: O(1); SDE: O(sqrt n)
                                backwards with exponential integrators     states (no activations)
==============================  =========================================  ==============================

**The adjoint equations** (Blasingame & Liu, "AdjointDEIS: Efficient gradients for diffusion models",
NeurIPS 2024). Write ``x_t = alpha_t x_0 + sigma_t eps``, ``lambda = log(alpha / sigma)``, ``D(x, t)`` the
data prediction (denoiser) and ``eps = (x - alpha D) / sigma`` the noise prediction. The samplers
integrate the family of reverse-time equations with the data marginals

.. math:: dx = \big[f x - \tfrac{1+\tau^2}{2} g^2 \nabla\log p_t(x)\big]\,dt + \tau g\,d\bar W,

``tau = 0`` the probability-flow ODE and ``tau = 1`` the reverse diffusion SDE (DDIM with ``eta``
has ``tau = eta``, SDE-DPM-Solver++ has ``tau^2 = eta``). The diffusion does not depend on the state,
so for every ``tau`` the adjoint ``a = dL/dx_t`` solves an ODE along the sampled path, and the
gradient with respect to ``z`` (conditioning tensors, parameters) is an integral along it. With
``k = 1 + tau^2`` and ``s`` the noisier end of a step, the paper's noise-prediction form reads

.. math::
    a(s) = \frac{\alpha_t}{\alpha_s} a(t) + \frac{k}{\alpha_s}\int_{\lambda_t}^{\lambda_s} e^{-\lambda}
           \alpha_\lambda^2\, a^\top\frac{\partial\epsilon}{\partial x}\,d\lambda,\qquad
    a_z(s) = a_z(t) + k\int_{\lambda_t}^{\lambda_s} e^{-\lambda}\alpha_\lambda\, a^\top
             \frac{\partial\epsilon}{\partial z}\,d\lambda

(``k = 1``: the paper's ODE equations; ``k = 2``: its SDE result, "the integral terms doubled"). The
same equations written with ``D`` (as DPM-Solver++ rewrites DPM-Solver) are, with ``c = sigma
e^{-tau^2 lambda} a``,

.. math::
    c(s) = c(t) - k\int_{\lambda_t}^{\lambda_s} e^{-k\lambda}\alpha_\lambda^2\, a^\top
           \frac{\partial D}{\partial x}\,d\lambda,\qquad
    a_z(s) = a_z(t) - k\int_{\lambda_t}^{\lambda_s} e^{k\lambda}\,
             \sigma_\lambda e^{-\tau^2\lambda} a^\top\frac{\partial D}{\partial z}\,d\lambda.

**The solvers** keep the exponential weights exact and approximate the model term ``V`` (the rest of
each integrand) by a polynomial in ``lambda``. With ``h = lambda_s - lambda_t < 0``:

* ``order=2`` (multistep, "2M") interpolates ``V`` linearly through ``t`` and the previous backward point
  and integrates exactly (its first backward step is order 1 with ``V`` held at ``t``).
* ``order=1`` of the noise form holds ``V`` at ``t``: the paper's AdjointDEIS-1,
  ``a(s) = (alpha_t/alpha_s) a(t) + k sigma_s (e^h - 1)(alpha_t^2/alpha_s^2) a^T eps_x`` and
  ``a_z(s) = a_z(t) + k sigma_s (e^h - 1)(alpha_t/alpha_s) a^T eps_z``.
* ``order=1`` of the data form holds ``V`` at the noisier end ``s``:
  ``a(s) = c_x a(t) + c_d a^T D_x(x_s, s)`` and ``a_z(s) = a_z(t) + c_d a^T D_z(x_s, s)`` with
  ``c_x = (sigma_t/sigma_s) e^{tau^2 h}``, ``c_d = -alpha_t (e^{kh} - 1)``: the coefficients of the
  first-order step ``x_t = c_x x_s + c_d D(x_s, s) (+ noise)`` (DDIM, SDE-DPM-Solver++-1; with
  :class:`~sdekit.diffusion.DDIM` its own coefficients, for every ``eta``). The backward step is then the
  transpose of that forward step: on the sampler's own states (``"store"``, ``"checkpoint"``) the
  gradient through DDIM equals backprop to rounding, and it is exact for Gaussian data on the reverse
  SDE, where ancestral DDIM is.

``form="x0"`` (default) uses the data form: its linear part carries the contraction of the state,
which makes it far more accurate on variance-preserving schedules (Gaussian data, VP, 64 log-SNR
steps: relative error of ``dL/dx_T`` 0.037 against 0.49 for the noise form at order 1, 0.008 against
0.16 at order 2; on the reverse SDE the noise form is unusable at such step counts). Both forms
converge at the stated order. Every interval of the grid is integrated, the last one included.

**The path.** Each backward step makes one model call and one vector-Jacobian product (at ``(x_t, t)``,
or at ``(x_s, s)`` for order 1 of the data form); the states come from ``trajectory``:

* ``"reconstruct"`` (default for deterministic samplers): only the final state is stored; the
  probability-flow ODE is integrated backwards alongside the adjoint with the same model call, as in
  the paper: DDIM / DPM-Solver++(2M) from ``t`` to ``s`` for the noise form and order 2; for order 1
  of the data form, a DDIM step from ``t`` to ``s`` gives a first guess of ``x_s``, the model call
  (with the vector-Jacobian product) is made there, and the DDIM step ``s -> t`` is then undone
  exactly with that ``D``, so the rebuilt states follow the sampler's own path to second order (one
  extra model call at the start of the backward pass). Memory:
  the final state plus, during the backward pass, the state, ``a``, one buffer per differentiated
  input (order 2: also the previous ``V``'s and ``D``): independent of ``n``. The rebuilt path differs
  from the sampled one by the discretisation error of either solve.
* ``"checkpoint"`` (default for stochastic samplers): the states at about ``sqrt(n)`` grid times
  (with the sampler's own state) are stored; the backward pass replays each segment forwards, with the
  *same* Brownian increments read again from the noise source (a
  :class:`~sdekit.core.BrownianPath`, a :class:`~sdekit.core.BrownianGrid`, or the seeded grid ``sample``
  draws from ``generator``), keeps the segment's states and runs the adjoint over it. Exact states, one
  extra forward pass, ``O(sqrt n)`` states in memory (no activations).
* ``"store"``: all ``n + 1`` states are kept (``O(n)`` states, no activations, no extra pass).

Rebuilding the path of the reverse *SDE* backwards is not offered: undoing a step
``x_1 = c_x x_0 + c_d D(x_0) + c_w dW`` amplifies every error by about ``e^{|h|}`` at high noise
(``exp(int sigma^2 d lambda)`` over a run, hundreds for a VP schedule; on a 2-D Gaussian mixture with
50 steps the rebuilt ``x_T`` was off by 2e2), so the vector-Jacobian products would be taken at
wrong states.

Supported samplers: every deterministic one (``tau = 0``), and the stochastic
:class:`~sdekit.diffusion.DDIM` (``eta > 0``), :class:`~sdekit.diffusion.EulerMaruyama` and
SDE-DPM-Solver++. The adjoint is solved on the sampling grid; it approximates the gradient of the
exact solution, so it agrees with :class:`Backprop` through a sampler of the same order up to the
discretisation error of both. Match the order to the sampler: ``order=1`` with DDIM (any ``eta``),
``order=2`` with DPM-Solver++(2M), UniPC or SDE-DPM-Solver++(2M); on a 2-D Gaussian mixture with 50
log-SNR steps every such pair agrees with backprop to a cosine of at least 0.9999 for ``x_T``, a
conditioning vector and the parameters.

**Backprop** is :class:`sdekit.core.Backprop` (one concept, one class): ``sample`` then runs as with
``adjoint=None`` and autograd records every step.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields, is_dataclass

import torch
from torch.autograd.function import once_differentiable

from ..core.adjoint import AdjointStrategy, Backprop, _check_params, _resolve_params
from ..core.integrate import fixed_loop, progress_bar
from .prediction import Denoiser
from .samplers.base import Sampler, SamplerContext, schedule_point
from .samplers.ddim import DDIM
from .samplers.dpm_solver import SDEDPMSolverPP
from .samplers.euler_maruyama import EulerMaruyama

__all__ = ["AdjointDEIS", "AdjointStats", "Backprop"]

_TRAJECTORIES = ("reconstruct", "checkpoint", "store")
_ODE_STEP = DDIM()   # the first-order probability-flow step that rebuilds the path backwards
_FORMS = ("x0", "eps")


@dataclass
class AdjointStats:
    """What the last backward pass of an :class:`AdjointDEIS` strategy did.

    Attributes:
        steps: grid steps.
        trajectory: how the states were obtained (``"reconstruct"``, ``"checkpoint"``, ``"store"``).
        backward_calls: model calls of the backward pass (one per step with a vector-Jacobian product,
            plus the replayed forward steps with ``"checkpoint"``).
        saved_bytes: bytes of the states saved for backward through autograd (``save_for_backward``).
        held_bytes: bytes of the other tensors kept from the forward pass (the sampler's own state at the
            checkpoints, e.g. a multistep history).
        peak_working_bytes: the largest total size of the tensors the backward pass held between two
            steps (state, adjoints, multistep history, replayed segment), not counting one model
            call's own activations.
    """

    steps: int
    trajectory: str
    backward_calls: int = 0
    saved_bytes: int = 0
    held_bytes: int = 0
    peak_working_bytes: int = 0


class AdjointDEIS(AdjointStrategy):
    r"""Gradients through :func:`~sdekit.diffusion.sample` by solving the adjoint equations backwards
    with exponential integrators (Blasingame & Liu, "AdjointDEIS: Efficient gradients for diffusion
    models", NeurIPS 2024); memory independent of the number of steps for the probability-flow ODE.
    The equations, the two forms and the three ways of obtaining the path are in
    :mod:`sdekit.diffusion.adjoint`.

    Arguments:
        order: 2 (default; AdjointDEIS-2M, multistep) or 1 (AdjointDEIS-1): the global order of the
            gradient's error for the probability-flow ODE. Match it to the sampler (the default
            ``"dpm++2m"`` is second order, DDIM first). On the SDE the path is rough and the order does
            not exceed 1 in general (order 2 still reduces the error's constant on smooth problems);
            order 1 transposes a DDIM step exactly, so with DDIM(eta) it gives backprop's gradient.
        form: ``"x0"`` (default; the equations in data prediction, as DPM-Solver++) or ``"eps"`` (the
            paper's noise-prediction form).
        trajectory: ``"reconstruct"``, ``"checkpoint"`` or ``"store"``; ``None`` (default):
            ``"reconstruct"`` for deterministic samplers, ``"checkpoint"`` for stochastic ones.
        checkpoints: number of stored states with ``"checkpoint"`` (default ``ceil(sqrt(steps))``).
        params: tensors to differentiate besides ``x_T`` and the ``model_kwargs`` tensors that
            require grad; default: the parameters of the model when it is a ``torch.nn.Module`` (or a
            :class:`~sdekit.diffusion.Denoiser` of one). Pass them for plain callables that close over
            tensors, or ``params=()``.

    Attributes:
        stats: an :class:`AdjointStats` for the last backward pass (``None`` before one).

    Raises:
        ValueError / TypeError for an order other than 1 or 2, an unknown ``form`` or ``trajectory``,
        ``checkpoints`` that is not a positive int, ``params`` that are not a tuple of floating tensors.
    """

    def __init__(self, order: int = 2, *, form: str = "x0", trajectory: str | None = None,
                 checkpoints: int | None = None, params=None) -> None:
        if isinstance(order, bool) or order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        if form not in _FORMS:
            raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
        if trajectory is not None and trajectory not in _TRAJECTORIES:
            raise ValueError(f"trajectory must be None or one of {_TRAJECTORIES}, got {trajectory!r}")
        if checkpoints is not None and (isinstance(checkpoints, bool) or not isinstance(checkpoints, int)
                                        or checkpoints < 1):
            raise ValueError(f"checkpoints must be a positive int or None, got {checkpoints!r}")
        self.order = int(order)
        self.form = form
        self.trajectory = trajectory
        self.checkpoints = checkpoints
        self.params = _check_params(params)
        self.stats: AdjointStats | None = None

    def __repr__(self) -> str:
        return f"AdjointDEIS(order={self.order}, form={self.form!r}, trajectory={self.trajectory!r})"


_STRATEGIES = "None, Backprop() or AdjointDEIS(order=1 | 2)"


def check_sampling_adjoint(adjoint) -> AdjointDEIS | None:
    """Validate ``sample``'s ``adjoint`` argument: ``None`` or :class:`Backprop` -> ``None`` (plain
    autograd); an :class:`AdjointDEIS` passes through; anything else is a TypeError."""
    if adjoint is None or isinstance(adjoint, Backprop):
        return None
    if isinstance(adjoint, AdjointDEIS):
        return adjoint
    if isinstance(adjoint, type) and issubclass(adjoint, AdjointStrategy):
        raise TypeError(f"adjoint must be an instance, e.g. adjoint={adjoint.__name__}(); "
                        "got the class itself")
    if isinstance(adjoint, AdjointStrategy):
        raise TypeError(f"sample supports adjoint={_STRATEGIES}; {adjoint!r} is a strategy of "
                        "sdekit.sdeint / sdekit.odeint")
    raise TypeError(f"adjoint must be {_STRATEGIES}; got {adjoint!r}")


# --------------------------------------------------------------------------------------------
# Set-up: what the sampler integrates, which tensors are differentiated
# --------------------------------------------------------------------------------------------
def _tau_squared(sampler: Sampler) -> float:
    """``tau^2`` of the reverse-time equation the sampler discretises (0: the probability-flow ODE)."""
    if not sampler.stochastic:
        return 0.0
    if isinstance(sampler, DDIM):
        return float(sampler.eta) ** 2
    if isinstance(sampler, EulerMaruyama):
        return 1.0
    if isinstance(sampler, SDEDPMSolverPP):
        return float(sampler.eta)
    raise ValueError(f"AdjointDEIS supports every deterministic sampler and the stochastic DDIM(eta > 0), "
                     f"EulerMaruyama() and SDEDPMSolverPP(); got {sampler!r}")


def _check_grid(schedule, grid: list) -> list:
    points = [schedule_point(schedule, t) for t in grid]
    for i, p in enumerate(points):
        if not (math.isfinite(p.log_snr) and p.alpha > 0.0 and p.sigma > 0.0):
            raise ValueError(
                f"AdjointDEIS needs alpha > 0 and sigma > 0 (a finite log-SNR) at every grid time; at "
                f"timesteps[{i}]={grid[i]} {schedule!r} has alpha={p.alpha}, sigma={p.sigma}. Move the "
                "grid inside (e.g. LinearFlow(t_max=0.999))"
            )
    return points


def _tensor_bytes(obj) -> int:
    """Total bytes of the tensors in a (nested) tuple / list / dataclass."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_tensor_bytes(o) for o in obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return sum(_tensor_bytes(getattr(obj, f.name)) for f in fields(obj))
    return 0


@dataclass
class _Run:
    strategy: AdjointDEIS
    sampler: Sampler
    ctx: SamplerContext          # the forward context (counted denoiser, noise source)
    denoiser: Denoiser           # the bare denoiser; copied with detached conditioning for the backward pass
    grid: list                   # decreasing Python floats
    points: list                 # schedule_point at every grid time
    cond_keys: tuple             # model_kwargs entries that are differentiated
    params: tuple                # parameter tensors that are differentiated
    tau2: float                  # tau^2 of the equation the sampler integrates (0: the ODE)
    trajectory: str
    segment: int                 # steps between checkpoints
    progress: bool
    name: str
    checkpoints: dict | None = None   # step index -> sampler state (the states are saved for backward)


def sample_with_adjoint(strategy: AdjointDEIS, sampler: Sampler, ctx: SamplerContext, denoiser: Denoiser,
                        x_T: torch.Tensor, *, progress: bool = False) -> torch.Tensor:
    """Run ``sampler`` over ``ctx.times`` from ``x_T`` without recording a graph and return the last
    state as the output of a ``torch.autograd.Function`` whose backward pass is AdjointDEIS.

    Called by :func:`~sdekit.diffusion.sample` once the sampler, grid, denoiser and noise source are
    resolved; ``ctx.denoiser`` may count calls, ``denoiser`` is the bare :class:`Denoiser`.

    Raises:
        ValueError for an unsupported sampler, a grid with ``alpha = 0`` or ``sigma = 0``, a single
        adaptive interval, or ``trajectory="reconstruct"`` with a stochastic sampler; TypeError for an
        integer ``model_kwargs`` tensor that requires grad.
    """
    grid = list(ctx.times)
    n = len(grid) - 1
    if sampler.nfe_per_step is None and n == 1:
        raise ValueError(f"AdjointDEIS solves the adjoint on the sampling grid, and {sampler!r} with "
                         "steps=None runs a single interval; pass steps=N (or timesteps=...)")
    points = _check_grid(ctx.schedule, grid)
    tau2 = _tau_squared(sampler)
    trajectory = strategy.trajectory or ("checkpoint" if sampler.stochastic else "reconstruct")
    if trajectory == "reconstruct" and sampler.stochastic:
        raise ValueError(f"trajectory='reconstruct' is not available for the stochastic sampler {sampler!r}: "
                         "undoing reverse-SDE steps amplifies errors exponentially; use 'checkpoint' "
                         "(the default) or 'store'")
    cond_keys = tuple(k for k, v in denoiser.model_kwargs.items()
                      if isinstance(v, torch.Tensor) and v.requires_grad)
    conds = tuple(denoiser.model_kwargs[k] for k in cond_keys)
    params = _resolve_params(strategy, denoiser.model, "the model", reaches="x_T and the model_kwargs tensors")
    count = strategy.checkpoints or math.ceil(math.sqrt(n))
    segment = max(1, math.ceil(n / count))
    run = _Run(strategy, sampler, ctx, denoiser, grid, points, cond_keys, params, tau2, trajectory, segment,
               progress, f"sample[{sampler.name}]")
    return _AdjointDEISFunction.apply(run, x_T, *conds, *params)


class _AdjointDEISFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: _Run, x_T: torch.Tensor, *inputs):
        n = len(run.grid) - 1
        if run.trajectory == "store":
            saves = list(range(n + 1))
        elif run.trajectory == "checkpoint":
            saves = sorted(set(range(0, n, run.segment)) | {n})
        else:
            saves = [0, n]
        sampler_states = {0: None}

        def step(k, t0, t1, x, state):
            x1, state1 = run.sampler.step(run.ctx, k, t0, t1, x, state)
            if run.trajectory == "checkpoint" and (k + 1) % run.segment == 0:
                sampler_states[k + 1] = state1
            return x1, state1

        state0 = run.sampler.init(run.ctx, x_T)
        sampler_states[0] = state0
        states = fixed_loop(step, x_T, state0, run.grid, saves, lambda v: v, run.name, run.progress)
        x = states[-1]
        if run.trajectory == "store":
            kept = states
        elif run.trajectory == "checkpoint":
            kept = states[:-1]
            run.checkpoints = {k: sampler_states[k] for k in saves[:-1]}
        else:
            kept = [x]
        ctx.run = run
        ctx.save_for_backward(*kept)
        return x.clone() if x is x_T else x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x):
        run = ctx.run
        grads = _backward(run, ctx.saved_tensors, grad_x, ctx.needs_input_grad[2:])
        run.checkpoints = None
        return (None, *grads)


# --------------------------------------------------------------------------------------------
# The backward pass
# --------------------------------------------------------------------------------------------
def _vjp(den, x: torch.Tensor, t: float, a: torch.Tensor, targets: list):
    """``D(x, t)`` (detached), ``a^T D_x`` and ``a^T D_z`` for the ``targets`` (``None`` where unused)."""
    with torch.enable_grad():
        xl = x.detach().requires_grad_(True)
        d = den(xl, t)
        grads = torch.autograd.grad(d, [xl, *targets], a, allow_unused=True)
    gx = grads[0] if grads[0] is not None else torch.zeros_like(x)
    return d.detach(), gx, list(grads[1:])


def _expm1_minus(z: float) -> float:
    """``e^z - 1 - z`` without cancellation."""
    if abs(z) < 1e-3:
        return z * z * (0.5 + z * (1.0 / 6.0 + z / 24.0))
    return math.expm1(z) - z


def _exp_lin(z: float) -> float:
    """``e^z (z - 1) + 1`` without cancellation."""
    if abs(z) < 1e-3:
        return z * z * (0.5 + z * (1.0 / 3.0 + z / 8.0))
    return math.exp(z) * (z - 1.0) + 1.0


def _add(total, value):
    if value is None:
        return total
    return value if total is None else total + value


def _diff(value, prev, back: float = 1.0):
    """``value - back * prev`` on optional tensors (``None`` is zero)."""
    if prev is None:
        return value
    return -back * prev if value is None else value - back * prev


class _Path:
    """The states ``x_k`` the backward pass visits, from ``k = n`` down to ``k = 1``."""

    def __init__(self, run: _Run, saved: tuple, stats: AdjointStats) -> None:
        self.run, self.saved, self.stats = run, saved, stats
        self.segment_states: dict[int, torch.Tensor] = {}
        if run.trajectory == "checkpoint":
            self.starts = sorted(run.checkpoints)
            self.replay = SamplerContext(denoiser=self._counted, schedule=run.ctx.schedule, times=run.grid,
                                         noise=run.ctx.noise)

    def _counted(self, x, t):
        self.stats.backward_calls += 1
        return self.run.denoiser(x, t)

    def state(self, k: int, rebuilt: torch.Tensor | None) -> torch.Tensor:
        run = self.run
        if run.trajectory == "store":
            return self.saved[k]
        if run.trajectory == "reconstruct":
            return self.saved[-1] if rebuilt is None else rebuilt
        if k in self.starts and k not in self.segment_states:
            return self.saved[self.starts.index(k)]
        if k not in self.segment_states:  # replay the segment that ends at k (same noise, exact states)
            start = max(s for s in self.starts if s < k)
            end = min(start + run.segment, len(run.grid) - 1)
            x = self.saved[self.starts.index(start)]
            state = run.checkpoints[start]
            self.segment_states = {start: x}
            with torch.no_grad():
                for j in range(start, end):
                    x, state = run.sampler.step(self.replay, j, run.grid[j], run.grid[j + 1], x, state)
                    self.segment_states[j + 1] = x
        return self.segment_states[k]

    def working_bytes(self) -> int:
        return _tensor_bytes(list(self.segment_states.values()))


def _backward(run: _Run, saved: tuple, grad_x: torch.Tensor, needs: tuple) -> list:
    """The AdjointDEIS backward pass; returns the gradients of ``x_T`` and of the Function inputs."""
    strategy = run.strategy
    order, grid, pts, tau2 = strategy.order, run.grid, run.points, run.tau2
    k2 = 1.0 + tau2
    n = len(grid) - 1
    stats = AdjointStats(steps=n, trajectory=run.trajectory, saved_bytes=_tensor_bytes(list(saved)),
                         held_bytes=_tensor_bytes(list((run.checkpoints or {}).values())))
    base = run.denoiser
    conds = [base.model_kwargs[k].detach().requires_grad_(True) for k in run.cond_keys]
    den = copy.copy(base)
    den.model_kwargs = {**base.model_kwargs, **dict(zip(run.cond_keys, conds))}
    targets = conds + list(run.params)
    path = _Path(run, saved, stats)

    a = grad_x.to(dtype=saved[-1].dtype).contiguous()
    a_z: list = [None] * len(targets)
    rebuilt = None
    prev = None  # (lambda, V_x, V_z, D) at the previous (less noisy) backward point
    d_t = None   # transposed order 1: D at the less noisy end, for the next rebuilt state's first guess
    transposed = order == 1 and strategy.form == "x0"
    bar = progress_bar(run.progress, n, run.name + " adjoint")
    for k in range(n, 0, -1):
        pt, ps = pts[k], pts[k - 1]
        h = ps.log_snr - pt.log_snr          # < 0: backwards in lambda
        if transposed:
            # the model term at the noisier end s: a(s) = c_x a(t) + c_d a^T D_x(x_s, s), the transpose of
            # the first-order exponential-integrator step x_t = c_x x_s + c_d D(x_s, s) (+ noise)
            if isinstance(run.sampler, DDIM):
                c_x, c_d, _ = run.sampler.coefficients(ps, pt)
            else:
                c_x, c_d = (pt.sigma / ps.sigma) * math.exp(tau2 * h), -pt.alpha * math.expm1(k2 * h)
            if run.trajectory == "reconstruct":
                x = path.state(k, rebuilt)
                if d_t is None:
                    with torch.no_grad():
                        d_t = den(x, grid[k])
                    stats.backward_calls += 1
                b_x, b_d, _ = _ODE_STEP.coefficients(pt, ps)
                d_t, gx, gz = _vjp(den, b_x * x + b_d * d_t, grid[k - 1], a, targets)
                rebuilt = (x - c_d * d_t) / c_x      # undo the step s -> t (on the ODE, c_x, c_d are DDIM's)
            else:
                x = path.state(k - 1, None)
                _, gx, gz = _vjp(den, x, grid[k - 1], a, targets)
            stats.backward_calls += 1
            a = c_x * a + c_d * gx
            a_z = [_add(total, None if g is None else c_d * g) for total, g in zip(a_z, gz)]
            stats.peak_working_bytes = max(stats.peak_working_bytes,
                                           _tensor_bytes([x, a, a_z, rebuilt, d_t]) + path.working_bytes())
            if bar is not None:
                bar.update(1)
            continue
        x = path.state(k, rebuilt)
        d, gx, gz = _vjp(den, x, grid[k], a, targets)
        stats.backward_calls += 1
        multistep = order == 2 and prev is not None
        hp = pt.log_snr - prev[0] if multistep else None
        if strategy.form == "eps":
            # a^T eps_x = (a - alpha a^T D_x) / sigma,  a^T eps_z = -(alpha / sigma) a^T D_z
            v_x = (pt.alpha**2 / pt.sigma) * (a - pt.alpha * gx)
            v_z = [None if g is None else (-pt.alpha**2 / pt.sigma) * g for g in gz]
            e1 = math.expm1(h)
            i_x = e1 * v_x
            i_z = [None if v is None else e1 * v for v in v_z]
            if multistep:
                r = _expm1_minus(h) / hp
                i_x = i_x + r * _diff(v_x, prev[1])
                i_z = [_add(iz, None if dv is None else r * dv)
                       for iz, dv in zip(i_z, (_diff(v, pv) for v, pv in zip(v_z, prev[2])))]
            a_next = (pt.alpha / ps.alpha) * a + (k2 * ps.sigma / ps.alpha**2) * i_x
            dz = [None if iz is None else (k2 * ps.sigma / ps.alpha) * iz for iz in i_z]
        else:
            # V_x = alpha^2 a^T D_x (weight e^{-k lambda});  V_z = alpha a^T D_z (= e^{k lambda} W_z)
            v_x = pt.alpha**2 * gx
            v_z = [None if g is None else pt.alpha * g for g in gz]
            e1 = math.expm1(k2 * h)
            i_x = e1 * v_x
            i_z = [None if v is None else e1 * v for v in v_z]
            if multistep:
                r = _expm1_minus(k2 * h) / (k2 * hp)
                i_x = i_x + r * _diff(v_x, prev[1])
                rz = _exp_lin(k2 * h) / (k2 * hp)
                back = math.exp(k2 * hp)
                i_z = [_add(iz, None if dv is None else rz * dv)
                       for iz, dv in zip(i_z, (_diff(v, pv, back) for v, pv in zip(v_z, prev[2])))]
            a_next = ((pt.sigma / ps.sigma) * math.exp(tau2 * h)) * a - i_x / ps.alpha
            dz = [None if iz is None else -iz for iz in i_z]
        a_z = [_add(total, v) for total, v in zip(a_z, dz)]
        if run.trajectory == "reconstruct":
            # the probability-flow ODE from t back to s: DDIM / DPM-Solver++(2M) in data prediction
            b_x, b_d, _ = _ODE_STEP.coefficients(pt, ps)
            rebuilt = b_x * x + b_d * d
            if multistep:
                rebuilt = rebuilt + (ps.alpha * (math.expm1(-h) + h) / hp) * (d - prev[3])
        a = a_next
        if order == 2:
            prev = (pt.log_snr, v_x, v_z, d)
        working = _tensor_bytes([x, a, a_z, rebuilt, prev]) + path.working_bytes()
        stats.peak_working_bytes = max(stats.peak_working_bytes, working)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not bool(torch.isfinite(a).all()):
        raise FloatingPointError(f"{run.name}: the AdjointDEIS adjoint became non-finite; check the model "
                                 "and the grid (sigma or alpha near 0 at its ends)")
    strategy.stats = stats
    out = [a]
    for j, need in enumerate(needs):
        g = a_z[j]
        out.append(None if not need else (torch.zeros_like(targets[j]) if g is None else g))
    return out
