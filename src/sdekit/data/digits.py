"""scikit-learn's 8x8 handwritten digits (shipped inside scikit-learn; nothing is downloaded)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..extras import require

__all__ = ["digits", "DIGITS_SPLIT_SIZES"]

_SPLIT_SEED = 20240601
_N_HELDOUT = 297
DIGITS_SPLIT_SIZES = {"train": 1500, "heldout": _N_HELDOUT}
"""Sizes of the fixed split of the 1797 images."""


@functools.lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", "data", "sdekit.data.digits()")
    bunch = datasets.load_digits()
    images = bunch.images.astype(np.float64) / 16.0 * 2.0 - 1.0
    labels = bunch.target.astype(np.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_SPLIT_SEED)).numpy()
    return images[order], labels[order]


def digits(split: str = "train", *, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits with a fixed train / held-out split (1500 / 297 images of the 1797).

    Pixel values 0..16 are scaled to ``[-1, 1]``. The split is a fixed seeded permutation, the same
    on every machine and run.

    Arguments:
        split: ``"train"``, ``"heldout"`` or ``"all"``.
        dtype: floating dtype of the images.

    Returns:
        ``(images, labels)``: ``(n, 1, 8, 8)`` floats and ``(n,)`` int64 labels in ``0..9``.

    Raises:
        ValueError: an unknown split.
    """
    images, labels = _load()
    n_train = DIGITS_SPLIT_SIZES["train"]
    if split == "train":
        sl = slice(0, n_train)
    elif split == "heldout":
        sl = slice(n_train, None)
    elif split == "all":
        sl = slice(None)
    else:
        raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    x = torch.from_numpy(images[sl].copy()).to(dtype)[:, None]
    y = torch.from_numpy(labels[sl].copy())
    return x, y
