"""The reflected heat kernel on a box (Lou & Ermon 2023): the image and eigenfunction series agree at the
switch, the closed-form score is the gradient of the log kernel, the kernel is a probability density, and
it is the law of reflect(x0 + sigma z); plus the box's refusals of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sdekit.domains import (
    SWITCH_SIGMA,
    Box,
    reflected_kernel_score,
    reflected_log_kernel,
    reflected_perturb,
)

F64 = torch.float64


def _grid_pairs(n: int = 41, lo: float = 0.0, hi: float = 1.0):
    g = torch.linspace(lo, hi, n, dtype=F64)
    x, x0 = torch.meshgrid(g, g, indexing="ij")
    return x.reshape(-1, 1), x0.reshape(-1, 1)


@pytest.mark.parametrize("factor", [0.8, 1.0, 1.25])
@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1.0, 1.5)])
def test_image_and_eigen_series_agree_at_the_switch(factor, lo, hi):
    """Over a 41 x 41 grid of (x, x0) (faces included) and noise levels around the switch, the two exact
    series give the same density, log density and score to 1e-8 (float64)."""
    box = Box(lo, hi)
    x, x0 = _grid_pairs(41, lo, hi)
    sigma = factor * SWITCH_SIGMA * (hi - lo)
    li = reflected_log_kernel(x, x0, sigma, box, method="images")
    le = reflected_log_kernel(x, x0, sigma, box, method="eigen")
    assert (li.exp() - le.exp()).abs().max().item() < 1e-8
    assert (li - le).abs().max().item() < 1e-8
    si = reflected_kernel_score(x, x0, sigma, box, method="images")
    se = reflected_kernel_score(x, x0, sigma, box, method="eigen")
    assert (si - se).abs().max().item() < 1e-8
    # "auto" is one of the two on each side of the switch
    la = reflected_log_kernel(x, x0, sigma, box)
    assert torch.equal(la, li if factor <= 1.0 else le)


@pytest.mark.parametrize("sigma", [0.02, 0.1, SWITCH_SIGMA, 0.7, 3.0])
def test_score_is_the_gradient_of_the_log_kernel(sigma):
    """The closed-form score equals autograd of the log kernel on a 3-d box with unequal sides, with a
    per-sample sigma (so both series meet in one batch)."""
    box = Box([0.0, -1.0, 2.0], [1.0, 1.0, 2.5])
    g = torch.Generator().manual_seed(0)
    x0 = box.uniform((64, 3), g, dtype=F64)
    x = box.uniform((64, 3), g, dtype=F64).requires_grad_(True)
    sig = sigma * torch.linspace(0.5, 1.5, 64, dtype=F64)
    (grad,) = torch.autograd.grad(reflected_log_kernel(x, x0, sig, box).sum(), x)
    score = reflected_kernel_score(x.detach(), x0, sig, box)
    torch.testing.assert_close(score, grad, rtol=1e-9, atol=1e-9)


def test_score_vanishes_on_the_faces():
    """The Neumann condition: d/dx log p = 0 at x = lo and x = hi, whatever x0 and sigma."""
    box = Box(-2.0, 3.0)
    x0 = torch.linspace(-2.0, 3.0, 11, dtype=F64).reshape(-1, 1)
    for face in (-2.0, 3.0):
        x = torch.full_like(x0, face)
        for sigma in (0.05, 1.0, 10.0):
            # the two images mirrored in the face cancel to rounding of the score's scale 1 / sigma^2
            assert reflected_kernel_score(x, x0, sigma, box).abs().max().item() < 1e-10 / sigma**2


@pytest.mark.parametrize("sigma", [0.01, 0.08, SWITCH_SIGMA, 1.0, 5.0])
def test_kernel_integrates_to_one(sigma):
    """Simpson's rule on 40001 points over the box gives 1 to 1e-8 for x0 in the interior and on the faces,
    in unit coordinates and on the box [-1, 1.5] (density in the box's units)."""
    for lo, hi in [(0.0, 1.0), (-1.0, 1.5)]:
        box = Box(lo, hi)
        xs = torch.linspace(lo, hi, 40001, dtype=F64)
        for x0v in (lo, lo + 0.003 * (hi - lo), lo + 0.5 * (hi - lo), hi - 0.2 * (hi - lo), hi):
            x0 = torch.full((xs.numel(), 1), x0v, dtype=F64)
            p = reflected_log_kernel(xs[:, None], x0, sigma * (hi - lo), box).exp().numpy()
            from scipy.integrate import simpson

            total = simpson(p, x=xs.numpy())
            assert abs(total - 1.0) < 1e-8, (lo, hi, x0v, total)


def _kernel_cdf(x0v: float, sigma: float, box: Box):
    xs = torch.linspace(float(box.lo[0]), float(box.hi[0]), 200001, dtype=F64)
    p = reflected_log_kernel(xs[:, None], torch.full((xs.numel(), 1), x0v, dtype=F64), sigma, box).exp().numpy()
    from scipy.integrate import cumulative_trapezoid

    cdf = cumulative_trapezoid(p, xs.numpy(), initial=0.0)
    cdf /= cdf[-1]
    grid = xs.numpy()
    return lambda v: np.interp(v, grid, cdf)


@pytest.mark.parametrize("x0v,sigma,lo,hi", [(0.05, 0.2, 0.0, 1.0), (0.9, 0.6, 0.0, 1.0), (0.3, 1.7, -1.0, 1.5),
                                             (0.02, 0.05, 0.0, 1.0)])
def test_reflected_draws_follow_the_kernel(x0v, sigma, lo, hi):
    """10^5 draws of reflect(x0 + sigma z) against the kernel's CDF: Kolmogorov-Smirnov p > 0.01 (seed fixed)."""
    box = Box(lo, hi)
    x0 = torch.full((100_000, 1), x0v, dtype=F64)
    draws = reflected_perturb(x0, sigma, box, generator=torch.Generator().manual_seed(1))
    assert bool(box.contains(draws).all())
    result = stats.kstest(draws[:, 0].numpy(), _kernel_cdf(x0v, sigma, box))
    assert result.pvalue > 0.01, result


def test_reflection_map():
    """reflect folds mod 2 widths: identity inside, mirror images at both faces, period 2 widths."""
    box = Box([0.0, -1.0], [1.0, 3.0])
    x = torch.tensor([[0.25, 0.0], [-0.25, -2.0], [1.25, 4.0], [2.25, 7.5], [-1.75, -9.0]], dtype=F64)
    want = torch.tensor([[0.25, 0.0], [0.25, 0.0], [0.75, 2.0], [0.25, -0.5], [0.25, -1.0]], dtype=F64)
    torch.testing.assert_close(box.reflect(x), want, rtol=0, atol=1e-14)
    torch.testing.assert_close(box.clip(x)[:, 0], torch.tensor([0.25, 0.0, 1.0, 1.0, 0.0], dtype=F64))


# ------------------------------------------------------------------------------------------------
# bad input (must-show 5, the box part)
# ------------------------------------------------------------------------------------------------
def test_bad_box_bounds_are_refused():
    with pytest.raises(ValueError, match=r"lo\[1\]=2.0 >= hi\[1\]=1.0"):
        Box([0.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="lo < hi"):
        Box(1.0, 1.0)
    with pytest.raises(ValueError, match="lo must be finite"):
        Box(float("nan"), 1.0)
    with pytest.raises(ValueError, match="same length"):
        Box([0.0, 0.0], [1.0, 1.0, 1.0])
    with pytest.raises(TypeError, match="hi must be"):
        Box(0.0, "1")  # type: ignore[arg-type]


def test_points_outside_the_box_and_wrong_shapes_are_refused():
    box = Box([0.0, 0.0], [1.0, 2.0])
    inside = torch.tensor([[0.5, 1.5]], dtype=F64)
    outside = torch.tensor([[0.5, 2.5]], dtype=F64)
    with pytest.raises(ValueError, match=r"x must lie in the box .*x\[0, 1\]=2.5, bounds \[0.0, 2.0\]"):
        reflected_log_kernel(outside, inside, 0.1, box)
    with pytest.raises(ValueError, match="x0 must lie in the box"):
        reflected_kernel_score(inside, outside, 0.1, box)
    with pytest.raises(ValueError, match="x0 must lie in the box"):
        reflected_perturb(outside, 0.1, box)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        reflected_log_kernel(torch.zeros(4, 3, dtype=F64), torch.zeros(4, 3, dtype=F64), 0.1, box)
    with pytest.raises(ValueError, match="x0 must have the shape of x"):
        reflected_log_kernel(torch.full((4, 1), 0.5), torch.full((3, 1), 0.5), 0.1)
    with pytest.raises(ValueError, match="sigma must be positive"):
        reflected_log_kernel(inside, inside, 0.0, box)
    with pytest.raises(ValueError, match=r"sigma must be .* \(batch,\) = \(1,\)"):
        reflected_log_kernel(inside, inside, torch.ones(3), box)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        reflected_log_kernel(torch.zeros(1, 2, dtype=torch.long), inside, 0.1, box)
    with pytest.raises(ValueError, match="x must lie in the box"):
        reflected_log_kernel(torch.tensor([[float("nan"), 0.5]], dtype=F64), inside, 0.1, box)
    with pytest.raises(ValueError, match="method must be"):
        reflected_log_kernel(inside, inside, 0.1, box, method="fourier")  # type: ignore[arg-type]
