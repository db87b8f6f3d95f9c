"""Gradients through SDE and ODE solves: the ``adjoint=`` strategies of :func:`sdeint` and :func:`odeint`.

A strategy is an object passed as ``sdeint(..., adjoint=...)`` or ``odeint(..., adjoint=...)``; the
entry points stay the same. Four strategies:

==========================  ===========================================  ==========================
strategy                    gradient                                     memory in the step count n
==========================  ===========================================  ==========================
:class:`Backprop`           exact for the discretisation (autograd)      O(n)
:class:`Checkpointed`       exact for the discretisation (recomputed)    O(sqrt(n)) by default
:class:`ContinuousAdjoint`  the adjoint SDE/ODE solved backwards         O(1) (plus the outputs)
:class:`ReversibleAdjoint`  exact for reversible Heun (steps inverted)   O(1) (plus the outputs)
==========================  ===========================================  ==========================

**Continuous adjoint of an SDE** (Li, Wong, Chen & Duvenaud, "Scalable gradients for stochastic
differential equations", AISTATS 2020). For a Stratonovich SDE ``dy = f dt + g o dW`` and a loss on
``y(t_i)``, the adjoint ``a = dL/dy`` and the parameter adjoint ``a_theta`` satisfy, along the *same*
Brownian path solved backwards in time,

    dy       =  f dt + g o dW
    da       = -a^T (df/dy) dt - a^T d(g dW)/dy
    da_theta = -a^T (df/dtheta) dt - a^T d(g dW)/dtheta

from ``(y(T), dL/dy(T), 0)``, adding ``dL/dy(t_i)`` to ``a`` at every output time (where ``y`` is also
reset to the stored forward value). The augmented system is itself a Stratonovich SDE, defined here
through ``f`` and ``g_prod`` only, and is solved by the core solvers (``midpoint`` by default, or
``heun``; ``euler`` for additive noise, where Ito and Stratonovich coincide) in the one time loop.

*Ito SDEs.* The forward Ito SDE is first rewritten in Stratonovich form,
``f_strat = f - 1/2 sum_j (dg_j/dy) g_j`` (columns ``g_j`` of ``g``; for diagonal noise the
elementwise ``1/2 g dg/dy``, which assumes, as Milstein's method does, that ``g_i`` depends on
``y_i`` only), and the adjoint of that Stratonovich SDE is solved with a Stratonovich solver. Both
forms have the same pathwise solution, so the gradients agree with backpropagation through an Ito
solver as the steps shrink. The correction is differentiated in ``y`` and ``theta`` (second
derivatives of ``g``), by double vector-Jacobian products.

**Continuous adjoint of an ODE** (Chen, Rubanova, Bettencourt & Duvenaud, "Neural ordinary
differential equations", NeurIPS 2018): the same system without noise, solved by the same (or a
chosen) ODE solver with error control on the whole augmented state.

**Reversible adjoint** (Kidger, Foster, Li & Lyons, "Efficient and accurate gradients for neural
SDEs", NeurIPS 2021). The reversible Heun step ``(y, z, f(z), g(z)) -> (y', z', f(z'), g(z'))`` can be
inverted in closed form, ``z = 2 y' - z' - f(z') dt - g(z') dW``; the backward pass reconstructs
every step from the end state and backpropagates through it locally, so the gradient is the exact
gradient of the discrete forward solve (up to floating-point rounding) with one drift and one
diffusion evaluation (plus their vector-Jacobian product) per step and memory independent of n.

**Parameters.** The gradient is taken with respect to ``y0`` and to ``params``. By default these are
the tensors with ``requires_grad=True`` that the SDE (or the ODE function) reaches: the parameters of
the SDE when it is a ``torch.nn.Module`` (or a bound method of one), and the tensors its functions
capture, found by inspecting them: closure cells, default arguments, the globals their code names,
and the parameters of modules among these (so ``SDE(lambda t, y: -w * y, ...)`` or
``odeint(lambda t, y: net(y), ...)`` get the same gradient as with ``Backprop``). Tensors reached any
other way (e.g. through an attribute of a captured object) are not found: pass them explicitly,
``ContinuousAdjoint(params=(w, b))``, which replaces the search. A plain callable in which the search
finds nothing gets a warning (``params=()`` silences it).
"""

from __future__ import annotations

import bisect
import functools
import math
import types
import warnings
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from .noise import mix64, normalize_seed
from .brownian import BrownianGrid, BrownianPath
from .integrate import (
    _fixed_grid,
    _noise_source,
    _packed_ode,
    _resolve_sde_solver,
    _solve_ode,
    _solve_sde,
    _time_tensors,
    fixed_loop,
    progress_bar,
)
from .sde import FlippedProblem, Problem, _Packer
from .solvers import ode_solver, sde_solver
from .solvers.base import ODESolver, SDESolver
from .solvers.ode_solvers import ButcherTableau
from .solvers.sde_solvers import Euler, Heun, Midpoint, ReversibleHeun

__all__ = ["AdjointStrategy", "Backprop", "Checkpointed", "ContinuousAdjoint", "ReversibleAdjoint"]


# --------------------------------------------------------------------------------------------
# The strategy objects (what users pass)
# --------------------------------------------------------------------------------------------
def _check_params(params) -> tuple[torch.Tensor, ...] | None:
    if params is None:
        return None
    if isinstance(params, torch.Tensor):
        raise TypeError("params must be a tuple of tensors, got a single tensor; write params=(p,)")
    try:
        params = tuple(params)  # a tuple, a list or module.parameters()
    except TypeError:
        raise TypeError(f"params must be a tuple of tensors, got {type(params).__name__}") from None
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"params[{i}] must be a torch.Tensor, got {type(p).__name__}")
        if not p.is_floating_point():
            raise TypeError(f"params[{i}] must be a floating-point tensor, got dtype {p.dtype}")
    return params


