"""A residual MLP with a time embedding, for vector data ``(batch, d)``."""

from __future__ import annotations

import torch
from torch import nn

from ._common import _check_time, _ClassEmbedding, _positive_int, _seeded, _time_embedding

__all__ = ["MLPDenoiser", "TimeMLP"]


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(emb_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        z = self.fc1(nn.functional.silu(h)) + self.emb(emb)
        z = self.fc2(self.dropout(nn.functional.silu(z)))
        return h + z


class MLPDenoiser(nn.Module):
    """Residual MLP ``net(x, t)`` for vector data, with a time (and optional class) embedding.

    ``h = W_in x``; then ``depth`` blocks ``h <- h + W2 silu(W1 silu(h) + E emb(t))``; output
    ``W_out silu(h)``. What the output means (eps, x0, v, score, velocity) is decided by the loss
    and the adapter, not by the network. There is deliberately no normalisation layer: it would
    bound the output and stop the network from extrapolating linearly (``eps ~ x / sigma``) to the
    tails of the prior, which sends a few probability-flow trajectories far off.

    Arguments:
        dim: data dimension ``d``.
        hidden: width of the hidden layers.
        depth: number of residual blocks.
        emb_dim: size of the time embedding.
        time_embedding: ``"sinusoidal"`` (default) or ``"fourier"``.
        time_scale: multiplies ``t`` before sinusoidal features (1000 for ``t`` in [0, 1]; 1 for
            inputs such as ``log sigma`` / 4).
        num_classes: if given, the model accepts ``class_labels`` (ints in ``[0, num_classes)``, or
            ``num_classes`` / ``None`` for "no label").
        dropout: dropout probability inside the blocks.
        seed: if given, parameters are initialised from ``torch.manual_seed(seed)`` without touching
            the global generator, so the same seed always gives the same network.

    Raises:
        TypeError / ValueError for non-positive sizes or an unknown ``time_embedding``.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        emb_dim: int = 64,
        *,
        time_embedding: str = "sinusoidal",
        time_scale: float = 1000.0,
        num_classes: int | None = None,
        dropout: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = _positive_int("dim", dim)
        hidden = _positive_int("hidden", hidden)
        depth = _positive_int("depth", depth)
        emb_dim = _positive_int("emb_dim", emb_dim)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        with _seeded(seed):
            self.time_embed = nn.Sequential(
                _time_embedding(time_embedding, emb_dim, time_scale),
                nn.Linear(emb_dim, emb_dim),
                nn.SiLU(),
                nn.Linear(emb_dim, emb_dim),
            )
            self.class_embed = _ClassEmbedding(num_classes, emb_dim) if num_classes is not None else None
            self.inp = nn.Linear(dim, hidden)
            self.blocks = nn.ModuleList(_ResidualBlock(hidden, emb_dim, float(dropout)) for _ in range(depth))
            self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Evaluate the network.

        Arguments:
            x: ``(batch, dim)``.
            t: ``(batch,)`` tensor, 0-d tensor or float.
            class_labels: ``(batch,)`` integer tensor (only when built with ``num_classes``).

        Returns:
            ``(batch, dim)``.

        Raises:
            ValueError: ``x`` or ``t`` of the wrong shape, labels without ``num_classes``.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.dim}), got {got}")
        t = _check_time(t, x)
        emb = self.time_embed(t)
        if self.class_embed is not None:
            emb = emb + self.class_embed(class_labels, x.shape[0], x.device)
        elif class_labels is not None:
            raise ValueError("class_labels were given but the model was built without num_classes")
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(h))


TimeMLP = MLPDenoiser
"""Alias of :class:`MLPDenoiser`."""
