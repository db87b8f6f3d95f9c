"""torchsde's ``sdeint`` and ``sdeint_adjoint`` as thin mappings onto :func:`sdekit.sdeint`.

Everything numerical is sdekit's: the one time loop, its solvers, its Brownian sources and its
``adjoint=`` strategies. This module only translates torchsde's arguments (method names and
options, default methods, ``names``, ``logqp``, ``extra``), keeps torchsde's errors where code
relies on them (a method that does not fit the SDE type, noise type or Levy area of ``bm`` raises
``ValueError``), and completes SDE objects that define only ``f_and_g``, ``g_prod`` or
``f_and_g_prod``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from ..core.adjoint import ContinuousAdjoint, ReversibleAdjoint
from ..core.integrate import sdeint as _sdeint
from ..core.solvers import sde_solver
from ..core.solvers.base import SDESolver
from .settings import METHOD_OPTIONS, METHODS, NOISE_TYPES, SDE_TYPES

__all__ = ["sdeint", "sdeint_adjoint"]

_NAME_KEYS = ("drift", "diffusion", "prior_drift", "diffusion_prod", "drift_and_diffusion",
              "drift_and_diffusion_prod")
# the calculus each torchsde method solves (milstein: either, chosen by the SDE)
_SDE_TYPE_OF = {
    "euler": ("ito",), "srk": ("ito",), "milstein": ("ito", "stratonovich"),
    "euler_heun": ("stratonovich",), "heun": ("stratonovich",), "midpoint": ("stratonovich",),
    "log_ode": ("stratonovich",), "reversible_heun": ("stratonovich",),
}
_NOT_GENERAL = ("milstein", "srk")
_LEVY_NEEDED = {"srk": ("space-time", "davie", "foster"), "log_ode": ("davie", "foster")}


def default_method(noise_type: str, sde_type: str) -> str:
    """torchsde's default: ``srk`` for Ito SDEs (``euler`` for general noise), ``midpoint`` for
    Stratonovich SDEs."""
    if sde_type == SDE_TYPES.ito:
        return METHODS.euler if noise_type == NOISE_TYPES.general else METHODS.srk
    return METHODS.midpoint


def _warn_unused(kwargs: dict, where: str) -> None:
    if kwargs:
        warnings.warn(f"`{where}`: Unexpected arguments {kwargs}", stacklevel=3)


def _no_grad(**values) -> None:
    for name, value in values.items():
        if isinstance(value, torch.Tensor) and value.requires_grad:
            raise ValueError(f"Argument {name} must not require gradient.")


def _number(value):
    return float(value) if isinstance(value, torch.Tensor) else value


# --------------------------------------------------------------------------------------------
# SDE objects with only some of f, g, f_and_g, g_prod, f_and_g_prod
# --------------------------------------------------------------------------------------------
class _Completed:
    """``f`` and ``g`` (and ``g_prod``, ``h`` where the object has them) from whichever methods the
    object defines; ``g`` from a ``g_prod`` alone is assembled column by column."""

    noise_type: str  # set by _complete (object.__setattr__: also past nn.Module's attribute hooks)
    sde_type: str

    def _complete(self, sde, m: int | None) -> None:
        object.__setattr__(self, "noise_type", sde.noise_type)
        object.__setattr__(self, "sde_type", sde.sde_type)
        get = lambda name: getattr(sde, name, None) if callable(getattr(sde, name, None)) else None  # noqa: E731
        f, g, h = get("f"), get("g"), get("h")
        f_and_g, g_prod, f_and_g_prod = get("f_and_g"), get("g_prod"), get("f_and_g_prod")
        if f is None and f_and_g is None and f_and_g_prod is None:
            raise ValueError("sde must define at least one of `f`, `f_and_g`, or `f_and_g_prod`.")
        if g is None and f_and_g is None and g_prod is None and f_and_g_prod is None:
            raise ValueError("sde must define at least one of `g`, `f_and_g`, `g_prod` or `f_and_g_prod`.")
        if g_prod is None and f_and_g_prod is not None:
            g_prod = lambda t, y, v: f_and_g_prod(t, y, v)[1]  # noqa: E731
        if g is None:
            if f_and_g is not None:
                g = lambda t, y: f_and_g(t, y)[1]  # noqa: E731
            else:
                if m is None and sde.noise_type in ("general", "additive"):
                    raise ValueError("Cannot infer noise size (i.e. number of Brownian motion channels). Either "
                                     "pass `bm` explicitly, or specify one of the `g`, `f_and_g` functions.")
                g = self._columns(g_prod, sde.noise_type, m)
        if f is None:
            if f_and_g is not None:
                f = lambda t, y: f_and_g(t, y)[0]  # noqa: E731
            else:
                assert f_and_g_prod is not None  # checked above: f, f_and_g or f_and_g_prod is defined
                f = lambda t, y: f_and_g_prod(t, y, self._zero_noise(y, m))[0]  # noqa: E731
        for name, method in (("f", f), ("g", g), ("g_prod", g_prod), ("h", h)):
            if method is not None:
                object.__setattr__(self, name, method)

    def _zero_noise(self, y, m):
        if self.noise_type == "diagonal":
            return torch.zeros_like(y)
        return y.new_zeros(*y.shape[:-1], 1 if self.noise_type == "scalar" else m)

    @staticmethod
    def _columns(g_prod, noise_type: str, m: int | None):
        def g(t, y):
            if noise_type == "diagonal":
                return g_prod(t, y, torch.ones_like(y))
            if noise_type == "scalar":
                return g_prod(t, y, y.new_ones(*y.shape[:-1], 1)).unsqueeze(-1)
            assert m is not None  # general / additive noise without m raised in _complete
            eye = torch.eye(m, dtype=y.dtype, device=y.device)
            return torch.stack([g_prod(t, y, eye[j].expand(*y.shape[:-1], m)) for j in range(m)], dim=-1)

        return g


class _CompletedModule(_Completed, torch.nn.Module):
    def __init__(self, sde, m) -> None:
        torch.nn.Module.__init__(self)
        self.base = sde
        self._complete(sde, m)


class _CompletedPlain(_Completed):
    def __init__(self, sde, m) -> None:
        self.base = sde
        self._complete(sde, m)


def _complete(sde, bm):
    if callable(getattr(sde, "f", None)) and callable(getattr(sde, "g", None)):
        return sde
    shape = getattr(bm, "shape", None)
    m = shape[-1] if shape else None
    return _CompletedModule(sde, m) if isinstance(sde, torch.nn.Module) else _CompletedPlain(sde, m)


# --------------------------------------------------------------------------------------------
# Brownian motion and solver state
# --------------------------------------------------------------------------------------------
def _stable_division(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    small = b.detach().abs() <= eps
    return a / torch.where(small, torch.where(b >= 0, eps, -eps).to(b.dtype), b)


class _Logqp:
    """torchsde's ``logqp=True`` system: the state ``(y, l)`` as one tensor ``(batch, d + 1)``, with
    ``dl = |u|^2 / 2 dt``, ``g u = f - h`` (Girsanov; see :mod:`sdekit.core.latent`), and, for diagonal
    noise, a Brownian motion of ``d + 1`` channels as torchsde's (the last one unused).

    The diffusion computed inside ``f`` is reused by ``g`` when a solver asks for both at the same
    ``(t, y)`` objects (Euler, midpoint, Heun do), so each step evaluates ``g`` once, as torchsde does."""

    noise_type: str  # set by _setup (object.__setattr__: also past nn.Module's attribute hooks)
    sde_type: str
    _last: tuple | None

    def _base(self) -> Any:
        """The wrapped SDE (the subclasses return their ``base``)."""
        raise NotImplementedError

    def _setup(self, sde) -> None:
        for name in ("f", "g", "h"):
            if not callable(getattr(sde, name, None)):
                raise AttributeError("If using logqp then drift, diffusion and prior drift must all be specified.")
        object.__setattr__(self, "noise_type", sde.noise_type)
        object.__setattr__(self, "sde_type", sde.sde_type)
        object.__setattr__(self, "_last", None)

    def f(self, t, y):
        sde, x = self._base(), y[..., :-1]
        f, g, h = sde.f(t, x), sde.g(t, x), sde.h(t, x)
        object.__setattr__(self, "_last", (t, y, torch.is_grad_enabled(), g))
        if self.noise_type == "diagonal":
            u = _stable_division(f - h, g)
        else:
            u = (torch.linalg.pinv(g) @ (f - h).unsqueeze(-1)).squeeze(-1)
        return torch.cat([f, 0.5 * (u**2).sum(dim=-1, keepdim=True)], dim=-1)

    def g(self, t, y):
        last = self._last
        if last is not None and last[0] is t and last[1] is y and last[2] == torch.is_grad_enabled():
            g = last[3]
        else:
            g = self._base().g(t, y[..., :-1])
        if self.noise_type == "diagonal":
            return torch.cat([g, g.new_zeros(*g.shape[:-1], 1)], dim=-1)
        return torch.cat([g, g.new_zeros(*g.shape[:-2], 1, g.shape[-1])], dim=-2)


class _LogqpModule(_Logqp, torch.nn.Module):
    def __init__(self, sde) -> None:
        torch.nn.Module.__init__(self)
        self.base = sde
        self._setup(sde)

    def _base(self):
        return self.base


class _LogqpPlain(_Logqp):
    def __init__(self, sde) -> None:
        self.base = sde
        self._setup(sde)

    def _base(self):
        return self.base


def _with_logqp(sde, y0):
    if y0.dim() != 2:
        raise ValueError("`y0` must be a 2-dimensional tensor of shape (batch, channels) with logqp=True.")
    wrapped = _LogqpModule(sde) if isinstance(sde, torch.nn.Module) else _LogqpPlain(sde)
    return wrapped, torch.cat([y0, y0.new_zeros(y0.shape[0], 1)], dim=1)


def _split_logqp(ys):
    log_ratio = ys[..., -1]
    return ys[..., :-1], log_ratio[1:] - log_ratio[:-1]


class _Stateful(SDESolver):
    """A solver started from a given solver state (``extra_solver_state``) that records its last one
    (``extra=True``)."""

    def __init__(self, inner: SDESolver, initial) -> None:
        self.inner, self.initial = inner, initial
        self.last: tuple | None = None
        for attr in ("name", "sde_type", "noise_types", "strong_order", "additive_strong_order", "weak_order",
                     "levy_area"):
            setattr(self, attr, getattr(inner, attr))

    def order_for(self, noise_type: str) -> float:
        return self.inner.order_for(noise_type)

    def init(self, problem, t0, y0):
        self.last = tuple(self.initial) if self.initial is not None else self.inner.init(problem, t0, y0)
        return self.last

    def step(self, problem, t0, t1, y0, dW, state):
        y1, self.last = self.inner.step(problem, t0, t1, y0, dW, state)
        return y1, self.last


# --------------------------------------------------------------------------------------------
# The argument translation shared by sdeint and sdeint_adjoint
# --------------------------------------------------------------------------------------------
def _prepare(sde, y0, ts, bm, method, adaptive, options, names, logqp):
    if names:
        from ..core.names import rename_methods

        sde = rename_methods(sde, {k: names[k] for k in _NAME_KEYS if k in names})
    noise_type, sde_type = getattr(sde, "noise_type", None), getattr(sde, "sde_type", None)
    if noise_type is None:
        raise ValueError("sde does not have the attribute noise_type.")
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"Expected noise type in {NOISE_TYPES}, but found {noise_type}.")
    if sde_type is None:
        raise ValueError("sde does not have the attribute sde_type.")
    if sde_type not in SDE_TYPES:
        raise ValueError(f"Expected sde type in {SDE_TYPES}, but found {sde_type}.")
    if not isinstance(y0, torch.Tensor):
        raise ValueError("`y0` must be a torch.Tensor.")
    if method is None:
        method = default_method(noise_type, sde_type)
    if method not in METHODS:
        raise ValueError(f"Expected method in {METHODS}, but found {method}.")
    if not isinstance(ts, torch.Tensor) and (not isinstance(ts, (tuple, list))
                                             or not all(isinstance(t, (float, int)) for t in ts)):
        raise ValueError("Evaluation times `ts` must be a 1-D Tensor or list/tuple of floats.")
    times = ts.tolist() if isinstance(ts, torch.Tensor) else list(ts)
    if not all(a < b for a, b in zip(times[:-1], times[1:])):
        raise ValueError("Evaluation times `ts` must be strictly increasing.")
    options = {} if options is None else dict(options)
    if adaptive and method == METHODS.euler and noise_type != NOISE_TYPES.additive:
        warnings.warn("Numerical solution is not guaranteed to converge to the correct solution when using "
                      "adaptive time-stepping with the Euler--Maruyama method with non-additive noise.",
                      stacklevel=3)
    _check_method(method, noise_type, sde_type, bm)
    name = method
    if method == METHODS.milstein and options.get(METHOD_OPTIONS.grad_free, False):
        name = "milstein_grad_free"
    solver = sde_solver(name, sde_type)
    sde = _complete(sde, bm)
    if logqp:
        sde, y0 = _with_logqp(sde, y0)
    return sde, y0, times, method, solver, options, noise_type


def _check_method(method: str, noise_type: str, sde_type: str, bm) -> None:
    if method == METHODS.adjoint_reversible_heun:
        raise ValueError(f"{METHODS.adjoint_reversible_heun} can only be used for adjoint_method.")
    if sde_type not in _SDE_TYPE_OF[method]:
        raise ValueError(f"SDE is of type {sde_type} but solver is for type {_SDE_TYPE_OF[method][0]}")
    if method in _NOT_GENERAL and noise_type == NOISE_TYPES.general:
        raise ValueError(f"SDE has noise type {noise_type} but solver only supports noise types "
                         f"{[n for n in NOISE_TYPES if n != 'general']}")
    levy = getattr(bm, "levy_area_approximation", None)
    if bm is not None and levy is not None and method in _LEVY_NEEDED and levy not in _LEVY_NEEDED[method]:
        raise ValueError(f"SDE solver requires one of {_LEVY_NEEDED[method]} set as the "
                         f"`levy_area_approximation` on the Brownian motion.")
    shape = getattr(bm, "shape", None)
    if noise_type == NOISE_TYPES.scalar and shape is not None and math.prod(shape[1:]) != 1:
        raise ValueError("The Brownian motion for scalar SDEs must of dimension 1.")


def _step_size(times: list[float], dt, adaptive: bool):
    """The ``dt`` handed to sdekit. torchsde steps by exactly ``dt`` and interpolates linearly onto ``ts``;
    sdekit steps onto every output time with equal steps of at most ``dt``, which would take
    ``ceil(L / dt)`` steps over an output interval of length ``L`` (3 where torchsde takes about 2 for
    ``L = 2.02 dt``). Here an interval takes ``max(1, ceil(L / dt - 0.05))`` steps, so steps are at most
    about 5% longer than ``dt`` and the number of drift and diffusion calls matches torchsde's."""
    dt = float(dt)
    if adaptive or not (math.isfinite(dt) and dt > 0):
        return dt  # adaptive: the first step; a bad dt is reported by sdekit
    longest = 0.0
    for a, b in zip(times[:-1], times[1:]):
        n = max(1, math.ceil((b - a) / dt - 0.05))
        longest = max(longest, (b - a) / n)
    return longest