def _check_optional_positive(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number or None, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


class AdjointStrategy:
    """Base class of the ``adjoint=`` strategies; see :mod:`sdekit.core.adjoint`."""

    params: tuple[torch.Tensor, ...] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Backprop(AdjointStrategy):
    """Backpropagate through every solver step (the same as ``adjoint=None``).

    The gradient is the exact derivative of the discrete solve; memory grows linearly with the
    number of steps (every step's intermediate values are kept for the backward pass).
    """


class Checkpointed(AdjointStrategy):
    """Backpropagation with recomputation: only the state at the ends of ``segments`` groups of
    steps is kept; each group is run again, with a graph, during the backward pass.

    The gradient equals :class:`Backprop`'s exactly (same steps, same Brownian increments); memory is
    ``O(segments + n / segments)`` for ``n`` steps, ``O(sqrt(n))`` with the default
    ``segments = round(sqrt(n))``, at the cost of a second forward pass.

    For SDEs it needs fixed steps; for adaptive ODE methods the accepted step grid is recorded in a
    first pass without gradients and then replayed in groups (same values, same gradients).

    Arguments:
        segments: number of groups of steps (default ``round(sqrt(n))``).
        params: tensors to differentiate besides ``y0`` (default: the parameters of the SDE / ODE
            function and the tensors its functions capture, see the module docstring); the
            recomputation differentiates with respect to these explicitly.

    Reference: Griewank & Walther, "Algorithm 799: revolve", ACM TOMS 26(1), 2000 (the classical
    sqrt(n) schedule is its one-level special case); Chen, Xu, Zhang & Guestrin, "Training deep nets
    with sublinear memory cost", 2016.
    """

    def __init__(self, segments: int | None = None, *, params=None) -> None:
        if segments is not None and (isinstance(segments, bool) or not isinstance(segments, int)
                                     or segments < 1):
            raise ValueError(f"segments must be a positive int or None, got {segments!r}")
        self.segments = segments
        self.params = _check_params(params)

    def __repr__(self) -> str:
        return f"Checkpointed(segments={self.segments})"


class ContinuousAdjoint(AdjointStrategy):
    """Solve the adjoint SDE (Li et al. 2020) or adjoint ODE (Chen et al. 2018) backwards in time.

    Memory does not depend on the number of steps (only the outputs at ``ts`` are kept); the
    gradient approximates that of the exact solution and agrees with :class:`Backprop` up to the
    discretisation error of the forward and backward solves.

    Arguments:
        method: solver of the backward solve. SDEs: ``"midpoint"`` (default), ``"heun"``, or
            ``"euler"`` for additive noise (the adjoint is solved as a Stratonovich SDE). ODEs: any
            ODE method (default: the forward one).
        dt: step of the backward solve (default: the forward ``dt``; for adaptive ODE methods the
            initial step).
        adaptive: adaptive steps for the backward SDE solve (step doubling; needs a Brownian source
            queryable at any time, which is created when ``bm=None``). ODE methods adapt by
            themselves.
        rtol, atol, dt_min: error control of adaptive backward solves (default: the forward ones).
        params: tensors to differentiate besides ``y0`` (default: the parameters of the SDE / ODE
            function and the tensors its functions capture, see the module docstring).
    """

    def __init__(self, method=None, *, dt: float | None = None, adaptive: bool = False,
                 rtol: float | None = None, atol: float | None = None, dt_min: float | None = None,
                 params=None) -> None:
        if method is not None and not isinstance(method, (str, SDESolver, ODESolver, ButcherTableau)):
            raise TypeError(f"method must be None, a name or a solver object, got {type(method).__name__}")
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {type(adaptive).__name__}")
        self.method = method
        self.dt = _check_optional_positive("dt", dt)
        self.adaptive = adaptive
        self.rtol = _check_optional_positive("rtol", rtol)
        self.atol = _check_optional_positive("atol", atol)
        self.dt_min = _check_optional_positive("dt_min", dt_min)
        self.params = _check_params(params)

    def __repr__(self) -> str:
        return (f"ContinuousAdjoint(method={self.method!r}, dt={self.dt}, adaptive={self.adaptive}, "
                f"rtol={self.rtol}, atol={self.atol})")


class ReversibleAdjoint(AdjointStrategy):
    """Exact gradients for ``method="reversible_heun"`` by inverting its steps (Kidger et al. 2021).

    Memory does not depend on the number of steps; the gradient equals :class:`Backprop`'s through
    the same reversible Heun steps up to floating-point rounding. Fixed steps only.

    Arguments:
        params: tensors to differentiate besides ``y0`` (default: the parameters of the SDE and the
            tensors its functions capture, see the module docstring).
    """

    def __init__(self, *, params=None) -> None:
        self.params = _check_params(params)


_STRATEGIES = "None, Backprop(), Checkpointed(), ContinuousAdjoint() or ReversibleAdjoint()"


def _check_strategy(adjoint) -> AdjointStrategy:
    if isinstance(adjoint, AdjointStrategy):
        return adjoint
    if isinstance(adjoint, type) and issubclass(adjoint, AdjointStrategy):
        raise TypeError(f"adjoint must be an instance, e.g. adjoint={adjoint.__name__}(); "
                        "got the class itself")
    raise TypeError(f"adjoint must be one of {_STRATEGIES}; got {adjoint!r}")


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------
def _module_of(obj) -> torch.nn.Module | None:
    if isinstance(obj, torch.nn.Module):
        return obj
    owner = getattr(obj, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


_CAPTURE_DEPTH = 4


def _global_names(code) -> set:
    """The names a code object (and the functions defined inside it) may read as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _captured_tensors(obj, found: dict, seen: set, depth: int = _CAPTURE_DEPTH, attributes: bool = False) -> None:
    """Collect into ``found`` (by id) the tensors that require grad reachable from ``obj`` the way a
    function reaches them when called: a tensor itself; a module's parameters; a function's closure
    cells, default arguments and the globals its code names; a ``functools.partial``'s function and
    arguments; a bound method's function (and its object, as below); the items of a list, tuple or dict;
    with ``attributes=True`` the instance attributes of an object (one level). Functions met on the way
    are followed up to ``depth`` levels."""
    if id(obj) in seen or depth < 0:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        if obj.requires_grad:
            found.setdefault(id(obj), obj)
        return
    if isinstance(obj, torch.nn.Module):
        for p in obj.parameters():
            _captured_tensors(p, found, seen, depth)
        for value in vars(obj).values():   # functions stored on the instance, e.g. SDE(f, g)
            if callable(value) and not isinstance(value, (torch.nn.Module, type)):
                _captured_tensors(value, found, seen, depth - 1)
        return
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _captured_tensors(item, found, seen, depth - 1)
        return
    if isinstance(obj, dict):
        for item in obj.values():
            _captured_tensors(item, found, seen, depth - 1)
        return
    if isinstance(obj, functools.partial):
        for item in (obj.func, *obj.args, *obj.keywords.values()):
            _captured_tensors(item, found, seen, depth - 1)
        return
    if isinstance(obj, types.MethodType):
        _captured_tensors(obj.__func__, found, seen, depth)
        _captured_tensors(obj.__self__, found, seen, depth - 1, attributes=True)
        return
    if isinstance(obj, types.FunctionType):
        cells = [c.cell_contents for c in (obj.__closure__ or ()) if _cell_filled(c)]
        defaults = list(obj.__defaults__ or ()) + list((obj.__kwdefaults__ or {}).values())
        names = _global_names(obj.__code__)
        glob = [obj.__globals__[n] for n in names if n in obj.__globals__]
        for item in cells + defaults + glob:
            if isinstance(item, (types.ModuleType, type)):
                continue
            _captured_tensors(item, found, seen, depth - 1)
        return
    if attributes and hasattr(obj, "__dict__") and not isinstance(obj, (types.ModuleType, type)):
        for item in vars(obj).values():
            if isinstance(item, (torch.Tensor, torch.nn.Module)):
                _captured_tensors(item, found, seen, depth - 1)


def _cell_filled(cell) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:   # a cell not yet assigned
        return False
    return True


def _resolve_params(strategy, owner, what: str, reaches: str = "y0") -> tuple[torch.Tensor, ...]:
    """The tensors to differentiate besides the initial state: ``strategy.params`` when given, else
    the parameters of the module behind ``owner`` (a module or a bound method of one) together with the
    tensors that require grad which ``owner``'s functions capture (closure cells, default arguments,
    globals they name, modules they call: see :func:`_captured_tensors`), deduplicated. So
    ``SDE(lambda t, y: -w * y, ...)`` differentiates ``w`` as :class:`Backprop` does. A plain callable
    that captures no such tensor gets a warning (it may hide some where they cannot be found, e.g.
    behind an object's attribute); shared by the core's strategies and ``sdekit.diffusion.AdjointDEIS``."""
    name = type(strategy).__name__
    if strategy.params is not None:
        candidates = strategy.params
    else:
        module = _module_of(owner)
        found: dict = {}
        _captured_tensors(owner if module is None or module is owner else module, found, set(),
                          attributes=module is None)
        if module is not None and module is not owner:
            _captured_tensors(owner.__func__, found, set())
        if module is None and not found:
            if torch.is_grad_enabled():
                warnings.warn(
                    f"{name}: {what} is not a torch.nn.Module, no params were given, and it captures no tensor "
                    f"that requires grad, so gradients reach {reaches} only (tensors it reaches some other "
                    f"way get none). Pass {name}(params=(...)), or params=() to silence this warning",
                    stacklevel=4,
                )
            return ()
        candidates = tuple(found.values())
    seen, out = set(), []
    for p in candidates:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return tuple(out)


def _vjp(outputs, inputs, cotangents, *, create_graph: bool = False, retain_graph: bool | None = None):
    """Vector-Jacobian products of ``outputs`` (tensor or tuple) in ``inputs``; zeros where unused."""
    if isinstance(outputs, torch.Tensor):
        outputs, cotangents = (outputs,), (cotangents,)
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return [torch.zeros_like(x) for x in inputs]
    grads = torch.autograd.grad([o for o, _ in pairs], inputs, [c for _, c in pairs], allow_unused=True,
                                create_graph=create_graph, retain_graph=retain_graph)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def _unflat(vector: torch.Tensor, like) -> list[torch.Tensor]:
    out, i = [], 0
    for p in like:
        n = p.numel()
        out.append(vector[i:i + n].view_as(p))
        i += n
    return out


def _t_tensor(value: float, dtype, device) -> torch.Tensor:
    return torch.tensor(value, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# Fixed-step set-up shared by the step-level strategies, in memory independent of the step count
# --------------------------------------------------------------------------------------------
_CHUNK = 32  # time tensors and Brownian increments are materialised this many steps at a time


class _StepGrid:
    """The fixed grid of :func:`sdeint` (the same floats as ``integrate._fixed_grid``), computed on
    demand: per output interval ``[a, b]``, ``n`` equal steps ``a + (b - a) k / n``.

    Indexing by an int gives a time; by a slice, a :class:`_GridView`. ``saves`` holds the grid
    index of every output time."""

    def __init__(self, ts: list[float], dt: float) -> None:
        self.pieces = []
        self.saves = [0]
        for a, b in zip(ts[:-1], ts[1:]):
            n = max(1, math.ceil((b - a) / dt - 1e-9))
            self.pieces.append((a, b, n))
            self.saves.append(self.saves[-1] + n)

    def __len__(self) -> int:
        return self.saves[-1] + 1

    def __getitem__(self, k):
        if isinstance(k, slice):
            return _GridView(self, range(len(self))[k])
        if k < 0:
            k += len(self)
        i = bisect.bisect_right(self.saves, k) - 1
        if i == len(self.pieces):
            return self.pieces[-1][1]
        a, b, n = self.pieces[i]
        j = k - self.saves[i]
        return a if j == 0 else a + (b - a) * j / n


class _GridView:
    """A range of grid indices (possibly reversed) of a :class:`_StepGrid`, times multiplied by
    ``sign``; behaves like the list of those times."""

    def __init__(self, grid: _StepGrid, indices: range, sign: float = 1.0) -> None:
        self.grid, self.indices, self.sign = grid, indices, sign

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return _GridView(self.grid, self.indices[k], self.sign)
        return self.sign * self.grid[self.indices[k]]

    def negated(self) -> _GridView:
        return _GridView(self.grid, self.indices, -self.sign)


class _LazyTimes:
    """The time tensors of a grid, created ``_CHUNK`` at a time (two chunks cached)."""

    def __init__(self, grid, dtype, device) -> None:
        self.grid, self.dtype, self.device = grid, dtype, device
        self._cache: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.grid)

    def __getitem__(self, k: int) -> torch.Tensor:
        c, j = divmod(k, _CHUNK)
        chunk = self._cache.get(c)
        if chunk is None:
            values = [self.grid[i] for i in range(c * _CHUNK, min(len(self.grid), (c + 1) * _CHUNK))]
            chunk = torch.tensor(values, dtype=self.dtype, device=self.device).unbind(0)
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[c] = chunk
        return chunk[j]


def _lazy_time_tensors(dtype, device):
    """``t_of`` for :func:`fixed_loop`: lists as usual, grids and views lazily."""
    eager = _time_tensors(dtype, device)

    def t_of(values):
        if isinstance(values, (_StepGrid, _GridView)):
            return _LazyTimes(values, dtype, device)
        return eager(values)

    return t_of


class _ChunkedBrownian:
    """Brownian increments on a :class:`_StepGrid`, one seeded :class:`BrownianGrid` per chunk of
    steps: the default source (``bm=None``) of the step-level strategies, queried by step index in
    the forward and the backward pass, with memory independent of the number of steps."""

    def __init__(self, grid: _StepGrid, shape, dtype, device, levy_area) -> None:
        self.grid, self.shape, self.dtype, self.device = grid, shape, dtype, device
        self.levy_area = levy_area
        self.seed = normalize_seed(None, None)
        self._chunks: dict[int, BrownianGrid] = {}

    def increment(self, k: int, return_U: bool = False):
        c, j = divmod(k, _CHUNK)
        source = self._chunks.get(c)
        if source is None:
            times = [self.grid[i] for i in range(c * _CHUNK, min(len(self.grid) - 1, (c + 1) * _CHUNK) + 1)]
            source = BrownianGrid(times, self.shape, seed=mix64(self.seed, c), dtype=self.dtype,
                                  device=self.device, levy_area=self.levy_area)
            if len(self._chunks) >= 2:
                self._chunks.pop(next(iter(self._chunks)))
            self._chunks[c] = source
        return source.increment(j, return_U=return_U)


@dataclass
class _FixedSDE:
    problem: object  # Problem or FlippedProblem: the solver's view (time s increasing)
    solver: SDESolver
    grid: _StepGrid  # on the solver's axis s
    saves: list[int]
    noise: object  # noise(k, s0, s1): the increment of step k
    t_of: object
    name: str
    progress: bool

    def step(self, k, t0, t1, y, state):
        return self.solver.step(self.problem, t0, t1, y, self.noise(k, t0, t1), state)

    def init(self, y0):
        return self.solver.init(self.problem, self.t_of([self.grid[0]])[0], y0)

    def run(self, y0, step=None):
        """The forward solve; returns the states at ``saves`` and the final solver state."""
        step = step or self.step
        last = [None]

        def tracked(k, t0, t1, y, state):
            y, state = step(k, t0, t1, y, state)
            last[0] = state
            return y, state

        state0 = self.init(y0)
        last[0] = state0
        ys = fixed_loop(tracked, y0, state0, self.grid, self.saves, self.t_of, self.name, self.progress)
        return ys, last[0]


def _sde_fixed_setup(problem: Problem, solver: SDESolver, ts_list, dt, bm, progress: bool) -> _FixedSDE:
    """The fixed grid and Brownian increments that :func:`sdeint` uses, as objects the backward pass
    can query again step by step (``bm=None`` becomes a seeded :class:`_ChunkedBrownian`)."""
    flip = ts_list[1] < ts_list[0]
    prob = FlippedProblem(problem) if flip else problem
    ts_s = [-t for t in ts_list] if flip else list(ts_list)
    grid = _StepGrid(ts_s, 1e-3 if dt is None else dt)
    levy = solver.levy_area
    shape, dtype, device = problem.brownian_shape, problem.dtype, problem.device
    if bm is None:
        source = _ChunkedBrownian(grid, shape, dtype, device, "space-time" if levy else None)

        def noise(k, s0, s1):
            return source.increment(k, return_U=levy)
    else:
        grid_obj = None
        if isinstance(bm, BrownianGrid) and not flip and len(bm) == len(grid) - 1:
            times = torch.tensor([grid[i] for i in range(len(grid))], dtype=torch.float64)
            if torch.allclose(bm.times, times, rtol=0, atol=1e-12 * abs(grid[-1] - grid[0])):
                if tuple(bm.shape) != tuple(shape):
                    raise ValueError(f"bm has shape {bm.shape} but the SDE needs Brownian increments of "
                                     f"shape {tuple(shape)}")
                grid_obj = bm
        noise = _noise_source(bm, flip, levy, grid_obj, shape, dtype, device)
    return _FixedSDE(prob, solver, grid, grid.saves, noise, _lazy_time_tensors(dtype, device),
                     f"sdeint[{solver.name}]", progress)


def _state_tensors(state) -> tuple:
    """Solver states are ``()``, a tensor or a flat tuple of tensors; return them as a tuple."""
    if isinstance(state, torch.Tensor):
        return (state,)
    if isinstance(state, tuple) and all(isinstance(s, torch.Tensor) for s in state):
        return state
    raise TypeError(f"Checkpointed supports solver states that are tensors or tuples of tensors, got "
                    f"{type(state).__name__}")


class _SegmentFn(torch.autograd.Function):
    """One group of steps run without a graph; the backward pass re-runs it with one and
    backpropagates through it, so a single group's graph exists at any time. (``torch.utils.checkpoint``
    without reentrancy keeps every step's autograd nodes, about 1 kB each, which makes memory grow
    linearly again; its reentrant form does not work with ``torch.autograd.grad``.)"""

    @staticmethod
    def forward(ctx, run, n_state: int, y, *state_and_params):
        ctx.run, ctx.n_state = run, n_state
        ctx.save_for_backward(y, *state_and_params)
        return run(y, *state_and_params[:n_state])

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs):
        y, *rest = ctx.saved_tensors
        state, params = rest[:ctx.n_state], rest[ctx.n_state:]
        inputs = [y.detach().requires_grad_(True), *(s.detach().requires_grad_(True) for s in state)]
        with torch.enable_grad():
            outputs = ctx.run(*inputs)
            grads = _vjp(outputs, (*inputs, *params), [torch.zeros_like(o) if g is None else g
                                                       for o, g in zip(outputs, grad_outputs)])
        return (None, None, *grads)


def _checkpointed_loop(step, y0, state0, grid, saves, t_of, name, progress, segments, params):
    """Run ``step`` over ``grid`` in groups of steps, each a :class:`_SegmentFn`; return ``y`` at the
    grid indices ``saves`` (``saves[0] == 0``)."""
    n = len(grid) - 1
    count = min(n, segments if segments is not None else max(1, round(math.sqrt(n))))
    bounds = sorted({round(i * n / count) for i in range(count + 1)})
    state_is_tensor = isinstance(state0, torch.Tensor)

    def rebuild(flat):
        return flat[0] if state_is_tensor else tuple(flat)

    outputs = [y0]
    y, flat_state = y0, _state_tensors(state0)
    bar = progress_bar(progress, len(bounds) - 1, name)
    for a, b in zip(bounds[:-1], bounds[1:]):
        inner = [j - a for j in saves if a < j < b]
        local_saves = [0, *inner, b - a]

        def segment(y_in, *state_in, a=a, b=b, local_saves=local_saves):
            last = [rebuild(state_in)]

            def local_step(k, t0, t1, y_k, s_k):
                y_k, s_k = step(a + k, t0, t1, y_k, s_k)
                last[0] = s_k
                return y_k, s_k

            ys = fixed_loop(local_step, y_in, rebuild(state_in), grid[a:b + 1], local_saves, t_of, name)
            return (*ys[1:], *_state_tensors(last[0]))

        result = _SegmentFn.apply(segment, len(flat_state), y, *flat_state, *params)
        outputs.extend(result[:len(inner)])
        y = result[len(inner)]
        flat_state = tuple(result[len(inner) + 1:])
        if b in saves:
            outputs.append(y)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return outputs


# --------------------------------------------------------------------------------------------
# The adjoint SDE (continuous adjoint): a Stratonovich SDE on the flat state (y, a, a_theta)
# --------------------------------------------------------------------------------------------
def _jvp(out: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(d out / d y) v`` by the double-vjp trick, differentiable in ``y`` and parameters."""
    if not out.requires_grad:
        return torch.zeros_like(out)
    u = torch.zeros_like(out, requires_grad=True)
    (w,) = torch.autograd.grad(out, y, u, create_graph=True, allow_unused=True)
    if w is None:
        return torch.zeros_like(out)
    (j,) = torch.autograd.grad(w, u, v, create_graph=True, allow_unused=True)
    return torch.zeros_like(out) if j is None else j


class _AdjointSDE:
    """The augmented adjoint system of a forward SDE, in the original time ``t`` (solved with
    decreasing times, so the loop reverses it and reflects the Brownian path). Only ``f`` and
    ``g_prod`` are defined: midpoint, Heun and Euler need nothing else."""

    noise_type = "general"
    sde_type = "stratonovich"

    def __init__(self, problem: Problem, params: tuple) -> None:
        self.base = problem
        self.params = params
        self.shape = problem.state_shape
        self.ny = math.prod(self.shape)
        self.np = sum(p.numel() for p in params)
        self.brownian_shape = problem.brownian_shape
        self.dtype, self.device = problem.dtype, problem.device
        self.state_shape = (2 * self.ny + self.np,)
        self.prod = None
        self._ito = problem.sde_type == "ito" and problem.noise_type != "additive"

    def pack(self, y, a, a_params: torch.Tensor) -> torch.Tensor:
        return torch.cat([y.reshape(-1), a.reshape(-1), a_params])

    def unpack(self, z):
        ny = self.ny
        return z[:ny].view(self.shape), z[ny:2 * ny].view(self.shape), z[2 * ny:]

    def stratonovich_drift(self, t, y):
        """The forward drift in Stratonovich form (Ito drift minus 1/2 sum_j (dg_j/dy) g_j)."""
        f = self.base.f(t, y)
        if not self._ito:
            return f
        g = self.base.g(t, y)
        if not g.requires_grad:
            return f
        if self.base.noise_type == "diagonal":
            (gdg,) = torch.autograd.grad(g, y, g, create_graph=True, allow_unused=True)
            return f if gdg is None else f - 0.5 * gdg
        correction = sum(_jvp(g[..., j], y, g[..., j]) for j in range(g.shape[-1]))
        return f - 0.5 * correction

    def _augmented(self, out, y, a):
        grads = _vjp(out, (y, *self.params), a)
        pieces = [out.detach().reshape(-1), -grads[0].reshape(-1)]
        pieces.extend(-g.reshape(-1) for g in grads[1:])
        return torch.cat(pieces)

    def f(self, t, z):
        y, a, _ = self.unpack(z)
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            return self._augmented(self.stratonovich_drift(t, y), y, a)

    def g_prod(self, t, z, v):
        y, a, _ = self.unpack(z)
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            return self._augmented(self.base.g_prod(t, y, v), y, a)

    def g(self, t, z):
        raise RuntimeError("the adjoint SDE defines g_prod only; solve it with midpoint, heun or euler")

    def gdg_prod(self, t, z, v1, v2):
        raise RuntimeError("the adjoint SDE defines g_prod only; solve it with midpoint, heun or euler")


_ADJOINT_SDE_METHODS = ("midpoint", "heun", "euler (additive noise only)")


def _adjoint_sde_solver(method, noise_type: str) -> SDESolver:
    if method is None:
        return Midpoint()
    if isinstance(method, (ODESolver, ButcherTableau)):
        raise TypeError(f"ContinuousAdjoint(method=...) for an SDE must be an SDE method "
                        f"({', '.join(_ADJOINT_SDE_METHODS)}), got {method!r}")
    solver = sde_solver(method, "stratonovich")
    if isinstance(solver, (Midpoint, Heun)) or (isinstance(solver, Euler) and noise_type == "additive"):
        return solver
    raise ValueError(
        f"ContinuousAdjoint(method={getattr(solver, 'name', method)!r}) cannot solve the adjoint SDE, a "
        f"Stratonovich SDE with {noise_type} forward noise given through g_prod only; use one of "
        f"{', '.join(_ADJOINT_SDE_METHODS)}"
    )


@dataclass
class _ContinuousSpec:
    problem: Problem
    solver: SDESolver
    ts: list
    fixed: _FixedSDE | None  # the forward solve on a fixed grid (None: adaptive)
    mirror: bool  # the backward solve steps on the forward grid, with the forward increments
    dt: float | None
    bm: object
    rtol: float
    atol: float
    dt_min: float | None
    progress: bool
    max_steps: int
    adjoint_solver: SDESolver
    adjoint_bm: object
    adjoint_dt: float | None
    adjoint_adaptive: bool
    adjoint_rtol: float
    adjoint_atol: float
    adjoint_dt_min: float | None


class _SDEContinuousAdjointFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: _ContinuousSpec, y0: torch.Tensor, *params):
        if spec.fixed is not None:
            ys, _ = spec.fixed.run(y0.detach())
        else:
            ys = _solve_sde(spec.problem, spec.solver, y0.detach(), spec.ts, dt=spec.dt, bm=spec.bm,
                            adaptive=True, rtol=spec.rtol, atol=spec.atol, dt_min=spec.dt_min,
                            progress=spec.progress, max_steps=spec.max_steps)
        ys = torch.stack(ys)
        ctx.spec = spec
        ctx.save_for_backward(ys, *params)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys):
        spec: _ContinuousSpec = ctx.spec
        ys, *params = ctx.saved_tensors
        params = tuple(params)
        if spec.mirror:
            return (None, *_mirrored_backward(spec, ys, grad_ys, params))
        adjoint = _AdjointSDE(spec.problem, params)
        a = grad_ys[-1]
        a_params = torch.zeros(adjoint.np, dtype=ys.dtype, device=ys.device)
        for i in range(len(spec.ts) - 1, 0, -1):
            z = adjoint.pack(ys[i], a, a_params)
            zs = _solve_sde(adjoint, spec.adjoint_solver, z, [spec.ts[i], spec.ts[i - 1]], dt=spec.adjoint_dt,
                            bm=spec.adjoint_bm, adaptive=spec.adjoint_adaptive, rtol=spec.adjoint_rtol,
                            atol=spec.adjoint_atol, dt_min=spec.adjoint_dt_min, progress=spec.progress,
                            max_steps=spec.max_steps)
            _, a, a_params = adjoint.unpack(zs[-1])
            a = a + grad_ys[i - 1]
        return (None, a, *_unflat(a_params, params))


