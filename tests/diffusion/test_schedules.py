"""Schedules: closed-form identities (hypothesis), derivatives against finite differences, and the forward
SDE's marginals against alpha and sigma by Monte Carlo through ``sdekit.sdeint``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sdekit
from sdekit.diffusion import EDM, VE, VP, CosineVP, DiscreteVP, ForwardSDE, LinearFlow, Schedule, SubVP
from sdekit.diffusion._utils import broadcast_like

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True)

KINDS = ["VP", "CosineVP", "DiscreteVP", "SubVP", "VE", "EDM", "LinearFlow"]
VP_KINDS = ["VP", "CosineVP", "DiscreteVP"]
DEFAULTS = {"VP": VP, "CosineVP": CosineVP, "DiscreteVP": DiscreteVP.linear, "SubVP": SubVP, "VE": VE,
            "EDM": EDM, "LinearFlow": LinearFlow}


@st.composite
def schedules(draw, kind: str) -> Schedule:
    """A schedule of ``kind`` with parameters drawn around the usual values."""
    if kind == "VP":
        return VP(draw(st.floats(0.01, 1.0)), draw(st.floats(1.0, 30.0)))
    if kind == "SubVP":
        return SubVP(draw(st.floats(0.01, 1.0)), draw(st.floats(1.0, 30.0)))
    if kind == "CosineVP":
        return CosineVP(draw(st.floats(1e-3, 0.05)))
    if kind == "DiscreteVP":
        n = draw(st.integers(50, 1000))
        beta_end = min(0.5, draw(st.floats(0.01, 0.05)) * 1000 / n)
        return DiscreteVP.linear(n, draw(st.floats(1e-5, 1e-3)), beta_end)
    if kind == "VE":
        return VE(draw(st.floats(1e-3, 0.1)), draw(st.floats(1.0, 100.0)))
    if kind == "EDM":
        return EDM(draw(st.floats(1e-3, 0.01)), draw(st.floats(10.0, 100.0)))
    return LinearFlow()


def _t(s: Schedule, u: float) -> float:
    return s.t_min + u * (s.t_max - s.t_min)


unit = st.floats(0.0, 1.0)


@pytest.mark.parametrize("kind", VP_KINDS)
@PROPERTY
@given(data=st.data())
def test_variance_preserving_identity(kind, data):
    s = data.draw(schedules(kind))
    t = torch.tensor([_t(s, data.draw(unit)) for _ in range(4)], dtype=torch.float64)
    assert s.is_variance_preserving
    torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones_like(t), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["SubVP", "VE", "EDM", "LinearFlow"])
def test_not_variance_preserving(kind):
    s = DEFAULTS[kind]()
    assert not s.is_variance_preserving
    t = torch.linspace(s.t_min, s.t_max, 5, dtype=torch.float64)[1:-1]
    assert not torch.allclose(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones_like(t))


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_log_snr_decreasing_and_inverted(kind, data):
    s = data.draw(schedules(kind))
    u = sorted(data.draw(st.lists(unit, min_size=2, max_size=6, unique=True)))
    u = [v for i, v in enumerate(u) if i == 0 or v - u[i - 1] > 1e-6]
    t = torch.tensor([_t(s, v) for v in u], dtype=torch.float64)
    lam = s.log_snr(t)
    assert bool((lam[1:] < lam[:-1]).all()), (t, lam)
    assert bool((s.d_log_snr(t) < 0).all())
    back = s.t_of_log_snr(lam)
    torch.testing.assert_close(back, t, rtol=1e-9, atol=1e-9 * (s.t_max - s.t_min))
    # log_snr is log(alpha / sigma)
    finite = torch.isfinite(lam)
    direct = torch.log(s.alpha(t) / s.sigma(t))
    torch.testing.assert_close(lam[finite], direct[finite], rtol=1e-10, atol=1e-10)


def _fd(fn, t: float, h: float) -> float:
    return (float(fn(t + h)) - float(fn(t - h))) / (2 * h)


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_coefficients_match_finite_differences(kind, data):
    s = data.draw(schedules(kind))
    if isinstance(s, DiscreteVP):  # log alpha is piecewise linear: stay inside one segment
        n = data.draw(st.integers(0, s.num_steps - 2))
        t = (n + 1 + data.draw(st.floats(0.2, 0.8))) / s.num_steps
        h = 1e-3 / s.num_steps
    else:
        lo, hi = s.t_min, (min(s.t_max, 0.99) if isinstance(s, LinearFlow) else s.t_max)
        h = 1e-6 * (hi - lo) if not isinstance(s, EDM) else 1e-6 * s.t_min
        t = lo + 2 * h + data.draw(unit) * (hi - lo - 4 * h)

    def close(got, want, what):
        ok = math.isclose(float(got), want, rel_tol=2e-5, abs_tol=1e-7)
        assert ok, f"{what}: {float(got)} vs FD {want} at t={t}"

    f, g2 = float(s.f(t)), float(s.g2(t))
    close(s.f(t), _fd(s.log_alpha, t, h), "f = d log alpha/dt")
    close(s.d_alpha(t), _fd(s.alpha, t, h), "d_alpha")
    close(s.d_sigma(t), _fd(s.sigma, t, h), "d_sigma")
    close(s.d_log_snr(t), _fd(s.log_snr, t, h), "d_log_snr")
    sigma2 = lambda u: s.sigma(u) ** 2  # noqa: E731
    close(2 * f * float(s.sigma(t)) ** 2 + g2, _fd(sigma2, t, h), "d sigma^2/dt = 2 f sigma^2 + g^2")
    assert g2 >= 0 and math.isclose(float(s.g(t)) ** 2, g2, rel_tol=1e-12)
    # the general identity d lambda/dt = -g^2 / (2 sigma^2)
    close(s.d_log_snr(t), -g2 / (2 * float(s.sigma(t)) ** 2), "d_log_snr = -g^2 / (2 sigma^2)")


@pytest.mark.parametrize("kind", KINDS)
def test_time_argument_forms(kind):
    s = DEFAULTS[kind]()
    t = 0.5 * (s.t_min + s.t_max)
    batch = torch.full((3,), t, dtype=torch.float32)
    for name in ("alpha", "sigma", "log_snr", "f", "g", "g2", "d_alpha", "d_sigma", "d_log_snr"):
        v_float = getattr(s, name)(t)
        v_0d = getattr(s, name)(torch.tensor(t, dtype=torch.float64))
        v_b = getattr(s, name)(batch)
        assert v_float.shape == () and v_float.dtype == torch.float64
        assert v_b.shape == (3,) and v_b.dtype == torch.float32, name
        torch.testing.assert_close(v_0d, v_float)
        torch.testing.assert_close(v_b, v_float.float().expand(3), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="t must be"):
        s.alpha(torch.zeros(2, 2))
    with pytest.raises(TypeError, match="t must be"):
        s.alpha("0.5")


def test_broadcast_like():
    x = torch.zeros(4, 3, 2, dtype=torch.float32)
    c = torch.arange(4, dtype=torch.float64)
    b = broadcast_like(c, x)
    assert b.shape == (4, 1, 1) and b.dtype == torch.float32
    assert broadcast_like(torch.tensor(2.0), x).shape == ()
    with pytest.raises(ValueError, match=r"shape \(batch,\)"):
        broadcast_like(torch.zeros(3), x)


def test_discrete_vp_matches_alphas_cumprod_and_continuous_limit():
    s = DiscreteVP.linear(1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ac = torch.cumprod(1 - betas, 0)
    knots = torch.arange(1, 1001, dtype=torch.float64) / 1000
    torch.testing.assert_close(s.alpha(knots) ** 2, ac, rtol=1e-12, atol=0)
    assert s.t_min == 1e-3 and s.t_max == 1.0
    torch.testing.assert_close(s.timestep(knots), torch.arange(1000, dtype=torch.float64))
    # DDPM's linear betas are the discretisation of VP(0.1, 20): alpha agrees to O(1/N)
    vp = VP(0.1, 20.0)
    t = torch.linspace(0.01, 1.0, 50, dtype=torch.float64)
    assert (s.alpha(t) - vp.alpha(t)).abs().max() < 2e-3
    # from_betas and the direct constructor agree
    torch.testing.assert_close(DiscreteVP.from_betas(betas).alpha(t), DiscreteVP(ac).alpha(t))


def test_cosine_matches_nichol_dhariwal():
    s = CosineVP(0.008)
    t = torch.linspace(0.0, 0.99, 30, dtype=torch.float64)
    f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    f0 = f(torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(s.alpha(t) ** 2, f(t) / f0, rtol=1e-12, atol=1e-14)
    assert abs(float(s.beta(s.t_max)) - 999.0) < 1e-6  # DPM-Solver's clipping of beta


def test_known_closed_forms():
    vp = VP(0.1, 20.0)
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    B = 0.1 * t + 0.5 * 19.9 * t**2
    torch.testing.assert_close(vp.alpha(t), torch.exp(-B / 2))
    torch.testing.assert_close(vp.g2(t), 0.1 + 19.9 * t)
    sub = SubVP(0.1, 20.0)
    torch.testing.assert_close(sub.sigma(t), 1 - torch.exp(-B))
    torch.testing.assert_close(sub.g2(t), (0.1 + 19.9 * t) * (1 - torch.exp(-2 * B)))
    ve = VE(0.01, 50.0)
    torch.testing.assert_close(ve.sigma(t), 0.01 * 5000**t)
    edm = EDM()
    torch.testing.assert_close(edm.sigma(t), t)
    torch.testing.assert_close(edm.g2(t), 2 * t)
    lf = LinearFlow()
    torch.testing.assert_close(lf.alpha(t[:2]), 1 - t[:2])
    assert float(lf.log_snr(1.0)) == -math.inf and float(lf.t_of_log_snr(-math.inf)) == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_prior(kind):
    s = DEFAULTS[kind]()
    want = {"VE": 50.0, "EDM": 80.0}.get(kind, 1.0)
    assert math.isclose(s.prior_std, want, rel_tol=1e-12)
    a = s.prior_sample((2000, 3), torch.Generator().manual_seed(0), dtype=torch.float64)
    b = s.prior_sample((2000, 3), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert a.shape == (2000, 3) and torch.equal(a, b)
    assert abs(float(a.std()) / want - 1) < 4 * math.sqrt(0.5 / a.numel())


# ------------------------------------------------------------------------------------------------
# Forward SDE marginals by Monte Carlo
# ------------------------------------------------------------------------------------------------
MC_CASES = [
    ("VP", VP(), 1e-3, 1.0, 1e-3),
    ("CosineVP", CosineVP(), 1e-3, 0.95, 1e-3),
    ("DiscreteVP", DiscreteVP.linear(), 1e-3, 1.0, 1e-3),
    ("SubVP", SubVP(), 1e-3, 1.0, 1e-3),
    ("VE", VE(), 0.0, 1.0, 1e-3),
    ("EDM", EDM(), 0.002, 5.0, 1e-2),
    ("LinearFlow", LinearFlow(), 1e-3, 0.9, 1e-3),
]


def _euler_moments(s: Schedule, ta: float, tb: float, dt: float, m: float, v: float):
    """Mean and variance of Euler-Maruyama on the linear forward SDE on sdeint's grid (exact recursion)."""
    n = max(1, math.ceil((tb - ta) / dt - 1e-9))
    for k in range(n):
        t, h = ta + (tb - ta) * k / n, (tb - ta) / n
        a = 1 + float(s.f(t)) * h
        m, v = a * m, a * a * v + float(s.g2(t)) * h
    return m, v


