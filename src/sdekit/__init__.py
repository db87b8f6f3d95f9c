"""sdekit: stochastic differential equations for generative modelling in PyTorch.

``import sdekit`` is cheap: the core's names (``sdekit.sdeint``, ``sdekit.BrownianPath``, ...) and the
subpackages (``sdekit.diffusion``, ``sdekit.data``, ``sdekit.metrics``, ``sdekit.nn``, ``sdekit.train``,
``sdekit.torchsde``, ``sdekit.editing``, ``sdekit.domains``, ``sdekit.montecarlo``, ``sdekit.timeseries``,
``sdekit.graphs``, ``sdekit.flows``) load on first use (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# the core's public names (imported from sdekit.core on first access), spelled out for static analysis
__all__ = [
    "sdeint", "odeint", "BrownianPath", "BrownianGrid", "SDE", "NOISE_TYPES", "SDE_TYPES",
    "SDESolver", "ODESolver",
    "AdjointStrategy", "Backprop", "Checkpointed", "ContinuousAdjoint", "ReversibleAdjoint",
    "__version__",
]
_CORE_NAMES = tuple(name for name in __all__ if name != "__version__")
_SUBPACKAGES = ("core", "data", "diffusion", "metrics", "nn", "train", "torchsde", "editing", "domains", "montecarlo",
                "timeseries", "graphs", "flows", "cli")

if TYPE_CHECKING:  # the static view of the lazy names
    from . import (  # noqa: F401
        data,
        diffusion,
        domains,
        editing,
        flows,
        graphs,
        metrics,
        montecarlo,
        nn,
        timeseries,
        train,
    )
    from .core import (  # noqa: F401
        NOISE_TYPES,
        SDE,
        SDE_TYPES,
        AdjointStrategy,
        Backprop,
        BrownianGrid,
        BrownianPath,
        Checkpointed,
        ContinuousAdjoint,
        ODESolver,
        ReversibleAdjoint,
        SDESolver,
        odeint,
        sdeint,
    )


def __getattr__(name: str) -> Any:
    if name in _CORE_NAMES:
        value = getattr(importlib.import_module(".core", __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'sdekit' has no attribute {name!r}")
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_CORE_NAMES, *_SUBPACKAGES})
