"""torchsde's SDE base classes: ``BaseSDE``, ``SDEIto``, ``SDEStratonovich``."""

from __future__ import annotations

import torch

from .settings import NOISE_TYPES, SDE_TYPES

__all__ = ["BaseSDE", "SDEIto", "SDEStratonovich"]


class BaseSDE(torch.nn.Module):
    """An ``nn.Module`` with a checked ``noise_type`` and ``sde_type``; subclasses define ``f`` and
    ``g`` (or ``f_and_g``, ``g_prod``, ``f_and_g_prod``) and, for ``logqp=True``, ``h``."""

    def __init__(self, noise_type: str, sde_type: str) -> None:
        super().__init__()
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"Expected noise type in {NOISE_TYPES}, but found {noise_type}")
        if sde_type not in SDE_TYPES:
            raise ValueError(f"Expected sde type in {SDE_TYPES}, but found {sde_type}")
        self.noise_type = noise_type
        self.sde_type = sde_type


class SDEIto(BaseSDE):
    def __init__(self, noise_type: str) -> None:
        super().__init__(noise_type=noise_type, sde_type=SDE_TYPES.ito)


class SDEStratonovich(BaseSDE):
    def __init__(self, noise_type: str) -> None:
        super().__init__(noise_type=noise_type, sde_type=SDE_TYPES.stratonovich)
