r"""Gradients through diffusion sampling: the ``adjoint=`` strategies of :func:`~sdekit.diffusion.sample`.

``sample(model, schedule, x_T, ..., adjoint=...)`` returns a sample that is differentiable with respect
to ``x_T``, the tensors in ``model_kwargs`` that require grad (a class embedding, a conditioning
vector) and the model's parameters.

==================================  =====================================  ===================================
strategy                            gradient                               memory in the step count n
==================================  =====================================  ===================================
``None`` / :class:`Backprop`        autograd through every sampler step   O(n) model activations
:class:`AdjointDEIS` (default,      the same: the exact gradient of the    rebuilt path (DDIM): O(1) states;
``discretisation="transpose"``)     sampler's discrete map, step by step   replayed: O(sqrt n) states;
                                                                           one step's activations
``AdjointDEIS(discretisation=       the adjoint ODE/SDE of the continuous  ODE: O(1); SDE: O(sqrt n) states
"continuous")``                     equations (the paper's solvers)
==================================  =====================================  ===================================

**The transposed sampler (default).** A sampler is a map ``(x_k, S_k) -> (x_{k+1}, S_{k+1})`` per grid
step, ``S_k`` its own state (a multistep history of data predictions, a pending corrector). The
gradient of the whole map is the product of the transposed step Jacobians, applied from the last step
to the first: with cotangents ``(a_{k+1}, a_{S_{k+1}})`` of a step's outputs, one vector-Jacobian
product of that step (the step re-evaluated on its own inputs, the same Brownian increments, the same
order and the same lower-order rule) gives ``(a_k, a_{S_k})`` and the step's contribution to the
gradients of the conditioning tensors and the parameters. This is the gradient the sampler actually
computes (backprop's, to rounding), for every sampler: one-step, multistep, stochastic, with a
corrector. Each backward step is one model call with its vector-Jacobian product; only one step's
activations are alive at a time. The states ``(x_k, S_k)`` come from ``trajectory``:

* ``"reconstruct"`` (default where the sampler declares an inverse, :attr:`Sampler.invertible`: DDIM
  with ``eta = 0``): only the final state is stored; each step is inverted by a fixed-point iteration
  (``x_k = (x_{k+1} - c_d D(x_k, t_k)) / c_x`` for DDIM), started from a DDIM step backwards with the data
  prediction the previous backward step already made, and run until the change is below the rebuild
  tolerance. The rebuild checks itself: when an iteration does not converge, or the rebuilt ``x_T``
  differs from the given one by more than ``rebuild_rtol`` times the state's scale (the backward
  probability-flow ODE expands where the forward one contracts onto the modes, so errors grow
  backwards), the pass is discarded and redone with checkpointed replay from ``x_T``. Memory
  independent of ``n`` when the check passes; :class:`AdjointStats` says which happened and the
  rebuild error.
* ``"checkpoint"`` (default otherwise): ``ceil(sqrt(n))`` states ``(x_k, S_k)`` are stored; the backward
  pass replays each segment forwards (the same increments read again from the noise source) and
  transposes its steps. Exact states, one extra forward pass, ``O(sqrt n)`` states.
* ``"store"``: every state is kept (``O(n)`` states, no activations, no extra pass).

A multistep sampler's history cannot be recovered from its final state (each step drops its oldest
prediction), so its path is replayed, never rebuilt.

**The continuous adjoint** (``discretisation="continuous"``; Blasingame & Liu, "AdjointDEIS: Efficient
gradients for diffusion models", NeurIPS 2024) solves the adjoint equations of the continuous
reverse-time process with exponential integrators; it is the gradient of the exact ODE/SDE solution,
not of the sampler, and agrees with the transposed sampler only up to the discretisation error of both
(at 10-20 steps, or on grids whose last step is large in log-SNR, they can differ completely). Write
``x_t = alpha_t x_0 + sigma_t eps``, ``lambda = log(alpha / sigma)``, ``D(x, t)`` the data prediction
(denoiser) and ``eps = (x - alpha D) / sigma`` the noise prediction. The samplers integrate the family
of reverse-time equations with the data marginals

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
    a_z(s) = a_z(t) - k\int_{\lambda_t}^{\lambda_s} \alpha_\lambda\, a^\top\frac{\partial D}{\partial z}
             \,d\lambda.

The solvers keep the exponential weights of the state equation exact and approximate the model term
``V`` (the rest of each integrand) by a polynomial in ``lambda``. With ``h = lambda_s - lambda_t < 0``:

* ``order=2`` (multistep, "2M") interpolates ``V`` linearly through ``t`` and the previous backward point
  and integrates exactly (its first backward step is order 1 with ``V`` held at ``t``); in the data form
  the parameter integrand ``alpha a^T D_z`` (no exponential weight to keep) is integrated by the
  two-step Adams rule in ``lambda``.
* ``order=1`` of the noise form holds ``V`` at ``t``: the paper's AdjointDEIS-1,
  ``a(s) = (alpha_t/alpha_s) a(t) + k sigma_s (e^h - 1)(alpha_t^2/alpha_s^2) a^T eps_x`` and
  ``a_z(s) = a_z(t) + k sigma_s (e^h - 1)(alpha_t/alpha_s) a^T eps_z``.
* ``order=1`` of the data form holds ``V`` at the noisier end ``s``:
  ``a(s) = c_x a(t) + c_d a^T D_x(x_s, s)`` and ``a_z(s) = a_z(t) + c_d a^T D_z(x_s, s)`` with
  ``c_x = (sigma_t/sigma_s) e^{tau^2 h}``, ``c_d = -alpha_t (e^{kh} - 1)``.

``form="x0"`` (default) uses the data form: its linear part carries the contraction of the state,
which makes it far more accurate on variance-preserving schedules (Gaussian data, VP, 64 log-SNR
steps: relative error of ``dL/dx_T`` 0.037 against 0.49 for the noise form at order 1, 0.008 against
0.16 at order 2). Both forms converge at the stated order. Its path: ``"reconstruct"`` (default for
deterministic samplers) integrates the probability-flow ODE backwards alongside the adjoint (DDIM /
DPM-Solver++(2M) steps), with the discretisation error of that solve; ``"checkpoint"`` (default for
stochastic samplers) and ``"store"`` as above. Supported samplers: every deterministic one, and the
stochastic DDIM (``eta > 0``), EulerMaruyama and SDE-DPM-Solver++ (their ``tau`` is known); grids with
a finite log-SNR at every time.

**Backprop** is :class:`sdekit.core.Backprop` (one concept, one class): ``sample`` then runs as with
``adjoint=None`` and autograd records every step.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, fields, is_dataclass

import torch
from torch.autograd.function import once_differentiable

from ..core.adjoint import AdjointStrategy, Backprop, check_params, resolve_params
from ..core.integrate import fixed_loop, progress_bar
from .prediction import Denoiser
from .samplers.base import Sampler, SamplerContext, schedule_point
from .samplers.ddim import DDIM

__all__ = ["AdjointDEIS", "AdjointStats", "Backprop"]

_TRAJECTORIES = ("reconstruct", "checkpoint", "store")
_DISCRETISATIONS = ("transpose", "continuous")
_ODE_STEP = DDIM()   # the first-order probability-flow step that rebuilds the path backwards
_FORMS = ("x0", "eps")
# default rebuild_rtol by dtype: about eps^(0.6), so the rebuilt states are good to well below the
# 1e-6 relative gradient accuracy the transposed steps give in float64
_REBUILD_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}


@dataclass
class AdjointStats:
    """What the backward pass of an :class:`AdjointDEIS` strategy did: ``info.adjoint_stats`` of
    ``sample(..., adjoint=AdjointDEIS(), return_info=True)``, created with the sample and filled in when the
    gradient is computed (the strategy object itself keeps no state, so one strategy serves any number of
    samples).

    Attributes:
        steps: grid steps.
        trajectory: how the states were obtained in the end (``"reconstruct"``, ``"checkpoint"``,
            ``"store"``); ``"checkpoint"`` after a failed rebuild.
        discretisation: ``"transpose"`` (the exact gradient of the sampler's steps) or ``"continuous"``
            (the continuous adjoint equations).
        fallback: the rebuild was attempted, failed its check and the pass was redone by checkpointed
            replay from ``x_T``.
        rebuild_error: ``max |x_T(rebuilt) - x_T| / scale`` of a transposed rebuild (``scale`` = max of 1
            and ``max |x_T|``); ``inf`` where a step's fixed-point iteration did not converge; ``None``
            without a rebuild.
        rebuild_iterations: fixed-point iterations (model calls) spent rebuilding the path.
        backward_calls: model calls of the backward pass (vector-Jacobian products, replayed forward
            steps, rebuild iterations).
        saved_bytes: bytes of the states saved for backward through autograd (``save_for_backward``).
        held_bytes: bytes of the other tensors kept from the forward pass (the sampler's own state at the
            checkpoints, e.g. a multistep history).
        peak_working_bytes: the largest total size of the tensors the backward pass held between two
            steps (state, adjoints, sampler state, replayed segment), not counting one model call's own
            activations.
    """

    steps: int
    trajectory: str
    discretisation: str = "transpose"
    fallback: bool = False
    rebuild_error: float | None = None
    rebuild_iterations: int = 0
    backward_calls: int = 0
    saved_bytes: int = 0
    held_bytes: int = 0
    peak_working_bytes: int = 0


class AdjointDEIS(AdjointStrategy):
    r"""Gradients through :func:`~sdekit.diffusion.sample` computed backwards step by step, with memory
    independent of the number of steps where the path can be rebuilt (see :mod:`sdekit.diffusion.adjoint`).

    By default (``discretisation="transpose"``) the backward pass applies the transpose of each step the
    sampler took, multistep history, corrector and lower-order steps included, so the gradient is the
    exact gradient of the sampler's discrete map (backprop's, to rounding) for every sampler. With
    ``discretisation="continuous"`` it solves the paper's adjoint equations of the continuous process
    (Blasingame & Liu, "AdjointDEIS: Efficient gradients for diffusion models", NeurIPS 2024), the
    gradient of the exact ODE/SDE solution, good to the discretisation error of both solves.

    Arguments:
        order: the order of the continuous adjoint solver, 2 (default; AdjointDEIS-2M, multistep) or 1
            (AdjointDEIS-1); not used by the transposed sampler (its "order" is the sampler's own).
        discretisation: ``"transpose"`` (default) or ``"continuous"``.
        form: continuous adjoint only: ``"x0"`` (default; the equations in data prediction, as
            DPM-Solver++) or ``"eps"`` (the paper's noise-prediction form).
        trajectory: ``"reconstruct"``, ``"checkpoint"`` or ``"store"``; ``None`` (default): transposed,
            ``"reconstruct"`` for samplers that declare an inverse (:attr:`Sampler.invertible`, DDIM with
            ``eta = 0``) and ``"checkpoint"`` otherwise; continuous, ``"reconstruct"`` for deterministic
            samplers and ``"checkpoint"`` for stochastic ones.
        checkpoints: number of stored states with ``"checkpoint"`` (default ``ceil(sqrt(steps))``).
        rebuild_rtol: transposed ``"reconstruct"`` only: the tolerance, relative to the state's scale
            (max of 1 and ``max |x_T|``), of each step's fixed-point inversion (a hundredth of it) and of
            the check of the rebuilt ``x_T`` against the given one; default ``1e-9`` in float64 and
            ``1e-4`` in float32.
        rebuild_iterations: transposed ``"reconstruct"`` only: at most this many fixed-point iterations
            (model calls) per step before the rebuild is abandoned for checkpointed replay (default 100).
        params: tensors to differentiate besides ``x_T`` and the ``model_kwargs`` tensors that
            require grad; default: the parameters of the model when it is a ``torch.nn.Module`` (or a
            :class:`~sdekit.diffusion.Denoiser` of one). Pass them for plain callables that close over
            tensors, or ``params=()``.

    Raises:
        ValueError / TypeError for an order other than 1 or 2, an unknown ``discretisation``, ``form`` or
        ``trajectory``, ``checkpoints`` or ``rebuild_iterations`` that is not a positive int,
        ``rebuild_rtol`` that is not a positive number, ``params`` that are not a tuple of floating
        tensors.
    """

    def __init__(self, order: int = 2, *, discretisation: str = "transpose", form: str = "x0",
                 trajectory: str | None = None, checkpoints: int | None = None,
                 rebuild_rtol: float | None = None, rebuild_iterations: int = 100,
                 params: tuple[torch.Tensor, ...] | None = None) -> None:
        if isinstance(order, bool) or order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order!r}")
        if discretisation not in _DISCRETISATIONS:
            raise ValueError(f"discretisation must be one of {_DISCRETISATIONS}, got {discretisation!r}")
        if form not in _FORMS:
            raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
        if trajectory is not None and trajectory not in _TRAJECTORIES:
            raise ValueError(f"trajectory must be None or one of {_TRAJECTORIES}, got {trajectory!r}")
        for name, value in (("checkpoints", checkpoints), ("rebuild_iterations", rebuild_iterations)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int{' or None' if name == 'checkpoints' else ''}, "
                                 f"got {value!r}")
        if rebuild_rtol is not None and (isinstance(rebuild_rtol, bool)
                                         or not isinstance(rebuild_rtol, (int, float))
                                         or not 0 < rebuild_rtol < math.inf):
            raise ValueError(f"rebuild_rtol must be a positive number or None, got {rebuild_rtol!r}")
        self.order = int(order)
        self.discretisation = discretisation
        self.form = form
        self.trajectory = trajectory
        self.checkpoints = checkpoints
        self.rebuild_rtol = None if rebuild_rtol is None else float(rebuild_rtol)
        self.rebuild_iterations = int(rebuild_iterations)
        self.params = check_params(params)

    def __repr__(self) -> str:
        if self.discretisation == "transpose":
            return f"AdjointDEIS(discretisation='transpose', trajectory={self.trajectory!r})"
        return (f"AdjointDEIS(order={self.order}, discretisation='continuous', form={self.form!r}, "
                f"trajectory={self.trajectory!r})")


_STRATEGIES = "None, Backprop() or AdjointDEIS(...)"


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
    """``tau^2`` of the reverse-time equation the sampler discretises (:attr:`Sampler.reverse_sde_tau2`); the
    continuous adjoint needs it."""
    tau2 = sampler.reverse_sde_tau2
    if tau2 is None:
        raise ValueError(f"AdjointDEIS(discretisation='continuous') supports the samplers that declare the "
                         f"reverse-time SDE they discretise (Sampler.reverse_sde_tau2): every deterministic "
                         f"sampler and the stochastic DDIM(eta > 0), EulerMaruyama() and SDEDPMSolverPP(); got "
                         f"{sampler!r}. The default discretisation='transpose' supports every sampler")
    return float(tau2)


def _check_grid(schedule, grid: list) -> list:
    points = [schedule_point(schedule, t) for t in grid]
    for i, p in enumerate(points):
        if not (math.isfinite(p.log_snr) and p.alpha > 0.0 and p.sigma > 0.0):
            raise ValueError(
                f"AdjointDEIS(discretisation='continuous') needs alpha > 0 and sigma > 0 (a finite log-SNR) "
                f"at every grid time; at timesteps[{i}]={grid[i]} {schedule!r} has alpha={p.alpha}, "
                f"sigma={p.sigma}. Move the grid inside (e.g. LinearFlow(t_max=0.999)) or use the default "
                "discretisation='transpose'"
            )
    return points


def _tensors(obj, floating_only: bool = False) -> list:
    """The tensors in a (nested) tuple / list / dataclass, in a fixed order (floating-point ones only with
    ``floating_only``): the one walk over sampler states and the backward pass's working set."""
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() or not floating_only else []
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o, floating_only)]
    if is_dataclass(obj) and not isinstance(obj, type):
        return [t for f in fields(obj) for t in _tensors(getattr(obj, f.name), floating_only)]
    return []


