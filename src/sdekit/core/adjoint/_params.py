"""The tensors a strategy differentiates besides the initial state: the check of ``params=`` and the
search for the tensors an SDE's (or an ODE function's) functions capture.

Part of the core's internal interface: ``sdekit.diffusion.AdjointDEIS`` uses :func:`check_params` and
:func:`resolve_params` (re-exported from :mod:`sdekit.core.adjoint`, not from ``sdekit``).
"""

from __future__ import annotations

import functools
import types
import warnings

import torch

__all__ = ["check_params", "resolve_params"]


def check_params(params) -> tuple[torch.Tensor, ...] | None:
    """The ``params=`` argument of a strategy as a tuple of floating-point tensors (``None`` stays
    ``None``: search for them); a TypeError naming the argument otherwise."""
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


def resolve_params(strategy, owner, what: str, reaches: str = "y0") -> tuple[torch.Tensor, ...]:
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

