"""Irregular time-series data: sktime's bundled UCR/UEA sets, seeded missingness, stacking, normalisation.

The stable neural SDE paper (Oh, Lim, Kim, ICLR 2024) evaluates robustness by dropping 30 / 50 / 70 % of
the observations of every series at random; as in its ``uea.py`` the same time indices are dropped in all
channels of a series (``round(rate * L)`` of them, drawn per series from a seeded generator), and ``NaN``
marks a missing value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["BUNDLED_DATASETS", "load_bundled", "drop_observations", "stack_series", "normalise"]

# name -> sktime loader (all shipped inside sktime, no download)
BUNDLED_DATASETS = {
    "ArrowHead": "load_arrow_head",
    "BasicMotions": "load_basic_motions",
    "GunPoint": "load_gunpoint",
    "ItalyPowerDemand": "load_italy_power_demand",
    "OSULeaf": "load_osuleaf",
}


def load_bundled(name: str, split: str = "train", *, dtype: torch.dtype = torch.float32,
                 ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Load one of sktime's bundled equal-length UCR/UEA sets (needs ``pip install sdekit[timeseries]``).

    Arguments:
        name: a key of :data:`BUNDLED_DATASETS`.
        split: ``"train"`` or ``"test"`` (the archive's own split).
        dtype: floating dtype of the values.

    Returns:
        ``values: (N, L, C)``, ``labels: (N,)`` int64 in ``0..K-1``, and the ``K`` class names (sorted).
    """
    if name not in BUNDLED_DATASETS:
        raise ValueError(f"name must be one of {sorted(BUNDLED_DATASETS)}, got {name!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        import sktime.datasets as datasets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("load_bundled needs sktime: pip install 'sdekit[timeseries]'") from err
    X, y = getattr(datasets, BUNDLED_DATASETS[name])(split=split, return_type="numpy3D")
    classes = sorted({str(v) for v in y})
    labels = torch.tensor([classes.index(str(v)) for v in y], dtype=torch.int64)
    values = torch.from_numpy(np.ascontiguousarray(np.asarray(X, dtype=np.float64).transpose(0, 2, 1)))
    return values.to(dtype), labels, classes


def drop_observations(values: torch.Tensor, rate: float, *, seed: int = 0) -> torch.Tensor:
    """A copy of ``values: (N, L, C)`` with ``round(rate * L)`` time points of every series set to ``NaN``.

    The dropped indices are drawn per series (a seeded permutation, the same in all channels), so the
    result depends only on ``(values, rate, seed)``. ``rate`` in ``[0, 1)``; at least one time point is
    always kept.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point() or values.dim() != 3:
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise TypeError(f"values must be a floating tensor (N, L, C), got {got}")
    if not (isinstance(rate, (int, float)) and 0 <= rate < 1):
        raise ValueError(f"rate must lie in [0, 1), got {rate!r}")
    N, L, _ = values.shape
    k = min(int(round(rate * L)), L - 1)
    if k == 0:
        return values.clone()
    g = torch.Generator().manual_seed(int(seed))
    order = torch.rand(N, L, generator=g).argsort(-1)[:, :k]  # one random permutation per series
    drop = torch.zeros(N, L, dtype=torch.bool).scatter_(1, order, True).to(values.device)
    return values.masked_fill(drop[..., None], float("nan"))


def stack_series(series: Sequence[torch.Tensor], times: Sequence[torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack series ``(L_i, C)`` into ``(values: (N, L, C), times: (L,))`` with ``NaN`` for missing values.

    Equal lengths without ``times``: stacked on ``linspace(0, 1, L)``. With ``times`` (one strictly
    increasing ``(L_i,)`` tensor per series) the series are placed on the sorted union of all times, ``NaN``
    where a series has no observation. Unequal lengths without ``times`` are refused (where the values sit
    in time is then unknown).
    """
    if not isinstance(series, Sequence) or len(series) == 0:
        raise ValueError(f"series must be a non-empty sequence of (L_i, C) tensors, got {type(series).__name__}")
    xs = [torch.as_tensor(s) for s in series]
    for i, x in enumerate(xs):
        if x.dim() != 2 or not x.is_floating_point():
            raise ValueError(f"series[{i}] must be a floating (L_i, C) tensor, got {x.dtype} {tuple(x.shape)}")
        if x.shape[1] != xs[0].shape[1]:
            raise ValueError(f"series[{i}] has {x.shape[1]} channels, series[0] has {xs[0].shape[1]}")
    lengths = [x.shape[0] for x in xs]
    if times is None:
        if len(set(lengths)) > 1:
            raise ValueError(f"series have inconsistent lengths {sorted(set(lengths))} and no times were given; "
                             "pass times= (one (L_i,) tensor per series) to place them on a common grid")
        values = torch.stack(xs)
        return values, torch.linspace(0, 1, lengths[0], dtype=values.dtype)
    if len(times) != len(xs):
        raise ValueError(f"times must hold one tensor per series ({len(xs)}), got {len(times)}")
    ts = [torch.as_tensor(t, dtype=xs[0].dtype) for t in times]
    for i, (t, x) in enumerate(zip(ts, xs)):
        if t.shape != (x.shape[0],):
            raise ValueError(f"times[{i}] must have shape ({x.shape[0]},) like series[{i}], got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"times[{i}] must be finite")
        bad = (t[1:] <= t[:-1]).nonzero()
        if len(bad):
            k = int(bad[0])
            raise ValueError(f"times[{i}] must be strictly increasing; got times[{i}][{k + 1}] = {float(t[k + 1]):g}"
                             f" <= times[{i}][{k}] = {float(t[k]):g}")
    grid = torch.unique(torch.cat(ts))  # sorted
    values = torch.full((len(xs), len(grid), xs[0].shape[1]), float("nan"), dtype=xs[0].dtype)
    for i, (t, x) in enumerate(zip(ts, xs)):  # one scatter per series (ragged input)
        values[i, torch.searchsorted(grid, t)] = x
    return values, grid


def normalise(values: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """``(values - mean) / std`` per channel, statistics over the observed entries of ``reference``
    (default ``values``; pass the training set so test data see the training statistics). ``NaN`` stay."""
    ref = values if reference is None else reference
    if ref.dim() != 3 or values.dim() != 3 or ref.shape[-1] != values.shape[-1]:
        raise ValueError(f"values and reference must be (N, L, C) with equal C, got {tuple(values.shape)}, "
                         f"{tuple(ref.shape)}")
    flat = ref.reshape(-1, ref.shape[-1])
    mean = torch.nanmean(flat, 0)
    std = torch.nanmean((flat - mean) ** 2, 0).sqrt().clamp(min=1e-8)
    return (values - mean) / std