def _tensor_bytes(obj) -> int:
    """Total bytes of the tensors in a (nested) tuple / list / dataclass."""
    return sum(t.numel() * t.element_size() for t in _tensors(obj))


@dataclass
class _Run:
    strategy: AdjointDEIS
    sampler: Sampler
    ctx: SamplerContext          # the forward context (counted denoiser, noise source)
    denoiser: Denoiser           # the bare denoiser; copied with detached conditioning for the backward pass
    grid: list                   # decreasing Python floats
    points: list | None          # schedule_point at every grid time (continuous adjoint)
    cond_keys: tuple             # model_kwargs entries that are differentiated
    params: tuple                # parameter tensors that are differentiated
    tau2: float                  # tau^2 of the equation the sampler integrates (continuous adjoint)
    trajectory: str
    segment: int                 # steps between checkpoints
    progress: bool
    name: str
    stats: AdjointStats          # filled in by the backward pass (returned with the sample)
    checkpoints: dict | None = None   # step index -> sampler state (the states are saved for backward)
    states: list | None = None        # "store": the sampler state at every grid time
    final_state: object = None        # "reconstruct": the sampler state at the last grid time


def sample_with_adjoint(strategy: AdjointDEIS, sampler: Sampler, ctx: SamplerContext, denoiser: Denoiser,
                        x_T: torch.Tensor, *, progress: bool = False) -> tuple[torch.Tensor, AdjointStats]:
    """Run ``sampler`` over ``ctx.times`` from ``x_T`` without recording a graph; return the last state as
    the output of a ``torch.autograd.Function`` whose backward pass is AdjointDEIS, and the
    :class:`AdjointStats` that backward pass fills in.

    Called by :func:`~sdekit.diffusion.sample` once the sampler, grid, denoiser and noise source are
    resolved; ``ctx.denoiser`` may count calls, ``denoiser`` is the bare :class:`Denoiser`.

    Raises:
        ValueError for ``trajectory="reconstruct"`` with a sampler it cannot rebuild, and for the
        continuous adjoint: an unsupported sampler, a grid with ``alpha = 0`` or ``sigma = 0``, a single
        adaptive interval; TypeError for an integer ``model_kwargs`` tensor that requires grad.
    """
    grid = list(ctx.times)
    n = len(grid) - 1
    if strategy.discretisation == "continuous":
        if sampler.nfe_per_step is None and n == 1:
            raise ValueError(f"AdjointDEIS(discretisation='continuous') solves the adjoint on the sampling "
                             f"grid, and {sampler!r} with steps=None runs a single interval; pass steps=N (or "
                             "timesteps=...)")
        points, tau2 = _check_grid(ctx.schedule, grid), _tau_squared(sampler)
        trajectory = strategy.trajectory or ("checkpoint" if sampler.stochastic else "reconstruct")
        if trajectory == "reconstruct" and sampler.stochastic:
            raise ValueError(f"trajectory='reconstruct' is not available for the stochastic sampler "
                             f"{sampler!r}: undoing reverse-SDE steps amplifies errors exponentially; use "
                             "'checkpoint' (the default) or 'store'")
    else:
        points, tau2 = None, 0.0
        trajectory = strategy.trajectory or ("reconstruct" if sampler.invertible else "checkpoint")
        if trajectory == "reconstruct" and not sampler.invertible:
            raise ValueError(
                f"trajectory='reconstruct' needs a sampler whose steps can be inverted (Sampler.invertible: "
                f"DDIM with eta=0); {sampler!r} cannot be rebuilt from its final state (a multistep history "
                "or noise is lost). Use trajectory='checkpoint' (the default: O(sqrt(steps)) states) or "
                "'store', or discretisation='continuous' (the gradient of the continuous ODE, not of the "
                "sampler)")
    cond_keys = tuple(k for k, v in denoiser.model_kwargs.items()
                      if isinstance(v, torch.Tensor) and v.requires_grad)
    conds = tuple(denoiser.model_kwargs[k] for k in cond_keys)
    params = resolve_params(strategy, denoiser.model, "the model", reaches="x_T and the model_kwargs tensors")
    count = strategy.checkpoints or math.ceil(math.sqrt(n))
    segment = max(1, math.ceil(n / count))
    stats = AdjointStats(steps=n, trajectory=trajectory, discretisation=strategy.discretisation)
    run = _Run(strategy, sampler, ctx, denoiser, grid, points, cond_keys, params, tau2, trajectory, segment,
               progress, f"sample[{sampler.name}]", stats)
    return _AdjointDEISFunction.apply(run, x_T, *conds, *params), stats


