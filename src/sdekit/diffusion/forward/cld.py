r"""Critically damped Langevin diffusion (CLD) on the state ``(x, v)``.

Dockhorn, Vahdat, Kreis, "Score-Based Generative Modeling with Critically-Damped Langevin Diffusion",
ICLR 2022. Data ``x`` are coupled to velocities ``v`` of mass ``M`` (eq. 5):

.. math:: dx = \beta M^{-1} v\, dt, \qquad dv = -\beta (x + \Gamma M^{-1} v)\, dt + \sqrt{2\Gamma\beta}\, dW,

critically damped for ``Gamma^2 = 4 M``, with stationary law ``N(0, I) x N(0, M I)`` and ``v_0 ~ N(0, gamma M I)``.
Per coordinate the drift is ``beta A`` with ``A = [[0, 1/M], [-1, -Gamma/M]]``, whose eigenvalue ``-2/Gamma``
is double, so with ``b = beta (t - s)`` and ``k = 2 / Gamma`` (``(A + k I)^2 = 0``)

.. math:: e^{bA} = e^{-kb}\begin{pmatrix} 1 + kb & 4b/\Gamma^2 \\ -b & 1 - kb \end{pmatrix},\qquad
          \Sigma_t = \Sigma_\infty + e^{bA} (\Sigma_s - \Sigma_\infty) e^{bA^\top},\quad
          \Sigma_\infty = \mathrm{diag}(1, M)

(the closed form of Dockhorn et al., App. B, written through the stationary covariance: ``Sigma_infty``
solves the Lyapunov equation ``A Sigma + Sigma A^T + diag(0, 2 Gamma) = 0``). The same 2x2 kernel acts on
every coordinate.

Hybrid score matching (HSM, Sec. 3.2): condition on ``x_0`` only (``v_0`` integrated out, ``Sigma_0 =
diag(0, gamma M)``); with the Cholesky factor ``[[L_xx, 0], [L_xv, L_vv]]`` of ``Sigma_t`` and
``(x_t, v_t) = mu_t + L eps``, the only score the generative SDE needs, the ``v`` one, is
``grad_v log p(x_t, v_t | x_0) = -eps_v / L_vv = -ell_t eps_v``. A network ``alpha_theta(x, v, t)`` predicts
``eps_v`` (score ``-ell_t alpha_theta``) and the loss is ``|alpha_theta - eps_v|^2`` (the weighting
``lambda(t) = ell_t^{-2}`` of the paper).

Generation runs the reverse SDE from ``t_max`` to ``t_min``; only ``v`` carries noise and needs a score:

.. math:: d\bar x = -\beta M^{-1} \bar v\, d\tau,\qquad
          d\bar v = \beta(\bar x - \Gamma M^{-1}\bar v)\, d\tau + 2\Gamma\beta(s_v + M^{-1}\bar v)\, d\tau
                    + \sqrt{2\Gamma\beta}\, d\bar W

in reverse time ``tau``. Euler-Maruyama integrates it through :func:`sdekit.sdeint`; the symmetric splitting
CLD sampler (SSCS, Sec. 3.3) splits it into the linear part (the forward CLD in ``(x, -v)``, sampled exactly
with the kernel above) for half a step, an Euler step of the score part ``2 Gamma beta (s_v + v / M)`` for a
whole step (at the midpoint time), and the linear part for another half step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from ...core.brownian import BrownianGrid
from ...core.integrate import fixed_loop, sdeint
from .._utils import as_time, check_real, check_tensor

__all__ = ["CLD"]

VelocityScore = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class CLD:
    r"""Critically damped Langevin diffusion (Dockhorn, Vahdat, Kreis, "Score-Based Generative Modeling with
    Critically-Damped Langevin Diffusion", ICLR 2022) on tuple states ``(x, v)``, both ``(batch, *event)``.

    It is a problem for :func:`sdekit.sdeint` (diagonal noise, Ito, tuple state): ``f(t, (x, v))`` and
    ``g(t, (x, v)) = (0, sqrt(2 Gamma beta))``. See the module docstring for the transition, hybrid score
    matching and the samplers.

    Arguments:
        beta: the constant time scale ``beta`` (paper: 4).
        mass: the mass ``M`` (paper: ``M^{-1} = 4``); the friction is ``Gamma = 2 sqrt(M)`` (critical damping).
        gamma: the initial velocity variance factor, ``v_0 ~ N(0, gamma M I)`` (paper: 0.04).
        t_min, t_max: the interval of training and sampling (defaults ``1e-3`` and ``1``).

    Raises:
        ValueError for non-positive ``beta``, ``mass`` or ``gamma``, or ``t_min >= t_max``.
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, beta: float = 4.0, mass: float = 0.25, gamma: float = 0.04, *, t_min: float = 1e-3,
                 t_max: float = 1.0) -> None:
        self.beta = check_real("beta", beta, positive=True)
        self.mass = check_real("mass", mass, positive=True)
        self.gamma = check_real("gamma", gamma, positive=True)
        self.t_min = check_real("t_min", t_min, nonnegative=True)
        self.t_max = check_real("t_max", t_max, positive=True)
        if not self.t_min < self.t_max:
            raise ValueError(f"CLD needs 0 <= t_min < t_max; got t_min={t_min}, t_max={t_max}")
        self.friction = 2.0 * math.sqrt(self.mass)

    def __repr__(self) -> str:
        return (f"CLD(beta={self.beta}, mass={self.mass}, gamma={self.gamma}, t_min={self.t_min}, "
                f"t_max={self.t_max})")

    # -- the 2x2 kernel -------------------------------------------------------------------------------
    def _expA(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        k = 2.0 / self.friction
        e = torch.exp(-k * b)
        return e * (1 + k * b), e * (4.0 / self.friction**2) * b, -e * b, e * (1 - k * b)

    def _cov(self, b: torch.Tensor, sxx: float | torch.Tensor, sxv: float | torch.Tensor,
             svv: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Sigma_inf + E (Sigma_s - Sigma_inf) E^T, entries of the symmetric 2x2
        e11, e12, e21, e22 = self._expA(b)
        d11, d12, d22 = sxx - 1.0, sxv, svv - self.mass
        c11 = 1.0 + e11 * e11 * d11 + 2 * e11 * e12 * d12 + e12 * e12 * d22
        c12 = e11 * e21 * d11 + (e11 * e22 + e12 * e21) * d12 + e12 * e22 * d22
        c22 = self.mass + e21 * e21 * d11 + 2 * e21 * e22 * d12 + e22 * e22 * d22
        return c11, c12, c22

    def transition_matrices(self, t: float | torch.Tensor,
                            s: float | torch.Tensor = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-coordinate kernel from ``s`` to ``t`` conditioned on ``(x_s, v_s)``: ``(E, Sigma)``, each
        ``(*T, 2, 2)`` (float64), with ``(x_t, v_t) ~ N(E (x_s, v_s), Sigma)`` coordinate by coordinate."""
        b = self.beta * (as_time(t).double() - as_time(s, "s").double())
        if bool((b < 0).any()):
            raise ValueError("transition_matrices needs s <= t")
        e11, e12, e21, e22 = self._expA(b)
        c11, c12, c22 = self._cov(b, 0.0, 0.0, 0.0)
        E = torch.stack([torch.stack([e11, e12], -1), torch.stack([e21, e22], -1)], -2)
        S = torch.stack([torch.stack([c11, c12], -1), torch.stack([c12, c22], -1)], -2)
        return E, S

    def _coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(mu_xx, mu_vx, L_xx, L_xv, L_vv)`` of ``x_t, v_t | x_0`` (float64, shape of ``t``)."""
        b = self.beta * as_time(t).double()
        e11, _, e21, _ = self._expA(b)
        c11, c12, c22 = self._cov(b, 0.0, 0.0, self.gamma * self.mass)
        lxx = torch.sqrt(c11)
        lxv = c12 / lxx
        lvv = torch.sqrt(c22 - lxv * lxv)
        return e11, e21, lxx, lxv, lvv

    def marginal(self, x0: torch.Tensor, t: float | torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                                            torch.Tensor]:
        """``(x_t, v_t) | x_0`` with ``v_0 ~ N(0, gamma M I)``: the means ``(mu_x, mu_v)`` (each of the shape
        of ``x0``) and the per-coordinate covariance ``(*T, 2, 2)`` (float64)."""
        x0 = check_tensor("x0", x0, min_dim=1)
        t = self._batch_time(t, x0)
        e11, e21, lxx, lxv, lvv = self._coefficients(t)
        mu_x = self._bc(e11, x0) * x0
        mu_v = self._bc(e21, x0) * x0
        c11, c12, c22 = lxx * lxx, lxx * lxv, lxv * lxv + lvv * lvv
        S = torch.stack([torch.stack([c11, c12], -1), torch.stack([c12, c22], -1)], -2)
        return (mu_x, mu_v), S

    @staticmethod
    def _bc(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        c = c.to(dtype=x.dtype, device=x.device)
        return c.reshape(*c.shape, *([1] * (x.dim() - c.dim())))

    def _batch_time(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = as_time(t)
        if t.dim() == 1 and t.shape[0] != x.shape[0]:
            raise ValueError(f"t has {t.shape[0]} per-sample times but the state has batch size {x.shape[0]}")
        if bool((t < 0).any()):
            raise ValueError("CLD times must be >= 0")
        return t

    def velocity_scale(self, t: float | torch.Tensor) -> torch.Tensor:
        """``ell_t = 1 / L_vv`` (float64): the HSM score is ``-ell_t eps_v``."""
        return 1.0 / self._coefficients(as_time(t))[4]

    def perturb(self, x0: torch.Tensor, t: float | torch.Tensor,
                noise: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_t, v_t) = mu_t + L_t (eps_x, eps_v)`` given ``x_0`` (``v_0`` integrated out), and the HSM
        target, the velocity score ``grad_v log p(x_t, v_t | x_0) = -eps_v / L_vv``; all of the shape of
        ``x0``."""
        x0 = check_tensor("x0", x0, min_dim=1)
        if (not isinstance(noise, (tuple, list)) or len(noise) != 2
                or any(not isinstance(n, torch.Tensor) or n.shape != x0.shape for n in noise)):
            raise ValueError(f"noise must be a pair (eps_x, eps_v) of tensors of the shape of x0, {tuple(x0.shape)}")
        t = self._batch_time(t, x0)
        e11, e21, lxx, lxv, lvv = (self._bc(c, x0) for c in self._coefficients(t))
        ex, ev = noise
        x = e11 * x0 + lxx * ex
        v = e21 * x0 + lxv * ex + lvv * ev
        return x, v, -ev / lvv

    def hsm_loss(self, model: VelocityScore, x0: torch.Tensor, *, generator: torch.Generator | None = None,
                 t: float | torch.Tensor | None = None) -> torch.Tensor:
        """Hybrid score matching (Dockhorn et al. 2022, eq. 9, weighting ``ell_t^{-2}``): per-sample
        ``mean |alpha_theta(x_t, v_t, t) - eps_v|^2``, ``(batch,)``, with ``t ~ U[t_min, t_max]`` unless
        given. ``model(x, v, t)`` (``t``: ``(batch,)``) predicts ``eps_v``; its score is ``-ell_t alpha``
        (``score_from_eps``)."""
        x0 = check_tensor("x0", x0, min_dim=1)
        dev = generator.device if generator is not None else x0.device
        n = x0.shape[0]
        if t is None:
            u = torch.rand(n, generator=generator, dtype=torch.float64, device=dev).to(x0.device)
            t = self.t_min + (self.t_max - self.t_min) * u
        t = self._batch_time(t, x0)
        t = t.expand(n) if t.dim() == 0 else t
        ex = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
        ev = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
        x, v, _ = self.perturb(x0, t, (ex, ev))
        return (model(x, v, t.to(x0.dtype)) - ev).pow(2).reshape(n, -1).mean(1)

    def score_from_eps(self, model: VelocityScore) -> VelocityScore:
        """The velocity score ``s_v(x, v, t) = -ell_t alpha_theta(x, v, t)`` of an ``eps_v`` network."""
        if not callable(model):
            raise TypeError(f"model must be a callable alpha(x, v, t), got {type(model).__name__}")

        def score(x: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = as_time(t)
            tb = t.expand(x.shape[0]) if t.dim() == 0 else t
            return -self._bc(self.velocity_scale(tb), x) * model(x, v, tb.to(x.dtype))

        return score

    # -- the forward SDE for sdeint ---------------------------------------------------------------------
    def f(self, t: float | torch.Tensor, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift ``(beta v / M, -beta (x + Gamma v / M))``."""
        x, v = y
        return self.beta / self.mass * v, -self.beta * (x + self.friction / self.mass * v)

    def g(self, t: float | torch.Tensor, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Diffusion ``(0, sqrt(2 Gamma beta))`` (diagonal noise)."""
        x, v = y
        return torch.zeros_like(x), torch.full_like(v, math.sqrt(2.0 * self.friction * self.beta))

    def prior_sample(self, shape: tuple[int, ...], seed: int = 0, *,
                     dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x ~ N(0, I)``, ``v ~ N(0, M I)`` of ``shape`` (the stationary law standing in for ``t_max``)."""
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn(shape, generator=gen, dtype=dtype)
        v = torch.randn(shape, generator=gen, dtype=dtype) * math.sqrt(self.mass)
        return x, v

    # -- generation ----------------------------------------------------------------------------------------
    def reverse_sde(self, score_v: VelocityScore) -> _CLDReverse:
        """The reverse-time SDE (module docstring), a problem for :func:`sdekit.sdeint` on decreasing ``ts``
        with tuple state ``(x, v)``; ``score_v(x, v, t)`` is the velocity score."""
        if not callable(score_v):
            raise TypeError(f"score_v must be a callable s(x, v, t), got {type(score_v).__name__}")
        return _CLDReverse(self, score_v)

    def sample(self, score_v: VelocityScore, shape: tuple[int, ...], *, method: Literal["sscs", "euler"] = "sscs",
               steps: int = 100, seed: int = 0,
               dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(x, v)`` at ``t_min`` from the prior at ``t_max`` with ``steps`` uniform steps of SSCS
        (``method="sscs"``) or Euler-Maruyama on the reverse SDE (``method="euler"``, :func:`sdekit.sdeint`).

        Arguments:
            score_v: the velocity score ``s_v(x, v, t)`` (e.g. ``score_from_eps`` of a network).
            shape: ``(batch, *event)``.
            method, steps, seed: the sampler, its number of steps and the seed of all its noise.
        """
        if not callable(score_v):
            raise TypeError(f"score_v must be a callable s(x, v, t), got {type(score_v).__name__}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        shape = tuple(int(s) for s in shape)
        x, v = self.prior_sample(shape, seed, dtype=dtype)
        if method == "euler":
            # bm=None: sdeint draws a BrownianGrid on its step grid, seeded without touching the global generator
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed) + 1)
                xs, vs = sdeint(self.reverse_sde(score_v), (x, v), [self.t_max, self.t_min], method="euler",
                                dt=(self.t_max - self.t_min) / steps)
            return xs[-1], vs[-1]
        if method == "sscs":
            ts = torch.linspace(self.t_max, self.t_min, steps + 1, dtype=torch.float64)
            return self._sscs(score_v, x, v, ts.tolist(), int(seed) + 1)
        raise ValueError(f"method must be 'sscs' or 'euler', got {method!r}")

    def _half_linear(self, x: torch.Tensor, v: torch.Tensor, b: float, xi1: torch.Tensor,
                     xi2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the exact kernel of the forward CLD in (x, w = -v) over b = beta * duration
        bb = torch.tensor(b, dtype=torch.float64)
        e11, e12, e21, e22 = (float(c) for c in self._expA(bb))
        c11, c12, c22 = (float(c) for c in self._cov(bb, 0.0, 0.0, 0.0))
        l11 = math.sqrt(c11)
        l21 = c12 / l11
        l22 = math.sqrt(max(c22 - l21 * l21, 0.0))
        w = -v
        x1 = e11 * x + e12 * w + l11 * xi1
        w1 = e21 * x + e22 * w + l21 * xi1 + l22 * xi2
        return x1, -w1

    def _sscs(self, score_v: VelocityScore, x: torch.Tensor, v: torch.Tensor, ts: list[float],
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(ts) - 1
        # four standard normals per coordinate and step: unit increments of a grid on 0..n
        noise = BrownianGrid(torch.arange(n + 1, dtype=torch.float64), (4, *x.shape), seed=seed, dtype=x.dtype)
        coupling = 2.0 * self.friction * self.beta

        def step(k: int, t0: torch.Tensor, t1: torch.Tensor, y: torch.Tensor,
                 state: tuple) -> tuple[torch.Tensor, tuple]:
            h = float(t0) - float(t1)
            xi = noise.increment(k)
            xk, vk = self._half_linear(y[0], y[1], self.beta * h / 2, xi[0], xi[1])
            tm = torch.tensor(0.5 * (float(t0) + float(t1)), dtype=torch.float64)
            vk = vk + h * coupling * (score_v(xk, vk, tm) + vk / self.mass)
            xk, vk = self._half_linear(xk, vk, self.beta * h / 2, xi[2], xi[3])
            return torch.stack([xk, vk]), state

        def t_of(grid):
            return [torch.tensor(t, dtype=torch.float64) for t in grid]

        out = fixed_loop(step, torch.stack([x, v]), (), ts, [0, n], t_of, "CLD.sample[sscs]")
        return out[-1][0], out[-1][1]


class _CLDReverse:
    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, cld: CLD, score_v: VelocityScore) -> None:
        self.cld, self.score_v = cld, score_v

    def f(self, t: torch.Tensor, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        fx, fv = self.cld.f(t, y)
        c = self.cld
        return fx, fv - 2.0 * c.friction * c.beta * self.score_v(y[0], y[1], t)

    def g(self, t: torch.Tensor, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cld.g(t, y)
