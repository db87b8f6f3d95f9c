"""Despeckle 8x8 digits with a diffusion model of their log-intensity (Vuong & Nguyen 2024, arXiv 2408.10283).

The digits (embedded; nothing is downloaded) become positive intensities ``x = (d + 1.2) / 2.2`` in
``(0.09, 1]``; a small UNet learns ``u = log x`` under the log-domain GBM (``GBMSchedule``) with the stock loss
and trainer, then ``despeckle`` restores held-out digits under 4-look Gamma speckle with the reverse SDE (DDIM,
eta = 1) and, at equal NFE, the probability-flow ODE (DDIM, eta = 0).

    python examples/despeckle.py            # a few minutes on 2 CPU cores; --steps to change
"""

import argparse

import torch

from sdekit.data import load_dataset
from sdekit.diffusion import DDIM, DenoisingScoreMatching
from sdekit.editing import GammaSpeckle, GBMSchedule, despeckle
from sdekit.nn import UNet
from sdekit.train import TrainConfig, Trainer

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=800)
parser.add_argument("--looks", type=float, default=4.0)
args = parser.parse_args()


def intensity(d):  # [-1, 1] -> (0, 1]: speckle needs positive intensities
    return (d + 1.2) / 2.2


train, _ = load_dataset("digits", "train")                     # (1500, 1, 8, 8)
test, _ = load_dataset("digits", "heldout")
schedule = GBMSchedule()                                        # log-noise variance t in [1e-4, 2]
model = UNet(1, base_channels=16, channel_mults=(1, 2), seed=0)
loss = DenoisingScoreMatching(schedule, "eps", time_sampling="lognormal", time_input=schedule.log_time)
config = TrainConfig(steps=args.steps, batch_size=128, lr=2e-3, warmup_steps=50, lr_schedule="cosine",
                     ema_decay=0.995)
Trainer(model, loss, torch.log(intensity(train)), config).fit()

clean = intensity(test)
noise = GammaSpeckle(args.looks)                                # n ~ Gamma(L, 1/L): mean 1, variance 1/L
y = noise.apply(clean, torch.Generator().manual_seed(0))


def psnr(x):
    return (10 * torch.log10(1.0 / ((x.clamp(0, 1) - clean) ** 2).mean())).item()


print(f"L = {args.looks:g} looks, reverse process from t* = psi'(L) = {noise.log_variance:.3f}")
print(f"noisy                    PSNR {psnr(y):5.2f} dB")
with torch.no_grad():
    for name, solver in (("reverse SDE (DDIM eta=1)", DDIM(eta=1.0)), ("PF-ODE (DDIM eta=0)", DDIM())):
        x, info = despeckle(model, y, noise, schedule=schedule, solver=solver, steps=30,
                            time_input=schedule.log_time, generator=torch.Generator().manual_seed(1),
                            return_info=True)
        print(f"{name:24s} PSNR {psnr(x):5.2f} dB  (NFE {info.nfe})")