def _checkpoint_saves(n: int, segment: int) -> list:
    return sorted(set(range(0, n, segment)) | {n})


def _forward(run: _Run, x_T: torch.Tensor, trajectory: str) -> tuple[list, dict]:
    """Run the sampler from ``x_T``; return the states at the saved grid indices of ``trajectory`` and the
    sampler states kept for it (grid index -> state)."""
    n = len(run.grid) - 1
    saves = {"store": list(range(n + 1)), "checkpoint": _checkpoint_saves(n, run.segment)}.get(trajectory, [0, n])
    keep = set(saves) if trajectory in ("store", "checkpoint") else {n}
    sampler_states = {}

    def step(k, t0, t1, x, state):
        x1, state1 = run.sampler.step(run.ctx, k, t0, t1, x, state)
        if k + 1 in keep:
            sampler_states[k + 1] = state1
        return x1, state1

    state0 = run.sampler.init(run.ctx, x_T)
    sampler_states[0] = state0
    with torch.no_grad():
        states = fixed_loop(step, x_T, state0, run.grid, saves, lambda v: v, run.name, run.progress)
    return states, sampler_states


class _AdjointDEISFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: _Run, x_T: torch.Tensor, *inputs):
        n = len(run.grid) - 1
        states, sampler_states = _forward(run, x_T, run.trajectory)
        x = states[-1]
        if run.trajectory == "store":
            kept = states
            run.states = [sampler_states[k] for k in range(n + 1)]
        elif run.trajectory == "checkpoint":
            kept = states[:-1]
            run.checkpoints = {k: sampler_states[k] for k in _checkpoint_saves(n, run.segment)[:-1]}
        elif run.strategy.discretisation == "transpose":
            kept = [x_T, x]         # the rebuild ends at x_T (its check) and falls back to replay from it
            run.final_state = sampler_states[n]
        else:
            kept = [x]
        ctx.run = run
        ctx.save_for_backward(*kept)
        return x.clone() if x is x_T else x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x):
        run = ctx.run
        needs = ctx.needs_input_grad[2:]
        if run.strategy.discretisation == "transpose":
            grads = _transposed_backward(run, ctx.saved_tensors, grad_x, needs)
        else:
            grads = _backward(run, ctx.saved_tensors, grad_x, needs)
        run.checkpoints = run.states = run.final_state = None
        return (None, *grads)