def _returns(out, logqp: bool, extra: bool, state):
    if logqp:
        ys, log_ratio = _split_logqp(out)
        return (ys, log_ratio, state) if extra else (ys, log_ratio)
    return (out, state) if extra else out


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------
def sdeint(sde, y0: torch.Tensor, ts, bm=None, method: str | None = None, dt=1e-3, adaptive: bool = False,
           rtol=1e-5, atol=1e-4, dt_min=1e-5, options: dict | None = None, names: dict | None = None,
           logqp: bool = False, extra: bool = False, extra_solver_state=None, **unused_kwargs):
    """torchsde's ``sdeint``: solve ``sde`` from ``y0`` and return ``ys`` of shape ``(len(ts), *y0.shape)``.

    Arguments (torchsde's, with its defaults):
        sde: an object with ``f`` and ``g`` (or ``f_and_g``, ``g_prod``, ``f_and_g_prod``),
            ``noise_type`` and ``sde_type``.
        y0: the initial state ``(batch, d)`` (any shape sdekit accepts).
        ts: strictly increasing output times.
        bm: a Brownian motion (``BrownianInterval``, ``BrownianPath``, ``BrownianTree`` or any
            ``bm(ta, tb)``); ``None`` uses sdekit's fast fixed-grid source (or a ``BrownianPath`` when
            ``adaptive``).
        method: ``euler``, ``milstein`` (``options={"grad_free": True}`` for the derivative-free form),
            ``srk``, ``euler_heun``, ``heun``, ``midpoint``, ``log_ode``, ``reversible_heun``; default
            ``srk`` (Ito; ``euler`` for general noise) or ``midpoint`` (Stratonovich).
        dt, adaptive, rtol, atol, dt_min: steps and error control.
        options: ``{"grad_free": bool}`` for Milstein.
        names: methods of ``sde`` under other names (``drift``, ``diffusion``, ``prior_drift``, ...).
        logqp: also return the log-ratio increments ``(len(ts) - 1, batch)`` (needs ``h``).
        extra: also return the solver's final state (reversible Heun: ``(f, g, z)``).
        extra_solver_state: the solver state to start from.

    Returns:
        ``ys``, ``(ys, log_ratio)``, ``(ys, state)`` or ``(ys, log_ratio, state)``.

    Raises:
        ValueError as torchsde for unknown methods, methods that do not fit the SDE's type, noise
        type or ``bm``'s Levy area, and malformed ``ts``; sdekit's errors for everything else
        (non-finite ``dt``, shapes, non-finite states).
    """
    _warn_unused(unused_kwargs, "sdeint")
    _no_grad(ts=ts, dt=dt, rtol=rtol, atol=atol, dt_min=dt_min)
    sde, y0, times, method, solver, _, _ = _prepare(sde, y0, ts, bm, method, adaptive, options, names, logqp)
    stateful = None
    if extra or extra_solver_state is not None:
        stateful = solver = _Stateful(solver, extra_solver_state)
    out = _sdeint(sde, y0, times, method=solver, dt=_step_size(times, _number(dt), adaptive), bm=bm,
                  adaptive=adaptive, rtol=_number(rtol), atol=_number(atol), dt_min=_number(dt_min))
    state = ()
    if stateful is not None:
        assert stateful.last is not None  # set by init() when the solve starts
        state = tuple(stateful.last)
    return _returns(out, logqp, extra, state)


