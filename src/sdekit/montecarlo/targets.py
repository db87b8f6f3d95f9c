"""Unnormalised target densities ``pi(x) ∝ exp(-V(x))`` for the samplers of :mod:`sdekit.montecarlo`.

A target is an object with ``log_prob(x)`` (``x: (n, d)`` -> ``(n,)``, up to an additive constant) and
``grad_log_prob(x)`` (``(n, d)``). :class:`Target` is the base class: a subclass writes ``_log_prob`` and,
where it is cheap, a closed-form ``_grad_log_prob`` (the default is automatic differentiation of
``_log_prob``). The public methods check shapes and count evaluations (``grad_evals``: one per batched
call of ``grad_log_prob``, i.e. one gradient per chain), so samplers are compared at equal budget.

Targets of the paper (Cordero-Encinar, Duncan, Reich, Akyildiz, "Sampling by averaging: A multiscale
approach to score estimation", arXiv 2508.15069, section 6): the 8-Gaussian ring
(:meth:`GaussianMixture.ring8`), the 40-component mixture (:meth:`GaussianMixture.mixture40`),
concentric :class:`Rings`, Neal's :class:`Funnel`, a heavy-tailed :class:`StudentT` and a Bayesian
:class:`LogisticRegression` posterior. :class:`Gaussian` and :class:`GaussianMixture` also give the exact
score of the diffused law ``mu_lambda = Law(sqrt(lambda) X + sqrt(1 - lambda) Z)``, ``X ~ pi``,
``Z ~ N(0, I)`` (:meth:`~Gaussian.diffused_grad_log_prob`), the oracle of the annealed sampler.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "Target", "as_target", "Gaussian", "GaussianMixture", "Rings", "Funnel", "StudentT", "LogisticRegression",
]


def _check_points(x, dim: int, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, {dim}), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}) for a target of dimension {dim}; got {tuple(x.shape)}")
    return x


def _positive(name: str, value, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive {'int' if integer else 'number'}, got {type(value).__name__}")
    if integer and not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


class Target:
    """Base class of unnormalised targets ``pi(x) ∝ exp(log_prob(x))`` on ``R^dim``.

    Subclasses implement ``_log_prob(x: (n, dim)) -> (n,)`` and may override ``_grad_log_prob`` with a
    closed form (the default differentiates ``_log_prob`` with autograd, under ``torch.enable_grad``, so
    it also works inside ``torch.no_grad``).

    Attributes:
        dim: the dimension ``d``.
        grad_evals: the number of ``grad_log_prob`` calls so far (each call is one gradient per row of
            its batch; samplers run their chains as one batch, so this is the per-chain budget).
        log_prob_evals: the number of ``log_prob`` calls so far.
    """

    def __init__(self, dim: int) -> None:
        self.dim = int(_positive("dim", dim, integer=True))
        self.grad_evals = 0
        self.log_prob_evals = 0

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _grad_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self._log_prob(x_).sum(), x_)
        return grad

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log pi(x)`` up to a constant: ``x: (n, dim)`` -> ``(n,)``."""
        _check_points(x, self.dim)
        self.log_prob_evals += 1
        out = self._log_prob(x)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0],):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{type(self).__name__}.log_prob(x) must return shape ({x.shape[0]},) for x of shape "
                             f"{tuple(x.shape)}; got {got}")
        return out

    def grad_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``grad log pi(x)``: ``x: (n, dim)`` -> ``(n, dim)``; counted in ``grad_evals``."""
        _check_points(x, self.dim)
        self.grad_evals += 1
        out = self._grad_log_prob(x)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{type(self).__name__}.grad_log_prob(x) must return the shape of x, "
                             f"{tuple(x.shape)}; got {got}")
        return out

    def reset_counts(self) -> None:
        """Set ``grad_evals`` and ``log_prob_evals`` to 0."""
        self.grad_evals = 0
        self.log_prob_evals = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class _FromCallables(Target):
    def __init__(self, dim: int, log_prob: Callable, grad_log_prob: Callable | None) -> None:
        super().__init__(dim)
        self._user_log_prob = log_prob
        self._user_grad = grad_log_prob

    def _log_prob(self, x):
        return self._user_log_prob(x)

    def _grad_log_prob(self, x):
        if self._user_grad is None:
            return super()._grad_log_prob(x)
        return self._user_grad(x)


def as_target(target, x0: torch.Tensor, name: str = "target") -> Target:
    """The checked :class:`Target` a sampler runs on (called at every sampler's boundary).

    Arguments:
        target: a :class:`Target`, or any object with ``log_prob(x)`` (and optionally ``grad_log_prob``),
            or a callable ``log_prob``; the latter two are wrapped (their gradient by autograd when missing).
        x0: the initial points ``(n, d)``; ``log_prob(x0)`` is evaluated once here (one ``log_prob_evals``).
        name: the argument name used in error messages.

    Raises:
        TypeError: no ``log_prob``; ``x0`` not a floating tensor.
        ValueError: ``x0`` not ``(n, d)`` with the target's ``d``, ``log_prob(x0)`` of a shape other than
            ``(n,)``, or ``log_prob(x0)`` NaN (``-inf``/``+inf`` too: the start must lie in the support).
    """
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
        raise TypeError(f"x0 must be a floating-point torch.Tensor of shape (n, d), got {type(x0).__name__}")
    if x0.dim() != 2:
        raise ValueError(f"x0 must have shape (n, d), got {tuple(x0.shape)}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError(f"x0 must be finite; {int((~torch.isfinite(x0)).sum())} entries are NaN or inf")
    if not isinstance(target, Target):
        if callable(getattr(target, "log_prob", None)):
            grad = getattr(target, "grad_log_prob", None)
            target = _FromCallables(x0.shape[1], target.log_prob, grad if callable(grad) else None)
        elif callable(target):
            target = _FromCallables(x0.shape[1], target, None)
        else:
            raise TypeError(f"{name} must be a Target, an object with log_prob(x) or a callable log_prob; "
                            f"got {type(target).__name__}")
    if x0.shape[1] != target.dim:
        raise ValueError(f"x0 has dimension {x0.shape[1]} but {name} has dim={target.dim}; pass x0 of shape "
                         f"(n, {target.dim})")
    lp = target.log_prob(x0)
    if not bool(torch.isfinite(lp).all()):
        bad = int((~torch.isfinite(lp)).sum())
        first = int(torch.nonzero(~torch.isfinite(lp))[0])
        raise ValueError(f"{name}.log_prob(x0) must be finite; {bad} of {lp.numel()} values are NaN or inf "
                         f"(row {first}: {lp[first].item()}); check the target or start inside its support")
    return target


def _as_tensor(value, name: str, dtype=torch.float64) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t}")
    return t


class Gaussian(Target):
    """``N(mean, cov)`` on ``R^d`` with closed-form log density, gradient, samples and diffused score.

    Arguments:
        mean: ``(d,)``.
        cov: ``(d, d)`` symmetric positive definite.
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        mean = _as_tensor(mean, "mean")
        cov = _as_tensor(cov, "cov")
        if mean.dim() != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"mean must be (d,) and cov (d, d); got {tuple(mean.shape)} and {tuple(cov.shape)}")
        if not torch.allclose(cov, cov.T):
            raise ValueError("cov must be symmetric")
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            raise ValueError(f"cov must be positive definite; eigenvalues {torch.linalg.eigvalsh(cov).tolist()}")
        super().__init__(mean.shape[0])
        self.mean, self.cov, self._chol = mean, cov, chol
        self._prec = torch.cholesky_inverse(chol)

    def _log_prob(self, x):
        z = torch.linalg.solve_triangular(self._chol.to(x), (x - self.mean.to(x)).T, upper=False)
        return -0.5 * (z**2).sum(0)

    def _grad_log_prob(self, x):
        return -(x - self.mean.to(x)) @ self._prec.to(x)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws ``(n, d)`` (float64)."""
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + z @ self._chol.T

    def diffused_grad_log_prob(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        """The exact score of ``mu_lambda = Law(sqrt(lam) X + sqrt(1 - lam) Z)``, ``Z ~ N(0, I)``:
        ``mu_lambda = N(sqrt(lam) mean, lam cov + (1 - lam) I)``; ``x: (n, d)`` -> ``(n, d)``.
        Counted as one gradient evaluation (what an oracle call replaces)."""
        _check_points(x, self.dim)
        self.grad_evals += 1
        cov = lam * self.cov + (1 - lam) * torch.eye(self.dim, dtype=self.cov.dtype)
        return -torch.linalg.solve(cov.to(x), (x - math.sqrt(lam) * self.mean.to(x)).T).T


class GaussianMixture(Target):
    """``sum_k w_k N(m_k, s_k^2 I)`` with isotropic components: closed-form log density, gradient
    (responsibility-weighted), exact samples and the exact diffused score
    (``mu_lambda = sum_k w_k N(sqrt(lam) m_k, (lam s_k^2 + 1 - lam) I)``).

    Arguments:
        means: ``(K, d)``.
        variances: a positive number or ``(K,)``: the ``s_k^2``.
        weights: ``(K,)`` positive (normalised here), default uniform.
    """

    def __init__(self, means: torch.Tensor, variances=1.0, weights: torch.Tensor | None = None) -> None:
        means = _as_tensor(means, "means")
        if means.dim() != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        k = means.shape[0]
        var = _as_tensor(variances, "variances").expand(k).clone()
        if not bool((var > 0).all()):
            raise ValueError(f"variances must be positive, got {var.tolist()}")
        w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else _as_tensor(weights, "weights")
        if w.shape != (k,) or not bool((w > 0).all()):
            raise ValueError(f"weights must be {k} positive numbers, got {w.tolist()}")
        super().__init__(means.shape[1])
        self.means, self.variances, self.weights = means, var, w / w.sum()

    @classmethod
    def ring8(cls) -> GaussianMixture:
        """The paper's 8-Gaussian ring: means ``10 (1 + cos(2 pi i / 8), 1 + sin(2 pi i / 8))``, cov ``0.7 I``."""
        a = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        return cls(10 * torch.stack([1 + torch.cos(a), 1 + torch.sin(a)], 1), 0.7)

    @classmethod
    def mixture40(cls, dim: int = 2, side: float = 40.0, seed: int = 0) -> GaussianMixture:
        """40 components with cov ``I`` and means uniform in ``[-side/2, side/2]^dim`` (fixed ``seed``)."""
        gen = torch.Generator().manual_seed(seed)
        means = (torch.rand(40, dim, generator=gen, dtype=torch.float64) - 0.5) * side
        return cls(means, 1.0)

    def _log_components(self, x, lam: float = 1.0):
        mean = math.sqrt(lam) * self.means.to(x)
        var = (lam * self.variances + 1 - lam).to(x)
        d2 = torch.cdist(x, mean) ** 2
        return (torch.log(self.weights.to(x)) - 0.5 * self.dim * torch.log(2 * math.pi * var) - d2 / (2 * var),
                mean, var)

    def _log_prob(self, x):
        return torch.logsumexp(self._log_components(x)[0], dim=1)

    def _score(self, x, lam: float):
        logc, mean, var = self._log_components(x, lam)
        r = torch.softmax(logc, dim=1)  # responsibilities (n, K)
        return (r / var) @ mean - x * (r / var).sum(1, keepdim=True)

    def _grad_log_prob(self, x):
        return self._score(x, 1.0)

    def diffused_grad_log_prob(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        """The exact score of ``mu_lambda = Law(sqrt(lam) X + sqrt(1 - lam) Z)``; counted as one gradient."""
        _check_points(x, self.dim)
        self.grad_evals += 1
        return self._score(x, lam)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws ``(n, d)`` (float64)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + z * self.variances[k].sqrt()[:, None]

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """The index of the nearest mean for each row of ``x`` (for mode coverage)."""
        return torch.cdist(x.double(), self.means).argmin(1)


class Rings(Target):
    """Concentric rings in the plane: ``log pi(x) = logsumexp_k -(|x| - r_k)^2 / (2 s^2)``.

    Arguments:
        radii: the ring radii (default ``(1, 2, 3, 4)``).
        width: ``s`` (default 0.1).
    """

    def __init__(self, radii=(1.0, 2.0, 3.0, 4.0), width: float = 0.1) -> None:
        super().__init__(2)
        self.radii = _as_tensor(radii, "radii")
        self.width = float(_positive("width", width))

    def _log_prob(self, x):
        r = x.norm(dim=1, keepdim=True)
        return torch.logsumexp(-(r - self.radii.to(x)) ** 2 / (2 * self.width**2), dim=1)


class Funnel(Target):
    """Neal's funnel: ``x_1 ~ N(0, eta^2)``, ``x_j | x_1 ~ N(0, exp(x_1))`` for ``j = 2..d`` (default
    ``d = 10``, ``eta = 3``): closed-form log density, gradient and exact samples.

    ``log pi(x) = -x_1^2 / (2 eta^2) - (d - 1) x_1 / 2 - exp(-x_1) |x_{2:d}|^2 / 2``.
    """

    def __init__(self, dim: int = 10, eta: float = 3.0) -> None:
        super().__init__(dim)
        if self.dim < 2:
            raise ValueError(f"dim must be at least 2 for a funnel, got {dim}")
        self.eta = float(_positive("eta", eta))

    def _log_prob(self, x):
        v, z = x[:, 0], x[:, 1:]
        return -v**2 / (2 * self.eta**2) - 0.5 * (self.dim - 1) * v - 0.5 * torch.exp(-v) * (z**2).sum(1)

    def _grad_log_prob(self, x):
        v, z = x[:, :1], x[:, 1:]
        e = torch.exp(-v)
        gv = -v / self.eta**2 - 0.5 * (self.dim - 1) + 0.5 * e * (z**2).sum(1, keepdim=True)
        return torch.cat([gv, -e * z], 1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws ``(n, d)`` (float64)."""
        v = self.eta * torch.randn(n, 1, generator=generator, dtype=torch.float64)
        z = torch.randn(n, self.dim - 1, generator=generator, dtype=torch.float64) * torch.exp(v / 2)
        return torch.cat([v, z], 1)


class StudentT(Target):
    """Multivariate Student-t with ``df`` degrees of freedom, location ``loc`` and scale ``scale`` (a
    number: ``Sigma = scale^2 I``): ``log pi(x) = -(df + d)/2 log(1 + |x - loc|^2 / (df scale^2))``.

    Heavy-tailed: moments of order ``>= df`` do not exist. Exact samples ``loc + scale Z / sqrt(G / df)``,
    ``Z ~ N(0, I)``, ``G ~ chi^2_df``.
    """

    def __init__(self, dim: int = 2, df: float = 3.0, loc=0.0, scale: float = 1.0) -> None:
        super().__init__(dim)
        self.df = float(_positive("df", df))
        self.scale = float(_positive("scale", scale))
        self.loc = _as_tensor(loc, "loc").expand(self.dim).clone()

    def _log_prob(self, x):
        r2 = ((x - self.loc.to(x)) ** 2).sum(1) / self.scale**2
        return -0.5 * (self.df + self.dim) * torch.log1p(r2 / self.df)

    def _grad_log_prob(self, x):
        u = x - self.loc.to(x)
        r2 = (u**2).sum(1, keepdim=True) / self.scale**2
        return -(self.df + self.dim) * u / (self.scale**2 * (self.df + r2))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact draws ``(n, d)`` (float64)."""
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        g = torch._standard_gamma(  # pyright: ignore[reportPrivateImportUsage]
            torch.full((n, 1), self.df / 2, dtype=torch.float64), generator=generator) * 2
        return self.loc + self.scale * z / torch.sqrt(g / self.df)


class LogisticRegression(Target):
    """Bayesian logistic regression posterior over ``w`` (intercept first):
    ``log pi(w) = sum_i log sigmoid(s_i <a_i, w>) - |w|^2 / (2 prior_scale^2)``, ``s_i = 2 y_i - 1``,
    ``a_i = (1, x_i)``; closed-form gradient ``sum_i s_i sigmoid(-s_i <a_i, w>) a_i - w / prior_scale^2``.

    Arguments:
        features: ``(N, p)`` (standardise them first).
        labels: ``(N,)`` in ``{0, 1}``.
        prior_scale: the standard deviation of the Gaussian prior (default 1).
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, prior_scale: float = 1.0) -> None:
        features = _as_tensor(features, "features")
        labels = _as_tensor(labels, "labels")
        if features.dim() != 2 or labels.shape != (features.shape[0],):
            raise ValueError(f"features must be (N, p) and labels (N,); got {tuple(features.shape)} and "
                             f"{tuple(labels.shape)}")
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError("labels must be 0 or 1")
        super().__init__(features.shape[1] + 1)
        self.design = torch.cat([torch.ones(features.shape[0], 1, dtype=torch.float64), features], 1)
        self.signs = 2 * labels - 1
        self.prior_scale = float(_positive("prior_scale", prior_scale))

    @classmethod
    def breast_cancer(cls, prior_scale: float = 1.0) -> LogisticRegression:
        """scikit-learn's breast cancer data (569 x 30), standardised (needs the ``data`` extra)."""
        from sklearn.datasets import load_breast_cancer

        data: Any = load_breast_cancer()
        x = torch.as_tensor(data.data, dtype=torch.float64)
        x = (x - x.mean(0)) / x.std(0)
        return cls(x, torch.as_tensor(data.target, dtype=torch.float64), prior_scale)

    def _margins(self, w):
        return (w @ self.design.to(w).T) * self.signs.to(w)  # (n, N)

    def _log_prob(self, w):
        return torch.nn.functional.logsigmoid(self._margins(w)).sum(1) - (w**2).sum(1) / (2 * self.prior_scale**2)

    def _grad_log_prob(self, w):
        coef = torch.sigmoid(-self._margins(w)) * self.signs.to(w)
        return coef @ self.design.to(w) - w / self.prior_scale**2

    def log_predictive(self, w: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``log (1/n sum_j p(y | x, w_j))`` summed over the rows of ``features`` (the paper's metric)."""
        a = torch.cat([torch.ones(features.shape[0], 1, dtype=w.dtype), features.to(w)], 1)
        s = (2 * labels - 1).to(w)
        lp = torch.nn.functional.logsigmoid((w @ a.T) * s)  # (n, N)
        return (torch.logsumexp(lp, 0) - math.log(w.shape[0])).sum()
