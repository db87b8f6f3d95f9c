"""``sdekit.torchsde``: torchsde's public API on sdekit's solvers, Brownian paths and adjoints.

Migrating a torchsde project is one import line::

    import sdekit.torchsde as torchsde

``sdeint``, ``sdeint_adjoint``, ``BrownianInterval``, ``BrownianPath``, ``BrownianTree``,
``ReverseBrownian``, ``BaseSDE`` / ``SDEIto`` / ``SDEStratonovich`` and the ``settings`` name tables
keep torchsde's signatures, defaults and (where code relies on them) errors; the numerics are
sdekit's. Behaviour differences are listed in ``docs/migration-torchsde.md``.
"""

from . import settings as settings
from . import types as types
from ._brownian import (
    BaseBrownian,
    BrownianInterval,
    BrownianPath,
    BrownianTree,
    ReverseBrownian,
    brownian_interval_like,
)
from ._sde import BaseSDE, SDEIto, SDEStratonovich
from ._sdeint import sdeint, sdeint_adjoint

__version__ = "0.2.6"  # the torchsde release whose API this module follows

__all__ = [
    "sdeint", "sdeint_adjoint", "BaseBrownian", "BrownianInterval", "BrownianPath", "BrownianTree",
    "ReverseBrownian", "brownian_interval_like", "BaseSDE", "SDEIto", "SDEStratonovich", "settings", "types",
]
