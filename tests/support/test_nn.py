"""Reference networks: shapes, seeded construction, conditioning, argument errors, a few training steps."""

from __future__ import annotations

import pytest
import torch

from sdekit.nn import FourierEmbedding, MLPDenoiser, SinusoidalEmbedding, TimeMLP, UNet


def test_mlp_shapes_and_time_forms():
    net = MLPDenoiser(3, hidden=32, depth=2, emb_dim=16, seed=0)
    x = torch.randn(5, 3)
    y = net(x, torch.rand(5))
    assert y.shape == (5, 3)
    torch.testing.assert_close(net(x, 0.3), net(x, torch.full((5,), 0.3)))
    torch.testing.assert_close(net(x, torch.tensor(0.3)), net(x, 0.3))
    assert TimeMLP is MLPDenoiser


def test_mlp_is_deterministic_under_a_seed_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = MLPDenoiser(2, seed=11)
    assert torch.equal(state, torch.get_rng_state())
    b = MLPDenoiser(2, seed=11)
    c = MLPDenoiser(2, seed=12)
    for (ka, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), ka
    assert not torch.equal(a.inp.weight, c.inp.weight)


def test_mlp_class_conditioning():
    net = MLPDenoiser(2, hidden=16, depth=1, emb_dim=8, num_classes=3, seed=0)
    x, t = torch.randn(4, 2), torch.rand(4)
    y0 = net(x, t, class_labels=torch.tensor([0, 0, 0, 0]))
    y1 = net(x, t, class_labels=torch.tensor([1, 1, 1, 1]))
    assert not torch.allclose(y0, y1)
    torch.testing.assert_close(net(x, t), net(x, t, class_labels=torch.full((4,), 3)))  # 3 = no label
    with pytest.raises(ValueError, match="class_labels must lie in"):
        net(x, t, class_labels=torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="without num_classes"):
        MLPDenoiser(2, seed=0)(x, t, class_labels=torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize(
    "shape,mults", [((2, 1, 8, 8), (1, 2)), ((2, 3, 16, 16), (1, 2)), ((2, 3, 32, 32), (1, 2, 2))]
)
def test_unet_shapes(shape, mults):
    net = UNet(shape[1], base_channels=16, channel_mults=mults, seed=0)
    assert net(torch.randn(shape), torch.rand(shape[0])).shape == shape


def test_unet_conditioning_attention_and_determinism():
    net = UNet(1, base_channels=16, channel_mults=(1, 2), num_classes=10, attention=True, seed=5)
    twin = UNet(1, base_channels=16, channel_mults=(1, 2), num_classes=10, attention=True, seed=5)
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    labels = torch.tensor([1, 2, 10])
    assert torch.equal(net(x, t, class_labels=labels), twin(x, t, class_labels=labels))
    assert not torch.allclose(net(x, t, class_labels=labels), net(x, t))


def test_unet_argument_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        UNet(1, base_channels=12, groups=8)
    with pytest.raises(ValueError, match="divisible by 2"):
        UNet(1, base_channels=16, channel_mults=(1, 2), seed=0)(torch.randn(1, 1, 7, 7), torch.rand(1))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, H, W\)"):
        UNet(1, base_channels=16, seed=0)(torch.randn(1, 3, 8, 8), torch.rand(1))
    with pytest.raises(TypeError, match="in_channels"):
        UNet(1.5)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(2,\)"):
        MLPDenoiser(2, seed=0)(torch.randn(2, 2), torch.rand(3))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        MLPDenoiser(2, seed=0)(torch.randn(2, 3), torch.rand(2))
    with pytest.raises(ValueError, match="time_embedding"):
        MLPDenoiser(2, time_embedding="learned")


def test_embeddings():
    t = torch.linspace(0, 1, 7)
    e = SinusoidalEmbedding(8)(t)
    assert e.shape == (7, 8)
    torch.testing.assert_close(e[:, :4] ** 2 + e[:, 4:] ** 2, torch.ones(7, 4))
    torch.manual_seed(0)
    assert FourierEmbedding(6)(t).shape == (7, 6)
    with pytest.raises(ValueError, match="even"):
        SinusoidalEmbedding(5)


@pytest.mark.parametrize("make,shape", [
    (lambda: MLPDenoiser(2, hidden=32, depth=2, emb_dim=16, seed=0), (64, 2)),
    (lambda: UNet(1, base_channels=8, channel_mults=(1, 2), groups=4, seed=0), (16, 1, 8, 8)),
])
def test_networks_learn_a_fixed_target(make, shape):
    net = make().double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.rand(shape[0], generator=g, dtype=torch.float64)
    target = torch.tanh(x) * t.reshape(-1, *([1] * (x.dim() - 1)))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = ((net(x, t) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
