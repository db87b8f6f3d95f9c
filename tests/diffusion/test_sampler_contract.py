"""The contract every sampler meets, run over every registered sampler (and non-default settings of the
fast samplers): shape and dtype, seed determinism, independence of the batch with per-sample seeds, and
the reported number of model calls equal to the counted one and to the declared ``nfe(steps)``."""

from __future__ import annotations

import pytest
import torch

import sdekit
from sdekit.diffusion import (
    DDIM,
    DEIS,
    EDM,
    ERSDE,
    IPNDM,
    PFODE,
    SAMPLERS,
    VP,
    DPMSolverPP,
    EDMHeun,
    GaussianMixture,
    LinearFlow,
    PredictorCorrector,
    SASolver,
    SDEDPMSolverPP,
    UniPC,
    get_sampler,
    sample,
)

STEPS = 6
F32, F64 = torch.float32, torch.float64
# every registered sampler (default settings) on four schedule / dtype cases, and non-default settings of
# the fast samplers on two
EXTRA = [
    DPMSolverPP(3, lower_order_final=False), SDEDPMSolverPP(solver_type="heun"), SDEDPMSolverPP(eta=0.5),
    DEIS(2, variable="lambda"), DEIS(3, extrapolate="x0"), IPNDM(4, variable_step=False), IPNDM(2),
    UniPC(variant="bh1"), UniPC(3, corrector=False),
    EDMHeun(S_churn=20.0, S_tmin=0.1, S_tmax=10.0, S_noise=1.003),
    PredictorCorrector(corrector_steps=2), PredictorCorrector(norms="sample"), SASolver(4, 4, tau=0.0),
    SASolver(2, 1, tau=0.8), SASolver(1, 0, tau=lambda s: 0.5 if s > 1.0 else 0.0),
    ERSDE(2, noise_scale="sde"), ERSDE(1, noise_scale="ode"),
]
CASES = ([(name, schedule, dtype) for name in sorted(SAMPLERS)
          for schedule, dtype in [(VP(), F32), (VP(), F64), (EDM(), F64), (LinearFlow(t_max=0.999), F64)]]
         + [(solver, schedule, dtype) for solver in EXTRA for schedule, dtype in [(VP(), F64), (EDM(), F32)]])


def _ids(case) -> str:
    solver, schedule, dtype = case
    return f"{solver if isinstance(solver, str) else repr(solver)}-{type(schedule).__name__}-{dtype}"


class Counting:
    """A data-prediction network (the exact denoiser of a mixture) that counts its calls and checks that it
    gets one time per sample."""

    def __init__(self, oracle: GaussianMixture, schedule) -> None:
        self.oracle, self.schedule, self.calls = oracle, schedule, 0

    def __call__(self, x, t):
        assert t.shape == (x.shape[0],) and t.dtype == x.dtype
        self.calls += 1
        return self.oracle.denoiser(x, t, self.schedule)


def _oracle() -> GaussianMixture:
    return GaussianMixture([0.6, 0.4], [[-1.0, 0.5], [1.0, -0.5]], [[0.2, 0.3], [0.3, 0.1]])


def _run(solver, schedule, x_T, **kwargs):
    net = Counting(_oracle(), schedule)
    x, info = sample(net, schedule, x_T, solver=solver, steps=STEPS, prediction="x0", return_info=True,
                     **kwargs)
    return x, info, net.calls


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_contract(case):
    solver, schedule, dtype = case
    sampler = get_sampler(solver)
    shape = (4, 2)
    x_T = schedule.prior_sample(shape, torch.Generator().manual_seed(0), dtype=dtype)

    # shape, dtype, finiteness; the reported NFE is the counted one and the declared one when known
    x, info, calls = _run(solver, schedule, x_T, generator=torch.Generator().manual_seed(1))
    assert x.shape == shape and x.dtype == dtype and bool(torch.isfinite(x).all())
    assert info.nfe == calls
    if sampler.nfe(STEPS) is not None:
        assert info.nfe == sampler.nfe(STEPS), (info.nfe, sampler.nfe(STEPS))
    if sampler.nfe_per_step is not None:
        assert sampler.nfe(STEPS) == STEPS * sampler.nfe_per_step

    # seed determinism: the same generator seed or the same Brownian path gives the same sample
    again, _, _ = _run(solver, schedule, x_T, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, again)
    other, _, _ = _run(solver, schedule, x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, other) != sampler.stochastic
    seeds = [21, 22, 23, 24]
    bm = sdekit.BrownianPath(schedule.t_min, schedule.t_max, shape, seed=seeds, dtype=dtype)
    full, _, _ = _run(solver, schedule, x_T, bm=bm)
    bm_again = sdekit.BrownianPath(schedule.t_min, schedule.t_max, shape, seed=seeds, dtype=dtype)
    full_again, _, _ = _run(solver, schedule, x_T, bm=bm_again)
    assert torch.equal(full, full_again)

    # per-sample seeds: sample i of a batch of 4 equals the same sample drawn alone
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == F32 else {"rtol": 1e-12, "atol": 1e-12}
    if sampler.nfe_per_step is None and not isinstance(sampler, EDMHeun):
        tol = {"rtol": 1e-3, "atol": 1e-3}       # adaptive steps follow the batch's error norm
    for i in (0, 3):
        bm1 = sdekit.BrownianPath(schedule.t_min, schedule.t_max, (1, 2), seed=[seeds[i]], dtype=dtype)
        alone, _, _ = _run(solver, schedule, x_T[i:i + 1], bm=bm1)
        torch.testing.assert_close(alone[0], full[i], **tol)


