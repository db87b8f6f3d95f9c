"""Reflected diffusion on [0, 1]^2 (Lou & Ermon, ICML 2023): train a class-conditional score model against the
reflected heat kernel's score, then sample with reflected Euler-Maruyama and classifier-free guidance. Every
sample lies in the box by construction; a thresholded VE model is the baseline.

    python examples/reflected.py        # about 30 s on 2 cores
"""

from __future__ import annotations

import torch

from sdekit.diffusion import VE, EulerMaruyama, sample
from sdekit.domains import Box, ClassifierFreeGuidance, LabelDropout, ReflectedSampler, ReflectedScoreMatching
from sdekit.nn import MLPDenoiser
from sdekit.train import TrainConfig, Trainer

torch.manual_seed(0)
box = Box(0.0, 1.0)                      # or Box([lo_1, lo_2], [hi_1, hi_2])
schedule = VE(sigma_min=0.01, sigma_max=5.0)

# two classes pressed against opposite faces: Beta(1.2, 12) and Beta(12, 1.2) in x1, Beta(2, 2) in x2
beta = torch.distributions.Beta
n = 4000
x_left = torch.stack([beta(1.2, 12.0).sample((n,)), beta(2.0, 2.0).sample((n,))], 1)
x_right = torch.stack([beta(12.0, 1.2).sample((n,)), beta(2.0, 2.0).sample((n,))], 1)
data = torch.cat([x_left, x_right]).double()
labels = torch.cat([torch.zeros(n), torch.ones(n)]).long()

# score matching against the reflected kernel; label dropout 0.2 (label 2 = "no class") for guidance
loss = LabelDropout(ReflectedScoreMatching(schedule, box), p=0.2, null_label=2)
model = MLPDenoiser(2, hidden=64, depth=3, num_classes=2, seed=0).double()
trainer = Trainer(model, loss, data, TrainConfig(steps=800, batch_size=512, lr=2e-3, progress=False), labels=labels)
trainer.fit()

# reflected Euler-Maruyama from the uniform prior, guidance weight 3, 50 steps (every step reflected, the last too)
want = torch.zeros(2000, dtype=torch.long)                              # class 0: the left face
guided = ClassifierFreeGuidance(trainer.ema_model, schedule, want, null_label=2, weight=3.0)
with torch.no_grad():
    x = sample(guided, schedule, box.uniform((2000, 2), dtype=torch.float64),
               solver=ReflectedSampler(EulerMaruyama(), box), steps=50)

print(f"all samples in the box: {bool(box.contains(x).all())}")
print(f"mean x1 of class 0: {x[:, 0].mean():.3f} (data {x_left[:, 0].mean():.3f})")
print(f"mass within 0.02 of the boundary: {(box.boundary_distance(x) < 0.02).double().mean():.3f} "
      f"(data {(box.boundary_distance(x_left.double()) < 0.02).double().mean():.3f})")
