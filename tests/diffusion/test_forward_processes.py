"""Matrix-valued linear forward SDEs (flexible diffusion) and critically damped Langevin diffusion:
closed forms against ODE and Monte Carlo references, the samplers on Gaussian data with exact scores,
the ELBO against the exact entropy, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit import BrownianGrid, sdeint
from sdekit.diffusion import VE, VP, CosineVP
from sdekit.diffusion.forward import CLD, MatrixLinearSDE

F64 = torch.float64


def _spd(d: int, seed: int, lo: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(d, d, generator=g, dtype=F64) / math.sqrt(d)
    return X @ X.T + lo * torch.eye(d, dtype=F64)


def _antisym(d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, d, generator=g, dtype=F64) * scale
    return W - W.T


def _flexible(d: int = 3) -> MatrixLinearSDE:
    return MatrixLinearSDE(d, R=_spd(d, 1), omega=_antisym(d, 2), dtype=F64)


# ------------------------------------------------------------------------------------------------
# Must-show 2: the transition
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t,s", [(1e-3, 0.0), (0.05, 0.0), (0.3, 0.0), (1.0, 0.0), (0.9, 0.4)])
def test_matrix_exponential_matches_covariance_ode(t, s):
    sde = _flexible(4)
    M_ode, S_ode = sde.transition_ode(t, s)
    for method in ("van_loan", "lyapunov"):
        M, S = sde.transition(t, s, method=method)
        assert (M - M_ode).abs().max() < 1e-8
        assert (S - S_ode).abs().max() < 1e-8
    # Van Loan keeps relative accuracy where Sigma is tiny
    M, S = sde.transition(t, s)
    assert ((S - S_ode).abs().max() / S_ode.abs().max()) < 1e-8


def test_vp_is_the_identity_special_case():
    sde = MatrixLinearSDE(5, dtype=F64)
    eye = torch.eye(5, dtype=F64)
    t = torch.tensor([1e-3, 0.1, 0.5, 0.95], dtype=F64)
    for schedule in (VP(), CosineVP()):
        sde = MatrixLinearSDE(5, schedule, dtype=F64)
        M, S = sde.transition(t)
        assert (M - schedule.alpha(t)[:, None, None] * eye).abs().max() < 1e-12
        assert (S - schedule.sigma(t)[:, None, None] ** 2 * eye).abs().max() < 1e-12
    # the forward SDE coefficients are VP's f and g
    x = torch.randn(3, 5, dtype=F64)
    assert torch.allclose(sde.f(0.3, x), CosineVP().f(0.3) * x)
    assert torch.allclose(sde.g_prod(0.3, x, x), CosineVP().g(0.3) * x)


def test_omega_keeps_the_stationary_law_and_changes_the_path():
    d = 3
    R = _spd(d, 3)
    base = MatrixLinearSDE(d, R=R, dtype=F64)
    eye = torch.eye(d, dtype=F64)
    for seed in range(3):
        rot = MatrixLinearSDE(d, R=R, omega=_antisym(d, seed, scale=2.0), dtype=F64)
        # Lyapunov: A + A^T + R = 0 for every antisymmetric omega, so N(0, I) is stationary
        assert rot.lyapunov_residual().abs().max() < 1e-12
        for t in (0.1, 0.5, 1.0):
            M, S = rot.transition(t)
            assert (M @ M.T + S - eye).abs().max() < 1e-12  # N(0, I) at 0 stays N(0, I) at t
            # the path changes: the mean map differs from the omega = 0 one
            M0, _ = base.transition(t)
            if t <= 0.5:
                assert (M - M0).abs().max() > 0.1  # measured 0.12 to 0.53
    # measured: omega rotates the mean of x_t | x_0 = (1, 0, 0) at t = 0.3
    x0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64)
    m_rot = rot.marginal(x0, 0.3)[0]
    m_base = base.marginal(x0, 0.3)[0]
    assert (m_rot - m_base).norm() > 0.5  # measured 0.76: (0.28, 0.23, -0.63) against (0.72, 0.06, -0.04)


def test_forward_sde_monte_carlo_matches_the_closed_form():
    d, n = 3, 10_000
    sde = MatrixLinearSDE(d, R=_spd(d, 4, lo=0.3), omega=_antisym(d, 5), dtype=F64)
    x0 = torch.tensor([1.0, -0.5, 0.25], dtype=F64)
    t1 = 0.4
    ts = torch.linspace(0.0, t1, 1001, dtype=F64)
    bm = BrownianGrid(ts, (n, d), seed=0, dtype=F64)
    ys = sdeint(sde, x0.expand(n, d).clone(), [0.0, 0.2, t1], dt=4e-4, bm=bm)
    for k, t in ((1, 0.2), (2, t1)):
        y = ys[k]
        mean, S = sde.marginal(x0[None], t)
        mean, S = mean[0], S[0]
        se_mean = torch.sqrt(torch.diagonal(S) / n)
        assert ((y.mean(0) - mean).abs() < 4 * se_mean).all(), (y.mean(0), mean)
        c = y - mean
        cov = c.T @ c / n
        se_cov = torch.sqrt((torch.diagonal(S)[:, None] * torch.diagonal(S)[None, :] + S**2) / n)
        assert ((cov - S).abs() < 4 * se_cov).all(), (cov, S)


# ------------------------------------------------------------------------------------------------
# CLD
# ------------------------------------------------------------------------------------------------
def _van_loan(A: torch.Tensor, Q: torch.Tensor, h: float) -> tuple[torch.Tensor, torch.Tensor]:
    d = A.shape[0]
    block = torch.cat([torch.cat([A, Q], 1), torch.cat([torch.zeros_like(A), -A.T], 1)], 0)
    F = torch.linalg.matrix_exp(h * block)
    return F[:d, :d], F[:d, d:] @ F[:d, :d].T


def test_cld_closed_form_matches_the_matrix_exponential():
    cld = CLD()
    A = torch.tensor([[0.0, 1 / cld.mass], [-1.0, -cld.friction / cld.mass]], dtype=F64)
    Q = torch.diag(torch.tensor([0.0, 2 * cld.friction], dtype=F64))
    E, S = cld.transition_matrices(torch.tensor([0.01, 0.2, 1.0], dtype=F64))
    for i, t in enumerate((0.01, 0.2, 1.0)):
        E_ref, S_ref = _van_loan(A, Q, cld.beta * t)
        assert (E[i] - E_ref).abs().max() < 1e-12
        assert (S[i] - S_ref).abs().max() < 1e-12
    # stationary: Sigma_t -> diag(1, M)
    _, S = cld.transition_matrices(50.0)
    assert torch.allclose(S, torch.diag(torch.tensor([1.0, cld.mass], dtype=F64)), atol=1e-12)


def test_cld_transition_matches_monte_carlo():
    cld = CLD()
    n = 20_000
    x0 = torch.tensor([1.5, -0.5], dtype=F64).expand(n, 2).clone()
    torch.manual_seed(1)
    v0 = torch.randn(n, 2, dtype=F64) * math.sqrt(cld.gamma * cld.mass)
    ts = torch.linspace(0.0, 0.5, 501, dtype=F64)
    xs, vs = sdeint(cld, (x0, v0), [0.0, 0.1, 0.5], dt=1e-3, bm=BrownianGrid(ts, (4 * n,), seed=1, dtype=F64))
    for k, t in ((1, 0.1), (2, 0.5)):
        (mu_x, mu_v), S = cld.marginal(x0[:1], t)
        S = S.reshape(2, 2)
        x, v = xs[k], vs[k]
        for est, mu, var in ((x.mean(0), mu_x[0], S[0, 0]), (v.mean(0), mu_v[0], S[1, 1])):
            assert ((est - mu).abs() < 4 * torch.sqrt(var / n)).all(), (est, mu)
        cx, cv = x - mu_x, v - mu_v
        for est, ref, se in (
            ((cx * cx).mean(0), S[0, 0], math.sqrt(2 * S[0, 0] ** 2 / n)),
            ((cx * cv).mean(0), S[0, 1], math.sqrt((S[0, 0] * S[1, 1] + S[0, 1] ** 2) / n)),
            ((cv * cv).mean(0), S[1, 1], math.sqrt(2 * S[1, 1] ** 2 / n)),
        ):
            assert ((est - ref).abs() < 4 * se).all(), (t, est, ref)


def test_hsm_target_is_the_velocity_score():
    cld = CLD()
    x0 = torch.tensor([[0.7, -1.2], [0.1, 0.3]], dtype=F64)
    g = torch.Generator().manual_seed(3)
    noise = (torch.randn(2, 2, generator=g, dtype=F64), torch.randn(2, 2, generator=g, dtype=F64))
    t = torch.tensor([0.05, 0.6], dtype=F64)
    x, v, target = cld.perturb(x0, t, noise)
    (mu_x, mu_v), S = cld.marginal(x0, t)
    v_ = v.clone().requires_grad_(True)
    u = torch.stack([x - mu_x, v_ - mu_v], -1)  # (batch, d, 2)
    P = torch.linalg.inv(S)[:, None]  # (batch, 1, 2, 2)
    logp = -0.5 * (u.unsqueeze(-2) @ P @ u.unsqueeze(-1)).sum()
    (grad_v,) = torch.autograd.grad(logp, v_)
    assert torch.allclose(grad_v, target, atol=1e-10)
    # the loss of the exact eps_v predictor is zero
    assert torch.allclose(target, -cld.velocity_scale(t)[:, None] * noise[1])


# ------------------------------------------------------------------------------------------------
# Samplers with the exact score of Gaussian data
# ------------------------------------------------------------------------------------------------
MU0 = torch.tensor([0.6, -0.4], dtype=F64)
S0 = torch.tensor([[0.30, 0.08], [0.08, 0.15]], dtype=F64)


def _exact_score(sde: MatrixLinearSDE):
    def score(x, t):
        M, S = sde.transition(t)
        P = M @ S0 @ M.transpose(-1, -2) + S
        return -torch.linalg.solve(P, (x - M @ MU0).unsqueeze(-1)).squeeze(-1)
    return score


@pytest.mark.parametrize("method,steps", [("euler", 400), ("ode", 0)])
def test_matrix_samplers_recover_gaussian_data(method, steps):
    n = 4000
    sde = MatrixLinearSDE(2, R=torch.tensor([[1.4, 0.3], [0.3, 0.8]], dtype=F64),
                          omega=torch.tensor([[0.0, 1.5], [-1.5, 0.0]], dtype=F64), dtype=F64)
    x = sde.sample(_exact_score(sde), n, method=method, steps=max(steps, 1), seed=5, dtype=F64)
    c = x - MU0
    se_mean = torch.sqrt(torch.diagonal(S0) / n)
    assert ((x.mean(0) - MU0).abs() < 4 * se_mean + 0.01).all(), x.mean(0)
    cov = c.T @ c / n
    se_cov = torch.sqrt((torch.diagonal(S0)[:, None] * torch.diagonal(S0)[None, :] + S0**2) / n)
    assert ((cov - S0).abs() < 4 * se_cov + 0.01).all(), cov


def _cld_exact_score(cld: CLD, mu: torch.Tensor, var: torch.Tensor):
    def score_v(x, v, t):
        b = cld.beta * torch.as_tensor(t, dtype=F64)
        e11, e12, e21, e22 = cld._expA(b)
        c11, c12, c22 = cld._cov(b, var, 0.0, cld.gamma * cld.mass)
        mx, mv = e11 * mu, e21 * mu
        det = c11 * c22 - c12 * c12
        # -(P^{-1} (u - m))_v with P = [[c11, c12], [c12, c22]]
        return -(-c12 * (x - mx) + c11 * (v - mv)) / det
    return score_v


@pytest.mark.parametrize("method,steps", [("sscs", 100), ("euler", 400)])
def test_cld_samplers_recover_gaussian_data(method, steps):
    cld = CLD()
    n = 4000
    mu = torch.tensor([0.8, -0.5], dtype=F64)
    var = torch.tensor([0.2, 0.05], dtype=F64)
    x, v = cld.sample(_cld_exact_score(cld, mu, var), (n, 2), method=method, steps=steps, seed=7, dtype=F64)
    assert ((x.mean(0) - mu).abs() < 4 * torch.sqrt(var / n) + 0.01).all(), x.mean(0)
    assert ((x.var(0) - var).abs() < 4 * var * math.sqrt(2 / n) + 0.01).all(), x.var(0)


# ------------------------------------------------------------------------------------------------
# The ELBO (flexible-diffusion objective)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flexible", [False, True])
def test_nelbo_with_the_exact_score_equals_the_entropy(flexible):
    # E_data[-ELBO] with the exact score is E_data[-log p(x0)] (= entropy of the Gaussian) up to the
    # prior mismatch at t_max and the t_min decoder (both < 1e-3 nats here)
    if flexible:
        sde = MatrixLinearSDE(2, R=torch.tensor([[1.4, 0.3], [0.3, 1.1]], dtype=F64),
                              omega=torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=F64), dtype=F64)
    else:
        sde = MatrixLinearSDE(2, dtype=F64)
    n = 20_000
    g = torch.Generator().manual_seed(11)
    x0 = MU0 + torch.randn(n, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(S0).T
    with torch.no_grad():
        nelbo = sde.nelbo(_exact_score(sde), x0, prediction="score", generator=g, n_times=500)
    entropy = 0.5 * 2 * math.log(2 * math.pi * math.e) + 0.5 * float(torch.logdet(S0))
    se = float(nelbo.std()) / math.sqrt(n)
    assert abs(float(nelbo.mean()) - entropy) < 4 * se, (float(nelbo.mean()), entropy, se)
    assert se < 0.15


def test_nelbo_trains_the_forward_parameters():
    sde = MatrixLinearSDE(2)
    net = torch.nn.Linear(3, 2)

    def eps_model(x, t):
        return net(torch.cat([x, t[:, None]], 1))

    x0 = torch.randn(64, 2)
    loss = sde.nelbo(eps_model, x0, generator=torch.Generator().manual_seed(0)).mean()
    loss.backward()
    for p in (sde.log_diag, sde.lower, sde.upper, net.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert sde.dsm_loss(eps_model, x0, n_times=4).shape == (64,)


# ------------------------------------------------------------------------------------------------
# Must-show 6: bad input
# ------------------------------------------------------------------------------------------------
def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="R must be symmetric positive definite.*smallest eigenvalue"):
        MatrixLinearSDE(2, R=torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="R must be symmetric"):
        MatrixLinearSDE(2, R=torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="omega must be antisymmetric"):
        MatrixLinearSDE(2, omega=torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"omega must have shape \(3, 3\)"):
        MatrixLinearSDE(3, omega=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="R must be a square"):
        MatrixLinearSDE(3, R=torch.ones(3, 2))
    with pytest.raises(TypeError, match="R must be a torch.Tensor"):
        MatrixLinearSDE(2, R=[[1.0, 0.0], [0.0, 1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim must be a positive int"):
        MatrixLinearSDE(0)
    with pytest.raises(ValueError, match="variance preserving"):
        MatrixLinearSDE(2, VE())
    sde = MatrixLinearSDE(2)
    with pytest.raises(ValueError, match=r"x0 must have shape \(batch, 2\)"):
        sde.marginal(torch.zeros(4, 3), 0.5)
    with pytest.raises(ValueError, match="noise must be a tensor of the shape of x0"):
        sde.perturb(torch.zeros(4, 2), 0.5, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="prediction must be"):
        sde.nelbo(lambda x, t: x, torch.zeros(4, 2), prediction="x0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method must be"):
        sde.sample(lambda x, t: x, 4, method="heun")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_times must be a positive int"):
        sde.dsm_loss(lambda x, t: x, torch.zeros(4, 2), n_times=0)
    with pytest.raises(ValueError, match="mass must be positive"):
        CLD(mass=-1.0)
    with pytest.raises(ValueError, match="t_min < t_max"):
        CLD(t_min=1.0, t_max=0.5)
    with pytest.raises(ValueError, match="noise must be a pair"):
        CLD().perturb(torch.zeros(4, 2), 0.5, torch.zeros(4, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method must be"):
        CLD().sample(lambda x, v, t: v, (4, 2), method="heun")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# benchmarks/methods/flexible_diffusion.py --quick (must-show 3)
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_flexible_diffusion_benchmark_quick(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "benchmarks/methods/flexible_diffusion.py"), "--quick",
                          "--out", str(tmp_path / "f.md")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = (tmp_path / "f.md").read_text()
    row = re.search(r"\| moons \| nats/dim \| 200 x 128 \| ([0-9.]+) ± [0-9.]+ \| ([0-9.]+) ± [0-9.]+ \| ([+-][0-9.]+) "
                    r"\| \[([0-9.]+), ([0-9.]+)\] \| ([0-9.]+) \|", text)
    assert row is not None, text
    vp, flexible, diff, r_min, r_max, omega = (float(v) for v in row.groups())
    assert 0.0 < vp < 3.0 and 0.0 < flexible < 3.0 and abs(flexible - vp - diff) < 1e-3
    # the flexible arm moved its forward process away from VP (R = I, Omega = 0)
    assert (r_min < 0.99 or r_max > 1.01) and omega > 1e-3
