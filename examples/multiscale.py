"""Sampling an unnormalised 8-Gaussian ring by averaging (MultALMC) against underdamped Langevin (ULMC).

Both samplers get the same number of target-gradient evaluations per chain; MultALMC anneals along
mu_lambda = Law(sqrt(lambda) X + sqrt(1 - lambda) Z) with the score of mu_lambda estimated on the fly by a fast
Langevin process (no training, no score network). Run: python examples/multiscale.py (about 20 s).
"""

import torch

from sdekit.montecarlo import ULMC, AnnealingSchedule, GaussianMixture, MultALMC

torch.set_num_threads(1)
ring = GaussianMixture.ring8()  # means 10 (1 + cos, 1 + sin)(2 pi i / 8), covariance 0.7 I
x0 = torch.randn(1000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # start at N(0, I)

samplers = {
    "ULMC": ULMC(step_size=0.05, friction=(1.0, 5.0)),
    "MultALMC": MultALMC(step_size=0.05, eps=0.5, schedule=AnnealingSchedule(0.01, 0.99, cosine=True, hold=0.2),
                         friction=(0.01, 0.5)),
}
for name, sampler in samplers.items():
    result = sampler.sample(ring, x0, n_steps=2000, seed=1)
    share = torch.bincount(ring.assign(result.samples), minlength=8).double() / len(x0)
    print(f"{name:9s} {result.grad_evals} gradients/chain; share of samples per mode: "
          + " ".join(f"{s:.2f}" for s in share.tolist()))
