"""PNG figures for the command line (matplotlib's Agg canvas; no global pyplot state)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..extras import require

__all__ = ["sample_figure", "loss_figure"]


def _figure(width: float, height: float):
    backend = require("matplotlib.backends.backend_agg", "plots", "PNG figures")
    figure = require("matplotlib.figure", "plots", "PNG figures")
    fig = figure.Figure(figsize=(width, height), dpi=110)
    backend.FigureCanvasAgg(fig)
    return fig


def _image_grid(x: torch.Tensor, cols: int = 10) -> torch.Tensor:
    n = min(x.shape[0], cols * cols)
    x = x[:n].clamp(-1, 1)
    c, h, w = x.shape[1:]
    rows = math.ceil(n / cols)
    grid = torch.ones(c, rows * (h + 1) + 1, cols * (w + 1) + 1)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[:, 1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + k * (w + 1): 1 + k * (w + 1) + w] = x[i]
    grid = (grid + 1) / 2
    return grid[0] if c == 1 else grid.permute(1, 2, 0)


def sample_figure(path: Path, panels: dict[str, torch.Tensor], *, max_points: int = 4000) -> None:
    """Panels side by side: scatter plots of 2-D points or grids of images ``(n, C, H, W)``."""
    fig = _figure(3.6 * len(panels), 2.6 if all(v.dim() == 2 for v in panels.values()) else 3.8)
    lim = None
    vectors = [v for v in panels.values() if v.dim() == 2]
    if vectors:
        ref = vectors[0].double()
        lo, hi = ref.quantile(0.001, dim=0), ref.quantile(0.999, dim=0)
        pad = 0.15 * (hi - lo)
        lim = (lo - pad).tolist(), (hi + pad).tolist()
    for i, (name, x) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        x = x.detach().cpu().float()
        if x.dim() == 2 and x.shape[1] >= 2:
            assert lim is not None  # x is one of the vectors
            pts = x[:max_points]
            ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5, color="C0" if i == 0 else "C1", linewidths=0)
            ax.set_xlim(lim[0][0], lim[1][0])
            ax.set_ylim(lim[0][1], lim[1][1])
            ax.set_aspect("equal")
        elif x.dim() == 4:
            ax.imshow(_image_grid(x).numpy(), cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.hist(x.reshape(x.shape[0], -1)[:, 0].numpy(), bins=60)
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def loss_figure(path: Path, losses: list[float], *, title: str = "training loss") -> None:
    """The per-step loss and its running mean, on a log scale."""
    fig = _figure(6.0, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    y = torch.tensor(losses, dtype=torch.float64)
    ax.plot(y.numpy(), lw=0.5, alpha=0.35, color="C0", label="per step")
    window = max(1, len(losses) // 50)
    if len(losses) > window:
        kernel = torch.ones(window, dtype=torch.float64) / window
        smooth = torch.nn.functional.conv1d(y[None, None], kernel[None, None])[0, 0]
        ax.plot(torch.arange(window - 1, len(losses)).numpy(), smooth.numpy(), color="C1",
                label=f"mean of {window}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
