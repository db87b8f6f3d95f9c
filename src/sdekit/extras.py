"""Optional dependencies: what ``pip install sdekit`` leaves out, and the extra that brings it.

``pip install sdekit`` needs torch, numpy, scipy, safetensors and tqdm only. Features that need more
import it where they are used, through :func:`require`, so a missing package is an ImportError that
names the extra to install:

========  ==============================  ============================================
extra     packages                        for
========  ==============================  ============================================
data      scikit-learn                    :func:`sdekit.data.digits` (its bundled 8x8 digits)
plots     matplotlib                      PNG figures of ``sdekit demo``, ``train``, ``sample``
imaging   scikit-image                    :mod:`sdekit.editing`'s images, PSNR/SSIM and baselines
graphs    networkx                        :mod:`sdekit.graphs`' data sets and graph statistics
bench     torchsde, diffusers, POT, bm3d  the side-by-side benchmarks in ``benchmarks/``
docs      mkdocs-material, mkdocstrings   the documentation site (``make docs``)
all       everything above
========  ==============================  ============================================
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "require"]

EXTRAS = {
    "data": ("scikit-learn",),
    "plots": ("matplotlib",),
    "imaging": ("scikit-image",),
    "graphs": ("networkx",),
    "bench": ("torchsde", "diffusers", "POT", "bm3d"),
    "docs": ("mkdocs", "mkdocs-material", "mkdocstrings[python]"),
}


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise an ImportError that names ``sdekit[extra]``.

    Arguments:
        module: the module to import (e.g. ``"sklearn.datasets"``).
        extra: the extra of :data:`EXTRAS` that installs it.
        feature: what needs it, for the message (e.g. ``"sdekit.data.digits()"``).
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {sorted(EXTRAS)}, got {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{feature} needs {module.split('.')[0]} ({', '.join(EXTRAS[extra])}), which is not "
                          f"installed: pip install 'sdekit[{extra}]'") from err