# --------------------------------------------------------------------------------------------
# The transposed sampler: one vector-Jacobian product of each step the sampler took
# --------------------------------------------------------------------------------------------
def _state_tensors(state) -> list:
    """The floating-point tensors of a sampler state, in the order :func:`_state_leaves` makes leaves of them."""
    return _tensors(state, floating_only=True)


def _state_leaves(state, leaves: list):
    """A copy of ``state`` whose floating tensors are detached leaves that require grad (appended to
    ``leaves`` in the order of :func:`_state_tensors`)."""
    if isinstance(state, torch.Tensor):
        if not state.is_floating_point():
            return state
        leaf = state.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf
    if isinstance(state, (tuple, list)):
        return type(state)(_state_leaves(s, leaves) for s in state)
    if is_dataclass(state) and not isinstance(state, type):
        return dataclasses.replace(state, **{f.name: _state_leaves(getattr(state, f.name), leaves)
                                             for f in fields(state) if f.init})
    return state


class _Recorder:
    """The backward pass's denoiser: counts model calls and keeps the last data prediction (the rebuild
    starts each inversion from it)."""

    def __init__(self, den, stats: AdjointStats) -> None:
        self.den, self.stats = den, stats
        self.last: tuple | None = None   # (t, x, D(x, t)) of the last call

    def __call__(self, x, t):
        self.stats.backward_calls += 1
        d = self.den(x, t)
        self.last = (t, x, d.detach())
        return d


