"""A class-conditional UNet on scikit-learn's 8x8 digits (embedded; nothing is downloaded), sampled
with DDIM for every label and written as an image grid.

    python examples/digits_unet.py            # a few minutes on 2 CPU cores; --steps to change
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from sdekit.data import load_dataset  # noqa: E402
from sdekit.diffusion import DDIM, CosineVP, DenoisingScoreMatching, sample  # noqa: E402
from sdekit.nn import UNet  # noqa: E402
from sdekit.train import TrainConfig, Trainer  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=1500)
parser.add_argument("--out", default="outputs/digits")
args = parser.parse_args()

images, labels = load_dataset("digits", "train")  # (1500, 1, 8, 8) in [-1, 1], labels 0..9
schedule = CosineVP()
model = UNet(1, base_channels=32, channel_mults=(1, 2), num_classes=10, seed=0)
loss = DenoisingScoreMatching(schedule, prediction="v")
config = TrainConfig(steps=args.steps, batch_size=128, lr=1e-3, warmup_steps=100, lr_schedule="cosine")
trainer = Trainer(model, loss, images, config, labels=labels, label_key="class_labels", out_dir=args.out)
trainer.fit()

wanted = torch.arange(10).repeat_interleave(10)  # ten of each digit
x_T = schedule.prior_sample((100, 1, 8, 8), torch.Generator().manual_seed(0))
with torch.no_grad():
    x = sample(trainer.ema_model, schedule, x_T, solver=DDIM(), steps=50, prediction="v",
               model_kwargs={"class_labels": wanted})
Path(args.out).mkdir(parents=True, exist_ok=True)
fig, axes = plt.subplots(10, 10, figsize=(6, 6))
for ax, img in zip(axes.flat, x.clamp(-1, 1)):
    ax.imshow(img[0].numpy(), cmap="gray", vmin=-1, vmax=1)
    ax.axis("off")
fig.savefig(Path(args.out) / "digits.png", dpi=100)
print(f"wrote {args.out}/digits.png and a checkpoint in {args.out}")
