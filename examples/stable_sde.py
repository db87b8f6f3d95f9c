"""A stable neural SDE (LNSDE) classifying ItalyPowerDemand with half of every series missing.

    pip install 'sdekit[timeseries]'    # sktime's bundled UCR/UEA sets, no download
    python examples/stable_sde.py       # about 20 s on one CPU core
"""

import torch

from sdekit.timeseries import (
    LNSDE,
    PathClassifier,
    classification_loss,
    control_path,
    drop_observations,
    load_bundled,
    normalise,
)
from sdekit.train import TrainConfig, Trainer

torch.set_num_threads(1)
torch.manual_seed(0)
x_train, y_train, classes = load_bundled("ItalyPowerDemand", "train")  # (67, 24, 1)
x_test, y_test, _ = load_bundled("ItalyPowerDemand", "test")  # (1029, 24, 1)

# drop 50 % of the time points of every series (NaN), then a natural cubic spline of [t, x, observation count]
train = control_path(drop_observations(normalise(x_train), 0.5, seed=0)).pack()
test = control_path(drop_observations(normalise(x_test, x_train), 0.5, seed=1)).pack()

channels = (train.shape[-1] - 1) // 4  # time, value, cumulative count
model = PathClassifier(LNSDE(channels, hidden=16, width=32), outputs=len(classes), dt=0.04)
config = TrainConfig(steps=300, batch_size=32, lr=5e-3, grad_clip=None, ema_decay=None, progress=False)
Trainer(model, classification_loss, train, config, labels=y_train).fit()

model.eval()
with torch.no_grad():
    accuracy = (model(test).argmax(-1) == y_test).float().mean().item()
print(f"LNSDE test accuracy with 50 % missing: {accuracy:.3f} (chance 0.5)")