@pytest.mark.parametrize("kind,s,ta,tb,dt", MC_CASES, ids=[c[0] for c in MC_CASES])
def test_forward_sde_marginals_monte_carlo(kind, s, ta, tb, dt):
    n = 5_000
    x0 = torch.tensor([1.5, -0.5], dtype=torch.float64)
    gen = torch.Generator().manual_seed(1234)
    xa = float(s.alpha(ta)) * x0 + float(s.sigma(ta)) * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    with torch.random.fork_rng():
        torch.manual_seed(4321)
        xb = sdekit.sdeint(ForwardSDE(s), xa, [ta, tb], method="euler", dt=dt)[-1]
    a, sig = float(s.alpha(tb)), float(s.sigma(tb))
    # Euler's discretisation bias, computed exactly; kept well inside the statistical error
    se_var = sig**2 * math.sqrt(2.0 / (n - 1))
    for j in range(2):
        m_e, v_e = _euler_moments(s, ta, tb, dt, float(x0[j]) * float(s.alpha(ta)), float(s.sigma(ta)) ** 2)
        se_mean = sig / math.sqrt(n)
        assert abs(m_e - a * float(x0[j])) < 0.5 * se_mean and abs(v_e - sig**2) < 0.5 * se_var
        mean, var = float(xb[:, j].mean()), float(xb[:, j].var())
        want = a * float(x0[j])
        assert abs(mean - want) < 4 * se_mean + abs(m_e - want), (kind, mean, want)
        assert abs(var - sig**2) < 4 * se_var + abs(v_e - sig**2), (kind, var, sig**2)


