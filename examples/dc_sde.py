"""A directed-chain SDE generator of opinion-dynamics paths, trained by the signature MMD, sampled by chaining.

    python examples/dc_sde.py       # about 10 s of CPU on one core
"""

import torch
from scipy.stats import wasserstein_distance

from sdekit.timeseries import DirectedChainSDE, SignatureMMDLoss, opinion_dynamics
from sdekit.train import TrainConfig, Trainer

torch.set_num_threads(1)
torch.manual_seed(0)
ts, train = opinion_dynamics(512, steps=50, seed=0)  # (51,), (512, 51, 1): one system of agents
_, test = opinion_dynamics(512, steps=50, seed=1)  # an independent system, held out

model = DirectedChainSDE(1, noise=3, width=64)
config = TrainConfig(steps=100, batch_size=64, lr=3e-3, lr_schedule="cosine", ema_decay=None, progress=False)
Trainer(model, SignatureMMDLoss(ts, depth=6), train, config).fit()

# walk the chain: the first link is driven by training paths, each next link by the previous one
x0 = torch.stack([test[torch.randperm(512), 0] for _ in range(3)])  # (3 links, 512, 1) initial values
with torch.no_grad():
    fake = model.chain(ts, x0, start=train)[-1]
for t in (0.3, 0.5, 1.0):
    k = int(torch.argmin((ts - t).abs()))
    w1 = wasserstein_distance(fake[:, k, 0].numpy(), test[:, k, 0].numpy())
    print(f"t = {t}: W1 to held-out marginal {w1:.3f}")
