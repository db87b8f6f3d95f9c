"""Fast samplers on exact oracles: measured convergence orders on the probability-flow ODE of a Gaussian
mixture, exact identities between samplers (ER-SDE-1 = SA-Solver-1, 3M = exact quadratic integral, ...),
the exactness of the coefficient integrals, EDM's Algorithm 2, the moments of the stochastic samplers on
Gaussian data and the constructors' errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

import sdekit
from sdekit.diffusion import (
    DDIM,
    DEIS,
    EDM,
    ERSDE,
    IPNDM,
    PFODE,
    VE,
    VP,
    DPMSolverPP,
    EDMHeun,
    GaussianMixture,
    PredictorCorrector,
    SASolver,
    SDEDPMSolverPP,
    UniformLogSNR,
    UniPC,
    sample,
)
from sdekit.diffusion.samplers._multistep import (
    HistoryEntry,
    exp_lagrange_weights,
    exp_moments,
    lagrange_integrals,
    phi,
)
from sdekit.diffusion.samplers.er_sde import NoiseScale
from sdekit.diffusion.samplers.ipndm import _AB
from sdekit.diffusion.samplers.sa_solver import IntervalTau
from sdekit.diffusion.timesteps import default_timesteps

F64 = torch.float64
QUAD = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 200}


# ------------------------------------------------------------------------------------------------
# Convergence orders on the probability-flow ODE of a Gaussian mixture
# ------------------------------------------------------------------------------------------------
# VP with t_max = 1.3 (lambda = -8.5): the first-order warm-up steps of the multistep methods then cost
# O(alpha^2 h^2) ~ 1e-8 h^2, invisible next to the methods' own error; t_end = 0.05 (lambda = 1.75).
SCHEDULE = VP(0.1, 20.0, t_max=1.3)
T_START, T_END = 1.3, 0.05


def _ode_mixture() -> GaussianMixture:
    v = 0.5
    return GaussianMixture([0.3, 0.5, 0.2], [[-1.0, 0.5], [1.0, -0.3], [0.2, 1.2]],
                           [[v, 0.7 * v], [0.6 * v, v], [0.8 * v, 0.8 * v]])


@pytest.fixture(scope="module")
def ode_problem():
    den = _ode_mixture().as_denoiser(SCHEDULE)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    ref = sample(den, SCHEDULE, x_T, solver=PFODE("dopri5", rtol=1e-13, atol=1e-13),
                 timesteps=torch.tensor([T_START, T_END], dtype=F64))
    return den, x_T, ref


def _errors(problem, solver, steps) -> list[float]:
    den, x_T, ref = problem
    out = []
    for n in steps:
        ts = UniformLogSNR().times(SCHEDULE, n, t_start=T_START, t_end=T_END)
        x = sample(den, SCHEDULE, x_T, solver=solver, timesteps=ts)
        out.append(float((x - ref).norm(dim=-1).max()))
    return out


def _fitted_order(steps, errors) -> float:
    return -float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


# step counts per order: where the error is asymptotic and far above the reference's ~1e-12
STEPS = {1: (16, 32, 64, 128), 2: (32, 64, 128, 256), 3: (48, 96, 192, 384), 4: (64, 128, 256, 512)}
# combinations whose leading error constant is small next to the next term (corrector-limited SA-Solver,
# the variable-step AB4 in sigma): asymptotic only from a few hundred steps
LONG = {1: (128, 256, 512, 1024), 2: (256, 512, 1024, 2048), 3: (256, 512, 1024, 2048),
        4: (128, 256, 512, 1024)}

# The formulas' orders, so without lower_order_final: its first-order last step (the references' rule,
# on by default) adds a local error O(h^2), which caps the global order at 2 as the steps grow.
FULL = {"lower_order_final": False}
ODE_SAMPLERS = [
    DDIM(), DPMSolverPP(2, **FULL), DPMSolverPP(3, **FULL), SDEDPMSolverPP(eta=0.0, **FULL),
    SDEDPMSolverPP(eta=0.0, solver_type="heun", **FULL),
    DEIS(1, **FULL), DEIS(2, **FULL), DEIS(3, **FULL), DEIS(3, variable="lambda", **FULL),
    DEIS(3, extrapolate="x0", **FULL),
    IPNDM(2), IPNDM(3),
    UniPC(1, **FULL), UniPC(2, **FULL), UniPC(3, **FULL), UniPC(1, variant="bh1", **FULL),
    UniPC(2, variant="bh1", **FULL), UniPC(2, corrector=False, **FULL),
    EDMHeun(), ERSDE(1, noise_scale="ode"), ERSDE(2, noise_scale="ode"), ERSDE(3, noise_scale="ode"),
] + [SASolver(p, c, tau=0.0, **FULL) for p, c in [(1, 0), (2, 0), (3, 0), (4, 0), (1, 2), (1, 3), (1, 4),
                                                  (2, 3), (2, 4), (3, 4), (2, 1), (3, 1), (3, 2), (4, 2)]]
LONG_SAMPLERS = [IPNDM(4)] + [SASolver(p, c, tau=0.0, **FULL)
                              for p, c in [(1, 1), (4, 1), (2, 2), (3, 3), (4, 3), (4, 4)]]


def _check_order(problem, solver, steps):
    errors = _errors(problem, solver, steps)
    measured = _fitted_order(steps, errors)
    assert min(errors) > 1e-10, f"{solver!r}: errors {errors} reach the reference's accuracy"
    assert abs(measured - solver.order) <= 0.3, (
        f"{solver!r}: declared {solver.order}, measured {measured:.3f} from errors {errors} at steps {steps}")


@pytest.mark.parametrize("solver", ODE_SAMPLERS, ids=repr)
def test_measured_order_matches_the_declared_one(ode_problem, solver):
    _check_order(ode_problem, solver, STEPS[int(solver.order)])


@pytest.mark.slow
@pytest.mark.parametrize("solver", LONG_SAMPLERS, ids=repr)
def test_measured_order_matches_the_declared_one_long_range(ode_problem, solver):
    _check_order(ode_problem, solver, LONG[int(solver.order)])


def test_declared_orders():
    assert [DPMSolverPP(k).order for k in (1, 2, 3)] == [1, 2, 3]
    assert UniPC(2).order == 3 and UniPC(2, corrector=False).order == 2
    assert SASolver(3, 4, tau=0.0).order == 4 and SASolver(3, 2, tau=0.0).order == 2
    assert SASolver(2, 0, tau=0.0).order == 2 and SASolver().order == 1 and SASolver().stochastic
    assert ERSDE(3, noise_scale="ode").order == 3 and ERSDE(3).order == 1 and ERSDE(3).stochastic
    assert SDEDPMSolverPP().order == 1 and SDEDPMSolverPP(eta=0.0).order == 2
    assert EDMHeun().order == 2 and EDMHeun(S_churn=5.0).order == 1 and EDMHeun().nfe(7) == 13
    assert PredictorCorrector(corrector_steps=2).nfe(5) == 15


# ------------------------------------------------------------------------------------------------
# Identities between samplers
# ------------------------------------------------------------------------------------------------
def _small_mixture() -> GaussianMixture:
    return GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], [0.1, 0.2])


@pytest.mark.parametrize("schedule", [VP(), EDM(), VE()], ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("tau", [0.0, 0.4, 1.0, 1.7])
def test_er_sde_order_1_with_power_noise_scale_is_sa_solver_order_1(schedule, tau):
    # phi(s) = s^{1 + tau^2} (s = sigma / alpha = e^{-lambda}): r = e^{-(1 + tau^2) h}, so
    # x_t = alpha_t [r x_s / alpha_s + (1 - r) D + s_t sqrt(1 - e^{-2 tau^2 h}) z]
    #     = (sigma_t / sigma_s) e^{-tau^2 h} x_s + alpha_t (1 - e^{-(1 + tau^2) h}) D
    #       + sigma_t sqrt(1 - e^{-2 tau^2 h}) z
    den = _small_mixture().as_denoiser(schedule)
    x_T = schedule.prior_sample((16, 2), torch.Generator().manual_seed(0), dtype=F64)
    bm = sdekit.BrownianPath(schedule.t_min, schedule.t_max, (16, 2), seed=3, dtype=F64)
    c = 1.0 + tau * tau
    er = ERSDE(1, noise_scale=lambda s: s**c)
    sa = SASolver(1, 0, tau=tau)
    a = sample(den, schedule, x_T, solver=er, steps=20, timesteps="uniform", bm=bm)
    b = sample(den, schedule, x_T, solver=sa, steps=20, timesteps="uniform", bm=bm)
    assert er.stochastic == sa.stochastic or tau == 0.0
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_first_order_stochastic_samplers_coincide():
    # DDIM(eta=1) = SA-Solver-1 (tau=1) = ER-SDE-1 with phi = s^2 = SDE-DPM-Solver++ first order
    s = VP()
    den = _small_mixture().as_denoiser(s)
    x_T = s.prior_sample((8, 2), torch.Generator().manual_seed(0), dtype=F64)
    bm = sdekit.BrownianPath(s.t_min, s.t_max, (8, 2), seed=5, dtype=F64)
    runs = [sample(den, s, x_T, solver=solver, steps=12, timesteps="logsnr", bm=bm)
            for solver in (DDIM(eta=1.0), SASolver(1, 0, tau=1.0), ERSDE(1, noise_scale="sde"))]
    for other in runs[1:]:
        torch.testing.assert_close(other, runs[0], rtol=1e-12, atol=1e-12)


def test_exact_polynomial_integrators_coincide():
    # UniP-p without corrector is DPM-Solver++(pM) (with the Taylor factor 2 on D_2 at p = 3: both integrate
    # the quadratic through the last three predictions exactly); SA-Solver(p, 0) at tau = 0 is DEIS in
    # lambda on the data prediction (exact Lagrange integrals); SDE-DPM-Solver++(2M) at eta = 0 is 2M;
    # every first-order method is DDIM
    s = VP()
    den = _small_mixture().as_denoiser(s)
    x_T = s.prior_sample((8, 2), torch.Generator().manual_seed(0), dtype=F64)

    def run(solver):
        return sample(den, s, x_T, solver=solver, steps=10, timesteps="logsnr")

    for a, b in [(DPMSolverPP(3), UniPC(3, corrector=False)), (DPMSolverPP(2), UniPC(2, corrector=False)),
                 (SASolver(3, 0, tau=0.0), DEIS(3, variable="lambda", extrapolate="x0")),
                 (SASolver(2, 0, tau=0.0), DEIS(2, variable="lambda", extrapolate="x0")),
                 (SDEDPMSolverPP(eta=0.0), DPMSolverPP(2)), (DEIS(1), DDIM()), (IPNDM(1), DDIM()),
                 (ERSDE(1, noise_scale="ode"), DDIM()), (SASolver(1, 0, tau=0.0), DDIM())]:
        torch.testing.assert_close(run(a), run(b), rtol=1e-12, atol=1e-12, msg=f"{a!r} vs {b!r}")


def test_lower_order_final():
    s = VP()
    den = _small_mixture().as_denoiser(s)
    x_T = s.prior_sample((4, 2), torch.Generator().manual_seed(0), dtype=F64)
    # two steps: the first has no history and the last is first order -> DDIM
    torch.testing.assert_close(sample(den, s, x_T, solver=DPMSolverPP(2), steps=2),
                               sample(den, s, x_T, solver=DDIM(), steps=2), rtol=1e-13, atol=1e-13)
    assert not torch.allclose(sample(den, s, x_T, solver=DPMSolverPP(2, lower_order_final=False), steps=2),
                              sample(den, s, x_T, solver=DDIM(), steps=2))
    # the flag acts at every step count (no 15-step limit): the last step of a 25-step grid is DDIM's
    for make in (lambda f: DPMSolverPP(3, lower_order_final=f), lambda f: UniPC(2, lower_order_final=f),
                 lambda f: DEIS(3, lower_order_final=f),
                 lambda f: SASolver(3, 4, tau=0.0, lower_order_final=f),
                 lambda f: SDEDPMSolverPP(eta=0.0, lower_order_final=f)):
        for steps in (6, 15, 25):
            assert not torch.equal(sample(den, s, x_T, solver=make(True), steps=steps),
                                   sample(den, s, x_T, solver=make(False), steps=steps))
    for solver in (DPMSolverPP(3), DEIS(3), SASolver(3, 0, tau=0.0), SDEDPMSolverPP(eta=0.0)):  # no corrector
        info = sample(den, s, x_T, solver=solver, steps=25, return_trajectory=True)[1]
        last = sample(den, s, info.trajectory[-2], solver=DDIM(), timesteps=info.timesteps[-2:])
        torch.testing.assert_close(info.trajectory[-1], last, rtol=1e-12, atol=1e-12, msg=repr(solver))


def test_edm_heun_is_karras_algorithm_2():
    # Algorithm 2 of Karras et al. on the EDM schedule (alpha = 1, sigma = t), churn included, with the
    # same normals; our last step is Euler
    s = EDM()
    den = _small_mixture().as_denoiser(s)
    x_T = s.prior_sample((6, 2), torch.Generator().manual_seed(0), dtype=F64)
    bm = sdekit.BrownianPath(s.t_min, s.t_max, (6, 2), seed=7, dtype=F64)
    steps, churn, tmin, tmax, noise = 12, 8.0, 0.05, 20.0, 1.003
    ts = default_timesteps(s).times(s, steps).tolist()
    x = x_T
    for i in range(steps):
        t0, t1 = ts[i], ts[i + 1]
        gamma = min(churn / steps, math.sqrt(2) - 1) if tmin <= t0 <= tmax else 0.0
        t_hat = t0 * (1 + gamma)
        z = bm(t0, t1) / math.sqrt(abs(t1 - t0))
        x_hat = x + math.sqrt(t_hat**2 - t0**2) * noise * z
        d = (x_hat - den(x_hat, t_hat)) / t_hat
        x = x_hat + (t1 - t_hat) * d
        if i < steps - 1:
            d1 = (x - den(x, t1)) / t1
            x = x_hat + (t1 - t_hat) * 0.5 * (d + d1)
    ours, info = sample(den, s, x_T, solver=EDMHeun(churn, tmin, tmax, noise), steps=steps, bm=bm,
                        return_info=True)
    torch.testing.assert_close(ours, x, rtol=1e-12, atol=1e-12)
    assert info.nfe == 2 * steps - 1


# ------------------------------------------------------------------------------------------------
# The coefficient integrals are exact
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("z", [-40.0, -3.0, -1.0, -1e-3, 0.0, 1e-9, 0.4, 1.0, 1.3, 6.0, 80.0])
def test_phi_functions_and_exponential_moments(z):
    def phi_integrand(th, k):
        return math.exp((1 - th) * z) * th ** (k - 1) / math.factorial(k - 1)

    for k in range(0, 5):
        ref = math.exp(z) if k == 0 else quad(phi_integrand, 0, 1, args=(k,), **QUAD)[0]
        assert phi(k, z) == pytest.approx(ref, rel=1e-13, abs=1e-300)
    for k, m in enumerate(exp_moments(z, 5)):
        assert m == pytest.approx(quad(lambda s, k: math.exp(-z * s) * s**k, 0, 1, args=(k,), **QUAD)[0],
                                  rel=1e-13)


@pytest.mark.parametrize("h", [1e-3, 0.05, 0.7, 4.0])
@pytest.mark.parametrize("c", [-1.0, 1.0, 2.69])
def test_exponential_lagrange_weights(h, c):
    nodes = [0.0, -h, -2.3 * h, -3.1 * h]

    def basis(j, u):
        return math.prod((u - nodes[i]) / (nodes[j] - nodes[i]) for i in range(len(nodes)) if i != j)

    w = exp_lagrange_weights(nodes, h, c)
    for j in range(len(nodes)):
        ref = quad(lambda u, j: math.exp(c * u) * basis(j, u), -h, 0.0, args=(j,), **QUAD)[0]
        assert w[j] == pytest.approx(ref, rel=1e-11, abs=1e-14 * h)


def test_ipndm_fixed_coefficients_are_the_variable_ones_on_a_uniform_grid():
    for q, b in _AB.items():
        nodes = [10.0 + 0.5 * j for j in range(q)]          # s_0, s_{-1}, ... (noisier in the past)
        w = lagrange_integrals(nodes, 10.0, 9.5)
        assert w == pytest.approx([-0.5 * bj for bj in b], rel=1e-13)


def test_deis_time_quadrature_is_exact():
    s = VP()
    t = [0.5, 0.55, 0.62]            # nodes (newest first) and the step 0.5 -> 0.41
    t1 = 0.41
    lam = [float(s.log_snr(v)) for v in t]
    lam1 = float(s.log_snr(t1))
    h = lam1 - lam[0]

    def t_of(u):
        return float(s.t_of_log_snr(torch.tensor(lam1 + u, dtype=F64)))

    def basis(j, tau):
        return math.prod((tau - t[i]) / (t[j] - t[i]) for i in range(3) if i != j)

    nodes = [HistoryEntry(v, lv, None) for v, lv in zip(t, lam)]
    for extrapolate, c in (("eps", -1.0), ("x0", 1.0)):
        w = DEIS(3, extrapolate=extrapolate)._weights(_Ctx(s), t1, lam1, h, nodes)
        for j in range(3):
            ref = quad(lambda u, j, c: math.exp(c * u) * basis(j, t_of(u)), -h, 0.0, args=(j, c), **QUAD)[0]
            assert w[j] == pytest.approx(ref, rel=1e-12)


class _Ctx:
    def __init__(self, schedule):
        self.schedule = schedule


@pytest.mark.parametrize("name", ["ode", "sde"])
def test_er_sde_closed_form_integrals_match_quadrature(name):
    closed = ERSDE(3, noise_scale=name).noise_scale
    generic = NoiseScale(closed.fn)
    for s_t, s_s in [(0.01, 0.0105), (0.3, 0.45), (2.0, 9.0), (50.0, 400.0)]:
        a, b = closed.integrals(s_t, s_s), generic.integrals(s_t, s_s)
        assert a == pytest.approx(b, rel=1e-9)


def test_interval_tau_matches_the_official_band():
    tau = IntervalTau(0.7)
    s = VP()
    for t, inside in [(0.19, False), (0.21, True), (0.5, True), (0.79, True), (0.81, False)]:
        level = math.exp(-float(s.log_snr(t)))
        assert tau(level) == (0.7 if inside else 0.0)


# ------------------------------------------------------------------------------------------------
# Stochastic samplers reach the exact marginal (Gaussian data)
# ------------------------------------------------------------------------------------------------
STOCHASTIC = [SDEDPMSolverPP(), SDEDPMSolverPP(solver_type="heun"), SASolver(), SASolver(2, 3, tau=1.0),
              ERSDE(), ERSDE(2, noise_scale="sde"), PredictorCorrector(), EDMHeun(S_churn=10.0),
              "euler-maruyama"]


@pytest.mark.parametrize("solver", STOCHASTIC, ids=repr)
def test_stochastic_samplers_give_the_gaussian_moments(solver):
    mu = torch.tensor([0.7, -0.4], dtype=F64)
    var = torch.tensor([0.3, 1.5], dtype=F64)
    data = GaussianMixture([1.0], mu[None], var[None])
    s = VP()
    n, steps = 10_000, 400
    a0, s0 = float(s.alpha(s.t_max)), float(s.sigma(s.t_max))
    a1, s1 = float(s.alpha(s.t_min)), float(s.sigma(s.t_min))
    x_T = a0 * mu + torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * torch.sqrt(
        a0**2 * var + s0**2)
    x = sample(data.as_denoiser(s), s, x_T, solver=solver, steps=steps, timesteps="logsnr",
               generator=torch.Generator().manual_seed(1))
    mean, v = a1 * mu, a1**2 * var + s1**2              # the exact marginal at the last grid time
    z_mean = (x.mean(0) - mean) / torch.sqrt(v / n)
    z_var = (x.var(0) - v) / (v * math.sqrt(2.0 / n))
    # at 400 steps the first-order bias is below one standard error; 5 standard errors of slack
    assert bool((z_mean.abs() < 5).all()) and bool((z_var.abs() < 5).all()), (z_mean, z_var)


# ------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, exc, match", [
    (lambda: DPMSolverPP(4), ValueError, r"order must be an int in \[1, 3\], got 4"),
    (lambda: DPMSolverPP(2, lower_order_final="yes"), TypeError, "lower_order_final must be a bool"),
    (lambda: SDEDPMSolverPP(eta=-1), ValueError, "eta must be non-negative"),
    (lambda: SDEDPMSolverPP(solver_type="rk"), ValueError,
     r"solver_type must be one of \['midpoint', 'heun'\], got 'rk'"),
    (lambda: DEIS(0), ValueError, r"order must be an int in \[1, 3\], got 0"),
    (lambda: DEIS(variable="sigma"), ValueError, "variable must be one of"),
    (lambda: DEIS(extrapolate="v"), ValueError, "extrapolate must be one of"),
    (lambda: IPNDM(5), ValueError, r"order must be an int in \[1, 4\], got 5"),
    (lambda: IPNDM(variable_step=1), TypeError, "variable_step must be a bool"),
    (lambda: UniPC(4), ValueError, r"predictor_order must be an int in \[1, 3\]"),
    (lambda: UniPC(variant="bh3"), ValueError, r"variant must be one of \['bh1', 'bh2'\], got 'bh3'"),
    (lambda: EDMHeun(S_churn=-1.0), ValueError, "S_churn must be non-negative"),
    (lambda: EDMHeun(S_tmin=5.0, S_tmax=1.0), ValueError, "S_tmin must be <= S_tmax"),
    (lambda: PredictorCorrector(snr=0.0), ValueError, "snr must be positive"),
    (lambda: PredictorCorrector(corrector_steps=-1), ValueError, "corrector_steps must be an int >= 0"),
    (lambda: PredictorCorrector(norms="batch"), ValueError, "norms must be 'expected' or 'sample'"),
    (lambda: SASolver(5), ValueError, r"predictor_order must be an int in \[1, 4\], got 5"),
    (lambda: SASolver(3, 5), ValueError, r"corrector_order must be an int in \[0, 4\], got 5"),
    (lambda: SASolver(tau=-0.5), ValueError, "tau must be non-negative"),
    (lambda: SASolver(tau="x"), TypeError, "tau must be a real number"),
    (lambda: IntervalTau(1.0, 3.0, 2.0), ValueError, "IntervalTau needs s_min <= s_max"),
    (lambda: ERSDE(4), ValueError, r"order must be an int in \[1, 3\], got 4"),
    (lambda: ERSDE(noise_scale="cubic"), ValueError,
     r"noise_scale must be one of \['default', 'ode', 'sde'\]"),
    (lambda: ERSDE(noise_scale=3), TypeError, "noise_scale must be a name in"),
])
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_runtime_errors():
    from sdekit.diffusion import LinearFlow

    s = LinearFlow()                       # alpha(1) = 0: sigma / alpha = inf at the start
    x_T = s.prior_sample((4, 2), torch.Generator().manual_seed(0), dtype=F64)
    den = _small_mixture().as_denoiser(s)
    with pytest.raises(ValueError, match="cannot start at alpha = 0"):
        sample(den, s, x_T, solver=ERSDE(noise_scale=lambda v: v**1.5), steps=4)
    with pytest.raises(ValueError, match=r"tau\(s\) must be non-negative"):
        sample(den, s, x_T, solver=SASolver(tau=lambda v: -1.0), steps=4)


@pytest.mark.parametrize("solver", [DPMSolverPP(3), SDEDPMSolverPP(), DEIS(3), IPNDM(4), UniPC(3), EDMHeun(),
                                    EDMHeun(S_churn=5.0), PredictorCorrector(), SASolver(), ERSDE(),
                                    ERSDE(noise_scale="sde")], ids=repr)
def test_samplers_start_at_alpha_zero(solver):
    # LinearFlow at t = 1: alpha = 0, lambda = -inf; the first step (to t = 0.99) is the exact first-order
    # one (Heun: in t), the others uniform in log-SNR
    from sdekit.diffusion import LinearFlow

    s = LinearFlow()
    ts = torch.cat([torch.tensor([1.0], dtype=F64), UniformLogSNR().times(s, 40, t_start=0.99)])
    x_T = s.prior_sample((64, 2), torch.Generator().manual_seed(0), dtype=F64)
    den = _small_mixture().as_denoiser(s)
    x = sample(den, s, x_T, solver=solver, timesteps=ts, generator=torch.Generator().manual_seed(1))
    assert bool(torch.isfinite(x).all())
    if not solver.stochastic:
        ref = sample(den, s, x_T, solver=PFODE("dopri5", rtol=1e-10, atol=1e-10), steps=1)
        assert float((x - ref).abs().max()) < 0.05