def _transpose_step(run: _Run, bctx: SamplerContext, k: int, x: torch.Tensor, state, a: torch.Tensor,
                    a_state: list | None, targets: list):
    """One vector-Jacobian product of grid step ``k`` at its inputs ``(x, state)``: the cotangents
    ``(a, a_state)`` of ``(x_{k+1}, S_{k+1})`` mapped to those of ``(x_k, S_k)``, and the step's
    contribution to the gradients of ``targets``."""
    leaves: list = []
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        s_in = _state_leaves(state, leaves)
        x1, s1 = run.sampler.step(bctx, k, run.grid[k], run.grid[k + 1], x_in, s_in)
        outputs, cotangents = [x1], [a]
        if a_state is not None:
            for out, cot in zip(_state_tensors(s1), a_state):
                if cot is not None and out.requires_grad:
                    outputs.append(out)
                    cotangents.append(cot)
        inputs = [x_in, *leaves, *targets]
        grads = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True)
    a_x = grads[0] if grads[0] is not None else torch.zeros_like(x)
    return a_x, list(grads[1:1 + len(leaves)]), list(grads[1 + len(leaves):])


class _ReplayedPath:
    """``(x_k, S_k)`` for ``k = n - 1, ..., 0`` from all stored states or by replaying checkpointed
    segments forwards (the same Brownian increments)."""

    def __init__(self, run: _Run, xs: dict, sampler_states: dict, bctx: SamplerContext, stored: bool,
                 to_end: bool = False) -> None:
        self.run, self.xs, self.sampler_states, self.bctx, self.stored = run, xs, sampler_states, bctx, stored
        self.starts = sorted(xs)
        self.to_end = to_end   # also replay the state at the end of each segment (the continuous adjoint's x_n)
        self.segment_states: dict = {}

    def at(self, k: int):
        if self.stored:
            return self.xs[k], self.sampler_states.get(k)
        if k not in self.segment_states:
            run = self.run
            if self.to_end and k > 0:   # the segment (start, end] that holds k, replayed to its end
                start = max(s for s in self.starts if s < k)
            else:                       # the segment [start, end) that holds k
                start = max(s for s in self.starts if s <= k)
            end = min(start + run.segment, len(run.grid) - 1)
            x, state = self.xs[start], self.sampler_states[start]
            self.segment_states = {start: (x, state)}
            with torch.no_grad():
                for j in range(start, end if self.to_end else end - 1):
                    x, state = run.sampler.step(self.bctx, j, run.grid[j], run.grid[j + 1], x, state)
                    self.segment_states[j + 1] = (x, state)
        return self.segment_states[k]

    def working_bytes(self) -> int:
        return _tensor_bytes([list(v) for v in self.segment_states.values()])