def _adjoint_method(forward: str, adjoint_method: str | None, noise_type: str, options: dict):
    """sdekit's backward solver for torchsde's ``adjoint_method``: the adjoint SDE is solved in
    Stratonovich form, so the Ito methods torchsde picks for it (Milstein, Euler) map to midpoint,
    except Euler for additive noise, where both calculi agree."""
    if adjoint_method == METHODS.log_ode_midpoint:
        raise ValueError("Log-ODE schemes cannot be used for adjoint SDEs, because they require direct access "
                         "to the diffusion, whilst adjoint SDEs rely on a more efficient diffusion-vector "
                         "product. Use a different method instead.")
    if adjoint_method == METHODS.milstein and options.get(METHOD_OPTIONS.grad_free, False) \
            and noise_type != NOISE_TYPES.additive:
        raise ValueError("Derivative-free Milstein cannot be used for adjoint SDEs, because it requires direct "
                         "access to the diffusion, whilst adjoint SDEs rely on a more efficient "
                         "diffusion-vector product. Use derivative-using Milstein instead: "
                         "`adjoint_options=dict(grad_free=False)`")
    if adjoint_method is not None and adjoint_method not in METHODS:
        raise ValueError(f"Expected method in {METHODS}, but found {adjoint_method}.")
    if adjoint_method in (METHODS.midpoint, METHODS.heun):
        return adjoint_method
    if adjoint_method == METHODS.euler and noise_type == NOISE_TYPES.additive:
        return "euler"
    return None  # sdekit's default, midpoint


