"""SDEs driven by fractional noise: Markov-approximate fractional Brownian motion (MA-fBM).

Daems, Opper, Crevecoeur, Birdal, "Variational Inference for SDEs Driven by Fractional Noise", ICLR 2024,
building on Harms & Stefanovits, "Affine representations of fractional processes with applications in
mathematical finance" (Stochastic Processes and their Applications, 2019).

**The approximation.** ``K`` Ornstein–Uhlenbeck processes driven by one shared Brownian motion ``W``,

    dY^k = -gamma_k Y^k dt + dW,     gamma_k = r^(k - (K + 1) / 2),  r = gamma_max^(2 / (K - 1)),

are mixed into ``Bhat(t) = sum_k omega_k (Y^k(t) - Y^k(0))``. The weights minimise the mean squared error
``int_0^T E (B(t) - Bhat(t))^2 dt`` to the fBM ``B`` of Hurst index ``H`` over the horizon ``[0, T]``, so
they solve the ``K x K`` system ``A omega = b`` (:func:`sdekit.timeseries.fbm_weights`; ``alpha = H + 1/2``,
``P`` / ``Q`` the regularised lower / upper incomplete gamma functions):

* **type II** (Riemann–Liouville, ``B(t) = int_0^t (t - s)^(H - 1/2) dW(s) / Gamma(alpha)``,
  ``Var B(t) = t^(2H) / (2H Gamma(alpha)^2)``; ``Y^k(0) = 0``):
  ``A_ij = [T - (1 - e^(-g T)) / g] / g`` with ``g = gamma_i + gamma_j``,
  ``b_k = T gamma_k^(-alpha) P(alpha, gamma_k T) - alpha gamma_k^(-alpha-1) P(alpha + 1, gamma_k T)``;
* **type I** (Mandelbrot–Van Ness, stationary increments; ``Y^k(0)`` drawn from the stationary law, joint
  covariance ``1 / (gamma_i + gamma_j)``): ``A_ij = [2T - (1 - e^(-gamma_i T)) / gamma_i
  - (1 - e^(-gamma_j T)) / gamma_j] / g``, ``b_k = 2T gamma_k^(-alpha) - T^alpha / (gamma_k Gamma(alpha + 1))
  + (e^(-gamma_k T) - e^(gamma_k T) Q(alpha, gamma_k T)) / gamma_k^(alpha + 1)``.

**Normalisation of type I** (derived here and checked against the exact variance in the tests). The type-I
``b`` above is the covariance with ``int [(t - s)_+^(H - 1/2) - (-s)_+^(H - 1/2)] dW(s) / Gamma(alpha)``,
whose variance is ``t^(2H) / (Gamma(2H + 1) sin(pi H))``, not the standard ``t^(2H)`` (1.38 times at
``H = 0.3``, 3.5 times at ``H = 0.1``): the official weights approximate that process. With
``normalisation="standard"`` (the default) the weights are multiplied by ``sqrt(Gamma(2H + 1) sin(pi H))``,
so ``Bhat`` approximates standard fBM, ``Var B(t) = t^(2H)``, ``Cov = (s^(2H) + t^(2H) - |t - s|^(2H)) / 2``;
``normalisation="paper"`` keeps the official scaling.

**Gradients in H.** ``torch.special.gammainc`` has no derivative in its first argument; here the
incomplete gamma functions are autograd functions whose ``a``-derivative is a central difference of the
float64 values (step ``1e-5``, error about ``1e-10``) and whose ``x``-derivative is the closed form.
``e^x Q(a, x)`` for ``x >= 40`` uses its asymptotic series (30 terms, relative error below ``1e-15``), so
nothing overflows (``e^x`` overflows float32 beyond ``x = 88``). Everything is computed in float64 and cast
at the end; the Hurst index may be a tensor (e.g. ``sigmoid(h)`` with a learnable ``h``), and ``omega``
is differentiable in it.

**Pieces.**

* :class:`sdekit.timeseries.MarkovFBM` (a module holding ``H = sigmoid(h)``, learnable or not): weights, the closed-form
  covariance of ``Bhat``, exact sampling of ``Bhat`` on a grid, and ``MarkovFBM.noise``, a
  ``bm(ta, tb)`` source (:class:`sdekit.timeseries.FractionalNoise`) so every core solver sees fractional increments.
* :func:`sdekit.timeseries.exact_fbm`: exact fBM on a uniform grid (Davies–Harte circulant embedding for type I,
  Cholesky for type II or on request) and :func:`sdekit.timeseries.fbm_covariance`, the exact covariance of either type.
* :func:`sdekit.timeseries.fractional_ou`: fractional Ornstein–Uhlenbeck data ``dX = -theta X dt + sigma dB``.
* :func:`sdekit.timeseries.markov_fou_log_likelihood`: the exact log-likelihood of discretely observed fOU driven by
  ``Bhat`` (a Kalman filter on ``(X, Y^1..Y^K)``), differentiable in ``H``, ``theta``, ``sigma``.
* :class:`sdekit.timeseries.FractionalLatentSDE`: the paper's variational model. Prior
  ``dX = b(t, X) dt + s dBhat``, i.e. on the augmented state
  ``dX = (b - s sum_k omega_k gamma_k Y^k) dt + s (sum_k omega_k) dW``,
  ``dY^k = -gamma_k Y^k dt + dW``; posterior ``dY^k = (-gamma_k Y^k + u) dt + dW`` with one control
  ``u(t, X, Y, context)`` shared by every ``k``, so the path KL is ``1/2 int |u|^2 dt`` (Girsanov), carried
  by :func:`sdekit.sdeint` with ``logqp=True``. ``FractionalLatentSDE.elbo`` gives the ELBO. With
  ``fbm=None`` the same model is driven by Brownian motion (``gamma = [0]``, ``omega = [1]``), the
  baseline.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..core import sdeint

__all__ = [
    "MarkovFBM", "FractionalNoise", "FractionalLatentSDE", "fbm_weights", "gamma_grid", "fbm_covariance",
    "exact_fbm", "fractional_ou", "markov_fou_log_likelihood",
]

F64 = torch.float64
_KINDS = ("I", "II")
_ASYMPTOTIC_X = 40.0
_FD_STEP = 1e-5


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def _check_hurst(H, name: str = "H") -> torch.Tensor:
    """``H`` as a float64 tensor (keeping its graph), every entry strictly inside (0, 1)."""
    if isinstance(H, bool) or not isinstance(H, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a number or a tensor in (0, 1), got {type(H).__name__}")
    t = H.to(F64) if isinstance(H, torch.Tensor) else torch.tensor(float(H), dtype=F64)
    bad = ~((t.detach() > 0) & (t.detach() < 1))
    if bool(bad.any()):
        raise ValueError(f"{name} (the Hurst index) must lie strictly inside (0, 1), got "
                         f"{t.detach().flatten()[bad.flatten()][0].item()}")
    return t


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if int(value) < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def _check_pos(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {v}")
    return v


def _check_kind(kind) -> str:
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'I' (Mandelbrot-Van Ness) or 'II' (Riemann-Liouville), got {kind!r}")
    return kind


# --------------------------------------------------------------------------------------------
# Incomplete gamma functions with a derivative in the first argument
# --------------------------------------------------------------------------------------------
class _RegGamma(torch.autograd.Function):
    """Regularised incomplete gamma ``P(a, x)`` (``upper=False``) or ``Q(a, x)`` (``upper=True``)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor, upper: bool) -> torch.Tensor:  # type: ignore[override]
        fn = torch.special.gammaincc if upper else torch.special.gammainc
        ctx.save_for_backward(a, x)
        ctx.upper = upper
        return fn(a, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        a, x = ctx.saved_tensors
        fn = torch.special.gammaincc if ctx.upper else torch.special.gammainc
        ga = gx = None
        if ctx.needs_input_grad[0]:
            h = _FD_STEP * torch.clamp(a.detach(), min=1.0)
            da = (fn(a + h, x) - fn(a - h, x)) / (2 * h)
            ga = grad * da
        if ctx.needs_input_grad[1]:
            dens = torch.exp((a - 1) * torch.log(x) - x - torch.lgamma(a))
            gx = grad * (-dens if ctx.upper else dens)
        return ga, gx, None


def _gammainc(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    a, x = torch.broadcast_tensors(a, x)
    return _RegGamma.apply(a, x, False)  # type: ignore[no-any-return]


def _exp_gammaincc(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``e^x Q(a, x)`` for ``x > 0`` without overflow: the direct product below ``x = 40``, the asymptotic
    series ``x^(a-1) / Gamma(a) sum_n (a-1)...(a-n) / x^n`` (30 terms) above."""
    a, x = torch.broadcast_tensors(a, x)
    small = x < _ASYMPTOTIC_X
    xs = torch.clamp(x, max=_ASYMPTOTIC_X)
    direct = torch.exp(xs) * _RegGamma.apply(a, xs, True)
    xl = torch.clamp(x, min=_ASYMPTOTIC_X)
    term = torch.ones_like(xl)
    total = torch.ones_like(xl)
    for n in range(1, 31):
        term = term * (a - n) / xl
        total = total + term
    asym = torch.exp((a - 1) * torch.log(xl) - torch.lgamma(a)) * total
    return torch.where(small, direct, asym)


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------
def gamma_grid(K: int, gamma_max: float = 20.0) -> torch.Tensor:
    """The OU speeds ``gamma_k = r^(k - (K + 1) / 2)``, ``r = gamma_max^(2 / (K - 1))``, ``k = 1..K``: a
    geometric grid from ``1 / gamma_max`` to ``gamma_max`` (``[1]`` for ``K = 1``), float64, shape ``(K,)``.

    Daems et al., "Variational Inference for SDEs Driven by Fractional Noise", ICLR 2024 (their default
    ``K = 5``, ``gamma_max = 20``).
    """
    K = _check_int("K", K)
    gamma_max = _check_pos("gamma_max", gamma_max)
    if K == 1:
        return torch.ones(1, dtype=F64)
    if gamma_max <= 1:
        raise ValueError(f"gamma_max must be > 1 for K > 1 (the grid spans 1/gamma_max..gamma_max), got {gamma_max}")
    k = torch.arange(1, K + 1, dtype=F64)
    return torch.tensor(gamma_max, dtype=F64) ** ((2.0 / (K - 1)) * (k - (K + 1) / 2))


def _type_one_scale(H: torch.Tensor) -> torch.Tensor:
    """``sqrt(Gamma(2H + 1) sin(pi H))``: standard fBM over the 1/Gamma(H + 1/2)-normalised MvN integral."""
    return torch.exp(0.5 * torch.lgamma(2 * H + 1)) * torch.sqrt(torch.sin(math.pi * H))


def _system(H: torch.Tensor, gammas: torch.Tensor, T: float, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, b)`` of the optimal-weight system (float64, ``A: (K, K)``, ``b: (*H.shape, K)``)."""
    g = gammas
    gi, gj = g[:, None], g[None, :]
    s = gi + gj
    a = H[..., None] + 0.5
    gT = g * T
    if kind == "II":
        A = (T + torch.expm1(-s * T) / s) / s
        b = (T * g ** (-a) * _gammainc(a, gT)
             - a * g ** (-a - 1) * _gammainc(a + 1, gT))
    else:
        e = torch.expm1(-g * T) / g  # (e^{-gT} - 1) / g
        A = (2 * T + e[:, None] + e[None, :]) / s
        b = (2 * T * g ** (-a)
             - torch.exp(a * math.log(T) - torch.lgamma(a + 1)) / g
             + (torch.exp(-gT) - _exp_gammaincc(a, gT)) / g ** (a + 1))
    return A, b


def fbm_weights(H, K: int = 5, *, gamma_max: float = 20.0, T: float = 1.0, kind: str = "I",
                normalisation: str = "standard", gammas: torch.Tensor | None = None) -> torch.Tensor:
    """Optimal weights ``omega`` of Markov-approximate fBM: the solution of ``A omega = b`` (module docstring).

    Daems et al., "Variational Inference for SDEs Driven by Fractional Noise", ICLR 2024, section 3 and
    appendix (the type-I normalisation is documented in the ``sdekit.timeseries.fbm`` module docstring).

    Arguments:
        H: Hurst index in (0, 1): a float or a tensor of any shape (keeps its autograd graph).
        K: number of OU processes (>= 1).
        gamma_max: largest speed of the geometric grid (:func:`sdekit.timeseries.gamma_grid`); ignored when
            ``gammas`` is given.
        T: the horizon ``[0, T]`` over which the mean squared error is minimised.
        kind: ``"I"`` (Mandelbrot–Van Ness, stationary increments) or ``"II"`` (Riemann–Liouville).
        normalisation: type I only: ``"standard"`` (``Var Bhat(t) ~ t^(2H)``) or ``"paper"`` (the official
            weights, ``Var ~ t^(2H) / (Gamma(2H + 1) sin(pi H))``).
        gammas: explicit positive speeds ``(K,)`` instead of the grid.

    Returns:
        float64 tensor ``(*H.shape, K)``, differentiable in ``H``.
    """
    Ht = _check_hurst(H)
    kind = _check_kind(kind)
    T = _check_pos("T", T)
    if normalisation not in ("standard", "paper"):
        raise ValueError(f"normalisation must be 'standard' or 'paper', got {normalisation!r}")
    if gammas is None:
        g = gamma_grid(K, gamma_max)
    else:
        g = torch.as_tensor(gammas, dtype=F64).detach().cpu()
        if g.dim() != 1 or g.numel() < 1 or not bool((g > 0).all()) or not bool(torch.isfinite(g).all()):
            raise ValueError(f"gammas must be a 1-D tensor of positive finite speeds, got {g.tolist()}")
    A, b = _system(Ht.cpu(), g, T, kind)
    omega = torch.linalg.solve(A, b.unsqueeze(-1)).squeeze(-1)
    if kind == "I" and normalisation == "standard":
        omega = omega * _type_one_scale(Ht.cpu())[..., None]
    return omega.to(Ht.device)


# --------------------------------------------------------------------------------------------
# Exact fBM
# --------------------------------------------------------------------------------------------
def _rl_cov(s: np.ndarray, t: np.ndarray, H: float) -> np.ndarray:
    """Riemann–Liouville covariance ``int_0^min(s,t) (s-u)^(H-1/2) (t-u)^(H-1/2) du / Gamma(H+1/2)^2``."""
    from scipy.special import gamma as gamma_fn
    from scipy.special import hyp2f1

    a = H - 0.5
    lo, hi = np.minimum(s, t), np.maximum(s, t)
    out = np.zeros(np.broadcast(lo, hi).shape)
    lo, hi = np.broadcast_to(lo, out.shape), np.broadcast_to(hi, out.shape)
    pos = lo > 0
    l_, h_ = lo[pos], hi[pos]
    # int_0^l v^a (h - l + v)^a dv = l^(a+1) h^a / (a+1) 2F1(-a, 1; a+2; l/h)   (Euler's integral)
    out[pos] = l_ ** (a + 1) * h_**a / (a + 1) * hyp2f1(-a, 1.0, a + 2, l_ / h_)
    return out / gamma_fn(H + 0.5) ** 2


def fbm_covariance(s, t, H: float, kind: str = "I") -> torch.Tensor:
    """Exact covariance ``Cov(B(s), B(t))`` of fBM (float64, broadcast over ``s`` and ``t``).

    Type I (standard fBM): ``(s^(2H) + t^(2H) - |t - s|^(2H)) / 2``. Type II (Riemann–Liouville,
    ``B(t) = int_0^t (t-u)^(H-1/2) dW(u) / Gamma(H+1/2)``): ``s^(H+1/2) t^(H-1/2) / (H+1/2)
    2F1(1/2 - H, 1; H + 3/2; s / t) / Gamma(H + 1/2)^2`` for ``s <= t`` (variance
    ``t^(2H) / (2H Gamma(H+1/2)^2)``). Mandelbrot & Van Ness, "Fractional Brownian motions, fractional
    noises and applications", SIAM Review 1968; Lim, "Fractional Brownian motion and multifractional
    Brownian motion of Riemann-Liouville type", J. Phys. A 2001.
    """
    H = float(_check_hurst(H))
    kind = _check_kind(kind)
    s_ = np.asarray(torch.as_tensor(s, dtype=F64).cpu().numpy(), dtype=np.float64)
    t_ = np.asarray(torch.as_tensor(t, dtype=F64).cpu().numpy(), dtype=np.float64)
    if (s_ < 0).any() or (t_ < 0).any():
        raise ValueError("fbm_covariance needs non-negative times s and t")
    if kind == "I":
        out = 0.5 * (s_ ** (2 * H) + t_ ** (2 * H) - np.abs(t_ - s_) ** (2 * H))
    else:
        out = _rl_cov(s_, t_, H)
    return torch.as_tensor(np.asarray(out, dtype=np.float64))


def _generator(seed) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator().manual_seed(int(seed))


def exact_fbm(n_steps: int, T: float, H: float, batch: int = 1, *, kind: str = "I", method: str = "auto",
              seed: int | None = None, dtype: torch.dtype = F64) -> torch.Tensor:
    """Exact fBM at ``t_i = i T / n_steps``, ``i = 0..n_steps``: a tensor ``(n_steps + 1, batch)``, ``B(0) = 0``.

    ``method="davies-harte"`` (type I only; the ``"auto"`` choice there) embeds the covariance of the
    increments (fractional Gaussian noise) in a circulant matrix and samples by FFT in ``O(n log n)``
    (Davies & Harte, "Tests for Hurst effect", Biometrika 1987; the embedding is non-negative definite for
    every H, Craigmile 2003). ``method="cholesky"`` factors the covariance of :func:`sdekit.timeseries.fbm_covariance`
    (``O(n^3)``; the ``"auto"`` choice for type II, whose increments are not stationary).
    """
    n_steps = _check_int("n_steps", n_steps)
    batch = _check_int("batch", batch)
    T = _check_pos("T", T)
    H = float(_check_hurst(H))
    kind = _check_kind(kind)
    if method == "auto":
        method = "davies-harte" if kind == "I" else "cholesky"
    if method not in ("davies-harte", "cholesky"):
        raise ValueError(f"method must be 'auto', 'davies-harte' or 'cholesky', got {method!r}")
    if method == "davies-harte" and kind != "I":
        raise ValueError("method='davies-harte' needs stationary increments: kind='I' (use 'cholesky' for II)")
    gen = _generator(seed)
    n = n_steps
    if method == "davies-harte":
        k = torch.arange(n + 1, dtype=F64)
        acov = 0.5 * ((k + 1) ** (2 * H) - 2 * k ** (2 * H) + (k - 1).abs() ** (2 * H))
        circ = torch.cat([acov, acov[1:n].flip(0)])  # length 2n
        lam = torch.fft.fft(circ).real
        if bool((lam < -1e-10 * lam.abs().max()).any()):  # pragma: no cover - never for fGn
            raise RuntimeError("Davies-Harte embedding is not non-negative definite")
        lam = lam.clamp(min=0)
        z = torch.complex(torch.randn(batch, 2 * n, generator=gen, dtype=F64),
                          torch.randn(batch, 2 * n, generator=gen, dtype=F64))
        fgn = torch.fft.fft(torch.sqrt(lam / (2 * n)) * z, dim=-1).real[:, :n]
        path = torch.cat([torch.zeros(batch, 1, dtype=F64), fgn.cumsum(-1)], dim=-1) * (T / n) ** H
        return path.t().contiguous().to(dtype)
    ts = torch.arange(1, n + 1, dtype=F64) * (T / n)
    C = fbm_covariance(ts[:, None], ts[None, :], H, kind)
    L = torch.linalg.cholesky(C + 1e-13 * C.diagonal().max() * torch.eye(n, dtype=F64))
    z = torch.randn(n, batch, generator=gen, dtype=F64)
    return torch.cat([torch.zeros(1, batch, dtype=F64), L @ z]).to(dtype)


def fractional_ou(n_steps: int, T: float, H: float, *, theta: float = 1.0, sigma: float = 1.0, x0: float = 0.0,
                  batch: int = 1, substeps: int = 16, kind: str = "I", seed: int | None = None,
                  dtype: torch.dtype = F64) -> torch.Tensor:
    """Fractional Ornstein–Uhlenbeck paths ``dX = -theta X dt + sigma dB``, ``X(0) = x0``, at
    ``t_i = i T / n_steps``: a tensor ``(n_steps + 1, batch)``.

    The fBM ``B`` is exact (:func:`sdekit.timeseries.exact_fbm`) on a grid ``substeps`` times finer; between its
    points ``B`` is taken linear, for which
    ``X(t + h) = e^(-theta h) X(t) + sigma (1 - e^(-theta h)) / (theta h) dB`` is exact (the process: Cheridito,
    Kawaguchi, Maejima, "Fractional Ornstein-Uhlenbeck processes", EJP 2003). The only error is that of the
    piecewise-linear ``B`` inside one fine step, of size about ``theta sigma h^(H + 1/2)`` over the path.
    """
    n_steps = _check_int("n_steps", n_steps)
    substeps = _check_int("substeps", substeps)
    theta = _check_pos("theta", theta, allow_zero=True)
    sigma = _check_pos("sigma", sigma, allow_zero=True)
    B = exact_fbm(n_steps * substeps, T, H, batch, kind=kind, seed=seed)
    dB = B.diff(dim=0)
    h = T / (n_steps * substeps)
    decay = math.exp(-theta * h)
    gain = sigma * (-math.expm1(-theta * h) / (theta * h) if theta > 0 else 1.0)
    x = torch.full((batch,), float(x0), dtype=F64)
    out = [x]
    for i in range(n_steps * substeps):
        x = decay * x + gain * dB[i]
        if (i + 1) % substeps == 0:
            out.append(x)
    return torch.stack(out).to(dtype)


# --------------------------------------------------------------------------------------------
# The approximation
# --------------------------------------------------------------------------------------------
def _ou_cross(gi: torch.Tensor, gj: torch.Tensor, a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """``Cov(Y^i(a), Y^j(b))`` for OU speeds ``gi, gj`` (broadcast), before subtracting ``Y(0)``."""
    s = gi + gj
    lo = torch.minimum(a, b)
    # the later process decays from the earlier time: e^{-g_later |b - a|}
    decay = torch.where(a <= b, torch.exp(-gj * (b - a)), torch.exp(-gi * (a - b)))
    if kind == "I":
        return decay / s
    return decay * (-torch.expm1(-s * lo)) / s


def _check_times(name: str, t) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=F64)
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{name} must hold finite non-negative times, got {t.flatten()[:5].tolist()}")
    return t


class MarkovFBM(nn.Module):
    """Markov-approximate fBM ``Bhat = sum_k omega_k (Y^k - Y^k(0))`` with ``H = sigmoid(h)``.

    Daems et al., "Variational Inference for SDEs Driven by Fractional Noise", ICLR 2024 (see
    the ``sdekit.timeseries.fbm`` module docstring for the formulas and the type-I normalisation).

    Arguments:
        H: initial Hurst index in (0, 1).
        K: number of OU processes (>= 1).
        gamma_max: the largest speed (the grid of :func:`sdekit.timeseries.gamma_grid`).
        T: the horizon the weights are optimised over.
        kind: ``"I"`` (Mandelbrot–Van Ness) or ``"II"`` (Riemann–Liouville).
        learn_hurst: make ``h = logit(H)`` a parameter (otherwise a buffer).
        normalisation: ``"standard"`` or ``"paper"`` (type I; see :func:`sdekit.timeseries.fbm_weights`).

    Example:
        >>> fbm = MarkovFBM(0.7, K=5)
        >>> fbm.variance(torch.tensor([0.5, 1.0]))  # close to t^1.4
    """

    gammas: torch.Tensor
    h: torch.Tensor

    def __init__(self, H: float = 0.5, K: int = 5, *, gamma_max: float = 20.0, T: float = 1.0, kind: str = "I",
                 learn_hurst: bool = False, normalisation: str = "standard") -> None:
        super().__init__()
        H0 = float(_check_hurst(H))
        self.K = _check_int("K", K)
        self.kind = _check_kind(kind)
        self.T = _check_pos("T", T)
        if normalisation not in ("standard", "paper"):
            raise ValueError(f"normalisation must be 'standard' or 'paper', got {normalisation!r}")
        self.normalisation = normalisation
        self.gamma_max = _check_pos("gamma_max", gamma_max)
        self.register_buffer("gammas", gamma_grid(self.K, self.gamma_max))
        raw = torch.tensor(math.log(H0 / (1 - H0)), dtype=F64)
        if learn_hurst:
            self.h = nn.Parameter(raw)
        else:
            self.register_buffer("h", raw)

    @property
    def hurst(self) -> torch.Tensor:
        """``H = sigmoid(h)`` (a 0-d float64 tensor, differentiable when learnable)."""
        return torch.sigmoid(self.h.to(F64))

    def weights(self) -> torch.Tensor:
        """``omega`` (float64, ``(K,)``), recomputed from the current ``H`` with its gradient."""
        return fbm_weights(self.hurst, gammas=self.gammas, T=self.T, kind=self.kind,
                           normalisation=self.normalisation)

    def covariance(self, s, t) -> torch.Tensor:
        """Closed-form ``Cov(Bhat(s), Bhat(t))`` (float64, broadcast over ``s`` and ``t``)."""
        s, t = _check_times("s", s), _check_times("t", t)
        w = self.weights()
        g = self.gammas.to(F64)
        gi, gj = g[:, None], g[None, :]
        s_, t_ = s[..., None, None], t[..., None, None]
        c = _ou_cross(gi, gj, s_, t_, self.kind)
        if self.kind == "I":
            z = torch.zeros_like(s_)
            c = c - _ou_cross(gi, gj, s_, z, "I") - _ou_cross(gi, gj, z, t_, "I") + 1.0 / (gi + gj)
        return torch.einsum("i,...ij,j->...", w, c, w)

    def variance(self, t) -> torch.Tensor:
        """Closed-form ``Var Bhat(t)``."""
        return self.covariance(t, t)

    def exact_variance(self, t) -> torch.Tensor:
        """The variance of the fBM being approximated (``t^(2H)`` for type I with the standard
        normalisation; see :func:`sdekit.timeseries.fbm_weights` for the others)."""
        t = _check_times("t", t)
        H = self.hurst.detach()
        v = t ** (2 * H)
        if self.kind == "II":
            return v / (2 * H * torch.exp(torch.lgamma(H + 0.5)) ** 2)
        if self.normalisation == "paper":
            return v / (torch.exp(torch.lgamma(2 * H + 1)) * torch.sin(math.pi * H))
        return v

    def _ou_states(self, ts: torch.Tensor, shape: tuple[int, ...], gen: torch.Generator | None) -> torch.Tensor:
        """Exact joint draw of ``Y^k(t_i) - Y^k(t_0)``: ``(len(ts), K, *shape)``, float64."""
        g = self.gammas.to(F64).cpu()
        K = self.K
        s = g[:, None] + g[None, :]
        eye = torch.eye(K, dtype=F64)
        numel = math.prod(shape)
        if self.kind == "I":
            L0 = torch.linalg.cholesky(1.0 / s + 1e-14 * eye)
            y = L0 @ torch.randn(K, numel, generator=gen, dtype=F64)
        else:
            y = torch.zeros(K, numel, dtype=F64)
        y0 = y
        out = [torch.zeros_like(y)]
        for i in range(len(ts) - 1):
            h = float(ts[i + 1] - ts[i])
            cov = -torch.expm1(-s * h) / s
            L = torch.linalg.cholesky(cov + 1e-15 * eye)
            y = torch.exp(-g * h)[:, None] * y + L @ torch.randn(K, numel, generator=gen, dtype=F64)
            out.append(y - y0)
        return torch.stack(out).reshape(len(ts), K, *shape)

    def sample(self, ts, shape=(1,), *, seed: int | None = None) -> torch.Tensor:
        """Exact draw of ``Bhat`` at the increasing times ``ts`` (from ``ts[0]``, where ``Bhat = 0``):
        ``(len(ts), *shape)``, float64, differentiable in ``H`` (the OU paths do not depend on it)."""
        ts = _grid_times(ts)
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        Z = self._ou_states(ts, shape, _generator(seed))
        return torch.einsum("k,nk...->n...", self.weights(), Z)

    def noise(self, ts, shape, *, seed: int | None = None, dtype: torch.dtype | None = None,
              device=None) -> FractionalNoise:
        """A ``bm(ta, tb)`` source of ``Bhat`` increments on the grid ``ts``
        (:class:`sdekit.timeseries.FractionalNoise`)."""
        return FractionalNoise(self, ts, shape, seed=seed, dtype=dtype, device=device)


def _grid_times(ts) -> torch.Tensor:
    ts = torch.as_tensor(ts, dtype=F64).detach().cpu()
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError(f"ts must be a 1-D grid of at least two times, got shape {tuple(ts.shape)}")
    if not bool(torch.isfinite(ts).all()) or not bool((ts.diff() > 0).all()):
        raise ValueError("ts must be finite and strictly increasing")
    return ts


class FractionalNoise:
    """Increments of Markov-approximate fBM as a Brownian source: ``bm(ta, tb) = Bhat(tb) - Bhat(ta)``.

    Pass it as ``bm=`` to :func:`sdekit.sdeint` to solve ``dX = f dt + g dBhat``: the OU states are drawn
    exactly (joint Gaussian transitions) on the grid ``ts``, and every query must fall on that grid (solve
    with ``dt`` equal to its spacing; a fixed-step solver then queries only grid points). ``Bhat`` is a
    semimartingale (martingale part ``(sum_k omega_k) W``), so the Euler scheme gives the Itô integral
    against it, and for additive noise (``g`` independent of the state) every fixed-step solver is exact in
    the noise; solvers that need the space-time Lévy area (``srk``) are refused. Increments are
    differentiable in ``H`` through ``omega`` (computed once, at construction: build a new source after
    each optimiser step when ``H`` is learnt).

    Daems et al., "Variational Inference for SDEs Driven by Fractional Noise", ICLR 2024.

    Arguments:
        fbm: the :class:`sdekit.timeseries.MarkovFBM`.
        ts: increasing grid times (1-D).
        shape: shape of ``Bhat(t)``, e.g. ``(batch, d)``.
        seed: int seed of the draws (``None``: torch's global generator).
        dtype, device: of the returned increments (default: torch's default dtype, CPU).
    """

    def __init__(self, fbm: MarkovFBM, ts, shape, *, seed: int | None = None, dtype: torch.dtype | None = None,
                 device=None) -> None:
        if not isinstance(fbm, MarkovFBM):
            raise TypeError(f"fbm must be a MarkovFBM, got {type(fbm).__name__}")
        self.ts = _grid_times(ts)
        shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if not shape or any(s <= 0 for s in shape):
            raise ValueError(f"shape must have positive entries, got {shape}")
        self.shape = shape
        self.dtype = dtype or torch.get_default_dtype()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        Z = fbm._ou_states(self.ts, shape, _generator(seed))
        self.path = torch.einsum("k,nk...->n...", fbm.weights(), Z).to(self.device, self.dtype)
        # float32 solver times land within rounding of the nodes: snap within 0.1% of the smallest spacing
        self._tol = 1e-3 * float(self.ts.diff().min())
        self._times = self.ts.tolist()

    def _index(self, t: float) -> int:
        i = int(np.searchsorted(self._times, t - self._tol))
        if i >= len(self._times) or abs(self._times[i] - t) > self._tol:
            raise ValueError(
                f"FractionalNoise was queried at t={t}, off its grid ({self._times[0]}..{self._times[-1]}, "
                f"{len(self._times)} points): solve with a fixed dt equal to the grid spacing, or build the "
                "noise on the solver's grid (float32 output times whose spacing rounds above dt make the solver "
                "split a step: pass float64 ts or a dt slightly above the spacing)"
            )
        return i

    def __call__(self, ta, tb=None, return_U: bool = False) -> torch.Tensor:
        """``Bhat(tb) - Bhat(ta)`` (``bm(t)`` alone: ``Bhat(t) - Bhat(ts[0])``)."""
        if return_U:
            raise TypeError("FractionalNoise has no space-time Levy area (return_U); use a solver without it")
        if tb is None:
            ta, tb = self._times[0], ta
        return self.path[self._index(float(tb))] - self.path[self._index(float(ta))]


# --------------------------------------------------------------------------------------------
# Likelihood of fOU driven by Bhat (Kalman filter)
# --------------------------------------------------------------------------------------------
def markov_fou_log_likelihood(x: torch.Tensor, dt: float, fbm: MarkovFBM, theta, sigma, *,
                              obs_std: float = 0.0) -> torch.Tensor:
    """Exact log-likelihood of paths of ``dX = -theta X dt + sigma dBhat`` observed every ``dt``.

    The augmented state ``Z = (X, Y^1..Y^K)`` is linear Gaussian: ``dX = (-theta X - sigma sum_k omega_k
    gamma_k Y^k) dt + sigma (sum_k omega_k) dW``, ``dY^k = -gamma_k Y^k dt + dW``; its transition over ``dt``
    is exact (matrix exponential, Van Loan's method for the noise covariance) and a Kalman filter gives
    ``log p(x_1..x_n | x_0)``. Differentiable in ``H`` (through ``omega``), ``theta`` and ``sigma``, so a
    maximum-likelihood fit estimates the Hurst index. This is the likelihood the ELBO of
    :class:`sdekit.timeseries.FractionalLatentSDE` bounds for this prior (Daems et al., ICLR 2024).

    Arguments:
        x: observed paths ``(n + 1, batch)``, ``x[0]`` the known start.
        dt: observation spacing.
        fbm: the noise model (its ``H``, possibly learnable).
        theta, sigma: drift rate and noise scale (floats or 0-d tensors, ``sigma > 0``).
        obs_std: standard deviation of Gaussian observation noise on ``x[1:]`` (0: exact observations).

    Returns:
        ``(batch,)`` float64 log-likelihoods.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be a tensor (n + 1, batch) with n >= 1, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must be finite")
    dt = _check_pos("dt", dt)
    obs_std = _check_pos("obs_std", obs_std, allow_zero=True)
    x = x.to(F64)
    w = fbm.weights()
    g = fbm.gammas.to(F64)
    K = fbm.K
    th = torch.as_tensor(theta, dtype=F64)
    sg = torch.as_tensor(sigma, dtype=F64)
    D = K + 1
    F = torch.zeros(D, D, dtype=F64)
    F = F.index_put((torch.tensor([0]), torch.tensor([0])), -th.reshape(1))
    F = F.index_put((torch.zeros(K, dtype=torch.long), torch.arange(1, D)), -sg * w * g)
    F = F.index_put((torch.arange(1, D), torch.arange(1, D)), -g)
    G = torch.cat([(sg * w.sum()).reshape(1), torch.ones(K, dtype=F64)])
    M = torch.zeros(2 * D, 2 * D, dtype=F64)
    M = torch.cat([torch.cat([-F, G[:, None] * G[None, :]], 1), torch.cat([torch.zeros(D, D, dtype=F64), F.t()], 1)])
    E = torch.linalg.matrix_exp(M * dt)
    Phi = E[D:, D:].t()
    Q = Phi @ E[:D, D:]
    Q = 0.5 * (Q + Q.t())
    batch = x.shape[1]
    m = torch.zeros(batch, D, dtype=F64)
    m = torch.cat([x[0][:, None], m[:, 1:]], 1)
    P = torch.zeros(D, D, dtype=F64)
    if fbm.kind == "I":
        s = g[:, None] + g[None, :]
        P = torch.block_diag(torch.zeros(1, 1, dtype=F64), 1.0 / s)
    R = obs_std**2
    ll = torch.zeros(batch, dtype=F64)
    for i in range(1, x.shape[0]):
        m = m @ Phi.t()
        P = Phi @ P @ Phi.t() + Q
        S = P[0, 0] + R
        innov = x[i] - m[:, 0]
        ll = ll - 0.5 * (torch.log(2 * math.pi * S) + innov**2 / S)
        Kg = P[:, 0] / S
        m = m + innov[:, None] * Kg[None, :]
        P = P - Kg[:, None] * P[0][None, :]
        P = 0.5 * (P + P.t())
    return ll


# --------------------------------------------------------------------------------------------
# The variational model
# --------------------------------------------------------------------------------------------
class FractionalLatentSDE(nn.Module):
    """Latent SDE driven by Markov-approximate fBM, with the variational posterior of Daems et al.

    Prior: ``dX = b(t, X) dt + s dBhat``; posterior: the OU states get a shared control,
    ``dY^k = (-gamma_k Y^k + u) dt + dW``, hence ``dX = (b + s sum_k omega_k (u - gamma_k Y^k)) dt +
    s (sum_k omega_k) dW``. The state is ``(X, Y)`` packed as ``(batch, d (K + 1))`` with general noise
    ``(batch, d (K + 1), d)`` (``X_j`` and every ``Y_j^k`` share ``W_j``), so :func:`sdekit.sdeint` with
    ``logqp=True`` returns ``1/2 int |u|^2 dt``, the KL between the two path measures (the least-squares
    ``pinv(g) (f - h)`` is exactly ``u``). With ``fbm=None`` the noise is Brownian (``gamma = [0]``,
    ``omega = [1]``): the baseline latent SDE with the same networks.

    Daems, Opper, Crevecoeur, Birdal, "Variational Inference for SDEs Driven by Fractional Noise", ICLR 2024;
    Li, Wong, Chen, Duvenaud, "Scalable gradients for stochastic differential equations", AISTATS 2020.

    Arguments:
        dim: latent dimension ``d``.
        fbm: a :class:`sdekit.timeseries.MarkovFBM` (its ``H`` learnable or fixed), or ``None`` for Brownian noise.
        drift: prior drift ``b(t, X) -> (batch, d)``; default a learnable linear ``-theta X`` per dimension.
        control: the posterior control ``u(t, X, Y, context) -> (batch, d)`` as a module taking the
            concatenation ``[t, X, Y, context]`` (width ``1 + d (K + 1) + context_dim``); default an MLP.
        context_dim: width of the context features returned by the ``context`` callable of ``elbo``.
        hidden: width of the default control MLP.
        sigma: initial noise scale ``s`` (learnable, positive, one per dimension).
    """

    def __init__(self, dim: int, fbm: MarkovFBM | None = None, *, drift: nn.Module | None = None,
                 control: nn.Module | None = None, context_dim: int = 0, hidden: int = 64,
                 sigma: float = 1.0) -> None:
        super().__init__()
        self.dim = _check_int("dim", dim)
        self.context_dim = _check_int("context_dim", context_dim, low=0)
        hidden = _check_int("hidden", hidden)
        sigma = _check_pos("sigma", sigma)
        if fbm is not None and not isinstance(fbm, MarkovFBM):
            raise TypeError(f"fbm must be a MarkovFBM or None, got {type(fbm).__name__}")
        self.fbm = fbm
        self.K = fbm.K if fbm is not None else 1
        self.drift = drift
        if drift is None:
            self.log_theta = nn.Parameter(torch.zeros(self.dim))
        width = 1 + self.dim * (self.K + 1) + self.context_dim
        self.control = control if control is not None else nn.Sequential(
            nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, self.dim))
        self.log_sigma = nn.Parameter(torch.full((self.dim,), math.log(sigma)))
        self.noise_type = "general"
        self.sde_type = "ito"
        self._omega: torch.Tensor | None = None
        self._gammas: torch.Tensor | None = None
        self._context: Callable[[torch.Tensor], torch.Tensor] | None = None

    # -- the pieces of the SDE ------------------------------------------------------------------
    def _coefficients(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fbm is None:
            return like.new_ones(1), like.new_zeros(1)
        return self.fbm.weights().to(like), self.fbm.gammas.to(like)

    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = z[:, : self.dim], z[:, self.dim:]
        return x, y.reshape(z.shape[0], self.dim, self.K)

    def _prior_drift(self, t, x: torch.Tensor) -> torch.Tensor:
        if self.drift is not None:
            return self.drift(t, x)
        return -torch.exp(self.log_theta) * x

    def _parts(self, t, z: torch.Tensor):
        assert self._omega is not None and self._gammas is not None, "call elbo() or prepare() first"
        x, y = self._split(z)
        s = torch.exp(self.log_sigma)
        mean_rev = -self._gammas * y  # (B, d, K)
        hx = self._prior_drift(t, x) + s * (mean_rev * self._omega).sum(-1)
        return x, y, s, mean_rev, hx

    def u(self, t, z: torch.Tensor) -> torch.Tensor:
        """The posterior control ``u(t, X, Y, context)``: ``(batch, d)``."""
        tt = torch.as_tensor(t, dtype=z.dtype, device=z.device).reshape(1, 1).expand(z.shape[0], 1)
        feats = [tt, z]
        if self.context_dim:
            assert self._context is not None
            feats.append(self._context(tt[:, 0]))
        return self.control(torch.cat(feats, -1))

    def h(self, t, z: torch.Tensor) -> torch.Tensor:
        """Prior drift of the augmented state."""
        _, _, _, mean_rev, hx = self._parts(t, z)
        return torch.cat([hx, mean_rev.flatten(1)], -1)

    def f(self, t, z: torch.Tensor) -> torch.Tensor:
        """Posterior drift of the augmented state."""
        _, _, s, mean_rev, hx = self._parts(t, z)
        assert self._omega is not None
        u = self.u(t, z)
        fx = hx + s * self._omega.sum() * u
        fy = mean_rev + u[..., None]
        return torch.cat([fx, fy.flatten(1)], -1)

    def g(self, t, z: torch.Tensor) -> torch.Tensor:
        """Diffusion ``(batch, d (K + 1), d)``: ``s sum omega`` for ``X_j``, 1 for each ``Y_j^k``."""
        assert self._omega is not None
        B, d, K = z.shape[0], self.dim, self.K
        s = torch.exp(self.log_sigma).to(z)
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        gx = (s * self._omega.sum())[:, None] * eye
        gy = eye[:, None, :].expand(d, K, d).reshape(d * K, d)
        return torch.cat([gx, gy]).expand(B, d * (K + 1), d)

    # -- the objective ----------------------------------------------------------------------------
    def prepare(self, like: torch.Tensor) -> None:
        """Compute ``omega`` (with its gradient in ``H``) for the next solves."""
        self._omega, self._gammas = self._coefficients(like)

    def initial_state(self, x0: torch.Tensor, *, seed: int | None = None) -> torch.Tensor:
        """``(X(0), Y(0))`` packed: ``Y(0) = 0`` (type II, Brownian) or the stationary draw (type I)."""
        B = x0.shape[0]
        y = x0.new_zeros(B, self.dim, self.K)
        if self.fbm is not None and self.fbm.kind == "I":
            g = self.fbm.gammas.to(F64)
            L = torch.linalg.cholesky(1.0 / (g[:, None] + g[None, :]) + 1e-14 * torch.eye(self.K, dtype=F64))
            eps = torch.randn(B, self.dim, self.K, generator=_generator(seed), dtype=F64)
            y = (eps @ L.t()).to(x0)
        return torch.cat([x0, y.flatten(1)], -1)

    def elbo(self, ts, obs: torch.Tensor, *, obs_std: float, x0: torch.Tensor | None = None, dt: float = 0.01,
             context: Callable[[torch.Tensor], torch.Tensor] | None = None, samples: int = 1,
             seed: int | None = None) -> torch.Tensor:
        """ELBO ``E_q[sum_i log N(obs_i | X(t_i), obs_std^2)] - KL(q || p)`` per series: ``(batch,)``.

        Arguments:
            ts: observation times, increasing, ``ts[0]`` the start (``(n,)``).
            obs: observations ``(n, batch, d)`` (NaN marks a missing value; ``obs[0]`` is ignored when
                ``x0`` is given).
            obs_std: observation noise standard deviation.
            x0: known start ``(batch, d)``; default ``obs[0]``.
            dt: Euler step; needs ``gamma_max * dt <= 0.5`` (the OU stiffness condition of the paper).
            context: ``context(t) -> (batch * samples, context_dim)`` features of the data for the control.
            samples: posterior samples per series (averaged).
            seed: seed of the Brownian path and of ``Y(0)``.
        """
        obs_std = _check_pos("obs_std", obs_std)
        dt = _check_pos("dt", dt)
        if self.fbm is not None and float(self.fbm.gammas.max()) * dt > 0.5:
            raise ValueError(f"dt={dt} is too large for gamma_max={float(self.fbm.gammas.max())}: the Euler step "
                             "needs gamma_max * dt <= 0.5")
        if not isinstance(obs, torch.Tensor) or obs.dim() != 3 or obs.shape[-1] != self.dim:
            raise ValueError(f"obs must be a tensor (n, batch, {self.dim}), got "
                             f"{tuple(obs.shape) if isinstance(obs, torch.Tensor) else type(obs).__name__}")
        samples = _check_int("samples", samples)
        if self.context_dim and context is None:
            raise ValueError(f"this model has context_dim={self.context_dim}: pass context(t)")
        self._context = context
        ts_t = torch.as_tensor(ts, dtype=obs.dtype)
        if ts_t.dim() != 1 or ts_t.numel() != obs.shape[0]:
            raise ValueError(f"ts must be 1-D with one time per observation ({obs.shape[0]}), got {tuple(ts_t.shape)}")
        B = obs.shape[1]
        start = obs[0] if x0 is None else x0
        start = start.repeat(samples, 1)
        target = obs.repeat(1, samples, 1)
        self.prepare(obs)
        z0 = self.initial_state(start, seed=seed)
        from ..core import BrownianPath

        bm = BrownianPath(float(ts_t[0]), float(ts_t[-1]), (B * samples, self.dim), seed=seed, dtype=obs.dtype)
        zs, kl = sdeint(self, z0, ts_t, dt=dt, method="euler", bm=bm, logqp=True)
        x = zs[1:, :, : self.dim]
        y = target[1:]
        mask = torch.isfinite(y)
        resid = torch.where(mask, (torch.nan_to_num(y) - x) / obs_std, torch.zeros_like(x))
        ll = (-0.5 * resid**2 - math.log(obs_std) - 0.5 * math.log(2 * math.pi)) * mask
        value = ll.sum((0, 2)) - kl.sum(0)
        return value.reshape(samples, B).mean(0)
