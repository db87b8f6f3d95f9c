"""Forward processes beyond the scalar schedules: matrix-valued linear SDEs with a learnable spatial part
(flexible diffusion, Du et al., ICML 2023) and critically damped Langevin diffusion on ``(x, v)``
(Dockhorn, Vahdat, Kreis, ICLR 2022)."""

from .cld import CLD
from .matrix import MatrixLinearSDE

__all__ = ["MatrixLinearSDE", "CLD"]
