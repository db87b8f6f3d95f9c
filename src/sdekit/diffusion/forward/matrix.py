r"""Matrix-valued linear forward SDEs with a learnable spatial part (flexible diffusion).

Du, Zhang, Ho, Ma, Hu, Kim, "A Flexible Diffusion Model", ICML 2023: the forward SDE

.. math:: dx = -\tfrac12 \beta(t) (R + \Omega)\, x\, dt + \sqrt{\beta(t)}\, L\, dW,
          \qquad R = L L^\top \succ 0,\quad \Omega^\top = -\Omega,

with ``beta`` the rate of a variance-preserving schedule. Write ``A = -(R + Omega) / 2`` and
``B(t) = int_0^t beta = -2 log alpha(t)``. Because ``beta`` is a scalar function of time the generator
``beta(t) A`` commutes with itself across times, so the transition from ``s`` to ``t`` is Gaussian with

.. math:: m = e^{(B_t - B_s) A} x_s, \qquad
          \Sigma = \int_0^{B_t - B_s} e^{uA} R\, e^{uA^\top} du,

the covariance computed by Van Loan's block exponential (Van Loan, "Computing integrals involving the
matrix exponential", IEEE TAC 1978): ``exp(h [[A, R], [0, -A^T]]) = [[F11, F12], [0, F22]]`` gives
``Sigma = F12 F11^T``, accurate for small ``h`` (no ``I - M M^T`` cancellation). The same covariance solves
the ODE ``dSigma/dt = beta (A Sigma + Sigma A^T + R)``, integrated by ``MatrixLinearSDE.transition_ode``
as an independent check. For every antisymmetric ``Omega`` the Lyapunov equation
``A + A^T + R = 0`` holds, so ``N(0, I)`` is stationary: ``Sigma = I - M M^T``; ``Omega`` rotates the
path without changing the stationary law. ``R = I, Omega = 0`` is :class:`sdekit.diffusion.VP`
(``M = alpha I``, ``Sigma = sigma^2 I``).

Score and training. With ``Sigma_t = C_t C_t^T`` (Cholesky) and ``x_t = m_t + C_t eps`` the conditional
score is ``-Sigma_t^{-1}(x_t - m_t) = -C_t^{-T} eps``; a noise-prediction network ``eps_theta(x, t)``
gives the score ``s_theta = -C_t^{-T} eps_theta`` (denoising score matching with a matrix-valued noise,
``MatrixLinearSDE.dsm_loss``). The flexible-diffusion objective trains the forward parameters
``(L, Omega)`` and the network jointly on the negative ELBO of ``MatrixLinearSDE.nelbo``:

.. math:: -\log p_\theta(x_0) \le
    E_{q(x_\epsilon|x_0)}[-\log p(x_0 | x_\epsilon)] + \mathrm{KL}(q(x_T|x_0)\,\|\,N(0, I))
    + \tfrac12 \int_\epsilon^T \beta(t)\, E_{q(x_t|x_0)}\big[(s_\theta - \nabla\log q_t)^\top R\,
      (s_\theta - \nabla\log q_t)\big] dt,

the reverse-SDE bound of Song, Durkan, Murray, Ermon ("Maximum likelihood training of score-based
diffusion models", NeurIPS 2021, Thm 1) with the diffusion matrix ``G G^T = beta R`` (Huang, Lim, Courville,
"A variational perspective on diffusion-based generative models and score matching", NeurIPS 2021),
applied to the forward process started at ``q(x_epsilon | x_0) = N(m_epsilon, Sigma_epsilon)`` (its
marginals are the Gaussians ``q(x_t | x_0)``, whose score is exact), and the Gaussian decoder
``p(x_0 | x_epsilon) = N(M_epsilon^{-1} x_epsilon, M_epsilon^{-1} Sigma_epsilon M_epsilon^{-T})``
(the VP decoder ``N(x / alpha, sigma^2 / alpha^2)`` for ``R = I``). Every term but the integral is closed
form; the integral is estimated with times drawn uniformly in the log-SNR of the schedule (importance
sampling with density ``beta / (1 - e^{-B})``, the VP likelihood weighting of Song et al. 2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

from ...core.integrate import odeint, sdeint
from .._utils import as_time, check_real, check_tensor
from ..schedules import VP, Schedule

__all__ = ["MatrixLinearSDE"]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_square(name: str, m, dim: int | None) -> torch.Tensor:
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(m).__name__}")
    if not m.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {m.dtype}")
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square (d, d) matrix, got shape {tuple(m.shape)}")
    if dim is not None and m.shape[0] != dim:
        raise ValueError(f"{name} must have shape ({dim}, {dim}) for dim={dim}, got {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()):
        raise ValueError(f"{name} must be finite")
    return m


class MatrixLinearSDE(torch.nn.Module):
    r"""The linear forward SDE ``dx = -1/2 beta(t) (R + Omega) x dt + sqrt(beta(t)) L dW`` of flexible
    diffusion (Du et al., "A Flexible Diffusion Model", ICML 2023), with ``R = L L^T`` and ``Omega``
    antisymmetric both learnable (see the module docstring for the transition and the ELBO).

    Parameterisation: ``L = tril(P, -1) + diag(exp(p))`` (positive diagonal, so ``R`` is symmetric
    positive definite for every parameter value) and ``Omega = W - W^T`` with ``W = triu(Q, 1)``; the
    default ``P = Q = 0, p = 0`` is VP (``R = I``, ``Omega = 0``).

    The object is also a problem for :func:`sdekit.sdeint` (general noise, Ito, state ``(batch, d)``):
    ``f(t, x) = beta A x`` and ``g(t, x) = sqrt(beta) L``. Data of another shape are flattened by the caller.

    Arguments:
        dim: the dimension ``d`` of the state.
        schedule: a variance-preserving :class:`~sdekit.diffusion.Schedule` giving ``beta(t) = -2 f(t)``
            and ``B(t) = -2 log alpha(t)`` and the interval ``[t_min, t_max]`` (default
            :class:`~sdekit.diffusion.VP`, ``beta`` linear from 0.1 to 20).
        R: an initial ``R`` (symmetric positive definite ``(d, d)``); default ``I``.
        omega: an initial ``Omega`` (antisymmetric ``(d, d)``); default 0.
        learn_R, learn_omega: whether ``L`` and ``Omega`` are trainable parameters (else buffers).
        dtype: dtype of the parameters (default torch's default dtype).

    Raises:
        TypeError / ValueError for a ``dim`` that is not a positive int, a schedule that is not variance
        preserving, ``R`` not symmetric positive definite or ``omega`` not antisymmetric (tolerance
        ``1e-6`` relative to the largest entry), or matrices of the wrong shape.
    """

    noise_type = "general"
    sde_type = "ito"
    log_diag: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor

    def __init__(self, dim: int, schedule: Schedule | None = None, *, R: torch.Tensor | None = None,
                 omega: torch.Tensor | None = None, learn_R: bool = True, learn_omega: bool = True,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        schedule = VP() if schedule is None else schedule
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
        if not schedule.is_variance_preserving:
            raise ValueError(f"schedule must be variance preserving (beta(t) = -2 f(t), e.g. VP or CosineVP); "
                             f"got {schedule!r}")
        self.dim = dim
        self.schedule = schedule
        dtype = dtype or torch.get_default_dtype()
        diag = torch.zeros(dim, dtype=dtype)
        lower = torch.zeros(dim, dim, dtype=dtype)
        upper = torch.zeros(dim, dim, dtype=dtype)
        if R is not None:
            R = _check_square("R", R, dim).to(dtype)
            asym = float((R - R.T).abs().max())
            if asym > 1e-6 * max(float(R.abs().max()), 1e-30):
                raise ValueError(f"R must be symmetric positive definite; got max |R - R^T| = {asym:.3g}")
            chol, info = torch.linalg.cholesky_ex(0.5 * (R + R.T).double())
            if int(info) != 0:
                eig = float(torch.linalg.eigvalsh(0.5 * (R + R.T).double()).min())
                raise ValueError(f"R must be symmetric positive definite; its smallest eigenvalue is {eig:.3g}")
            diag = torch.log(torch.diagonal(chol)).to(dtype)
            lower = torch.tril(chol, -1).to(dtype)
        if omega is not None:
            omega = _check_square("omega", omega, dim).to(dtype)
            sym = float((omega + omega.T).abs().max())
            if sym > 1e-6 * max(float(omega.abs().max()), 1e-30):
                raise ValueError(f"omega must be antisymmetric (omega^T = -omega); got max |omega + omega^T| = "
                                 f"{sym:.3g}")
            upper = torch.triu(omega, 1)
        self._register("log_diag", diag, learn_R)
        self._register("lower", lower, learn_R)
        self._register("upper", upper, learn_omega)

    def _register(self, name: str, value: torch.Tensor, learn: bool) -> None:
        if learn:
            self.register_parameter(name, torch.nn.Parameter(value.clone()))
        else:
            self.register_buffer(name, value.clone())

    # -- the matrices ---------------------------------------------------------------------------
    @property
    def L(self) -> torch.Tensor:
        """The Cholesky factor ``L`` of ``R`` (lower triangular, positive diagonal), ``(d, d)``."""
        return torch.tril(self.lower, -1) + torch.diag(torch.exp(self.log_diag))

    @property
    def R(self) -> torch.Tensor:
        """``R = L L^T`` (symmetric positive definite), ``(d, d)``."""
        L = self.L
        return L @ L.T

    @property
    def omega(self) -> torch.Tensor:
        """``Omega = W - W^T`` (antisymmetric), ``(d, d)``."""
        W = torch.triu(self.upper, 1)
        return W - W.T

    @property
    def A(self) -> torch.Tensor:
        """The drift matrix ``A = -(R + Omega) / 2`` (per unit of ``B``), ``(d, d)``."""
        return -0.5 * (self.R + self.omega)

    def lyapunov_residual(self) -> torch.Tensor:
        """``A + A^T + R``: zero for every antisymmetric ``Omega``, i.e. ``N(0, I)`` is stationary."""
        A = self.A
        return A + A.T + self.R

    # -- time ------------------------------------------------------------------------------------
    def _time(self, t: float | torch.Tensor, name: str = "t") -> torch.Tensor:
        return as_time(t, name).to(dtype=self.log_diag.dtype, device=self.log_diag.device)

    def beta(self, t: float | torch.Tensor) -> torch.Tensor:
        """``beta(t) = -2 f(t)`` of the schedule (shape of ``t``)."""
        return (-2.0 * self.schedule.f(as_time(t))).to(self.log_diag.dtype)

    def integrated_beta(self, t: float | torch.Tensor) -> torch.Tensor:
        """``B(t) = int_0^t beta = -2 log alpha(t)`` (shape of ``t``)."""
        return (-2.0 * self.schedule.log_alpha(as_time(t))).to(self.log_diag.dtype)

    # -- the transition ----------------------------------------------------------------------------
    def transition(self, t: float | torch.Tensor, s: float | torch.Tensor = 0.0, *,
                   method: Literal["van_loan", "lyapunov"] = "van_loan") -> tuple[torch.Tensor, torch.Tensor]:
        """The transition ``x_t | x_s ~ N(M x_s, Sigma)`` by matrix exponentials.

        Arguments:
            t, s: times ``s <= t`` (floats, 0-d or ``(batch,)`` tensors; broadcast together).
            method: ``"van_loan"`` (default): ``Sigma`` from Van Loan's block exponential, accurate to
                rounding for every ``t - s``; ``"lyapunov"``: ``Sigma = I - M M^T`` (exact because ``N(0, I)`` is
                stationary, half the matrix size, but it loses relative accuracy where ``Sigma`` is small;
                the losses use it in float64).

        Returns:
            ``(M, Sigma)``, each ``(*T, d, d)`` where ``T`` is the broadcast shape of ``t`` and ``s``.
        """
        h = self.integrated_beta(t) - self.integrated_beta(s)
        if bool((h < 0).any()) or not bool(torch.isfinite(h).all()):
            raise ValueError(f"transition needs s <= t with B(t) = -2 log alpha(t) finite; got B(t) - B(s) = "
                             f"{h.detach().flatten()[:4].tolist()}")
        if method == "lyapunov":
            M = torch.linalg.matrix_exp(h[..., None, None] * self.A)
            eye = torch.eye(self.dim, dtype=M.dtype, device=M.device)
            return M, eye - M @ M.transpose(-1, -2)
        if method != "van_loan":
            raise ValueError(f"method must be 'van_loan' or 'lyapunov', got {method!r}")
        d = self.dim
        A, R = self.A, self.R
        block = torch.cat([torch.cat([A, R], 1), torch.cat([torch.zeros_like(A), -A.T], 1)], 0)
        # Van Loan's block grows like exp(h |A|) (its -A^T corner), so it is evaluated at h / 2^k with
        # h |block| <= 1/2 and the pair is squared back up: M(2h) = M M, Sigma(2h) = Sigma + M Sigma M^T.
        norm = float(torch.linalg.matrix_norm(block.detach(), ord=1)) * float(h.detach().abs().max())
        k = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0
        F = torch.linalg.matrix_exp((h / 2**k)[..., None, None] * block)
        M, F12 = F[..., :d, :d], F[..., :d, d:]
        sigma = F12 @ M.transpose(-1, -2)
        for _ in range(k):
            sigma = sigma + M @ sigma @ M.transpose(-1, -2)
            M = M @ M
        return M, 0.5 * (sigma + sigma.transpose(-1, -2))

    def _loss_transition(self, t: torch.Tensor, dtype: torch.dtype,
                         n_times: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M, C)`` (``C``: Cholesky factor of ``Sigma``) at per-sample times ``t`` for the losses: in float64
        by ``I - M M^T`` from the exponentials of the distinct times only, cast to ``dtype``."""
        h = self.integrated_beta(t).double()
        if n_times is not None:
            uniq, inv = h[:n_times], torch.arange(h.shape[0], device=h.device) % n_times
        else:
            uniq, inv = h, None
        M = torch.linalg.matrix_exp(uniq[:, None, None] * self.A.double())
        eye = torch.eye(self.dim, dtype=M.dtype, device=M.device)
        C = torch.linalg.cholesky(eye - M @ M.transpose(-1, -2))
        if inv is not None:
            M, C = M[inv], C[inv]
        return M.to(dtype), C.to(dtype)

    def transition_ode(self, t: float, s: float = 0.0, *, rtol: float = 1e-11,
                       atol: float = 1e-13) -> tuple[torch.Tensor, torch.Tensor]:
        """The same ``(M, Sigma)`` by integrating ``dM/dt = beta A M`` and
        ``dSigma/dt = beta (A Sigma + Sigma A^T + R)`` from ``(I, 0)`` at ``s`` with the adaptive
        :func:`sdekit.odeint` (dopri5) — a reference for ``transition`` (use float64).

        Arguments:
            t, s: Python floats, ``s < t``.
            rtol, atol: tolerances of the ODE solver.
        """
        t = check_real("t", t)
        s = check_real("s", s)
        if not s < t:
            raise ValueError(f"transition_ode needs s < t; got s={s}, t={t}")
        A, R = self.A.detach(), self.R.detach()
        eye = torch.eye(self.dim, dtype=A.dtype, device=A.device)

        def rhs(tau: torch.Tensor, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            b = self.beta(tau.double()).to(A.dtype)
            M, S = y
            return b * (A @ M), b * (A @ S + S @ A.T + R)

        M, S = odeint(rhs, (eye[None], torch.zeros_like(eye)[None]), [s, t], rtol=rtol, atol=atol)
        return M[-1, 0], S[-1, 0]

    def _check_x(self, x: torch.Tensor, name: str) -> torch.Tensor:
        check_tensor(name, x, min_dim=2)
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (batch, {self.dim}) (flatten other event shapes); "
                             f"got {tuple(x.shape)}")
        return x

    def _batch_time(self, t: float | torch.Tensor, batch: int) -> torch.Tensor:
        t = self._time(t)
        if t.dim() == 0:
            return t.expand(batch)
        if t.shape[0] != batch:
            raise ValueError(f"t has {t.shape[0]} per-sample times but x0 has batch size {batch}")
        return t

    def marginal(self, x0: torch.Tensor, t: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(batch, d)`` and covariance ``(batch, d, d)`` of ``x_t | x_0``."""
        x0 = self._check_x(x0, "x0")
        t = self._batch_time(t, x0.shape[0])
        M, S = self.transition(t)
        return (M @ x0.unsqueeze(-1)).squeeze(-1), S

    def perturb(self, x0: torch.Tensor, t: float | torch.Tensor,
                noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_t = M_t x_0 + C_t eps`` (``C_t``: Cholesky factor of ``Sigma_t``) and the conditional score
        ``grad log q(x_t | x_0) = -C_t^{-T} eps``, both ``(batch, d)``."""
        x0 = self._check_x(x0, "x0")
        if not isinstance(noise, torch.Tensor) or noise.shape != x0.shape:
            raise ValueError(f"noise must be a tensor of the shape of x0, {tuple(x0.shape)}")
        mean, S = self.marginal(x0, t)
        C = torch.linalg.cholesky(S)
        x_t = mean + (C @ noise.unsqueeze(-1)).squeeze(-1)
        score = -torch.linalg.solve_triangular(C.transpose(-1, -2), noise.unsqueeze(-1), upper=True).squeeze(-1)
        return x_t, score

    def score_from_eps(self, model: ScoreFn) -> ScoreFn:
        """The score ``s(x, t) = -C_t^{-T} eps_theta(x, t)`` of a noise-prediction network
        ``eps_theta(x, t)`` (``t`` passed as a ``(batch,)`` tensor)."""
        if not callable(model):
            raise TypeError(f"model must be a callable eps(x, t), got {type(model).__name__}")

        def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            tb = self._batch_time(t, x.shape[0])
            eps = model(x, tb.to(x.dtype))
            C = torch.linalg.cholesky(self.transition(tb)[1]).to(x.dtype)
            return -torch.linalg.solve_triangular(C.transpose(-1, -2), eps.unsqueeze(-1), upper=True).squeeze(-1)

        return score

    # -- losses ------------------------------------------------------------------------------------
    def _times_and_noise(self, x0: torch.Tensor, u: torch.Tensor | None, generator: torch.Generator | None,
                         n_times: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniforms ``u`` (``(batch,)``, float64; ``n_times`` distinct values repeated cyclically) and noise."""
        n = x0.shape[0]
        if n_times is not None and (isinstance(n_times, bool) or not isinstance(n_times, int) or n_times < 1):
            raise ValueError(f"n_times must be a positive int or None, got {n_times!r}")
        dev = generator.device if generator is not None else x0.device
        if u is None:
            k = n if n_times is None else min(n_times, n)
            u = torch.rand(k, generator=generator, dtype=torch.float64, device=dev).to(x0.device)
            if k < n:
                u = u[torch.arange(n, device=x0.device) % k]
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
        return u, noise

    def dsm_loss(self, model: ScoreFn, x0: torch.Tensor, *, generator: torch.Generator | None = None,
                 n_times: int | None = None) -> torch.Tensor:
        """Denoising score matching with the matrix-valued noise: ``x_t = M_t x_0 + C_t eps``,
        ``t ~ U[t_min, t_max]``, per-sample loss ``|eps_theta(x_t, t) - eps|^2 / d``, ``(batch,)``;
        ``eps_theta`` defines the score ``-C_t^{-T} eps_theta`` (``score_from_eps``).

        Arguments:
            model: ``eps_theta(x, t)``, ``x: (batch, d)``, ``t: (batch,)``.
            x0: data ``(batch, d)``.
            generator: for the draws.
            n_times: draw only this many distinct times per batch (repeated cyclically; each sample's time
                is still uniform), so that only ``n_times`` matrix exponentials are formed.
        """
        x0 = self._check_x(x0, "x0")
        u, eps = self._times_and_noise(x0, None, generator, n_times)
        sch = self.schedule
        t = sch.t_min + (sch.t_max - sch.t_min) * u
        M, C = self._loss_transition(t, x0.dtype, None if n_times is None else min(n_times, x0.shape[0]))
        x_t = (M @ x0.unsqueeze(-1) + C @ eps.unsqueeze(-1)).squeeze(-1)
        return (model(x_t, t.to(x0.dtype)) - eps).pow(2).mean(-1)

    def nelbo(self, model: ScoreFn, x0: torch.Tensor, *, prediction: Literal["eps", "score"] = "eps",
              generator: torch.Generator | None = None, n_times: int | None = None) -> torch.Tensor:
        r"""A one-sample estimate of the negative ELBO of ``x0`` in nats, ``(batch,)`` (the bound in the
        module docstring): the decoder, prior-KL and score-matching terms on ``[t_min, t_max]``, the
        score term at one time drawn uniformly in log-SNR (importance weight ``(lambda_max - lambda_min) /
        |d lambda / dt|``) and one noise. Differentiable in the network and in the forward parameters
        (the flexible-diffusion objective).

        Arguments:
            model: ``eps_theta(x, t)`` (``prediction="eps"``: score ``-C_t^{-T} eps_theta``) or the score
                ``s(x, t)`` itself (``prediction="score"``); ``x: (batch, d)``, ``t: (batch,)``.
            x0: data ``(batch, d)``.
            prediction: ``"eps"`` or ``"score"``.
            generator: for the time and noise draws.
            n_times: as in ``dsm_loss``.
        """
        if prediction not in ("eps", "score"):
            raise ValueError(f"prediction must be 'eps' or 'score', got {prediction!r}")
        x0 = self._check_x(x0, "x0")
        n = x0.shape[0]
        sch = self.schedule
        u, eps = self._times_and_noise(x0, None, generator, n_times)
        lam_hi = sch.log_snr(sch.t_min).double()  # log-SNR decreases in t
        lam_lo = sch.log_snr(sch.t_max).double()
        t = sch.t_of_log_snr(lam_lo + (lam_hi - lam_lo) * u).clamp(sch.t_min, sch.t_max)
        weight = ((lam_hi - lam_lo) / sch.d_log_snr(t).abs()).to(x0.dtype)
        tt = t.to(x0.dtype)
        M, C = self._loss_transition(t, x0.dtype, None if n_times is None else min(n_times, n))
        x_t = (M @ x0.unsqueeze(-1) + C @ eps.unsqueeze(-1)).squeeze(-1)
        Ct = C.transpose(-1, -2)
        if prediction == "eps":
            # s_theta - score = -C^{-T} (eps_theta - eps)
            diff = torch.linalg.solve_triangular(Ct, (model(x_t, tt) - eps).unsqueeze(-1), upper=True)
        else:
            target = -torch.linalg.solve_triangular(Ct, eps.unsqueeze(-1), upper=True)
            diff = model(x_t, tt).unsqueeze(-1) - target
        Ld = self.L.to(x0.dtype).T @ diff  # |L^T diff|^2 = diff^T R diff
        score_term = 0.5 * weight * self.beta(t).to(x0.dtype) * Ld.pow(2).sum((-1, -2))
        return score_term + self.prior_kl(x0) + self.decoder_nll()

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """``KL(q(x_T | x_0) || N(0, I))`` in nats, ``(batch,)`` (``T = t_max``)."""
        x0 = self._check_x(x0, "x0")
        M, S = self.transition(self._time(self.schedule.t_max))
        M, S = M.to(x0.dtype), S.to(x0.dtype)
        m = x0 @ M.T
        logdet = 2.0 * torch.log(torch.diagonal(torch.linalg.cholesky(S))).sum()
        return 0.5 * (torch.diagonal(S).sum() + m.pow(2).sum(-1) - self.dim - logdet)

    def decoder_nll(self) -> torch.Tensor:
        """``E_q[-log p(x_0 | x_eps)]`` for the Gaussian decoder of the module docstring (the same for every
        ``x_0``): ``d/2 log(2 pi e) + 1/2 log det Sigma_eps - log det M_eps``, ``log det M_eps =
        -B(eps) tr(R) / 2`` (``eps = t_min``); a 0-d tensor."""
        t = self._time(self.schedule.t_min)
        _, S = self.transition(t)
        logdet_S = 2.0 * torch.log(torch.diagonal(torch.linalg.cholesky(S))).sum()
        logdet_M = -0.5 * self.integrated_beta(t) * torch.diagonal(self.R).sum()
        return 0.5 * self.dim * math.log(2 * math.pi * math.e) + 0.5 * logdet_S - logdet_M

    # -- the forward SDE for sdeint ----------------------------------------------------------------
    def f(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Drift ``beta(t) A x`` of the forward SDE, ``(batch, d)``."""
        return self.beta(t).to(y.dtype) * (y @ self.A.T.to(y.dtype))

    def g(self, t: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Diffusion ``sqrt(beta(t)) L``, ``(batch, d, d)`` (general noise)."""
        G = torch.sqrt(self.beta(t)).to(y.dtype) * self.L.to(y.dtype)
        return G.expand(*y.shape, self.dim)

    def g_prod(self, t: float | torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``sqrt(beta(t)) L v`` without forming the batch of matrices."""
        return torch.sqrt(self.beta(t)).to(y.dtype) * (v @ self.L.T.to(y.dtype))

    # -- generation ----------------------------------------------------------------------------------
    def reverse_sde(self, score: ScoreFn) -> _ReverseSDE:
        """The reverse-time SDE ``dx = beta (A x - R s(x, t)) dt + sqrt(beta) L dW`` (Anderson 1982;
        Song et al. 2021, eq. 6), a problem for :func:`sdekit.sdeint` on decreasing ``ts``."""
        if not callable(score):
            raise TypeError(f"score must be a callable s(x, t), got {type(score).__name__}")
        return _ReverseSDE(self, score)

    def probability_flow(self, score: ScoreFn) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The probability-flow ODE ``dx/dt = beta (A x - R s(x, t) / 2)`` (Song et al. 2021, eq. 13), a
        callable ``f(t, x)`` for :func:`sdekit.odeint`."""
        if not callable(score):
            raise TypeError(f"score must be a callable s(x, t), got {type(score).__name__}")

        def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            R = self.R.to(x.dtype)
            return self.f(t, x) - 0.5 * self.beta(t).to(x.dtype) * (score(x, t) @ R.T)

        return velocity

    def sample(self, score: ScoreFn, n: int, *, method: Literal["euler", "ode"] = "euler", steps: int = 500,
               seed: int = 0, rtol: float = 1e-5, atol: float = 1e-5,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        """Draw ``n`` samples: ``x_T ~ N(0, I)`` at ``t_max``, then the reverse SDE by Euler-Maruyama
        (``method="euler"``, ``steps`` uniform steps, :func:`sdekit.sdeint`) or the probability-flow ODE by
        adaptive dopri5 (``method="ode"``, :func:`sdekit.odeint` with ``rtol``, ``atol``), down to ``t_min``.

        Returns:
            ``(n, d)`` samples at ``t_min`` (no final denoising step).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        dtype = dtype or self.log_diag.dtype
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.randn(n, self.dim, generator=gen, dtype=dtype).to(self.log_diag.device)
        sch = self.schedule
        if method == "euler":
            # bm=None: sdeint draws a BrownianGrid on its own step grid, seeded here without touching the
            # caller's global generator
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed) + 1)
                dt = (sch.t_max - sch.t_min) / steps
                return sdeint(self.reverse_sde(score), x, [sch.t_max, sch.t_min], method="euler", dt=dt)[-1]
        if method == "ode":
            return odeint(self.probability_flow(score), x, [sch.t_max, sch.t_min], rtol=rtol, atol=atol)[-1]
        raise ValueError(f"method must be 'euler' or 'ode', got {method!r}")

    def extra_repr(self) -> str:
        return f"dim={self.dim}, schedule={self.schedule!r}"


class _ReverseSDE:
    noise_type = "general"
    sde_type = "ito"

    def __init__(self, forward: MatrixLinearSDE, score: ScoreFn) -> None:
        self.forward, self.score = forward, score

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fw = self.forward
        R = fw.R.to(y.dtype)
        return fw.f(t, y) - fw.beta(t).to(y.dtype) * (self.score(y, t) @ R.T)

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.forward.g(t, y)

    def g_prod(self, t: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.forward.g_prod(t, y, v)
