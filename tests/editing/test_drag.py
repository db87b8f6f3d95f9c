"""SDE-Drag (sdekit.editing.drag): Cycle-SDE exactness of a zero-length drag, the latent copy/paste, the
number of increments (model calls), the region outside the mask, refusals."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit import diffusion as dm
from sdekit.editing import DragInfo, drag
from sdekit.editing.drag import _copy_paste

H = W = 6


def _oracle(schedule, n=16, seed=0):
    """The exact denoiser of the empirical law of ``n`` random 1x6x6 images (float64)."""
    data = EMP_DATA(n, seed)
    return dm.EmpiricalData(data).as_denoiser(schedule), data


def EMP_DATA(n, seed):  # noqa: N802
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, H, W, generator=g, dtype=torch.float64).tanh()


def _images(b=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, H, W, generator=g, dtype=torch.float64).tanh()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("solver", [dm.DDIM(eta=1.0), dm.SDEDPMSolverPP()], ids=["ddim-eta1", "sde-dpm++2m"])
@pytest.mark.parametrize("full_mask", [False, True])
def test_zero_length_drag_reconstructs_exactly_under_cycle_sde(solver, full_mask):
    schedule = dm.VP()
    model, _ = _oracle(schedule)
    x = _images()
    p = torch.tensor([[1, 2], [3, 3], [0, 5], [5, 0]])
    mask = torch.ones(1, H, W) if full_mask else None  # everything may change: no reset, exactness is Cycle-SDE's
    out, info = drag(model, schedule, x, p, p, steps=12, solver=solver, mask=mask,
                     generator=torch.Generator().manual_seed(2), return_info=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert info.increments == 1 and info.nfe == 2 * 12
    assert _rel(out, x) < 1e-10
    # not vacuous: the ODE baseline (DDIM inversion) does not return x exactly, and a real drag changes x
    ode = drag(model, schedule, x, p, p, steps=12, solver="ddim", mask=mask)
    assert _rel(ode, x) > 1e-6
    moved = drag(model, schedule, x, p, p.flip(-1), steps=12, solver=solver, generator=torch.Generator().manual_seed(2))
    assert _rel(moved, x) > 1e-2


def test_copy_paste_is_the_papers_latent_edit():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 2, 7, 7, generator=g, dtype=torch.float64)
    a = torch.tensor([[[3, 2]], [[0, 0]], [[4, 4]]])
    b = torch.tensor([[[3, 4]], [[2, 1]], [[4, 4]]])  # image 2 does not move
    out = _copy_paste(z, a, b, 1, 1.0, 1.1, None)  # source_scale 1: the source square keeps its values
    # image 0: target square rows 2..4, cols 3..5 <- 1.1 x source rows 2..4, cols 1..3
    assert torch.allclose(out[0, :, 2:5, 3:6], 1.1 * z[0, :, 2:5, 1:4])
    rest = torch.ones(7, 7, dtype=torch.bool)
    rest[2:5, 3:6] = False
    assert torch.equal(out[0][:, rest], z[0][:, rest])
    # image 1: the square is clipped at the border (source at the corner): rows/cols 0..1 of the source
    assert torch.allclose(out[1, :, 2:4, 1:3], 1.1 * z[1, :, 0:2, 0:2])
    assert torch.equal(out[1, :, 4:, :], z[1, :, 4:, :]) and torch.equal(out[1, :, 0:2, :], z[1, :, 0:2, :])
    assert torch.equal(out[2], z[2])
    # source_scale 0: the source square (outside the target) is fresh N(0, 1) noise, independent of z
    out0 = _copy_paste(z, a, b, 1, 0.0, 1.1, torch.Generator().manual_seed(5))
    out0b = _copy_paste(2 * z, a, b, 1, 0.0, 1.1, torch.Generator().manual_seed(5))
    assert torch.equal(out0[0, :, 2:5, 1:3], out0b[0, :, 2:5, 1:3])
    assert not torch.allclose(out0[0, :, 2:5, 1:3], z[0, :, 2:5, 1:3])
    # the paper's mix: rho z + sqrt(1 - rho^2) xi with the same xi
    out3 = _copy_paste(z, a, b, 1, 0.3, 1.1, torch.Generator().manual_seed(5))
    assert torch.allclose(out3[0, :, 2:5, 1:3], 0.3 * z[0, :, 2:5, 1:3] + math.sqrt(0.91) * out0[0, :, 2:5, 1:3])


def test_increments_are_round_half_of_the_longest_drag():
    schedule = dm.VP()
    oracle = dm.EmpiricalData(EMP_DATA(16, 0))
    calls = [0]

    def model(x, t):
        calls[0] += 1
        return oracle.denoiser(x, t, schedule)

    x = _images(b=5)
    source = torch.tensor([[0, 0], [0, 0], [0, 0], [0, 0], [0, 0]])
    target = torch.tensor([[0, 0], [3, 0], [0, 5], [3, 4], [1, 1]])  # |d| = 0, 3, 5, 5, 1.41
    out, info = drag(model, schedule, x, source, target, steps=5, prediction="x0", return_info=True,
                     generator=torch.Generator().manual_seed(0))
    assert isinstance(info, DragInfo)
    assert info.per_image.tolist() == [1, 2, 3, 3, 1]  # max(1, round(|d| / 2)), half up
    assert info.increments == 3 and info.nfe == 3 * 2 * 5 == calls[0]
    # several points per image: the longest counts
    pts_s = torch.tensor([[[0, 0], [5, 5]]]).expand(2, 2, 2)
    pts_t = torch.tensor([[[0, 1], [1, 5]], [[0, 0], [5, 5]]])
    _, info2 = drag(model, schedule, x[:2], pts_s, pts_t, steps=3, prediction="x0", return_info=True)
    assert info2.per_image.tolist() == [2, 1]


@pytest.mark.parametrize("solver", [dm.DDIM(eta=1.0), "ddim"], ids=["sde", "ode"])
def test_outside_the_mask_is_unchanged(solver):
    schedule = dm.VP()
    model, _ = _oracle(schedule)
    x = _images()
    mask = torch.zeros(4, 1, H, W)
    mask[:, :, 1:5, 1:5] = 1  # allowed to change
    source, target = torch.tensor([2, 2]), torch.tensor([2, 4])
    out = drag(model, schedule, x, source, target, steps=8, solver=solver, mask=mask, t0=0.7,
               generator=torch.Generator().manual_seed(3))
    outside = mask == 0
    assert (out - x)[outside].abs().max().item() < 1e-12
    assert (out - x)[~outside].abs().max().item() > 1e-2  # the edited region did change
    # without the mask the outside changes as well
    free = drag(model, schedule, x, source, target, steps=8, solver=solver, t0=0.7,
                generator=torch.Generator().manual_seed(3))
    assert (free - x)[outside].abs().max().item() > 1e-3


def test_default_t0_is_point_six_of_the_interval():
    schedule = dm.VP()
    model, _ = _oracle(schedule)
    _, info = drag(model, schedule, _images(b=1), torch.tensor([1, 1]), torch.tensor([1, 2]), steps=4,
                   return_info=True)
    assert info.times[0].item() == pytest.approx(schedule.t_min + 0.6 * (schedule.t_max - schedule.t_min))
    assert info.times[-1].item() == pytest.approx(schedule.t_min)


def test_refusals():
    schedule = dm.VP()
    model, _ = _oracle(schedule)
    x = _images(b=2)
    ok = torch.tensor([1, 1])
    with pytest.raises(ValueError, match="source must lie inside the image"):
        drag(model, schedule, x, torch.tensor([[1, 1], [6, 0]]), ok, steps=2)
    with pytest.raises(ValueError, match="target must lie inside the image"):
        drag(model, schedule, x, ok, torch.tensor([0, -1]), steps=2)
    with pytest.raises(TypeError, match="source must hold integer"):
        drag(model, schedule, x, torch.tensor([1.0, 1.0]), ok, steps=2)
    with pytest.raises(ValueError, match="target must have shape"):
        drag(model, schedule, x, ok, torch.tensor([[1, 1], [1, 1], [1, 1]]), steps=2)
    with pytest.raises(ValueError, match="source and target must have the same shape"):
        drag(model, schedule, x, torch.ones(2, 2, 2, dtype=torch.long), torch.ones(2, 3, 2, dtype=torch.long), steps=2)
    for t0 in (0.0, 1.5, schedule.t_min):
        with pytest.raises(ValueError, match="t0 must lie in"):
            drag(model, schedule, x, ok, ok, steps=2, t0=t0)
    with pytest.raises(ValueError, match="mask must have the shape"):
        drag(model, schedule, x, ok, ok, steps=2, mask=torch.ones(H, W))
    with pytest.raises(ValueError, match="mask must be binary"):
        drag(model, schedule, x, ok, ok, steps=2, mask=torch.full((1, H, W), 0.5))
    with pytest.raises(ValueError, match="radius"):
        drag(model, schedule, x, ok, ok, steps=2, radius=-1)
    with pytest.raises(ValueError, match="x must have at least 3"):
        drag(model, schedule, x[:, 0, 0], ok, ok, steps=2)
    with pytest.raises(ValueError, match="source_scale"):
        drag(model, schedule, x, ok, ok, steps=2, source_scale=1.5)


@pytest.mark.slow
def test_benchmark_quick_runs_and_writes_its_report(tmp_path):
    """benchmarks/methods/drag.py --quick (40 training steps: the model is barely trained, so the SDE-vs-ODE
    direction of the full run is not asserted here): the pipeline runs, writes the report and the PNG, both
    methods spend the same model calls, and both move the dragged content (the target patch is closer to the
    source patch than in the unedited digits)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks/methods/drag.py"
    out = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path / "drag.md"),
                          "--png", str(tmp_path / "drag.png")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert (tmp_path / "drag.md").read_text().startswith("# SDE-Drag on 8x8 digits")
    assert (tmp_path / "drag.png").stat().st_size > 1000
    assert res["sde_nfe"] == res["ode_nfe"] > 0
    assert res["sde_mse"] < res["unedited_mse"] and res["ode_mse"] < res["unedited_mse"]
