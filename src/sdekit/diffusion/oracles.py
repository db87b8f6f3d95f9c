r"""Exact oracles: data distributions whose denoiser, score and density are known at every time.

* :class:`GaussianMixture`: ``p_0 = sum_k w_k N(m_k, S_k)``. Under ``x_t = alpha x_0 + sigma eps`` each
  component stays Gaussian, ``N(alpha m_k, alpha^2 S_k + sigma^2 I)``, so ``p_t``, its score and the
  posterior mean ``E[x_0 | x_t]`` are closed form (a Gaussian posterior per component, weighted by the
  component responsibilities).
* :class:`EmpiricalData`: ``p_0`` the empirical measure of a finite set ``{y_i}``; ``D*`` is the
  softmax-weighted mean of the ``y_i`` (the "optimal denoiser" of Karras et al. 2022, eq. 57, and of
  Chen et al. 2024, "A geometric perspective on diffusion models"): an exact denoiser that memorises
  the data, useful to measure solver error with no training.

Both give ``denoiser(x, t, schedule)``, ``score(x, t, schedule)``, ``log_prob(x, t, schedule)``,
``sample(n, generator)`` and ``as_denoiser(schedule)`` (a :class:`~sdekit.diffusion.Denoiser` that
plugs into :func:`~sdekit.diffusion.sample`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ._utils import as_time, check_tensor
from .prediction import Denoiser
from .schedules import Schedule

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["GaussianMixture", "EmpiricalData"]


def _check_schedule(schedule) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
    return schedule


def _per_query(c: torch.Tensor, batch: int, dtype, device) -> torch.Tensor:
    """A 0-d or (batch,) coefficient as a (batch,) tensor."""
    c = c.to(dtype=dtype, device=device)
    return c.expand(batch) if c.dim() == 0 else c


def _check_t(t, x: torch.Tensor) -> torch.Tensor:
    t = as_time(t)
    if t.dim() == 1 and t.shape[0] != x.shape[0]:
        raise ValueError(f"t has {t.shape[0]} per-sample times but x has batch size {x.shape[0]}")
    return t


class GaussianMixture:
    r"""A Gaussian mixture ``p_0 = sum_k w_k N(m_k, S_k)`` in ``d`` dimensions with exact diffused
    quantities under any schedule. At time ``t`` (``a = alpha(t)``, ``s = sigma(t)``) component ``k``
    is ``N(a m_k, C_k)``, ``C_k = a^2 S_k + s^2 I``, and

    .. math:: \nabla\log p_t(x) = -\sum_k r_k(x) C_k^{-1}(x - a m_k),\qquad
              E[x_0 | x_t = x] = \sum_k r_k(x)\,\big(m_k + a S_k C_k^{-1}(x - a m_k)\big),

    with responsibilities ``r_k(x) ∝ w_k N(x; a m_k, C_k)``. Full covariances are diagonalised once,
    ``S_k = U_k diag(l_k) U_k^T``, so per-sample times cost no more than diagonal ones.

    Arguments:
        weights: ``(K,)`` positive (normalised to sum to 1).
        means: ``(K, d)``.
        variances: ``(K,)`` isotropic, ``(K, d)`` diagonal or ``(K, d, d)`` full (symmetric positive
            semi-definite) covariances.

    Computations run in float64 and are returned in the dtype of ``x`` (``sample`` in the dtype of
    ``means``, float64 when given as a list).
    """

    def __init__(self, weights: torch.Tensor | ArrayLike, means: torch.Tensor | ArrayLike,
                 variances: torch.Tensor | ArrayLike) -> None:
        m_in = means
        w = torch.as_tensor(weights).detach().to("cpu", torch.float64)
        m = torch.as_tensor(means).detach().to("cpu", torch.float64)
        v = torch.as_tensor(variances).detach().to("cpu", torch.float64)
        if m.dim() != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(m.shape)}")
        K, d = m.shape
        if w.shape != (K,):
            raise ValueError(f"weights must have shape (K,) = ({K},) to match means {tuple(m.shape)}; "
                             f"got {tuple(w.shape)}")
        if not bool((w > 0).all()) or not bool(torch.isfinite(w).all()):
            raise ValueError(f"weights must be positive and finite, got {w.tolist()}")
        if not bool(torch.isfinite(m).all()):
            raise ValueError("means must be finite")
        self.weights = w / w.sum()
        self.means = m
        self.dim, self.num_components = d, K
        if v.shape == (K,):
            v = v[:, None].expand(K, d).clone()
        if v.shape == (K, d):
            if not bool((v >= 0).all()) or not bool(torch.isfinite(v).all()):
                raise ValueError("diagonal variances must be non-negative and finite")
            self.full = False
            self._lam, self._U = v, None
        elif v.shape == (K, d, d):
            asym = (v - v.transpose(1, 2)).abs().max().item()
            if asym > 1e-10 * max(1.0, v.abs().max().item()):
                raise ValueError(f"full covariances must be symmetric; max |S - S^T| = {asym:.3g}")
            lam, U = torch.linalg.eigh(0.5 * (v + v.transpose(1, 2)))
            if lam.min().item() < -1e-10 * max(1.0, lam.abs().max().item()):
                raise ValueError(f"full covariances must be positive semi-definite; smallest eigenvalue "
                                 f"{lam.min().item():.3g}")
            self.full = True
            self._lam, self._U = lam.clamp_min(0.0), U
        else:
            raise ValueError(f"variances must have shape (K,), (K, d) or (K, d, d) = ({K},), ({K}, {d}) or "
                             f"({K}, {d}, {d}); got {tuple(v.shape)}")
        self.variances = v
        floating = isinstance(m_in, torch.Tensor) and m_in.is_floating_point()
        self.dtype = m_in.dtype if isinstance(m_in, torch.Tensor) and floating else torch.float64

    def __repr__(self) -> str:
        kind = "full" if self.full else "diagonal"
        return f"GaussianMixture(K={self.num_components}, d={self.dim}, {kind} covariances)"

    # -- moments ---------------------------------------------------------------------------
    def _covariances(self) -> torch.Tensor:
        if self._U is not None:
            return self._U @ torch.diag_embed(self._lam) @ self._U.transpose(1, 2)
        return torch.diag_embed(self._lam)

    @property
    def mean(self) -> torch.Tensor:
        """Mean of the mixture, ``(d,)`` (float64)."""
        return self.weights @ self.means

    @property
    def covariance(self) -> torch.Tensor:
        """Covariance of the mixture, ``(d, d)`` (float64)."""
        mu = self.mean
        second = torch.einsum("k,kij->ij", self.weights, self._covariances())
        second = second + torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        return second - torch.outer(mu, mu)

    def at(self, t: float | torch.Tensor, schedule: Schedule) -> GaussianMixture:
        """The marginal ``p_t`` at one time ``t`` (a float or 0-d tensor) as a mixture:
        ``N(alpha m_k, alpha^2 S_k + sigma^2 I)``."""
        _check_schedule(schedule)
        t = as_time(t)
        if t.dim() != 0:
            raise ValueError(f"at() needs one time (a float or 0-d tensor), got shape {tuple(t.shape)}")
        a = float(schedule.alpha(t.double()))
        s = float(schedule.sigma(t.double()))
        eye = torch.eye(self.dim, dtype=torch.float64)
        cov = a * a * self._covariances() + s * s * eye if self.full else a * a * self._lam + s * s
        return GaussianMixture(self.weights, a * self.means, cov)

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, *, dtype: torch.dtype | None = None
               ) -> torch.Tensor:
        """``n`` exact samples ``(n, d)`` of ``p_0`` (component by ``torch.multinomial``, then a
        Gaussian draw), in ``dtype`` (default: that of ``means``); CPU."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        z = z * self._lam[k].sqrt()
        if self._U is not None:
            z = torch.einsum("nij,nj->ni", self._U[k], z)
        return (self.means[k] + z).to(dtype or self.dtype)

    # -- exact diffused quantities -----------------------------------------------------------
    def _terms(self, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule):
        _check_schedule(schedule)
        check_tensor("x", x, min_dim=2)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        t = _check_t(t, x)
        dev = x.device
        x64 = x.to(torch.float64)
        batch = x.shape[0]
        a = _per_query(schedule.alpha(t.to(torch.float64)), batch, torch.float64, dev)[:, None, None]
        s = _per_query(schedule.sigma(t.to(torch.float64)), batch, torch.float64, dev)[:, None, None]
        means = self.means.to(dev)
        lam = self._lam.to(dev)[None]                      # (1, K, d)
        r = x64[:, None, :] - a * means[None]             # (B, K, d)
        U = self._U.to(dev) if self._U is not None else None
        if U is not None:
            r = torch.einsum("kde,bkd->bke", U, r)       # eigen-coordinates U^T r
        c = a * a * lam + s * s                            # (B, K, d)
        log_norm = -0.5 * ((r * r / c).sum(-1) + torch.log(c).sum(-1) + self.dim * math.log(2 * math.pi))
        logits = torch.log(self.weights.to(dev))[None] + log_norm   # (B, K)
        return r, c, a, lam, U, logits

    def _to_ambient(self, U, v):
        return v if U is None else torch.einsum("kde,bke->bkd", U, v)

    def log_prob(self, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """``log p_t(x)``, ``(batch,)``, for ``x: (batch, d)`` and ``t`` a float, 0-d or ``(batch,)``."""
        *_, logits = self._terms(x, t, schedule)
        return torch.logsumexp(logits, dim=1).to(x.dtype)

    def score(self, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """``grad_x log p_t(x)``, ``(batch, d)``."""
        r, c, a, lam, U, logits = self._terms(x, t, schedule)
        resp = torch.softmax(logits, dim=1)[..., None]
        comp = self._to_ambient(U, -r / c)
        return (resp * comp).sum(1).to(x.dtype)

    def denoiser(self, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """``E[x_0 | x_t = x]``, ``(batch, d)``."""
        r, c, a, lam, U, logits = self._terms(x, t, schedule)
        resp = torch.softmax(logits, dim=1)[..., None]
        comp = self.means.to(x.device)[None] + self._to_ambient(U, a * lam * r / c)
        return (resp * comp).sum(1).to(x.dtype)

    def as_denoiser(self, schedule: Schedule) -> Denoiser:
        """The exact denoiser as a :class:`~sdekit.diffusion.Denoiser` for ``schedule``."""
        _check_schedule(schedule)
        return Denoiser(_Bound(self, schedule), schedule, prediction="x0")


class _Bound:
    """``model(x, t) = oracle.denoiser(x, t, schedule)``."""

    def __init__(self, oracle, schedule) -> None:
        self.oracle, self.schedule = oracle, schedule

    def __call__(self, x, t):
        return self.oracle.denoiser(x, t, self.schedule)

    def __repr__(self) -> str:
        return f"{self.oracle!r}.denoiser"


class EmpiricalData:
    r"""The empirical distribution of a finite data set ``{y_i}_{i=1..n}`` and its exact (optimal)
    denoiser (Karras et al. 2022, appendix B.3, eq. 57; Chen et al. 2024, "A geometric perspective on
    diffusion models"):

    .. math:: D^*(x, t) = \sum_i w_i(x)\, y_i,\qquad
              w = \mathrm{softmax}_i\Big(-\frac{|x - \alpha y_i|^2}{2\sigma^2}\Big),

    the posterior mean under ``p_t = (1/n) sum_i N(alpha y_i, sigma^2 I)``. Queries and data are
    processed in blocks of at most ``max_block`` query-data pairs with an online (streaming)
    log-sum-exp, so memory stays bounded for any data size; the logits use
    ``alpha x.y - alpha^2 |y|^2 / 2`` (the ``|x|^2`` term cancels in the softmax). Use float64 for very
    small ``sigma``.

    Arguments:
        data: ``(n, *event)``; events are flattened internally.
        max_block: largest number of query-data pairs handled at once (default ``2**20``); ``None``
            computes one block (no chunking).
    """

    def __init__(self, data: torch.Tensor, *, max_block: int | None = 2**20) -> None:
        check_tensor("data", data, min_dim=2, finite=True)
        if data.shape[0] < 1:
            raise ValueError("data must hold at least one point")
        bad = isinstance(max_block, bool) or not isinstance(max_block, int) or max_block < 1
        if max_block is not None and bad:
            raise ValueError(f"max_block must be a positive int or None, got {max_block!r}")
        self.data = data.detach()
        self.event_shape = tuple(data.shape[1:])
        self.max_block = max_block
        self._flat = self.data.reshape(data.shape[0], -1)
        self._cache: dict = {}

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        return f"EmpiricalData(n={len(self)}, event_shape={self.event_shape}, max_block={self.max_block})"

    def _data(self, dtype, device):
        key = (dtype, device)
        if key not in self._cache:
            y = self._flat.to(dtype=dtype, device=device)
            self._cache = {key: (y, (y * y).sum(1))}
        return self._cache[key]

    def _chunks(self, batch: int):
        n = len(self)
        if self.max_block is None:
            return batch, n
        q = max(1, min(batch, self.max_block // min(n, self.max_block)))
        c = max(1, min(n, self.max_block // q))
        return q, c

    def _stream(self, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule):
        """Online softmax over the data: returns ``(D, logsumexp of logits)`` for flattened ``x``."""
        _check_schedule(schedule)
        check_tensor("x", x, min_dim=2)
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (batch, *{self.event_shape}), got {tuple(x.shape)}")
        t = _check_t(t, x)
        batch = x.shape[0]
        xf = x.reshape(batch, -1)
        y, y2 = self._data(x.dtype, x.device)
        a = _per_query(schedule.alpha(t), batch, x.dtype, x.device)
        s2 = _per_query(schedule.sigma(t), batch, x.dtype, x.device) ** 2
        q, c = self._chunks(batch)
        outs, lses = [], []
        for i in range(0, batch, q):
            xq, aq, s2q = xf[i:i + q], a[i:i + q, None], s2[i:i + q, None]
            m = torch.full((xq.shape[0], 1), -math.inf, dtype=x.dtype, device=x.device)
            norm = torch.zeros_like(m)
            acc = torch.zeros_like(xq)
            for j in range(0, len(self), c):
                yc, y2c = y[j:j + c], y2[j:j + c]
                logits = (aq * (xq @ yc.T) - 0.5 * aq * aq * y2c[None]) / s2q
                m_new = torch.maximum(m, logits.amax(1, keepdim=True))
                scale = torch.exp(m - m_new)
                p = torch.exp(logits - m_new)
                norm = norm * scale + p.sum(1, keepdim=True)
                acc = acc * scale + p @ yc
                m = m_new
            outs.append(acc / norm)
            lses.append((m + torch.log(norm)).squeeze(1))
        return torch.cat(outs).reshape(x.shape), torch.cat(lses), xf, a, s2

    def denoiser(self, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """``D*(x, t)`` of the shape of ``x: (batch, *event)``."""
        return self._stream(x, t, schedule)[0]

    def score(self, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """``grad log p_t(x) = (alpha D* - x) / sigma^2``."""
        d, _, _, a, s2 = self._stream(x, t, schedule)
        shape = (-1,) + (1,) * (x.dim() - 1)
        return (a.reshape(shape) * d - x) / s2.reshape(shape)

    def log_prob(self, x: torch.Tensor, t: float | torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """``log p_t(x)`` of ``(1/n) sum_i N(alpha y_i, sigma^2 I)``, ``(batch,)``."""
        _, lse, xf, a, s2 = self._stream(x, t, schedule)
        dim = xf.shape[1]
        s2 = s2.squeeze(-1) if s2.dim() > 1 else s2
        return (lse - (xf * xf).sum(1) / (2 * s2) - math.log(len(self))
                - 0.5 * dim * torch.log(2 * math.pi * s2))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws with replacement from the data, ``(n, *event)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        idx = torch.randint(0, len(self), (n,), generator=generator)
        return self.data[idx.to(self.data.device)]

    def as_denoiser(self, schedule: Schedule) -> Denoiser:
        """The optimal denoiser as a :class:`~sdekit.diffusion.Denoiser` for ``schedule``."""
        _check_schedule(schedule)
        return Denoiser(_Bound(self, schedule), schedule, prediction="x0")
