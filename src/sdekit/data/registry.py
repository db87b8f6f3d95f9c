"""Data sets by name, for the command line and for configs stored in checkpoints."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .digits import DIGITS_SPLIT_SIZES, digits
from .toys import TOYS

__all__ = ["DatasetSpec", "load_dataset", "dataset_names", "get_dataset", "register_dataset", "SPLITS"]

SPLITS = ("train", "heldout")
_DEFAULT_TOY_SIZE = {"train": 10_000, "heldout": 10_000}


def _split_seed(seed: int, split: str) -> int:
    digest = hashlib.sha256(f"sdekit-data/{seed}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class DatasetSpec:
    """A named data set.

    Attributes:
        name: the registry name.
        event_shape: shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
        num_classes: number of labels, or ``None`` for unlabelled data.
        description: one line for ``--help`` listings.
        loader: ``loader(split, n, seed, dtype) -> (x, labels or None)``.
    """

    name: str
    event_shape: tuple[int, ...]
    num_classes: int | None
    description: str
    loader: Callable[[str, int | None, int, torch.dtype], tuple[torch.Tensor, torch.Tensor | None]]


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, *, overwrite: bool = False) -> None:
    """Add a data set to the registry.

    Raises:
        TypeError: ``spec`` is not a :class:`DatasetSpec`.
        ValueError: the name is taken and ``overwrite`` is false.
    """
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"spec must be a DatasetSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"a data set named {spec.name!r} is already registered; pass overwrite=True")
    _REGISTRY[spec.name] = spec


def dataset_names() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def get_dataset(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` named ``name``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(dataset_names())}")
    return _REGISTRY[name]


def load_dataset(name: str, split: str = "train", n: int | None = None, *, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Load ``n`` samples of the named data set.

    For the 2-D toys, ``train`` and ``heldout`` are independent draws from seeded generators
    (default 10,000 each); for ``digits`` they are the fixed split of
    :func:`~sdekit.data.digits` and ``n`` takes the first ``n`` of it.

    Arguments:
        name: a registered name (see :func:`dataset_names`).
        split: ``"train"`` or ``"heldout"``.
        n: number of samples (``None``: the default size of the split).
        seed: seed of the draw (toys only).
        dtype: floating dtype.

    Returns:
        ``(x, labels)`` with ``x: (n, *event_shape)`` and ``labels: (n,)`` or ``None``.

    Raises:
        ValueError: unknown name or split, ``n`` larger than a finite split.
    """
    spec = get_dataset(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    return spec.loader(split, n, seed, dtype)


def _toy_loader(fn):
    def load(split, n, seed, dtype):
        n = _DEFAULT_TOY_SIZE[split] if n is None else n
        g = torch.Generator().manual_seed(_split_seed(seed, split))
        return fn(n, g, dtype=dtype), None

    return load


def _digits_loader(split, n, seed, dtype):
    x, y = digits(split, dtype=dtype)
    if n is not None:
        if n > x.shape[0]:
            raise ValueError(
                f"n={n} exceeds the {DIGITS_SPLIT_SIZES[split]} images of the digits {split!r} split"
            )
        x, y = x[:n], y[:n]
    return x, y


for _name, _fn in TOYS.items():
    _summary = (_fn.__doc__ or _name).strip().splitlines()[0]
    register_dataset(DatasetSpec(_name, (2,), None, _summary, _toy_loader(_fn)))
register_dataset(DatasetSpec("digits", (1, 8, 8), 10, "scikit-learn's 8x8 digits in [-1, 1]", _digits_loader))
