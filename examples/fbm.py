"""SDEs driven by fractional noise (Daems et al., ICLR 2024): Markov-approximate fBM as a noise source for sdeint,
Hurst recovery by maximum likelihood, and a short ELBO fit of the fractional latent SDE.

Run: python examples/fbm.py (about a minute).
"""

import torch

from sdekit import SDE, sdeint
from sdekit.timeseries import FractionalLatentSDE, MarkovFBM, fractional_ou, markov_fou_log_likelihood

torch.set_num_threads(1)

# 1. fOU driven by Markov-approximate fBM, through the core solver (the noise lives on the solver's grid)
fbm = MarkovFBM(0.7, K=5, T=1.0)
ts = torch.linspace(0, 1, 101, dtype=torch.float64)  # float64: the solver's steps land on the nodes
bm = fbm.noise(ts, (4096, 1), seed=0)
fou = SDE(lambda t, x: torch.zeros_like(x), lambda t, x: torch.ones_like(x))
xs = sdeint(fou, torch.zeros(4096, 1), ts, dt=0.01, bm=bm)
assert isinstance(xs, torch.Tensor)
print(f"Var Bhat(1): Monte Carlo {float(xs[-1].var()):.3f}, closed form {float(fbm.variance(torch.tensor(1.0))):.3f}, "
      f"fBM t^(2H) = 1")

# 2. Hurst recovery on exactly simulated fOU (exact Kalman likelihood, gradient through the weights)
def fit_hurst(x: torch.Tensor) -> float:
    model = MarkovFBM(0.5, 5, T=5.0, learn_hurst=True)
    log_theta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    log_sigma = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([model.h, log_theta, log_sigma], max_iter=60, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -markov_fou_log_likelihood(x, 0.05, model, log_theta.exp(), log_sigma.exp()).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return float(model.hurst.detach())


for H in (0.3, 0.7):
    print(f"true H {H}: estimate {fit_hurst(fractional_ou(100, 5.0, H, batch=32, seed=0)):.3f}")

# 3. The fractional latent SDE: a few ELBO steps with a learnt Hurst index
obs = fractional_ou(20, 1.0, 0.7, batch=16, seed=1).float()[..., None]
obs[1:] += 0.1 * torch.randn(obs[1:].shape, generator=torch.Generator().manual_seed(0))
latent = FractionalLatentSDE(1, MarkovFBM(0.5, 5, learn_hurst=True), hidden=32)
opt = torch.optim.Adam(latent.parameters(), lr=2e-2)
for step in range(30):
    opt.zero_grad()
    elbo = latent.elbo(torch.linspace(0, 1, 21), obs, obs_std=0.1, dt=0.025, seed=step).mean()
    (-elbo).backward()
    opt.step()
    if step % 10 == 9:
        print(f"step {step + 1}: ELBO {float(elbo.detach()):.2f}, H {float(latent.fbm.hurst.detach()):.3f}")  # type: ignore[union-attr]
