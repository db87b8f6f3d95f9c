"""Dirichlet diffusion (DDSM, Avdeyev et al., ICML 2023) on 4x4 Sudoku: train a score network on generated grids
with DDSM's loss through the shared trainer, generate grids with the reverse sampler (time dilation, last step
the mean), and solve a puzzle without retraining by holding its given cells.

    python examples/sudoku.py           # about 2 minutes on one core (a short training: a few hundred steps
                                        # give a fraction of valid grids; benchmarks/methods/sudoku.py trains
                                        # longer and reaches >= 99%)
"""

from __future__ import annotations

import torch

from sdekit.domains import (
    DirichletScoreMatching,
    SudokuScoreNet,
    dirichlet_reverse_sample,
    sudoku_grids,
    sudoku_puzzles,
    sudoku_validity,
)
from sdekit.train import TrainConfig, Trainer

torch.set_num_threads(1)
torch.manual_seed(0)
size = 4                                     # K = 4 categories (digits) per cell, 3 sticks each

# data: valid grids as categories 0 .. 3 (the trainer passes integer data through unchanged)
data = sudoku_grids(20_000, size, generator=torch.Generator().manual_seed(0)) - 1

# DDSM's loss: exact Jacobi transition draws and scores from a precomputed table (times in [0.01, 5]);
# importance=0 draws the times uniformly on the (geometric) grid, importance=1 in proportion to w(t)
loss = DirichletScoreMatching(size, t_min=0.01, t_max=5.0, importance=0.0)
net = SudokuScoreNet(size, dim=64, depth=4, heads=4)
trainer = Trainer(net, loss, data, TrainConfig(steps=600, batch_size=128, lr=2e-3, warmup_steps=50,
                                                lr_schedule="cosine", ema_decay=0.99, progress=False))
trainer.fit()
model = trainer.ema_model.eval()


def score(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The sampler's score: sticks (batch, 4, 4, 3), a 0-d time."""
    with torch.no_grad():
        return model(v, t.expand(v.shape[0]))


for dilation in (1, 4):
    x = dirichlet_reverse_sample(score, size, (500, size, size), t_max=5.0, t_min=0.01, steps=40, seed=1,
                                 dilation=dilation, denoise_last=True, dtype=torch.float32)
    val = sudoku_validity(x.argmax(-1) + 1)
    print(f"dilation {dilation}x: {100 * float((val.rows_and_columns & val.boxes).float().mean()):.1f}% of 500 "
          f"grids valid (rows, columns and boxes)")

# solving: the given cells are held at their one-hot sticks during sampling
puzzles, solutions = sudoku_puzzles(100, clues=6, size=size, generator=torch.Generator().manual_seed(1))
x = dirichlet_reverse_sample(score, size, (100, size, size), t_max=5.0, t_min=0.01, steps=40, seed=2,
                             known=puzzles - 1, denoise_last=True, dtype=torch.float32)   # blank 0 -> -1 (free)
solved = ((x.argmax(-1) + 1) == solutions).flatten(1).all(-1)
print(f"puzzles with 6 clues solved exactly: {100 * float(solved.float().mean()):.0f}%")
