"""Must-show 4 of issue 13: SDE-Drag on 8x8 digits (Nie et al., ICLR 2024, arXiv 2311.01410, SDE-Drag).

Trains the class-conditional UNet of ``examples/digits_unet.py`` (CosineVP, v-prediction, 1500 steps; about
8 minutes on one loaded CPU core: the training time is at the top of the results), then drags a stroke end of
held-out digits: the source is the top-most ink pixel (value > 0.5; the leftmost on ties), the target 2 or 3
pixels to the side with room (0, +-2) / (0, +-3); a 3x3 patch (radius 1) is moved; the region allowed to
change is the box around source and target grown by 2 pixels. ``sdekit.editing.drag`` with DDIM(eta=1)
(Cycle-SDE inversion, the SDE version) against DDIM(eta=0) with DDIM inversion (the ODE version) at equal NFE
(t0 = 0.6 of the interval, 50 steps each way per increment; 2-pixel drags take one increment, 3-pixel drags
two). Per method, mean and spread over 3 seeds (inversion and patch noise; the model is trained once):

* faithfulness: MSE between the final 3x3 target patch and the original source patch (lower: the content
  moved), beside the same number for the unedited digit;
* realism: mean log-likelihood (per image, nats) under a 10-component full-covariance Gaussian mixture fitted
  with scikit-learn on the 1500 flattened training digits, and the distance to the nearest training digit
  (both beside the unedited held-out digits and a naive pixel copy-paste).

    python benchmarks/methods/drag.py           # ~10 minutes on one core (mostly training)
    python benchmarks/methods/drag.py --quick   # < 60 s: 40 training steps, 8 drags, 10 steps (checked by a test)
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import describe, emit  # noqa: E402

from sdekit.data import load_dataset  # noqa: E402
from sdekit.diffusion import DDIM, CosineVP, DenoisingScoreMatching  # noqa: E402
from sdekit.editing import drag  # noqa: E402
from sdekit.nn import UNet  # noqa: E402
from sdekit.train import TrainConfig, Trainer  # noqa: E402

RADIUS = 1


def train(steps: int) -> tuple[torch.nn.Module, CosineVP, torch.Tensor, float]:
    images, labels = load_dataset("digits", "train")
    schedule = CosineVP()
    model = UNet(1, base_channels=32, channel_mults=(1, 2), num_classes=10, seed=0)
    loss = DenoisingScoreMatching(schedule, prediction="v")
    config = TrainConfig(steps=steps, batch_size=128, lr=1e-3, warmup_steps=min(100, steps // 4),
                         lr_schedule="cosine", progress=False)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = Trainer(model, loss, images, config, labels=labels, label_key="class_labels", out_dir=out_dir)
        trainer.fit()
        ema = trainer.ema_model.eval()
    return ema, schedule, images, time.perf_counter() - start


def drags(x: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source: the top-most ink pixel (leftmost on ties); target: ``length`` pixels right, or left when
    there is no room. ``x: (batch, 1, 8, 8)`` -> ``(batch, 2)`` each."""
    ink = x[:, 0] > 0.5
    width = x.shape[-1]
    order = torch.arange(64).view(8, 8).expand_as(ink)
    first = torch.where(ink, order, 64).flatten(1).amin(1)
    src = torch.stack([first // width, first % width], dim=1)
    step = torch.where(src[:, 1] + length <= width - 1, length, -length)
    tgt = src + torch.stack([torch.zeros_like(step), step], dim=1)
    return src, tgt


def patch(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3x3 patch around ``c`` (clipped at the border: the clipped part is zero-weighted) -> ``(batch, 9)``
    and its validity mask."""
    b = x.shape[0]
    off = torch.arange(-RADIUS, RADIUS + 1)
    rows = (c[:, 0, None, None] + off[None, :, None]).expand(b, 3, 3)
    cols = (c[:, 1, None, None] + off[None, None, :]).expand(b, 3, 3)
    valid = (rows >= 0) & (rows < 8) & (cols >= 0) & (cols < 8)
    vals = x[torch.arange(b)[:, None, None], 0, rows.clamp(0, 7), cols.clamp(0, 7)]
    return torch.where(valid, vals, 0.0).flatten(1), valid.flatten(1)


def region(src: torch.Tensor, tgt: torch.Tensor, grow: int = 2) -> torch.Tensor:
    lo, hi = torch.minimum(src, tgt) - grow, torch.maximum(src, tgt) + grow
    r, c = torch.arange(8).view(1, 8, 1), torch.arange(8).view(1, 1, 8)
    box = (r >= lo[:, 0, None, None]) & (r <= hi[:, 0, None, None]) & (c >= lo[:, 1, None, None]) \
        & (c <= hi[:, 1, None, None])
    return box[:, None].float()


def naive_copy(x: torch.Tensor, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    vals, valid = patch(x, src)
    off = torch.arange(-RADIUS, RADIUS + 1)
    for i in range(x.shape[0]):  # reference only, 9 pixels per image
        k = 0
        for dr in off.tolist():
            for dc in off.tolist():
                r, c = int(tgt[i, 0]) + dr, int(tgt[i, 1]) + dc
                if valid[i, k] and 0 <= r < 8 and 0 <= c < 8:
                    out[i, 0, r, c] = vals[i, k]
                k += 1
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--png", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train_steps, n_drags, steps, seeds = (40, 8, 10, [0, 1, 2]) if args.quick else (1500, 32, 50, [0, 1, 2])
    model, schedule, train_images, train_seconds = train(train_steps)

    from sklearn.mixture import GaussianMixture as SkGMM

    flat_train = train_images.flatten(1).double().numpy()
    gmm = SkGMM(n_components=10, covariance_type="full", reg_covar=1e-3, random_state=0).fit(flat_train)
    train_flat = train_images.flatten(1)

    def realism(x: torch.Tensor) -> tuple[float, float]:
        ll = float(gmm.score_samples(x.flatten(1).double().numpy()).mean())
        nn_dist = float(torch.cdist(x.flatten(1), train_flat).amin(1).mean())
        return ll, nn_dist

    test, labels = load_dataset("digits", "heldout")
    assert labels is not None
    x, y = test[:n_drags], labels[:n_drags]
    half = n_drags // 2
    groups = []  # (images, labels, src, tgt): one batch per drag length (equal increments per batch)
    for lo, hi, length in ((0, half, 2), (half, n_drags, 3)):
        s, t = drags(x[lo:hi], length)
        groups.append((x[lo:hi], y[lo:hi], s, t))
    src = torch.cat([g[2] for g in groups])
    tgt = torch.cat([g[3] for g in groups])
    src_patch, valid = patch(x, src)
    valid = valid & patch(x, tgt)[1]  # pixels of the square inside the image around both points

    def faithfulness(out: torch.Tensor) -> float:
        tp, _ = patch(out, tgt)
        return float((((tp - src_patch) ** 2) * valid).sum() / valid.sum())

    methods = {"SDE (DDIM eta=1, Cycle-SDE)": DDIM(eta=1.0), "ODE (DDIM eta=0, DDIM inversion)": DDIM(eta=0.0)}
    results: dict[str, list[dict]] = {m: [] for m in methods}
    pictures: dict[str, torch.Tensor] = {}
    nfe: dict[str, int] = {}
    for name, solver in methods.items():
        for seed in seeds:
            g = torch.Generator().manual_seed(seed)
            outs, calls = [], 0
            with torch.no_grad():
                for xs, ys, s, t in groups:
                    out, info = drag(model, schedule, xs, s, t, steps=steps, solver=solver, radius=RADIUS,
                                     mask=region(s, t), prediction="v", generator=g,
                                     model_kwargs={"class_labels": ys}, return_info=True)
                    outs.append(out)
                    calls += info.nfe
            out = torch.cat(outs).clamp(-1, 1)
            ll, nn_dist = realism(out)
            results[name].append({"mse": faithfulness(out), "ll": ll, "nn": nn_dist})
            nfe[name] = calls
            if seed == seeds[0]:
                pictures[name] = out
    ref_ll, ref_nn = realism(x)
    naive = naive_copy(x, src, tgt)
    naive_ll, naive_nn = realism(naive)
    seconds = time.perf_counter() - start

    def stat(name: str, key: str) -> tuple[float, float]:
        v = torch.tensor([r[key] for r in results[name]])
        return float(v.mean()), float(v.std())

    rows = []
    for name in methods:
        (m_mse, s_mse), (m_ll, s_ll), (m_nn, s_nn) = stat(name, "mse"), stat(name, "ll"), stat(name, "nn")
        rows.append(f"| {name} | {nfe[name]} | {m_mse:.3f} +- {s_mse:.3f} | {m_ll:.1f} +- {s_ll:.1f} | "
                    f"{m_nn:.3f} +- {s_nn:.3f} |")
    rows.append(f"| unedited held-out digits | 0 | {faithfulness(x):.3f} | {ref_ll:.1f} | {ref_nn:.3f} |")
    rows.append(f"| naive pixel copy-paste | 0 | {faithfulness(naive):.3f} | {naive_ll:.1f} | {naive_nn:.3f} |")
    sde, ode = list(methods)
    sde_ll, ode_ll = stat(sde, "ll")[0], stat(ode, "ll")[0]
    sde_mse, ode_mse = stat(sde, "mse")[0], stat(ode, "mse")[0]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    png = args.png or (None if args.quick else str(Path(__file__).resolve().parents[1] / "results" / "drag.png"))
    lines = ["# SDE-Drag on 8x8 digits (issue 13, must-show 4)", "",
             f"Training: {train_steps} steps of the `examples/digits_unet.py` UNet took **{train_seconds:.0f} s**; "
             f"total wall time {seconds:.0f} s.", "",
             f"Generated by `benchmarks/methods/drag.py{' --quick' if args.quick else ''}` on {now}; machine: "
             f"{describe()}.", "",
             f"{n_drags} held-out digits, the top-most ink pixel dragged 2 (first half) or 3 (second half) pixels "
             f"sideways, 3x3 patch, region allowed to change: the box around source and target grown by 2 pixels; "
             f"t0 = 0.6 of the interval, {steps} steps per increment; mean +- std over seeds {seeds}. NFE: model "
             "calls for all drags (inversion + reverse), equal for both methods. Patch MSE: final target patch vs "
             "the original source patch (lower = the content moved). GMM log-lik.: mean per image under a "
             "10-component Gaussian mixture fitted on the training digits (higher = more realistic); NN dist.: "
             "mean Euclidean distance to the nearest training digit (lower = more realistic).", "",
             "| method | NFE | patch MSE | GMM log-lik. | NN dist. |", "|---|---|---|---|---|", *rows, "",
             f"SDE vs ODE: patch MSE {sde_mse:.3f} vs {ode_mse:.3f} ({'SDE' if sde_mse < ode_mse else 'ODE'} moves "
             f"the content more faithfully); GMM log-lik. {sde_ll:.1f} vs {ode_ll:.1f} "
             f"({'SDE' if sde_ll > ode_ll else 'ODE'} more realistic).", "",
             "Paper (DragBench, SD1.5 with LoRA, their Table/Figure of user preference): SDE-Drag is preferred to "
             "the ODE version and to DragDiffusion; no comparable number exists for digits."]
    if png:
        lines += ["", f"![drags]({Path(png).name}) (top: original with source (red) and target (green); then SDE, "
                      "then ODE; seed 0)"]
        _figure(x, pictures[sde], pictures[ode], src, tgt, png)
    out_md = args.out or (None if args.quick else str(Path(__file__).resolve().parents[1] / "results" / "drag.md"))
    emit(lines, out_md)
    summary = {"sde_mse": sde_mse, "ode_mse": ode_mse, "sde_ll": sde_ll, "ode_ll": ode_ll,
               "sde_nn": stat(sde, "nn")[0], "ode_nn": stat(ode, "nn")[0], "sde_nfe": nfe[sde], "ode_nfe": nfe[ode],
               "unedited_mse": faithfulness(x), "train_seconds": train_seconds,
               "seconds": seconds}
    print("RESULT " + json.dumps(summary))
    return summary


def _figure(x, sde, ode, src, tgt, path: str, columns: int = 16) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(columns, x.shape[0])
    idx = torch.linspace(0, x.shape[0] - 1, n).round().long()
    fig, axes = plt.subplots(3, n, figsize=(n * 0.8, 2.6))
    for j, i in enumerate(idx.tolist()):
        for r, img in enumerate((x, sde, ode)):
            ax = axes[r, j]
            ax.imshow(img[i, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.plot(int(src[i, 1]), int(src[i, 0]), "r.", ms=6)
                ax.plot(int(tgt[i, 1]), int(tgt[i, 0]), "g.", ms=6)
        axes[0, 0].set_ylabel("before", fontsize=7)
        axes[1, 0].set_ylabel("SDE", fontsize=7)
        axes[2, 0].set_ylabel("ODE", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
