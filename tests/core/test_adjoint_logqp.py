"""sdeint(..., logqp=True): the KL path term of latent SDEs, in closed form and through every adjoint."""

import pytest
import torch

import sdekit
from sdekit import BrownianPath, Checkpointed, ContinuousAdjoint, ReversibleAdjoint

F64 = torch.float64


class ShiftedOU(torch.nn.Module):
    """Posterior drift f = -y + c, prior drift h = -y, diffusion s: u = (f - h) / g = c / s is constant,
    so each log-ratio increment is exactly 1/2 d (c / s)^2 (t_{i+1} - t_i)."""

    def __init__(self, noise_type="diagonal", sde_type="ito", d=2):
        super().__init__()
        self.noise_type, self.sde_type, self.d = noise_type, sde_type, d
        self.c = torch.nn.Parameter(torch.tensor(0.7, dtype=F64))
        self.s = torch.nn.Parameter(torch.tensor(0.5, dtype=F64))

    def f(self, t, y):
        return -y + self.c

    def h(self, t, y):
        return -y

    def g(self, t, y):
        if self.noise_type == "diagonal":
            return self.s * torch.ones_like(y)
        eye = torch.eye(self.d, dtype=y.dtype)
        return self.s * eye.expand(*y.shape[:-1], self.d, self.d)


@pytest.mark.parametrize("noise_type", ["diagonal", "general"])
@pytest.mark.parametrize("adjoint", [None, Checkpointed(), ContinuousAdjoint()])
def test_log_ratio_closed_form(noise_type, adjoint):
    sde = ShiftedOU(noise_type)
    y0 = torch.randn(5, 2, dtype=F64)
    ts = [0.0, 0.25, 1.0]
    ys, log_ratio = sdekit.sdeint(sde, y0, ts, dt=0.01, logqp=True, adjoint=adjoint)
    assert ys.shape == (3, 5, 2) and log_ratio.shape == (2, 5)
    rate = 0.5 * 2 * (0.7 / 0.5) ** 2
    expected = torch.tensor([rate * 0.25, rate * 0.75], dtype=F64).unsqueeze(-1).expand(2, 5)
    torch.testing.assert_close(log_ratio, expected, rtol=1e-12, atol=0)
    # d/dc and d/ds of the KL term in closed form: sum over batch and time of d (c/s) / s, -d c^2/s^3
    g_c, g_s = torch.autograd.grad(log_ratio.sum(), [sde.c, sde.s])
    total = 5 * 1.0 * 2
    torch.testing.assert_close(g_c, torch.tensor(total * 0.7 / 0.25, dtype=F64), rtol=1e-9, atol=0)
    torch.testing.assert_close(g_s, torch.tensor(-total * 0.49 / 0.125, dtype=F64), rtol=1e-9, atol=0)


def test_logqp_states_equal_plain_solve_with_a_user_path():
    """The extra state does not change the solution: same path, same ys (the path is padded)."""
    sde = ShiftedOU("diagonal", "stratonovich")
    y0 = torch.randn(3, 2, dtype=F64)
    bm = BrownianPath(0.0, 1.0, (3, 2), seed=1, dtype=F64)
    plain = sdekit.sdeint(sde, y0, [0.0, 0.5, 1.0], method="midpoint", dt=0.01, bm=bm)
    ys, _ = sdekit.sdeint(sde, y0, [0.0, 0.5, 1.0], method="midpoint", dt=0.01, bm=bm, logqp=True)
    torch.testing.assert_close(ys, plain, rtol=0, atol=1e-14)
    # reversible Heun with its exact adjoint: the same states as the plain reversible Heun solve, and the
    # gradient of the log-ratio equals backprop's through the same steps
    plain_rh = sdekit.sdeint(sde, y0, [0.0, 0.5, 1.0], method="reversible_heun", dt=0.01, bm=bm)
    grads = []
    for adjoint in (None, ReversibleAdjoint()):
        y0_ = y0.clone().requires_grad_(True)
        ys, log_ratio = sdekit.sdeint(sde, y0_, [0.0, 0.5, 1.0], method="reversible_heun", dt=0.01, bm=bm,
                                      logqp=True, adjoint=adjoint)
        torch.testing.assert_close(ys.detach(), plain_rh, rtol=0, atol=1e-14)
        grads.append(torch.autograd.grad((ys[-1] ** 2).sum() + log_ratio.sum(), [y0_, *sde.parameters()]))
    for got, ref in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)


class NeuralLatent(torch.nn.Module):
    noise_type, sde_type = "diagonal", "stratonovich"

    def __init__(self, d=2):
        super().__init__()
        torch.manual_seed(0)
        self.post = torch.nn.Sequential(torch.nn.Linear(d + 1, 16), torch.nn.Tanh(), torch.nn.Linear(16, d))
        self.prior = torch.nn.Linear(d, d)
        self.sigma = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.to(F64)

    def f(self, t, y):
        return self.post(torch.cat([y, t.expand(y.shape[0], 1)], -1))

    def h(self, t, y):
        return self.prior(y)

    def g(self, t, y):
        return 0.2 * torch.sigmoid(self.sigma(y.unsqueeze(-1)).squeeze(-1)) + 0.05


def test_logqp_gradients_agree_across_strategies():
    sde = NeuralLatent()
    y0 = torch.randn(4, 2, dtype=F64, requires_grad=True)
    bm = BrownianPath(0.0, 1.0, (4, 2), seed=2, dtype=F64, depth=10)
    ts = [0.0, 0.4, 1.0]

    def grads(adjoint, method="midpoint"):
        ys, log_ratio = sdekit.sdeint(sde, y0, ts, method=method, dt=5e-3, bm=bm, logqp=True, adjoint=adjoint)
        loss = (ys**2).mean() + log_ratio.sum(0).mean()
        return torch.autograd.grad(loss, [y0, *sde.parameters()])

    expected = grads(None)
    for got, rtol in ((grads(Checkpointed()), 1e-12), (grads(ContinuousAdjoint()), 1e-2)):
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=rtol, atol=rtol * float(e.abs().max()))
    expected = grads(None, "reversible_heun")
    for g, e in zip(grads(ReversibleAdjoint(), "reversible_heun"), expected):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6 * float(e.abs().max()))


def test_logqp_boundary_errors():
    class NoPrior:
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return -y

        def g(self, t, y):
            return torch.ones_like(y)

    with pytest.raises(TypeError, match="h"):
        sdekit.sdeint(NoPrior(), torch.zeros(2, 2), [0.0, 1.0], logqp=True)
    with pytest.raises(ValueError, match="batch"):
        sdekit.sdeint(ShiftedOU(), torch.zeros(2, dtype=F64), [0.0, 1.0], logqp=True)
    with pytest.raises(TypeError, match="tensor"):
        sdekit.sdeint(ShiftedOU(), (torch.zeros(2, 2, dtype=F64),), [0.0, 1.0], logqp=True)