# ------------------------------------------------------------------------------------------------
# Boundary errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: VP(beta_min=-1.0), "beta_min must be non-negative"),
        (lambda: VP(beta_min=5.0, beta_max=1.0), "beta_max must be >= beta_min"),
        (lambda: VP(t_min=0.5, t_max=0.1), "t_min < t_max"),
        (lambda: VE(sigma_min=1.0, sigma_max=0.5), "sigma_min < sigma_max"),
        (lambda: EDM(sigma_min=0.0), "sigma_min must be positive"),
        (lambda: CosineVP(t_max=1.5), "t_max <= 1.0"),
        (lambda: DiscreteVP(torch.tensor([0.9, 0.95])), "strictly decreasing"),
        (lambda: DiscreteVP(torch.tensor([1.0, 0.5])), r"in \(0, 1\)"),
        (lambda: DiscreteVP(torch.tensor([0.5])), "at least two"),
        (lambda: DiscreteVP.from_betas([0.1, 1.5]), "betas"),
        (lambda: DiscreteVP.linear(1), "num must be an int >= 2"),
        (lambda: LinearFlow(t_max=2.0), "t_max <= 1.0"),
    ],
)
def test_constructor_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_forward_sde_object_contract():
    sde = ForwardSDE(VP())
    assert sde.noise_type == "diagonal" and sde.sde_type == "ito"
    y = torch.ones(3, 2, 2)
    t = torch.tensor(0.5)
    torch.testing.assert_close(sde.f(t, y), -0.5 * (0.1 + 19.9 * 0.5) * y)
    assert sde.g(t, y).shape == y.shape
    with pytest.raises(TypeError, match="Schedule"):
        sdekit.diffusion.ForwardSDE("VP")