class _RebuiltPath:
    """``(x_k, S_k)`` for ``k = n - 1, ..., 0`` by inverting the sampler's steps from the final state
    (:meth:`Sampler.invert`); ``at`` returns ``None`` when an inversion does not converge."""

    def __init__(self, run: _Run, x_n: torch.Tensor, bctx: SamplerContext, recorder: _Recorder,
                 scale: float, rtol: float) -> None:
        self.run, self.bctx, self.recorder = run, bctx, recorder
        self.x, self.state = x_n, run.final_state
        self.tol = 0.01 * rtol * scale
        self.iterations = 0

    def at(self, k: int):
        run = self.run
        last = self.recorder.last
        # D(x_{k+1}, t_{k+1}) from the transposed step k + 1 (same time, same storage) starts the inversion
        d1 = last[2] if (last is not None and last[0] == run.grid[k + 1] and last[1].shape == self.x.shape
                         and last[1].data_ptr() == self.x.data_ptr()) else None
        calls = self.recorder.stats.backward_calls
        with torch.no_grad():
            got = run.sampler.invert(self.bctx, k, run.grid[k], run.grid[k + 1], self.x, self.state, d1,
                                     tol=self.tol, max_iter=run.strategy.rebuild_iterations)
        self.iterations += self.recorder.stats.backward_calls - calls
        if got is None:
            return None
        self.x, self.state = got
        return got

    def working_bytes(self) -> int:
        return _tensor_bytes([self.x, self.state])


def _transposed_backward(run: _Run, saved: tuple, grad_x: torch.Tensor, needs: tuple) -> list:
    """Gradients of ``x_T`` and of the Function inputs: the transposed sampler steps, last to first."""
    stats = _fresh_stats(run, saved)
    stats.held_bytes = _tensor_bytes([list((run.checkpoints or {}).values()), run.states or [], run.final_state])
    den, targets = _differentiated(run)
    recorder = _Recorder(den, stats)
    bctx = SamplerContext(denoiser=recorder, schedule=run.ctx.schedule, times=run.grid, noise=run.ctx.noise)
    grad_x = grad_x.to(dtype=saved[-1].dtype).contiguous()

    if run.trajectory == "reconstruct":
        result = _rebuilt_sweep(run, saved, bctx, grad_x, targets, stats, recorder)
    else:
        path = _kept_path(run, saved, bctx)
        result = _sweep(run, path, bctx, grad_x, targets, stats)
    assert result is not None   # a replayed path cannot fail
    a, a_z = result
    if not bool(torch.isfinite(a).all()):
        raise FloatingPointError(f"{run.name}: the gradient through the sampler became non-finite; check the "
                                 "model and the grid")
    return _gradients(a, a_z, targets, needs)


def _fresh_stats(run: _Run, saved: tuple) -> AdjointStats:
    """The run's :class:`AdjointStats`, reset for this backward pass."""
    stats = run.stats
    for f in fields(stats):
        if f.name not in ("steps", "discretisation"):
            setattr(stats, f.name, f.default)
    stats.trajectory = run.trajectory
    stats.saved_bytes = _tensor_bytes(list(saved))
    return stats


def _differentiated(run: _Run) -> tuple[Denoiser, list]:
    """The backward pass's denoiser, whose differentiated ``model_kwargs`` tensors are detached leaves, and the
    tensors differentiated besides the state (those leaves, then the parameters)."""
    base = run.denoiser
    conds = [base.model_kwargs[k].detach().requires_grad_(True) for k in run.cond_keys]
    den = copy.copy(base)
    den.model_kwargs = {**base.model_kwargs, **dict(zip(run.cond_keys, conds))}
    return den, conds + list(run.params)


def _kept_path(run: _Run, saved: tuple, bctx: SamplerContext, to_end: bool = False) -> _ReplayedPath:
    """The path of a ``"store"`` or ``"checkpoint"`` run: every state, or replayed from the checkpoints."""
    kept = dict(enumerate(run.states)) if run.states is not None else run.checkpoints
    if kept is None:
        raise RuntimeError(f"{run.name}: AdjointDEIS released this sample's stored states after its first backward "
                           "pass; backward() runs once per sample")
    if run.trajectory == "store":
        return _ReplayedPath(run, dict(enumerate(saved)), kept, bctx, stored=True)
    starts = _checkpoint_saves(len(run.grid) - 1, run.segment)[:-1]
    return _ReplayedPath(run, dict(zip(starts, saved)), kept, bctx, stored=False, to_end=to_end)


def _gradients(a: torch.Tensor, a_z: list, targets: list, needs: tuple) -> list[torch.Tensor | None]:
    """The Function's input gradients: ``a`` for ``x_T``, then each target's (zeros where it was unused)."""
    out: list[torch.Tensor | None] = [a]
    for j, need in enumerate(needs):
        g = a_z[j]
        out.append(None if not need else (torch.zeros_like(targets[j]) if g is None else g))
    return out


