"""Signatures, the PDE signature kernel and the signature MMD (issue 18, must-show 4): closed forms, an
independent computation (truncated-signature inner products), and pysiglib's values when it is installed."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.special import i0

from sdekit.timeseries import (
    signature,
    signature_channels,
    signature_kernel,
    signature_kernel_gram,
    signature_mmd,
    time_augment,
)

F64 = torch.float64


def _paths(seed: int, *shape: int, scale: float = 0.4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64) * scale


def _brute_signature(path: torch.Tensor, depth: int) -> list[torch.Tensor]:
    """Levels 1..depth of one path (L, d) as full tensors, by Chen's identity piece by piece, written out
    with explicit index loops (an implementation independent of the library's)."""
    d = path.shape[1]
    levels = [torch.zeros((d,) * k, dtype=F64) for k in range(1, depth + 1)]
    for a, b in itertools.pairwise(path):
        inc = b - a
        exp = [inc]
        for k in range(2, depth + 1):
            exp.append(torch.tensordot(exp[-1], inc, dims=0) / k)
        new = []
        for k in range(1, depth + 1):
            term = levels[k - 1] + exp[k - 1]
            for i in range(1, k):
                term = term + torch.tensordot(levels[i - 1], exp[k - i - 1], dims=0)
            new.append(term)
        levels = new
    return levels


def test_signature_matches_an_independent_chen_computation():
    x = _paths(0, 3, 6, 3)
    s = signature(x, 4)
    assert s.shape == (3, signature_channels(3, 4)) == (3, 3 + 9 + 27 + 81)
    for b in range(3):
        ref = torch.cat([lv.reshape(-1) for lv in _brute_signature(x[b], 4)])
        torch.testing.assert_close(s[b], ref, rtol=0, atol=1e-13)


def test_signature_closed_forms_and_chen():
    # A 1-D path: level k is (x_T - x_0)^k / k!, whatever happens in between.
    x = _paths(1, 5, 9, 1)
    s = signature(x, 6)
    inc = x[:, -1, 0] - x[:, 0, 0]
    for k in range(1, 7):
        torch.testing.assert_close(s[:, k - 1], inc**k / math.factorial(k), rtol=1e-12, atol=1e-14)
    # Level 2 antisymmetric part = Levy area; for the unit square walked anticlockwise it is the area 1.
    square = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], dtype=F64)
    lvl2 = signature(square, 2)[2:].reshape(2, 2)
    assert float(0.5 * (lvl2[0, 1] - lvl2[1, 0])) == pytest.approx(1.0, abs=1e-14)
    # Chunking is a speed setting only; the basepoint prepends the origin.
    y = _paths(2, 2, 23, 2)
    for chunk in (1, 3, 8, 50):
        torch.testing.assert_close(signature(y, 5, chunk=chunk), signature(y, 5), rtol=1e-12, atol=1e-13)
    zero = torch.cat([torch.zeros(2, 1, 2, dtype=F64), y], dim=1)
    torch.testing.assert_close(signature(y, 3, basepoint=True), signature(zero, 3))
    assert signature(y, 2, scalar_term=True)[:, 0].eq(1).all()


def test_signature_kernel_closed_form_for_straight_lines():
    """Two straight lines with increments a, b: k = sum_k <a, b>^k / (k!)^2 = I_0(2 sqrt(<a, b>)); the Goursat
    scheme converges to it at second order as the grid is refined."""
    a = torch.tensor([[0.0, 0.0], [1.0, 0.5]], dtype=F64)
    b = torch.tensor([[0.0, 0.0], [0.7, 1.2]], dtype=F64)
    exact = float(i0(2 * math.sqrt(1.0 * 0.7 + 0.5 * 1.2)))
    errors = [abs(float(signature_kernel(a, b, dyadic_order=lam)) - exact) for lam in range(3, 7)]
    assert errors[-1] < 3e-5
    for e0, e1 in itertools.pairwise(errors):
        assert 3.3 < e0 / e1 < 4.5  # second order (asymptotically): the error falls by ~4 per halving


def test_signature_kernel_equals_truncated_signature_inner_product():
    """Independent check: <S(x), S(y)> from signatures truncated at depth 14 (the tail is below 1e-12 at this
    scale) against the PDE kernel on a refined grid (error O(4^-dyadic_order))."""
    x, y = _paths(3, 4, 5, 2), _paths(4, 4, 7, 2)
    sx, sy = signature(x, 14, scalar_term=True), signature(y, 14, scalar_term=True)
    ref = (sx * sy).sum(-1)
    k = signature_kernel(x, y, dyadic_order=6)
    torch.testing.assert_close(k, ref, rtol=2e-5, atol=0)
    gram = signature_kernel_gram(x, y, dyadic_order=2)
    torch.testing.assert_close(gram.diagonal(), signature_kernel(x, y, dyadic_order=2), rtol=1e-13, atol=0)
    torch.testing.assert_close(gram[1, 3], signature_kernel(x[1], y[3], dyadic_order=2), rtol=1e-13, atol=0)