def _mirrored_backward(spec: _ContinuousSpec, ys, grad_ys, params):
    """The backward solve on the forward grid: backward step ``j`` of an output interval undoes forward
    step ``K`` and is driven by the same increment, reflected (``-dW_K``), so the Brownian path is the
    same by construction, whatever the source. The adjoint is that of the problem the forward solver
    saw (for decreasing ``ts``, the time-reversed one), integrated in ``u = -s``."""
    fixed = spec.fixed
    adjoint = _AdjointSDE(fixed.problem, params)
    backward_problem = FlippedProblem(adjoint)
    solver = spec.adjoint_solver
    forward_times = fixed.t_of(fixed.grid)
    levy = fixed.solver.levy_area
    saves = fixed.saves
    a = grad_ys[-1]
    a_params = torch.zeros(adjoint.np, dtype=ys.dtype, device=ys.device)
    for i in range(len(saves) - 1, 0, -1):
        lo, hi = saves[i - 1], saves[i]

        def step(j, u0, u1, z, state, hi=hi):
            K = hi - 1 - j
            dW = fixed.noise(K, forward_times[K], forward_times[K + 1])
            dW = dW[0] if levy else dW
            return solver.step(backward_problem, u0, u1, z, -dW, state)

        view = _GridView(fixed.grid, range(hi, lo - 1, -1), -1.0)
        z = adjoint.pack(ys[i], a, a_params)
        state0 = solver.init(backward_problem, fixed.t_of([view[0]])[0], z)
        z = fixed_loop(step, z, state0, view, [0, hi - lo], fixed.t_of, f"adjoint[{solver.name}]",
                        fixed.progress)[-1]
        _, a, a_params = adjoint.unpack(z)
        a = a + grad_ys[i - 1]
    return (a, *_unflat(a_params, params))