def _rebuilt_sweep(run: _Run, saved: tuple, bctx: SamplerContext, grad_x: torch.Tensor, targets: list,
                   stats: AdjointStats, recorder: _Recorder):
    """The transposed sweep on the rebuilt path, checked against ``x_T``; on failure the pass is redone on
    a path replayed from ``x_T`` through ``ceil(sqrt(n))`` checkpoints."""
    n = len(run.grid) - 1
    x_T, x_n = saved
    scale = max(1.0, float(x_T.detach().abs().max()))
    rtol = run.strategy.rebuild_rtol or _REBUILD_RTOL.get(x_T.dtype, 1e-2)
    path = _RebuiltPath(run, x_n, bctx, recorder, scale, rtol)
    result = _sweep(run, path, bctx, grad_x, targets, stats)
    stats.rebuild_iterations = path.iterations
    stats.rebuild_error = math.inf if result is None else float((path.x - x_T).abs().max()) / scale
    if result is not None and stats.rebuild_error <= rtol:
        return result
    stats.fallback, stats.trajectory = True, "checkpoint"
    states, sampler_states = _forward(run, x_T, "checkpoint")
    stats.backward_calls += n
    starts = _checkpoint_saves(n, run.segment)[:-1]
    replay = _ReplayedPath(run, dict(zip(starts, states)), {k: sampler_states[k] for k in starts}, bctx,
                           stored=False)
    stats.held_bytes = max(stats.held_bytes, _tensor_bytes([states, [sampler_states[k] for k in starts]]))
    return _sweep(run, replay, bctx, grad_x, targets, stats)


def _sweep(run: _Run, path, bctx: SamplerContext, a: torch.Tensor, targets: list, stats: AdjointStats):
    """Transpose the steps ``n - 1, ..., 0`` along ``path``; ``(a, a_z)`` or ``None`` if the path fails."""
    n = len(run.grid) - 1
    a_state = None
    a_z: list = [None] * len(targets)
    bar = progress_bar(run.progress, n, run.name + " adjoint")
    try:
        for k in range(n - 1, -1, -1):
            got = path.at(k)
            if got is None:
                return None
            x, state = got
            a, a_state, gz = _transpose_step(run, bctx, k, x, state, a, a_state, targets)
            a_z = [_add(total, g) for total, g in zip(a_z, gz)]
            stats.peak_working_bytes = max(stats.peak_working_bytes,
                                           _tensor_bytes([x, state, a, a_state, a_z]) + path.working_bytes())
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return a, a_z


# --------------------------------------------------------------------------------------------
# The continuous adjoint (discretisation="continuous")
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


def _add(total, value):
    if value is None:
        return total
    return value if total is None else total + value


def _diff(value, prev, back: float = 1.0):
    """``value - back * prev`` on optional tensors (``None`` is zero)."""
    if prev is None:
        return value
    return -back * prev if value is None else value - back * prev


class _ContinuousStep:
    """One backward step of the continuous adjoint from grid time ``k`` to ``k - 1``: subclasses hold what
    their multistep formula keeps between steps (the previous backward point, a rebuilt state)."""

    def __init__(self, run: _Run, den, targets: list, path: _ReplayedPath | None, final: torch.Tensor,
                 stats: AdjointStats) -> None:
        self.run, self.den, self.targets, self.path, self.final, self.stats = run, den, targets, path, final, stats
        assert run.points is not None   # set for the continuous adjoint
        self.points: list = run.points
        self.k2 = 1.0 + run.tau2
        self.rebuilt: torch.Tensor | None = None   # "reconstruct": the state rebuilt at the next k
        self.prev: tuple | None = None            # order 2: (lambda, V_x, V_z, D) at the previous point

    def state(self, k: int) -> torch.Tensor:
        """``x_k``: rebuilt backwards (``path`` None: ``"reconstruct"``) or from the replayed/stored path."""
        if self.path is None:
            return self.final if self.rebuilt is None else self.rebuilt
        return self.path.at(k)[0]

    def vjp(self, x: torch.Tensor, k: int, a: torch.Tensor):
        self.stats.backward_calls += 1
        return _vjp(self.den, x, self.run.grid[k], a, self.targets)

    def __call__(self, k: int, a: torch.Tensor, a_z: list) -> tuple[torch.Tensor, list]:
        raise NotImplementedError

    def held(self) -> list:
        return [self.rebuilt, self.prev]