# every registered sampler with its defaults, plus DDIM(eta) and a fixed-step PF-ODE
CONTRACT = [SAMPLERS[name]() for name in sorted(SAMPLERS)] + [DDIM(eta=0.7), PFODE("rk4")]


class _Net:
    """An eps-network acting sample by sample, that counts its calls and checks its time input."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t, *, scale=1.0):
        assert t.shape == (x.shape[0],) and t.dtype == x.dtype
        self.calls += 1
        tt = t.reshape(-1, *([1] * (x.dim() - 1)))
        return scale * torch.tanh(x) * (0.5 + tt)


@pytest.mark.parametrize("solver", CONTRACT, ids=repr)
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_contract_image_states_and_outputs(solver, dtype):
    """Beyond :func:`test_contract`: states of any shape (here images), ``model_kwargs`` reaching the network,
    the grid in ``info``, ``denoise_final`` costing one call and trajectories from ``x_T`` to the sample."""
    s = VP()
    shape = (6, 1, 3, 3)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    net = _Net()
    x, info = sample(net, s, x_T, solver=solver, steps=5, generator=torch.Generator().manual_seed(1),
                     model_kwargs={"scale": 0.5}, return_info=True)
    assert x.shape == shape and x.dtype == dtype and bool(torch.isfinite(x).all())
    assert info.nfe == net.calls and info.timesteps.shape == (6,)
    unscaled = sample(_Net(), s, x_T, solver=solver, steps=5, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(x, unscaled)                      # the kwarg reached the network
    bm6 = sdekit.BrownianPath(s.t_min, s.t_max, shape, seed=[11, 12, 13, 14, 15, 16], dtype=dtype)
    full = sample(_Net(), s, x_T, solver=solver, steps=5, bm=bm6)
    net2 = _Net()
    y, info2 = sample(net2, s, x_T, solver=solver, steps=5, bm=bm6, denoise_final=True, return_trajectory=True)
    assert info2.nfe == net2.calls and info2.trajectory.shape == (6, *shape)
    assert torch.equal(info2.trajectory[0], x_T) and torch.equal(info2.trajectory[-1], full)
    if solver.nfe(5) is not None:
        assert info2.nfe == solver.nfe(5) + 1


@pytest.mark.parametrize("solver", CONTRACT, ids=repr)
def test_gradients_flow_through_sampling(solver):
    """Autograd through every sampler equals central finite differences of the sample (same noise), in the
    direction of a random perturbation of x_T and of the model's weight w."""
    s = EDM()
    x_T = 80.0 * torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    dx = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    u = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(5))

    def loss(x0, w):
        x = sample(lambda x, sigma: w * x / (1 + sigma[:, None]) + 0.1 * torch.sin(x), s, x0, solver=solver,
                   steps=4, prediction="karras", generator=torch.Generator().manual_seed(0))
        return (u * x).sum()

    x0 = x_T.clone().requires_grad_(True)
    w = torch.tensor(0.3, dtype=F64, requires_grad=True)
    loss(x0, w).backward()
    eps = 1e-6
    with torch.no_grad():
        fd_x = (loss(x_T + eps * dx, w) - loss(x_T - eps * dx, w)) / (2 * eps)
        fd_w = (loss(x_T, w + eps) - loss(x_T, w - eps)) / (2 * eps)
    if getattr(solver, "nfe_per_step", 1) is None:
        # an adaptive solver (dopri5) chooses its steps from the state, and autograd differentiates the chosen
        # steps only: agreement to the error tolerance, measured against the size of the w-derivative
        scale = float(fd_w.abs())
        assert abs(float((x0.grad * dx).sum() - fd_x)) < 1e-3 * scale
        assert abs(float(w.grad - fd_w)) < 1e-3 * scale
        return
    torch.testing.assert_close((x0.grad * dx).sum(), fd_x, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(w.grad, fd_w, rtol=1e-6, atol=1e-9)


def test_every_name_resolves_and_sample_defaults_to_dpm_solver():
    for name in SAMPLERS:
        sampler = get_sampler(name)
        assert sampler.order >= 1 and isinstance(sampler.stochastic, bool) and sampler.name
    s = VP()
    x_T = s.prior_sample((3, 2), torch.Generator().manual_seed(0), dtype=torch.float64)
    den = _oracle().as_denoiser(s)
    x, info = sample(den, s, x_T, steps=8, return_info=True)
    assert isinstance(info.solver, DPMSolverPP) and info.solver.order == 2 and info.nfe == 8
    torch.testing.assert_close(x, sample(den, s, x_T, steps=8, solver=DPMSolverPP(2)), rtol=0, atol=0)


def test_pc_default_noise_grid_holds_independent_substeps():
    # with no Brownian source, a sampler that splits its steps (PredictorCorrector) gets independent
    # standard normals on the sub-intervals (the driver refines its default noise grid)
    s = VP()
    x_T = s.prior_sample((2000, 1), torch.Generator().manual_seed(0), dtype=torch.float64)
    seen = []

    class Spy(PredictorCorrector):
        def step(self, ctx, k, t0, t1, x, state):
            from sdekit.diffusion.samplers.pc import _normals

            seen.append(_normals(ctx, k, t0, t1, self.noise_substeps))
            return super().step(ctx, k, t0, t1, x, state)

    sample(lambda x, t: torch.zeros_like(x), s, x_T, solver=Spy(), steps=3, prediction="x0",
           generator=torch.Generator().manual_seed(4))
    for z_corr, z_pred in seen:
        assert abs(float(torch.corrcoef(torch.stack([z_corr[:, 0], z_pred[:, 0]]))[0, 1])) < 0.1
        for z in (z_corr, z_pred):
            assert abs(float(z.var()) - 1.0) < 0.1
