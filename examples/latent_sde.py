"""Fit a latent SDE to an irregularly sampled noisy sine and plot posterior sample paths.

The model of Li, Wong, Chen & Duvenaud, "Scalable gradients for stochastic differential equations"
(AISTATS 2020), section 5, on a one-dimensional toy series:

* prior:     dy = theta (mu - y) dt + sigma dW,  y(0) ~ N(0, 1)   (an Ornstein-Uhlenbeck process)
* posterior: dy = f_phi(t, y) dt + sigma dW,   y(0) ~ N(m, s^2)   (f_phi a small MLP of (sin, cos t, y))
* data:      x_i ~ N(y(t_i), 0.05^2) at irregular times t_i

trained by maximising the evidence lower bound
``E_q[sum_i log p(x_i | y(t_i))] - KL(q(y0) || p(y0)) - E_q[int 1/2 |(f_phi - h) / sigma|^2 dt]``, whose
last term is what ``sdekit.sdeint(..., logqp=True)`` returns. Gradients flow through the SDE solve by
the chosen ``adjoint=`` strategy (``--adjoint continuous`` by default: memory independent of the
number of steps).

Run: ``python examples/latent_sde.py [--iters 300] [--adjoint continuous|reversible|checkpointed|backprop]
[--out outputs/latent_sde.png]``. The default run takes well under two minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import sdekit  # noqa: E402

OBS_STD = 0.05


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` noisy samples of ``sin(2 pi t)`` at sorted uniform random times in ``[0, 1]``."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(n, generator=gen)).values
    t[0] = 0.0
    x = torch.sin(2 * math.pi * t) + OBS_STD * torch.randn(n, generator=gen)
    return t, x


class LatentSDE(torch.nn.Module):
    """Posterior drift ``f``, prior drift ``h`` and shared diffusion ``g`` (the logqp contract).

    With ``sde_type="stratonovich"`` (for ``--adjoint reversible``) the same process is written in
    Stratonovich form, which is identical here because ``g`` does not depend on ``y``."""

    noise_type = "diagonal"

    def __init__(self, theta: float = 1.0, mu: float = 0.0, sigma: float = 0.6, hidden: int = 64,
                 sde_type: str = "ito") -> None:
        super().__init__()
        self.sde_type = sde_type
        self.theta, self.mu, self.sigma = theta, mu, sigma
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden), torch.nn.Softplus(),
            torch.nn.Linear(hidden, hidden), torch.nn.Softplus(),
            torch.nn.Linear(hidden, 1),
        )
        torch.nn.init.zeros_(self.net[-1].weight)
        torch.nn.init.zeros_(self.net[-1].bias)
        self.q_mean = torch.nn.Parameter(torch.zeros(1))
        self.q_log_std = torch.nn.Parameter(torch.full((1,), -1.0))

    def f(self, t, y):  # posterior drift
        phase = 2 * math.pi * t
        features = torch.cat([torch.sin(phase).expand_as(y), torch.cos(phase).expand_as(y), y], dim=-1)
        return self.net(features)

    def h(self, t, y):  # prior drift
        return self.theta * (self.mu - y)

    def g(self, t, y):
        return torch.full_like(y, self.sigma)

    def sample_y0(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``y0 ~ q`` (reparametrised) and ``KL(q(y0) || N(0, 1))``."""
        std = self.q_log_std.exp()
        y0 = self.q_mean + std * torch.randn(batch, 1)
        kl = 0.5 * (std**2 + self.q_mean**2 - 1.0) - self.q_log_std
        return y0, kl.sum()


STRATEGIES = {
    "backprop": lambda: sdekit.Backprop(),
    "checkpointed": lambda: sdekit.Checkpointed(),
    "continuous": lambda: sdekit.ContinuousAdjoint(),
    "reversible": lambda: sdekit.ReversibleAdjoint(),
}


def train(args) -> tuple[LatentSDE, torch.Tensor, torch.Tensor]:
    torch.manual_seed(args.seed)
    t_obs, x_obs = make_data(args.points, args.seed)
    reversible = args.adjoint == "reversible"
    method = "reversible_heun" if reversible else "euler"
    model = LatentSDE(sde_type="stratonovich" if reversible else "ito")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.999)
    adjoint = STRATEGIES[args.adjoint]()
    start = time.perf_counter()
    for it in range(1, args.iters + 1):
        y0, kl0 = model.sample_y0(args.batch)
        ys, log_ratio = sdekit.sdeint(model, y0, t_obs, method=method, dt=args.dt, logqp=True,
                                      adjoint=adjoint)
        log_lik = -0.5 * ((x_obs - ys[..., 0].T) / OBS_STD) ** 2 - math.log(OBS_STD * math.sqrt(2 * math.pi))
        kl_path = log_ratio.sum(0).mean()
        kl_weight = min(1.0, it / (0.5 * args.iters))  # anneal the KL terms in over the first half
        loss = -log_lik.sum(1).mean() + kl_weight * (kl0 + kl_path)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if it % max(1, args.iters // 10) == 0 or it == 1:
            print(f"iter {it:5d}  loss {loss.item():10.2f}  log-lik {log_lik.sum(1).mean().item():9.2f}  "
                  f"KL path {kl_path.item():7.3f}  ({time.perf_counter() - start:5.1f} s)", flush=True)
    return model, t_obs, x_obs


@torch.no_grad()
def plot(model: LatentSDE, t_obs, x_obs, args) -> float:
    ts = torch.linspace(0.0, 1.0, 201)
    method = "reversible_heun" if args.adjoint == "reversible" else "euler"
    y0, _ = model.sample_y0(args.samples)
    posterior = sdekit.sdeint(model, y0, ts, method=method, dt=args.dt)[..., 0]  # (time, samples)
    prior_sde = sdekit.SDE(model.h, model.g, noise_type="diagonal", sde_type=model.sde_type)
    prior = sdekit.sdeint(prior_sde, torch.randn(args.samples, 1), ts, method=method, dt=args.dt)[..., 0]

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, paths, title in ((axes[0], posterior, "posterior samples"), (axes[1], prior, "prior samples")):
        lo, hi = torch.quantile(paths, torch.tensor([0.05, 0.95]), dim=1)
        ax.fill_between(ts, lo, hi, color="tab:blue", alpha=0.15, label="5-95% band")
        for k in range(min(20, args.samples)):
            ax.plot(ts, paths[:, k], color="tab:blue", lw=0.7, alpha=0.5)
        ax.scatter(t_obs, x_obs, color="black", s=14, zorder=3, label="observations")
        ax.set_title(title)
        ax.set_xlabel("t")
    axes[0].legend(loc="lower left")
    fig.suptitle(f"Latent SDE on an irregular noisy sine ({args.iters} iterations, adjoint={args.adjoint})")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    # How well the posterior mean follows the clean signal at the observation times.
    mean_at_obs = sdekit.sdeint(model, y0, t_obs, method=method, dt=args.dt)[..., 0].mean(1)
    return float((mean_at_obs - torch.sin(2 * math.pi * t_obs)).abs().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--adjoint", choices=sorted(STRATEGIES), default="continuous")
    parser.add_argument("--points", type=int, default=25, help="number of irregular observations")
    parser.add_argument("--batch", type=int, default=64, help="posterior sample paths per iteration")
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--samples", type=int, default=100, help="paths drawn for the plot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/latent_sde.png")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the tensors are small)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, t_obs, x_obs = train(args)
    error = plot(model, t_obs, x_obs, args)
    print(f"posterior mean vs sin(2 pi t) at the observation times: mean |error| {error:.3f}")
    print(f"wrote {args.out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
