"""``sdeint(..., names=...)``: SDE objects whose drift and diffusion have other method names.

torchsde lets a user say which methods of an SDE object play the roles of drift, diffusion and
prior drift (``names={"drift": "forward"}``), so one module can serve as posterior and prior of a
latent SDE (``names={"drift": "h"}``). :func:`rename_methods` returns a view of the object with
the contract's names ``f``, ``g``, ``h``, ``g_prod``; a combined ``drift_and_diffusion`` method
(``f_and_g(t, y) -> (f, g)``) or ``drift_and_diffusion_prod`` (``f_and_g_prod(t, y, v) -> (f, g v)``)
supplies ``f``, ``g`` and ``g_prod`` where the separate ones are not named.

Part of the core's internal interface (``sdekit.torchsde`` uses :func:`rename_methods`); nothing here
is exported from ``sdekit``.
"""

from __future__ import annotations

import torch

__all__: list[str] = []

# the key users pass -> the contract's name of the method
ROLES = {
    "drift": "f",
    "diffusion": "g",
    "prior_drift": "h",
    "diffusion_prod": "g_prod",
    "drift_and_diffusion": "f_and_g",
    "drift_and_diffusion_prod": "f_and_g_prod",
}


def check_names(names) -> dict[str, str]:
    """Validate ``names``: a dict from roles (:data:`ROLES`) to method names (strings)."""
    if not isinstance(names, dict):
        raise TypeError(f"names must be a dict such as {{'drift': 'forward'}}, got {type(names).__name__}")
    for key, value in names.items():
        if key not in ROLES:
            raise ValueError(f"names has an unknown key {key!r}; the keys are {sorted(ROLES)}")
        if not isinstance(value, str):
            raise TypeError(f"names[{key!r}] must be a method name (str), got {type(value).__name__}")
    return dict(names)


class _Renamed:
    """The contract's methods looked up under the user's names; everything else from the object."""

    noise_type: str | None  # set by _bind (object.__setattr__: also past nn.Module's attribute hooks)
    sde_type: str | None

    def _bind(self, sde, names: dict[str, str]) -> None:
        object.__setattr__(self, "noise_type", getattr(sde, "noise_type", None))
        object.__setattr__(self, "sde_type", getattr(sde, "sde_type", None))
        methods = {}
        for role, contract_name in ROLES.items():
            source = names.get(role, contract_name)
            method = getattr(sde, source, None)
            if role in names and not callable(method):
                raise ValueError(f"names[{role!r}] = {source!r}, but {type(sde).__name__} has no callable "
                                 f"method {source!r}")
            if callable(method):
                methods[contract_name] = method
        f_and_g, f_and_g_prod = methods.get("f_and_g"), methods.get("f_and_g_prod")
        if "f" not in methods:
            if f_and_g is not None:
                methods["f"] = lambda t, y: f_and_g(t, y)[0]
            elif f_and_g_prod is not None and "g" in methods:
                methods["f"] = lambda t, y: f_and_g_prod(t, y, _zero_noise(self, t, y))[0]
        if "g" not in methods and f_and_g is not None:
            methods["g"] = lambda t, y: f_and_g(t, y)[1]
        if "g_prod" not in methods and f_and_g_prod is not None:
            methods["g_prod"] = lambda t, y, v: f_and_g_prod(t, y, v)[1]
        for name, method in methods.items():
            object.__setattr__(self, name, method)


def _zero_noise(view, t, y) -> torch.Tensor:
    g = view.g(t, y)
    return torch.zeros_like(g) if view.noise_type == "diagonal" else g.new_zeros(g.shape[:-2] + g.shape[-1:])


class _RenamedModule(_Renamed, torch.nn.Module):
    def __init__(self, sde: torch.nn.Module, names: dict[str, str]) -> None:
        torch.nn.Module.__init__(self)
        self.base = sde  # registered, so .parameters() are the SDE's (adjoint strategies collect them)
        self._bind(sde, names)


class _RenamedPlain(_Renamed):
    def __init__(self, sde, names: dict[str, str]) -> None:
        self.base = sde
        self._bind(sde, names)


def rename_methods(sde, names):
    """A view of ``sde`` whose ``f``, ``g``, ``h``, ``g_prod`` are the methods ``names`` points to.

    Arguments:
        sde: the user's SDE object.
        names: ``None`` or a dict with keys among ``drift``, ``diffusion``, ``prior_drift``,
            ``diffusion_prod``, ``drift_and_diffusion``, ``drift_and_diffusion_prod`` and method
            names as values (as torchsde's ``names``).

    Returns:
        ``sde`` itself when ``names`` is ``None`` or empty, else the view (an ``nn.Module`` holding
        ``sde`` when ``sde`` is one, so its parameters are found by the adjoint strategies).

    Raises:
        TypeError / ValueError for an unknown key, a non-string value or a missing method.
    """
    if names is None:
        return sde
    names = check_names(names)
    if not names:
        return sde
    if isinstance(sde, torch.nn.Module):
        return _RenamedModule(sde, names)
    return _RenamedPlain(sde, names)