def test_signature_mmd_estimators():
    x, y = _paths(5, 6, 8, 2), _paths(6, 5, 6, 2, scale=0.5) + 0.1
    # Truncated features: the biased MMD is |mean S(x) - mean S(y)|^2, the unbiased one leaves out i = j.
    sx, sy = signature(x, 5), signature(y, 5)
    biased = signature_mmd(x, y, depth=5, unbiased=False)
    torch.testing.assert_close(biased, (sx.mean(0) - sy.mean(0)).square().sum())
    kxx, kyy, kxy = sx @ sx.T, sy @ sy.T, sx @ sy.T
    unb = (kxx.sum() - kxx.trace()) / 30 + (kyy.sum() - kyy.trace()) / 20 - 2 * kxy.mean()
    torch.testing.assert_close(signature_mmd(x, y, depth=5), unb)
    # The PDE kernel's MMD from its Gram matrices, and it is ~0 between a sample and itself (biased: exactly 0).
    gx = signature_kernel_gram(x, x, dyadic_order=1)
    gy = signature_kernel_gram(y, y, dyadic_order=1)
    gxy = signature_kernel_gram(x, y, dyadic_order=1)
    ref = (gx.sum() - gx.trace()) / 30 + (gy.sum() - gy.trace()) / 20 - 2 * gxy.mean()
    torch.testing.assert_close(signature_mmd(x, y, dyadic_order=1), ref)
    assert abs(float(signature_mmd(x, x, dyadic_order=1, unbiased=False))) < 1e-12


def test_signature_gradients():
    x = _paths(7, 2, 5, 2).requires_grad_()
    y = _paths(8, 2, 4, 2)
    assert torch.autograd.gradcheck(lambda p: signature(p, 3), (x,))
    assert torch.autograd.gradcheck(lambda p: signature_kernel(p, y, dyadic_order=1), (x,))


def test_time_augment_and_bad_input():
    x = _paths(9, 3, 4, 1)
    ts = torch.tensor([0.0, 0.1, 0.5, 1.0], dtype=F64)
    aug = time_augment(x, ts)
    assert aug.shape == (3, 4, 2) and torch.equal(aug[1, :, 0], ts) and torch.equal(aug[..., 1:], x)
    with pytest.raises(ValueError, match=r"ts must be strictly increasing; got ts\[2\] = 0.1 <= ts\[1\] = 0.1"):
        time_augment(x, torch.tensor([0.0, 0.1, 0.1, 1.0], dtype=F64))
    with pytest.raises(ValueError, match=r"ts must have shape \(4,\)"):
        time_augment(x, ts[:3])
    with pytest.raises(ValueError, match="NaN or inf"):
        signature(torch.tensor([[0.0], [float("nan")]]), 2)
    with pytest.raises(ValueError, match="depth must be an int >= 1, got 0"):
        signature(x, 0)
    with pytest.raises(TypeError, match="floating tensor"):
        signature(torch.zeros(3, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="at least 2 points"):
        signature_kernel(x[:, :1], x)
    with pytest.raises(ValueError, match="same number of channels, got 1 and 2"):
        signature_kernel(x, _paths(1, 3, 4, 2))
    with pytest.raises(ValueError, match="static_kernel must be one of"):
        signature_kernel(x, x, static_kernel="cubic")
    with pytest.raises(ValueError, match="at least 2 paths per sample, got 1 and 3"):
        signature_mmd(x[:1], x)


def test_against_pysiglib_reference_values():
    """The kept library's values on fixed paths (pysiglib, an optional reference; see the bench extra)."""
    pysiglib = pytest.importorskip("pysiglib")
    x, y = _paths(10, 4, 7, 3), _paths(11, 4, 9, 3)
    torch.testing.assert_close(signature(x, 5), torch.as_tensor(pysiglib.signature(x, 5)), rtol=1e-12, atol=1e-13)
    for lam in (0, 2):
        ref = torch.as_tensor(pysiglib.sig_kernel(x, y, dyadic_order=lam))
        torch.testing.assert_close(signature_kernel(x, y, dyadic_order=lam), ref, rtol=1e-12, atol=1e-13)
    ref = torch.as_tensor(pysiglib.sig_kernel(x, y, dyadic_order=1, static_kernel=pysiglib.RBFKernel(2 * 0.7**2)))
    torch.testing.assert_close(signature_kernel(x, y, dyadic_order=1, static_kernel="rbf", sigma=0.7), ref,
                               rtol=1e-12, atol=1e-13)
    a, b = _paths(12, 6, 8, 2), _paths(13, 5, 6, 2, scale=0.5) + 0.1
    ref = torch.as_tensor(pysiglib.sig_mmd(a, b, dyadic_order=1))
    torch.testing.assert_close(signature_mmd(a, b, dyadic_order=1), ref.reshape(()), rtol=1e-12, atol=1e-13)