def sdeint_adjoint(sde, y0: torch.Tensor, ts, bm=None, method: str | None = None,
                   adjoint_method: str | None = None, dt=1e-3, adaptive: bool = False,
                   adjoint_adaptive: bool = False, rtol=1e-5, adjoint_rtol=1e-5, atol=1e-4, adjoint_atol=1e-4,
                   dt_min=1e-5, options: dict | None = None, adjoint_options: dict | None = None,
                   adjoint_params=None, names: dict | None = None, logqp: bool = False, extra: bool = False,
                   extra_solver_state=None, **unused_kwargs):
    """torchsde's ``sdeint_adjoint``: :func:`sdeint` whose gradients come from an adjoint.

    ``method="reversible_heun"`` (with the default ``adjoint_method="adjoint_reversible_heun"``) uses
    sdekit's :class:`~sdekit.core.adjoint.ReversibleAdjoint` (exact gradients of the discrete solve);
    every other method uses :class:`~sdekit.core.adjoint.ContinuousAdjoint` (the adjoint SDE of Li et
    al. 2020, solved backwards on the same Brownian path; ``adjoint_method`` ``midpoint``/``heun``,
    or Euler for additive noise; torchsde's Ito defaults become midpoint on the Stratonovich form).
    ``adjoint_params`` (default: the parameters of ``sde``, which must then be an ``nn.Module``) are
    the tensors that get gradients besides ``y0``.

    ``extra=True`` and ``extra_solver_state`` are not supported here (use :func:`sdeint`).
    """
    _warn_unused(unused_kwargs, "sdeint_adjoint")
    if adjoint_params is None and not isinstance(sde, torch.nn.Module):
        raise ValueError("`sde` must be an instance of nn.Module to specify the adjoint parameters; alternatively "
                         "they can be specified explicitly via the `adjoint_params` argument. If there are no "
                         "parameters then it is allowable to set `adjoint_params=()`.")
    if extra or extra_solver_state is not None:
        raise ValueError("sdekit.torchsde.sdeint_adjoint does not support extra=True or extra_solver_state; "
                         "use sdeint, or sdeint_adjoint without them")
    _no_grad(ts=ts, dt=dt, rtol=rtol, adjoint_rtol=adjoint_rtol, atol=atol, adjoint_atol=adjoint_atol,
             dt_min=dt_min)
    params = tuple(sde.parameters()) if adjoint_params is None else tuple(adjoint_params)
    params = tuple(p for p in params if p.requires_grad)
    sde, y0, times, method, solver, options, noise_type = _prepare(sde, y0, ts, bm, method, adaptive, options, names,
                                                                   logqp)
    adjoint_options = {} if adjoint_options is None else dict(adjoint_options)
    if method == METHODS.reversible_heun and adjoint_method in (None, METHODS.adjoint_reversible_heun):
        if adaptive or adjoint_adaptive:
            raise ValueError("method='reversible_heun' with adjoint_method='adjoint_reversible_heun' needs fixed "
                             "steps (adaptive=False, adjoint_adaptive=False)")
        strategy = ReversibleAdjoint(params=params)
    else:
        if adjoint_method == METHODS.adjoint_reversible_heun:
            raise ValueError(f"adjoint_method='{METHODS.adjoint_reversible_heun}' needs "
                             f"method='{METHODS.reversible_heun}', got method={method!r}")
        strategy = ContinuousAdjoint(
            _adjoint_method(method, adjoint_method, noise_type, adjoint_options),
            adaptive=adjoint_adaptive, rtol=float(_number(adjoint_rtol)), atol=float(_number(adjoint_atol)),
            dt_min=float(_number(dt_min)), params=params)
    out = _sdeint(sde, y0, times, method=solver, dt=_step_size(times, _number(dt), adaptive), bm=bm,
                  adaptive=adaptive, rtol=_number(rtol), atol=_number(atol), dt_min=_number(dt_min),
                  adjoint=strategy)
    return _returns(out, logqp, False, ())