class _ExponentialStep(_ContinuousStep):
    """Orders 1 and 2 (multistep) of both forms: ``V`` held at ``t`` or linear through ``t`` and the
    previous backward point; the state equation's exponential weight integrated exactly."""

    def __call__(self, k, a, a_z):
        run, pts, prev, k2 = self.run, self.points, self.prev, self.k2
        pt, ps = pts[k], pts[k - 1]
        h = ps.log_snr - pt.log_snr          # < 0: backwards in lambda
        x = self.state(k)
        d, gx, gz = self.vjp(x, k, a)
        multistep = run.strategy.order == 2 and prev is not None
        hp = pt.log_snr - prev[0] if prev is not None else math.nan
        if run.strategy.form == "eps":
            # a^T eps_x = (a - alpha a^T D_x) / sigma,  a^T eps_z = -(alpha / sigma) a^T D_z
            v_x = (pt.alpha**2 / pt.sigma) * (a - pt.alpha * gx)
            v_z = [None if g is None else (-pt.alpha**2 / pt.sigma) * g for g in gz]
            e1 = math.expm1(h)
            i_x = e1 * v_x
            i_z = [None if v is None else e1 * v for v in v_z]
            if multistep and prev is not None:
                r = _expm1_minus(h) / hp
                i_x = i_x + r * _diff(v_x, prev[1])
                i_z = [_add(iz, None if dv is None else r * dv)
                       for iz, dv in zip(i_z, (_diff(v, pv) for v, pv in zip(v_z, prev[2])))]
            a_next = (pt.alpha / ps.alpha) * a + (k2 * ps.sigma / ps.alpha**2) * i_x
            dz = [None if iz is None else (k2 * ps.sigma / ps.alpha) * iz for iz in i_z]
        else:
            # V_x = alpha^2 a^T D_x (weight e^{-k lambda}, integrated exactly);  the parameter integrand
            # F = k alpha a^T D_z has no exponential weight to keep: the two-step Adams rule in lambda
            v_x = pt.alpha**2 * gx
            v_z = [None if g is None else pt.alpha * g for g in gz]
            e1 = math.expm1(k2 * h)
            i_x = e1 * v_x
            i_z = [None if v is None else (k2 * h) * v for v in v_z]
            if multistep and prev is not None:
                r = _expm1_minus(k2 * h) / (k2 * hp)
                i_x = i_x + r * _diff(v_x, prev[1])
                rz = k2 * h * h / (2.0 * hp)
                i_z = [_add(iz, None if dv is None else rz * dv)
                       for iz, dv in zip(i_z, (_diff(v, pv) for v, pv in zip(v_z, prev[2])))]
            a_next = ((pt.sigma / ps.sigma) * math.exp(run.tau2 * h)) * a - i_x / ps.alpha
            dz = [None if iz is None else -iz for iz in i_z]
        if self.path is None:
            # the probability-flow ODE from t back to s: DDIM / DPM-Solver++(2M) in data prediction
            b_x, b_d, _ = _ODE_STEP.coefficients(pt, ps)
            rebuilt = b_x * x + b_d * d
            if multistep and prev is not None:
                rebuilt = rebuilt + (ps.alpha * (math.expm1(-h) + h) / hp) * (d - prev[3])
            self.rebuilt = rebuilt
        if run.strategy.order == 2:
            self.prev = (pt.log_snr, v_x, v_z, d)
        return a_next, [_add(total, v) for total, v in zip(a_z, dz)]


class _FirstOrderDataStep(_ContinuousStep):
    """Order 1 of the data form: the model term at the noisier end ``s``, ``a(s) = c_x a(t) + c_d a^T D_x(x_s,
    s)``, the transpose of the first-order step ``x_t = c_x x_s + c_d D(x_s, s)`` (DDIM's own coefficients
    with :class:`DDIM`). Rebuilding: a DDIM step from ``t`` to ``s`` is the first guess of ``x_s``, the model
    call is made there, and the step ``s -> t`` is undone exactly with that ``D``."""

    d_t: torch.Tensor | None = None   # D at the less noisy end, for the next rebuilt state's first guess

    def __call__(self, k, a, a_z):
        run, pts, k2 = self.run, self.points, self.k2
        pt, ps = pts[k], pts[k - 1]
        h = ps.log_snr - pt.log_snr
        if isinstance(run.sampler, DDIM):
            c_x, c_d, _ = run.sampler.coefficients(ps, pt)
        else:
            c_x, c_d = (pt.sigma / ps.sigma) * math.exp(run.tau2 * h), -pt.alpha * math.expm1(k2 * h)
        if self.path is None:
            x = self.state(k)
            d_t = self.d_t
            if d_t is None:
                with torch.no_grad():
                    d_t = self.den(x, run.grid[k])
                self.stats.backward_calls += 1
            b_x, b_d, _ = _ODE_STEP.coefficients(pt, ps)
            d_s, gx, gz = self.vjp(b_x * x + b_d * d_t, k - 1, a)
            self.d_t, self.rebuilt = d_s, (x - c_d * d_s) / c_x      # undo the step s -> t
        else:
            _, gx, gz = self.vjp(self.path.at(k - 1)[0], k - 1, a)
        return c_x * a + c_d * gx, [_add(total, None if g is None else c_d * g) for total, g in zip(a_z, gz)]

    def held(self) -> list:
        return [self.rebuilt, self.d_t]


def _backward(run: _Run, saved: tuple, grad_x: torch.Tensor, needs: tuple) -> list:
    """The continuous adjoint's backward pass; returns the gradients of ``x_T`` and of the Function inputs."""
    n = len(run.grid) - 1
    stats = _fresh_stats(run, saved)
    stats.held_bytes = _tensor_bytes(list((run.checkpoints or {}).values()))
    den, targets = _differentiated(run)
    replay = SamplerContext(denoiser=_Recorder(run.denoiser, stats), schedule=run.ctx.schedule, times=run.grid,
                            noise=run.ctx.noise)
    path = None if run.trajectory == "reconstruct" else _kept_path(run, saved, replay, to_end=True)
    kind = _FirstOrderDataStep if run.strategy.order == 1 and run.strategy.form == "x0" else _ExponentialStep
    step = kind(run, den, targets, path, saved[-1], stats)
    a = grad_x.to(dtype=saved[-1].dtype).contiguous()
    a_z: list = [None] * len(targets)
    bar = progress_bar(run.progress, n, run.name + " adjoint")
    for k in range(n, 0, -1):
        a, a_z = step(k, a, a_z)
        working = _tensor_bytes([a, a_z, step.held()]) + (0 if path is None else path.working_bytes())
        stats.peak_working_bytes = max(stats.peak_working_bytes, working)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not bool(torch.isfinite(a).all()):
        raise FloatingPointError(f"{run.name}: the AdjointDEIS adjoint became non-finite; check the model "
                                 "and the grid (sigma or alpha near 0 at its ends)")
    return _gradients(a, a_z, targets, needs)
