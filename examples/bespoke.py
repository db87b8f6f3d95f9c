"""A bespoke RK2 solver for a 2-D Gaussian-mixture flow at 6 model calls, against the plain midpoint method.

The model is the mixture's exact denoiser on the flow-matching schedule (LinearFlow), so the only error is the
solver's. BespokeSolver.fit learns a scale-time transform of the flow's ODE from 256 ground-truth paths (solved once
with dopri5); the trained solver is then an ordinary Sampler. Run: python examples/bespoke.py (about 20 s).
"""

import math

import torch

from sdekit.diffusion import PFODE, GaussianMixture, LinearFlow, sample
from sdekit.flows import BespokeSolver

torch.set_num_threads(1)
angle = 2 * math.pi * torch.arange(5, dtype=torch.float64) / 5
mixture = GaussianMixture(torch.ones(5), 4.0 * torch.stack([angle.cos(), angle.sin()], 1), torch.full((5, 2), 0.2))
schedule = LinearFlow(t_min=1e-3)
model = mixture.as_denoiser(schedule)          # a trained flow network works the same (prediction="velocity")

solver = BespokeSolver.fit(model, schedule, nfe=6, base="rk2", shape=(2,), iterations=200, lr=1e-2,
                           objective="global", dtype=torch.float64, generator=torch.Generator().manual_seed(0))
print(f"fitted in {solver.fit_info['seconds']:.1f} s: loss {solver.history[0]:.4f} -> {min(solver.history):.4f}")

x_T = schedule.prior_sample((2000, 2), torch.Generator().manual_seed(1), dtype=torch.float64)
with torch.no_grad():
    exact = sample(model, schedule, x_T, solver=PFODE("dopri5", rtol=1e-9, atol=1e-9), steps=None)
    bespoke, info = solver.sample(model, schedule, x_T, return_info=True)
    midpoint = sample(model, schedule, x_T, solver=PFODE("midpoint"), timesteps="uniform", steps=3)
for name, x in (("bespoke RK2", bespoke), ("midpoint, uniform grid", midpoint)):
    print(f"{name:24s} NFE {info.nfe}: endpoint RMSE {((x - exact) ** 2).mean().sqrt():.4f}")
solver.save("/tmp/bespoke_rk2_nfe6")            # .safetensors + .json; BespokeSolver.load(...) reads it back
