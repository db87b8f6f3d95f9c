"""The noise floor of a two-sample metric: its value between independent sets from one distribution."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from .wasserstein import sliced_wasserstein

__all__ = ["NoiseFloor", "noise_floor"]


class NoiseFloor(NamedTuple):
    """Mean and standard deviation of a metric over independent pairs, and the values themselves."""

    mean: float
    std: float
    values: list[float]


def noise_floor(
    source: torch.Tensor | Callable[[int, torch.Generator], torch.Tensor],
    n: int,
    *,
    repeats: int = 5,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
) -> NoiseFloor:
    """How far apart two independent sets of ``n`` exact samples already are.

    A generative model's samples cannot be expected to beat this: a model whose ``n`` samples
    are at distance ``D`` from ``n`` held-out points is as good as the data allow when ``D`` is
    close to this floor.

    Arguments:
        source: either held-out data ``(N, *event)`` with ``N >= 2 n`` (each repeat draws two
            disjoint random subsets of size ``n``), or a sampler ``source(n, generator)`` of exact
            samples (each repeat draws two independent sets).
        n: size of each set (use the size of the model sample being judged).
        repeats: number of independent pairs.
        metric: ``metric(a, b) -> 0-d tensor``; default :func:`sliced_wasserstein` (seeded).
        seed: seed of the subsets / samples.

    Returns:
        A :class:`NoiseFloor` ``(mean, std, values)``.

    Raises:
        ValueError: ``n`` or ``repeats`` not positive, held-out data smaller than ``2 n``.
        TypeError: ``source`` neither a tensor nor a callable.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    metric = sliced_wasserstein if metric is None else metric
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(repeats):
        if isinstance(source, torch.Tensor):
            if source.shape[0] < 2 * n:
                raise ValueError(
                    f"held-out data must hold at least 2 n = {2 * n} samples for two disjoint sets of n={n}; "
                    f"got {source.shape[0]}"
                )
            idx = torch.randperm(source.shape[0], generator=g)[: 2 * n].to(source.device)
            a, b = source[idx[:n]], source[idx[n:]]
        elif callable(source):
            a, b = source(n, g), source(n, g)
        else:
            raise TypeError(
                f"source must be a tensor of held-out samples or a sampler, got {type(source).__name__}"
            )
        values.append(float(metric(a, b)))
    mean = sum(values) / repeats
    std = (sum((v - mean) ** 2 for v in values) / max(repeats - 1, 1)) ** 0.5
    return NoiseFloor(mean, std, values)