class _SnapToGrid:
    """A Brownian source whose query times are moved onto the forward grid's times when within
    rounding of them: a :class:`BrownianPath` draws a point inside a leaf from noise keyed by the exact
    time, so a backward solve on a finer grid must hit the shared points in the very same float."""

    def __init__(self, bm, fixed: _FixedSDE, sign: float) -> None:
        self.bm, self.grid, self.sign = bm, fixed.grid, sign
        self.dtype, self.device = fixed.problem.dtype, fixed.problem.device
        self.ends = [b for _, b, _ in self.grid.pieces]
        self.min_step = min((b - a) / n for a, b, n in self.grid.pieces)
        self.eps = torch.finfo(self.dtype).eps

    def _snap(self, t: float) -> float:
        s = self.sign * t
        i = min(bisect.bisect_left(self.ends, s), len(self.ends) - 1)
        a, b, n = self.grid.pieces[i]
        k = self.grid.saves[i] + min(n, max(0, round((s - a) / (b - a) * n)))
        on_grid = self.grid[k]
        tol = min(0.25 * self.min_step, max(1e-3 * self.min_step, 8 * self.eps * (1 + abs(s))))
        if abs(on_grid - s) <= tol:
            return self.sign * float(torch.tensor(on_grid, dtype=self.dtype))
        return t

    def __call__(self, ta, tb, return_U: bool = False):
        ta, tb = self._snap(float(ta)), self._snap(float(tb))
        return self.bm(ta, tb, return_U=True) if return_U else self.bm(ta, tb)


