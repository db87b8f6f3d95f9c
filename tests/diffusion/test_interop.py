"""diffusers interop: a small random UNet2DModel driven by sdekit samplers; sdekit's DDIM equals
diffusers' DDIMScheduler on the same network and timesteps; NFE is what the network saw."""

from __future__ import annotations

import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from sdekit.diffusion import DiffusersModel, DiscreteVP, from_diffusers, sample  # noqa: E402


def _unet(out_channels: int = 1):
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=out_channels, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()


class _CountingUNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.net(*args, **kwargs)


@pytest.fixture(scope="module")
def unet():
    return _unet()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_matches_diffusers_ddim_scheduler(unet, prediction_type):
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                                        set_alpha_to_one=False, timestep_spacing="trailing",
                                        prediction_type=prediction_type)
    model, schedule, prediction, time_input = from_diffusers(unet, scheduler)
    assert prediction == {"epsilon": "eps", "v_prediction": "v"}[prediction_type]
    x_T = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    scheduler.set_timesteps(10)
    x = x_T.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    # Step n sits at t = (n + 1) / N; the last diffusers step goes to alphas_cumprod[0] (t = 1 / N).
    ts = torch.tensor([(int(t) + 1) / 1000 for t in scheduler.timesteps] + [1 / 1000], dtype=torch.float64)
    with torch.no_grad():
        y, info = sample(model, schedule, x_T, solver="ddim", timesteps=ts, prediction=prediction,
                         time_input=time_input, return_info=True)
    assert info.nfe == 10 and y.shape == x_T.shape and y.dtype == x_T.dtype
    scale = x.abs().max()
    assert (x - y).abs().max() <= 1e-5 * scale, f"max |diff| {(x - y).abs().max():.3g} at scale {scale:.3g}"


def test_sdekit_samplers_drive_a_diffusers_unet_and_count_its_calls(unet):
    counting = _CountingUNet(unet)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    out = from_diffusers(counting, scheduler)
    assert isinstance(out, DiffusersModel) and isinstance(out.schedule, DiscreteVP)
    torch.testing.assert_close(out.schedule.alphas_cumprod, scheduler.alphas_cumprod.double())
    x_T = out.schedule.prior_sample((2, 1, 8, 8), torch.Generator().manual_seed(0))
    for solver, steps, nfe in (("dpm++2m", 6, 6), ("unipc", 5, 5), ("heun", 4, 7)):
        counting.calls = 0
        with torch.no_grad():
            x, info = sample(out.model, out.schedule, x_T, solver=solver, steps=steps, prediction=out.prediction,
                             time_input=out.time_input, timesteps="logsnr", return_info=True)
        assert x.shape == x_T.shape and bool(torch.isfinite(x).all())
        assert info.nfe == counting.calls == nfe, solver


def test_config_dicts_learned_variance_and_errors(unet, monkeypatch):
    scheduler = diffusers.DDIMScheduler(beta_schedule="scaled_linear", prediction_type="sample")
    a = from_diffusers(unet, dict(scheduler.config))
    b = from_diffusers(unet, scheduler)
    torch.testing.assert_close(a.schedule.alphas_cumprod, b.schedule.alphas_cumprod)
    assert a.prediction == "x0"
    assert from_diffusers(unet, scheduler, prediction_type="epsilon").prediction == "eps"
    # A network that also predicts a variance (2C channels): the mean half is used.
    wide = from_diffusers(_unet(out_channels=2), scheduler)
    out = wide.model(torch.zeros(2, 1, 8, 8), torch.tensor([10.0, 500.0]))
    assert out.shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="prediction_type"):
        from_diffusers(unet, scheduler, prediction_type="flow")
    with pytest.raises(TypeError, match="scheduler"):
        from_diffusers(unet, 3)
    with pytest.raises(TypeError, match="callable"):
        from_diffusers("unet", scheduler)
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ImportError, match="pip install diffusers"):
        from_diffusers(unet, dict(scheduler.config))
