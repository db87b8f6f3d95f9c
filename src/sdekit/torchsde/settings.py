"""torchsde's name tables: ``METHODS``, ``NOISE_TYPES``, ``SDE_TYPES``, ``LEVY_AREA_APPROXIMATIONS``,
``METHOD_OPTIONS``. Each is a class of string constants that also answers ``in`` and ``.all()``."""

from __future__ import annotations

__all__ = ["METHODS", "NOISE_TYPES", "SDE_TYPES", "LEVY_AREA_APPROXIMATIONS", "METHOD_OPTIONS"]


class _Names(type):
    """Metaclass: the class's public string attributes form a set of names."""

    def all(cls) -> list[str]:
        return sorted(v for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, str))

    def __contains__(cls, item) -> bool:
        return item in cls.all()

    def __iter__(cls):
        return iter(cls.all())

    def __str__(cls) -> str:
        return str(cls.all())


class METHODS(metaclass=_Names):
    euler = "euler"
    milstein = "milstein"
    srk = "srk"
    midpoint = "midpoint"
    reversible_heun = "reversible_heun"
    adjoint_reversible_heun = "adjoint_reversible_heun"
    heun = "heun"
    log_ode_midpoint = "log_ode"
    euler_heun = "euler_heun"


class NOISE_TYPES(metaclass=_Names):  # noqa: N801
    general = "general"
    diagonal = "diagonal"
    scalar = "scalar"
    additive = "additive"


class SDE_TYPES(metaclass=_Names):  # noqa: N801
    ito = "ito"
    stratonovich = "stratonovich"


class LEVY_AREA_APPROXIMATIONS(metaclass=_Names):  # noqa: N801
    none = "none"
    space_time = "space-time"
    davie = "davie"
    foster = "foster"


class METHOD_OPTIONS(metaclass=_Names):  # noqa: N801
    grad_free = "grad_free"