# --------------------------------------------------------------------------------------------
# The reversible adjoint: reversible Heun steps inverted one by one
# --------------------------------------------------------------------------------------------
def _prod_transpose(noise_type: str, cotangent: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Cotangent of ``g`` in ``prod(g, v)`` (elementwise for diagonal noise, matrix-vector else)."""
    if noise_type == "diagonal":
        return cotangent * v
    return cotangent.unsqueeze(-1) * v.unsqueeze(-2)


@dataclass
class _ReversibleSpec:
    setup: _FixedSDE
    trace: list | None = None  # tests: collects the reconstructed states, from the end backwards


class _ReversibleAdjointFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: _ReversibleSpec, y0: torch.Tensor, *params):
        ys, (f_end, g_end, z_end) = spec.setup.run(y0.detach())
        ys = torch.stack(ys)
        ctx.spec = spec
        ctx.save_for_backward(ys, f_end, g_end, z_end, *params)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys):
        spec: _ReversibleSpec = ctx.spec
        s = spec.setup
        ys, f_end, g_end, z_end, *params = ctx.saved_tensors
        params = tuple(params)
        prob, noise_type = s.problem, s.problem.noise_type
        n = len(s.grid) - 1
        inject = {k: j for j, k in enumerate(s.saves) if k < n}

        def evaluate(t, z):
            z_leaf = z.detach().requires_grad_(True)
            with torch.enable_grad():
                return z_leaf, prob.f(t, z_leaf), prob.g(t, z_leaf)

        def reverse_step(k, t_hi, t_lo, a_y1, state):
            # Step K maps (y0, z0, f(z0), g(z0)) at t_lo to (y1, z1, f(z1), g(z1)) at t_hi:
            #   z1 = 2 y0 - z0 + f0 dt + g0 dW,  y1 = y0 + (f0 + f1) dt/2 + (g0 + g1) dW/2.
            K = n - 1 - k
            y1, z1, f1, g1, leaf1, f1_graph, g1_graph, a_z1, a_f1, a_g1, a_params = state
            dt = t_hi - t_lo
            dW = s.noise(K, t_lo, t_hi)
            half = 0.5 * dW
            # Cotangents of f(z1), g(z1): as state entries and through y1.
            c_f = a_f1 + a_y1 * (0.5 * dt)
            c_g = a_g1 + _prod_transpose(noise_type, a_y1, half)
            grads = _vjp((f1_graph, g1_graph), (leaf1, *params), (c_f, c_g), retain_graph=True)
            a_z1_total = a_z1 + grads[0]
            a_params = tuple(ap + gp for ap, gp in zip(a_params, grads[1:]))
            # Invert the step: z0 from the end state, then y0 from f(z0), g(z0).
            z0 = 2 * y1 - z1 - f1 * dt - prob.prod(g1, dW)
            leaf0, f0_graph, g0_graph = evaluate(t_lo, z0)
            f0, g0 = f0_graph.detach(), g0_graph.detach()
            y0 = y1 - (f0 + f1) * (0.5 * dt) - prob.prod(g0 + g1, half)
            a_y0 = a_y1 + 2 * a_z1_total
            a_z0 = -a_z1_total
            a_f0 = a_z1_total * dt + a_y1 * (0.5 * dt)
            a_g0 = _prod_transpose(noise_type, a_z1_total, dW) + _prod_transpose(noise_type, a_y1, half)
            j = inject.get(K)
            if j is not None:
                a_y0 = a_y0 + grad_ys[j]
            if spec.trace is not None:
                spec.trace.append(y0)
            return a_y0, (y0, z0, f0, g0, leaf0, f0_graph, g0_graph, a_z0, a_f0, a_g0, a_params)

        leaf_end, f_graph, g_graph = evaluate(s.t_of([s.grid[n]])[0], z_end)
        zeros = torch.zeros_like
        state = (ys[-1], z_end, f_end, g_end, leaf_end, f_graph, g_graph, zeros(z_end), zeros(f_end),
                 zeros(g_end), tuple(zeros(p) for p in params))
        last = [state]

        def loop_step(k, t_hi, t_lo, a_y, st):
            a_y, st = reverse_step(k, t_hi, t_lo, a_y, st)
            last[0] = st
            return a_y, st

        grid_rev = s.grid[::-1]
        a_y = fixed_loop(loop_step, grad_ys[-1], state, grid_rev, [0, n], s.t_of,
                          s.name + " reverse", s.progress)[-1]
        _, _, _, _, leaf0, f0_graph, g0_graph, a_z0, a_f0, a_g0, a_params = last[0]
        # The initial state (f(y0), g(y0), z0 = y0).
        grads = _vjp((f0_graph, g0_graph), (leaf0, *params), (a_f0, a_g0))
        grad_y0 = a_y + a_z0 + grads[0]
        a_params = tuple(ap + gp for ap, gp in zip(a_params, grads[1:]))
        return (None, grad_y0, *a_params)


# --------------------------------------------------------------------------------------------
# sdeint(..., adjoint=...)
# --------------------------------------------------------------------------------------------
def _sdeint_with_adjoint(adjoint, sde, y0, ts_list, *, method, dt, bm, adaptive, rtol, atol, dt_min,
                         progress, max_steps):
    """Called by :func:`sdeint` (arguments already checked) when ``adjoint`` is not ``None``."""
    adjoint = _check_strategy(adjoint)
    if isinstance(adjoint, Backprop):
        from .integrate import sdeint

        return sdeint(sde, y0, ts_list, method=method, dt=dt, bm=bm, adaptive=adaptive, rtol=rtol, atol=atol,
                      dt_min=dt_min, progress=progress, max_steps=max_steps)
    first = y0[0] if isinstance(y0, (tuple, list)) else y0
    problem = Problem(sde, y0, _t_tensor(ts_list[0], first.dtype, first.device))
    solver = _resolve_sde_solver(method, problem)
    y0_packed = problem.packer.pack(y0)

    if isinstance(adjoint, Checkpointed):
        if adaptive:
            raise ValueError("Checkpointed() needs fixed steps for SDEs (adaptive=False); with adaptive=True "
                             "use ContinuousAdjoint() or Backprop()")
        setup = _sde_fixed_setup(problem, solver, ts_list, dt, bm, progress)
        params = _resolve_params(adjoint, sde, "the sde")
        ys = _checkpointed_loop(setup.step, y0_packed, setup.init(y0_packed), setup.grid, setup.saves,
                                setup.t_of, setup.name, progress, adjoint.segments, params)
        return problem.packer.unpack_series(torch.stack(ys))

    if isinstance(adjoint, ReversibleAdjoint):
        if not isinstance(solver, ReversibleHeun):
            raise ValueError(
                f"ReversibleAdjoint() inverts the steps of the algebraically reversible method "
                f"'reversible_heun', but method={solver.name!r}; pass method='reversible_heun' "
                f"(Stratonovich), or use ContinuousAdjoint() or Checkpointed() with {solver.name!r}"
            )
        if adaptive:
            raise ValueError("ReversibleAdjoint() needs fixed steps (adaptive=False); with adaptive=True use "
                             "ContinuousAdjoint() or Backprop()")
        params = _resolve_params(adjoint, sde, "the sde")
        spec = _ReversibleSpec(_sde_fixed_setup(problem, solver, ts_list, dt, bm, progress))
        ys = _ReversibleAdjointFn.apply(spec, y0_packed, *params)
        return problem.packer.unpack_series(ys)

    # ContinuousAdjoint
    adjoint_solver = _adjoint_sde_solver(adjoint.method, problem.noise_type)
    backward_dt = adjoint.dt if adjoint.dt is not None else dt
    mirror = not adaptive and not adjoint.adaptive and backward_dt == dt
    if bm is None and not mirror:
        # Both solves query a path at times of their own: one path queryable anywhere.
        lo, hi = min(ts_list[0], ts_list[-1]), max(ts_list[0], ts_list[-1])
        bm = BrownianPath(lo, hi, problem.brownian_shape, dtype=problem.dtype, device=problem.device,
                          levy_area="space-time" if solver.levy_area else None)
    fixed = None if adaptive else _sde_fixed_setup(problem, solver, ts_list, dt, bm, progress)
    adjoint_bm = bm
    if fixed is not None and not mirror:
        adjoint_bm = _SnapToGrid(bm, fixed, -1.0 if ts_list[1] < ts_list[0] else 1.0)
    params = _resolve_params(adjoint, sde, "the sde")
    spec = _ContinuousSpec(
        problem=problem, solver=solver, ts=list(ts_list), fixed=fixed, mirror=mirror, dt=dt, bm=bm, rtol=rtol,
        atol=atol, dt_min=dt_min, progress=progress, max_steps=max_steps, adjoint_solver=adjoint_solver,
        adjoint_bm=adjoint_bm, adjoint_dt=backward_dt, adjoint_adaptive=adjoint.adaptive,
        adjoint_rtol=adjoint.rtol if adjoint.rtol is not None else rtol,
        adjoint_atol=adjoint.atol if adjoint.atol is not None else atol,
        adjoint_dt_min=adjoint.dt_min if adjoint.dt_min is not None else dt_min,
    )
    ys = _SDEContinuousAdjointFn.apply(spec, y0_packed, *params)
    return problem.packer.unpack_series(ys)


# --------------------------------------------------------------------------------------------
# odeint(..., adjoint=...)
# --------------------------------------------------------------------------------------------
@dataclass
class _ODESpec:
    func: object
    solver: ODESolver
    ts: list
    rtol: float
    atol: float
    dt: float | None
    dt_min: float | None
    progress: bool
    max_steps: int
    adjoint_solver: ODESolver
    adjoint_dt: float | None
    adjoint_rtol: float
    adjoint_atol: float
    adjoint_dt_min: float | None


class _ODEContinuousAdjointFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: _ODESpec, y0: torch.Tensor, *params):
        ys = _solve_ode(spec.func, spec.solver, y0.detach(), spec.ts, rtol=spec.rtol, atol=spec.atol,
                        dt=spec.dt, dt_min=spec.dt_min, progress=spec.progress, max_steps=spec.max_steps)
        ys = torch.stack(ys)
        ctx.spec = spec
        ctx.save_for_backward(ys, *params)
        return ys

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_ys):
        spec: _ODESpec = ctx.spec
        ys, *params = ctx.saved_tensors
        params = tuple(params)
        shape = ys.shape[1:]
        ny = math.prod(shape)

        def augmented(t, z):
            # (dy/dt, da/dt, da_theta/dt) = (f, -a^T df/dy, -a^T df/dtheta)
            y, a = z[:ny].view(shape), z[ny:2 * ny].view(shape)
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                out = spec.func(t, y)
                grads = _vjp(out, (y, *params), a)
            return torch.cat([out.detach().reshape(-1), *(-g.reshape(-1) for g in grads)])

        a = grad_ys[-1]
        a_params = torch.zeros(sum(p.numel() for p in params), dtype=ys.dtype, device=ys.device)
        for i in range(len(spec.ts) - 1, 0, -1):
            z = torch.cat([ys[i].reshape(-1), a.reshape(-1), a_params])
            zs = _solve_ode(augmented, spec.adjoint_solver, z, [spec.ts[i], spec.ts[i - 1]],
                            rtol=spec.adjoint_rtol, atol=spec.adjoint_atol, dt=spec.adjoint_dt,
                            dt_min=spec.adjoint_dt_min, progress=spec.progress, max_steps=spec.max_steps)
            a = zs[-1][ny:2 * ny].view(shape) + grad_ys[i - 1]
            a_params = zs[-1][2 * ny:]
        return (None, a, *_unflat(a_params, params))


class _RecordingODESolver(ODESolver):
    """Delegates to an ODE solver and records the times of every attempted step."""

    def __init__(self, inner: ODESolver) -> None:
        self.inner = inner
        self.name, self.order, self.error_order = inner.name, inner.order, inner.error_order
        self.tableau = getattr(inner, "tableau", None)
        self.calls: list[tuple[float, float]] = []

    def init(self, f, t0, y0):
        return self.inner.init(f, t0, y0)

    def step(self, f, t0, t1, y0, state):
        self.calls.append((float(t0), float(t1)))
        return self.inner.step(f, t0, t1, y0, state)


def _accepted_grid(calls, targets):
    """The accepted step grid of an adaptive run from its attempted steps: an attempt is accepted when
    the next attempt starts where it ended (a rejected one is retried from its own start)."""
    grid = [calls[0][0]]
    for i, (_, t1) in enumerate(calls):
        if i == len(calls) - 1 or calls[i + 1][0] == t1:
            grid.append(t1)
    saves, j = [0], 0
    for target in targets:
        while grid[j] != target:
            j += 1
        saves.append(j)
    return grid, saves


def _odeint_with_adjoint(adjoint, f, y0, ts_list, *, method, rtol, atol, dt, dt_min, progress, max_steps):
    """Called by :func:`odeint` (arguments already checked) when ``adjoint`` is not ``None``."""
    adjoint = _check_strategy(adjoint)
    solver = ode_solver(method)
    if isinstance(adjoint, Backprop):
        from .integrate import odeint

        return odeint(f, y0, ts_list, method=solver, rtol=rtol, atol=atol, dt=dt, dt_min=dt_min,
                      progress=progress, max_steps=max_steps)
    if isinstance(adjoint, ReversibleAdjoint):
        raise ValueError("ReversibleAdjoint() needs an algebraically reversible SDE solver "
                         "(sdeint(..., method='reversible_heun')); for odeint use ContinuousAdjoint(), "
                         "Checkpointed() or Backprop()")
    packer = _Packer(y0, along_last=False)
    func = _packed_ode(f, packer)
    y0_packed = packer.pack(y0)

    if isinstance(adjoint, Checkpointed):
        ys = _checkpointed_ode(func, solver, y0_packed, ts_list, rtol=rtol, atol=atol, dt=dt, dt_min=dt_min,
                               progress=progress, max_steps=max_steps, segments=adjoint.segments,
                               params=_resolve_params(adjoint, f, "f"))
        return packer.unpack_series(torch.stack(ys))

    if adjoint.method is not None and isinstance(adjoint.method, SDESolver):
        raise TypeError(f"ContinuousAdjoint(method=...) for an ODE must be an ODE method, "
                        f"got {adjoint.method!r}")
    adjoint_solver = solver if adjoint.method is None else ode_solver(adjoint.method)
    adjoint_dt = adjoint.dt if adjoint.dt is not None else dt
    if not adjoint_solver.adaptive and adjoint_dt is None:
        raise ValueError(f"ContinuousAdjoint(method={adjoint_solver.name!r}) takes fixed steps: pass "
                         "ContinuousAdjoint(dt=...), or use an adaptive method such as 'dopri5'")
    params = _resolve_params(adjoint, f, "f")
    spec = _ODESpec(
        func=func, solver=solver, ts=list(ts_list), rtol=rtol, atol=atol, dt=dt, dt_min=dt_min,
        progress=progress, max_steps=max_steps, adjoint_solver=adjoint_solver, adjoint_dt=adjoint_dt,
        adjoint_rtol=adjoint.rtol if adjoint.rtol is not None else rtol,
        adjoint_atol=adjoint.atol if adjoint.atol is not None else atol,
        adjoint_dt_min=adjoint.dt_min if adjoint.dt_min is not None else dt_min,
    )
    ys = _ODEContinuousAdjointFn.apply(spec, y0_packed, *params)
    return packer.unpack_series(ys)


def _checkpointed_ode(func, solver: ODESolver, y0, ts_list, *, rtol, atol, dt, dt_min, progress, max_steps,
                      segments, params):
    flip = ts_list[1] < ts_list[0]
    ts_s = [-t for t in ts_list] if flip else list(ts_list)
    func_s = (lambda s, y: -func(-s, y)) if flip else func
    t_of = _time_tensors(y0.dtype, y0.device)
    name = f"odeint[{solver.name}]"
    if solver.adaptive:
        # Record the accepted grid without gradients, then replay it with checkpointing.
        recorder = _RecordingODESolver(solver)
        with torch.no_grad():
            _solve_ode(func, recorder, y0.detach(), ts_list, rtol=rtol, atol=atol, dt=dt, dt_min=dt_min,
                       progress=progress, max_steps=max_steps)
        targets = [float(t) for t in t_of(ts_s[1:])]
        grid, saves = _accepted_grid(recorder.calls, targets)
    else:
        grid, saves = _fixed_grid(ts_s, dt)
    fsal = getattr(solver, "tableau", None) is not None and solver.tableau.fsal and solver.adaptive
    state0 = func_s(t_of([grid[0]])[0], y0) if fsal else ()

    def step(k, t0, t1, y, state):
        y1, _, state = solver.step(func_s, t0, t1, y, state)
        return y1, state

    return _checkpointed_loop(step, y0, state0, grid, saves, t_of, name, progress, segments, params)
