r"""Reverse-time samplers for the system of SDEs of GDSS, run on the tuple state ``(X, A)``.

Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the System of Stochastic Differential
Equations", ICML 2022, section 3.3 and algorithms 1-2. Both components run backwards together from
``t_max`` to ``t_min`` on a uniform grid; every score call evaluates both networks on the same (old) state
``(X, A)``, and counts as one function evaluation (NFE).

* :class:`GraphPC` -- predictor-corrector: a Langevin corrector step
  ``x += e s + sqrt(2 e) * scale_eps * z`` with ``e = 2 a_i (snr |z| / |s|)^2`` (norms averaged over the
  batch, ``a_i = (alpha(t_i) / alpha(t_{i-1}))^2``, GDSS's ``1 - beta_i``), then an Euler-Maruyama step of
  the reverse SDE ``dx = [f x - g^2 s] dt + g dW̄``. NFE per step: 2 (1 without corrector, ``snr = 0``).
* :class:`GraphS4` -- the S4 solver (symmetric splitting): one score ``s`` at ``(x, t_0)`` serves a Langevin
  correction, then half a step of the linear part ``dx = f x dt + g dW̄`` solved exactly, the score drift
  ``x += g(t_0)^2 s h``, and the second half linear step. NFE per step: 1.

The linear half step from ``t`` down to ``u < t`` is exact for the schedule ``(alpha, sigma)``:
``x_u = (alpha_u / alpha_t) x_t + sqrt((alpha_u / alpha_t)^2 sigma_t^2 - sigma_u^2) z`` (GDSS uses the
forward transition's variance ``1 - (alpha_t / alpha_u)^2`` here, equal to first order in the step).

The time loop is the core's (``sdekit.core.integrate.fixed_loop``, with its non-finite check), on the
state packed into one tensor; the steps are bespoke (Langevin corrections with batch-dependent step
sizes and symmetric noise on ``A`` are not a scheme of the core's solver tables). Noise is drawn from a
``torch.Generator``: normal on the rows of ``X`` of active nodes, :func:`sdekit.graphs.symmetric_noise`
on ``A``. Scores are masked before use, so padding entries stay exactly zero; ``A`` stays symmetric with
a zero diagonal when the score for ``A`` is (as :class:`sdekit.graphs.ScoreNetworkA`'s is). The last step
returns the mean (no noise), and ``A`` is quantised at 0.5 at the end.

With ``scale_eps < 1`` (GDSS: 0.7) the Langevin step does not preserve ``p_t``: it sharpens, a bias
that does not vanish as the grid is refined. ``scale_eps = 1`` and a small ``snr`` give a sampler that
converges to the model's distribution as the steps grow (tested on a Gaussian state with exact scores).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..core.integrate import fixed_loop
from ..diffusion import Schedule
from .losses import GraphScoreFn
from .sde import GraphSDE
from .state import check_graph_state, mask_adjs, mask_x, quantize_adjacency, symmetric_noise

__all__ = ["GraphSampler", "GraphPC", "GraphS4", "GraphSample", "sample_graphs", "sample_node_flags"]


def _check_unit(name: str, v, lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (lo_open and v == 0):
        raise ValueError(f"{name} must be a {'positive' if lo_open else 'non-negative'} finite number, got {v!r}")
    return float(v)


class _Step:
    """What one step of a sampler sees: the score, the SDE, the flags, the noise generator."""

    def __init__(self, score_fn: GraphScoreFn, sde: GraphSDE, flags: torch.Tensor,
                 generator: torch.Generator | None) -> None:
        self.score_fn, self.sde, self.flags, self.generator = score_fn, sde, flags, generator
        self.calls = 0

    def score(self, x: torch.Tensor, adj: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        sx, sa = self.score_fn(x, adj, self.flags, t)
        return mask_x(sx, self.flags), mask_adjs(sa, self.flags)

    def noise_x(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        return mask_x(z, self.flags)

    def noise_adj(self, adj: torch.Tensor) -> torch.Tensor:
        return symmetric_noise(adj.shape, self.flags, self.generator, dtype=adj.dtype, device=adj.device)

    def langevin(self, x: torch.Tensor, s: torch.Tensor, z: torch.Tensor, a_i: torch.Tensor, snr: float,
                 scale_eps: float) -> torch.Tensor:
        s_norm = s.flatten(1).norm(dim=1).mean().clamp_min(torch.finfo(s.dtype).tiny)
        z_norm = z.flatten(1).norm(dim=1).mean()
        e = 2.0 * a_i * (snr * z_norm / s_norm) ** 2
        return x + e[:, None, None] * s + (2.0 * e).sqrt()[:, None, None] * scale_eps * z

    def correct(self, x: torch.Tensor, adj: torch.Tensor, sx: torch.Tensor, sa: torch.Tensor, t0: torch.Tensor,
                t1: torch.Tensor, snr: float, scale_eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        for v, s, sched, noise in ((x, sx, self.sde.x, self.noise_x), (adj, sa, self.sde.adj, self.noise_adj)):
            a_i = torch.exp(2.0 * (sched.log_alpha(t0) - sched.log_alpha(t1))).to(v.dtype)
            out.append(self.langevin(v, s, noise(v), a_i, snr, scale_eps))
        return out[0], out[1]


def _coef(c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return c.to(like.dtype)[:, None, None]


def _linear_half(v: torch.Tensor, sched: Schedule, t: torch.Tensor, u: torch.Tensor, z: torch.Tensor | None):
    """Exact solution of the reverse linear part ``dx = f x dt + g dW̄`` from ``t`` down to ``u``."""
    ratio = torch.exp(sched.log_alpha(u) - sched.log_alpha(t))
    var = (ratio * sched.sigma(t)) ** 2 - sched.sigma(u) ** 2
    mean = _coef(ratio, v) * v
    return mean if z is None else mean + _coef(var.clamp_min(0.0).sqrt(), v) * z


class GraphSampler:
    """Base class of the graph samplers: ``step`` maps ``(x, adj)`` at ``t0`` to ``t1 < t0``.

    Attributes:
        nfe_per_step: score evaluations (of both networks) per step.
        snr, scale_eps: the Langevin corrector's signal-to-noise ratio (0: no corrector) and noise scale.
    """

    name: str = ""
    nfe_per_step: int = 1

    def __init__(self, snr: float = 0.05, scale_eps: float = 0.7) -> None:
        self.snr = _check_unit("snr", snr)
        self.scale_eps = _check_unit("scale_eps", scale_eps)

    def nfe(self, steps: int) -> int:
        """Score evaluations for ``steps`` steps."""
        return steps * self.nfe_per_step

    def step(self, ctx: _Step, t0: torch.Tensor, t1: torch.Tensor, x: torch.Tensor, adj: torch.Tensor,
             last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from ``t0`` to ``t1`` (per-graph times ``(B,)``); ``last``: return the mean, no noise."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(snr={self.snr}, scale_eps={self.scale_eps})"


class GraphPC(GraphSampler):
    """Predictor-corrector: Langevin correction (when ``snr > 0``), then an Euler-Maruyama step of the reverse
    SDE (see the module docstring). GDSS's configs: community-small ``snr=0.05, scale_eps=0.7``; ego-small
    no corrector (``snr=0``); grid ``snr=0.1, scale_eps=0.7`` (with the reverse-diffusion predictor, which
    is not built here: Euler-Maruyama stands in)."""

    name = "pc"

    def __init__(self, snr: float = 0.05, scale_eps: float = 0.7) -> None:
        super().__init__(snr, scale_eps)
        self.nfe_per_step = 2 if self.snr > 0 else 1

    def step(self, ctx: _Step, t0: torch.Tensor, t1: torch.Tensor, x: torch.Tensor, adj: torch.Tensor,
             last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.snr > 0:
            sx, sa = ctx.score(x, adj, t0)
            x, adj = ctx.correct(x, adj, sx, sa, t0, t1, self.snr, self.scale_eps)
        sx, sa = ctx.score(x, adj, t0)
        h = t0 - t1
        out = []
        for v, s, sched, noise in ((x, sx, ctx.sde.x, ctx.noise_x), (adj, sa, ctx.sde.adj, ctx.noise_adj)):
            mean = v - (_coef(sched.f(t0), v) * v - _coef(sched.g2(t0), v) * s) * _coef(h, v)
            out.append(mean if last else mean + _coef(sched.g(t0) * h.sqrt(), v) * noise(v))
        return out[0], out[1]


class GraphS4(GraphSampler):
    """The S4 solver of GDSS (algorithm 2): one score per step serves a Langevin correction and the score
    drift between two exact half steps of the linear part (see the module docstring)."""

    name = "s4"
    nfe_per_step = 1

    def step(self, ctx: _Step, t0: torch.Tensor, t1: torch.Tensor, x: torch.Tensor, adj: torch.Tensor,
             last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        sx, sa = ctx.score(x, adj, t0)
        if self.snr > 0:
            x, adj = ctx.correct(x, adj, sx, sa, t0, t1, self.snr, self.scale_eps)
        h = t0 - t1
        tm = t0 - 0.5 * h
        out = []
        for v, s, sched, noise in ((x, sx, ctx.sde.x, ctx.noise_x), (adj, sa, ctx.sde.adj, ctx.noise_adj)):
            v = _linear_half(v, sched, t0, tm, noise(v))
            v = v + _coef(sched.g2(t0) * h, v) * s
            out.append(_linear_half(v, sched, tm, t1, None if last else noise(v)))
        return out[0], out[1]


_SAMPLERS: dict[str, type[GraphSampler]] = {"pc": GraphPC, "s4": GraphS4}


@dataclass
class GraphSample:
    """The result of :func:`sdekit.graphs.sample_graphs`.

    Attributes:
        x: ``(B, N, F)`` node features at ``t_min`` (GDSS discards them: the graph is ``adj``).
        adj: ``(B, N, N)`` quantised adjacency in ``{0, 1}`` (threshold 0.5), or the relaxed one when
            ``quantize=False``.
        adj_relaxed: ``(B, N, N)`` the continuous adjacency before quantisation.
        flags: ``(B, N)`` the node flags the sample was drawn with.
        nfe: score evaluations (of both networks) made, counted.
    """

    x: torch.Tensor
    adj: torch.Tensor
    adj_relaxed: torch.Tensor
    flags: torch.Tensor
    nfe: int


def sample_node_flags(node_counts: Sequence[int] | torch.Tensor, batch: int, max_nodes: int,
                      generator: torch.Generator | None = None, *, device: torch.device | str | None = None,
                      dtype: torch.dtype | None = None) -> torch.Tensor:
    """Node flags ``(batch, max_nodes)`` with the node counts drawn with replacement from ``node_counts``
    (the training graphs' sizes, as GDSS copies the flags of training graphs); the active nodes come
    first."""
    counts = torch.as_tensor(node_counts, dtype=torch.long).flatten()
    if counts.numel() == 0:
        raise ValueError("node_counts must hold at least one graph size")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if int(counts.min()) < 1 or int(counts.max()) > max_nodes:
        raise ValueError(f"node_counts must lie in [1, max_nodes={max_nodes}]; got min {int(counts.min())}, "
                         f"max {int(counts.max())}")
    g_device = generator.device if generator is not None else "cpu"
    idx = torch.randint(0, counts.numel(), (batch,), generator=generator, device=g_device).cpu()
    n = counts[idx]
    flags = (torch.arange(max_nodes).unsqueeze(0) < n.unsqueeze(1)).to(dtype or torch.get_default_dtype())
    return flags.to(device) if device is not None else flags


def sample_graphs(score_fn: GraphScoreFn, sde: GraphSDE, flags: torch.Tensor, features: int, *,
                  sampler: str | GraphSampler = "s4", steps: int = 1000, generator: torch.Generator | None = None,
                  x_T: torch.Tensor | None = None, adj_T: torch.Tensor | None = None, quantize: bool = True,
                  callback: Callable[[int, float, torch.Tensor, torch.Tensor], None] | None = None,
                  progress: bool = False) -> GraphSample:
    r"""Generate graphs by running the reverse system from ``t_max`` to ``t_min``.

    Arguments:
        score_fn: ``score_fn(x, adj, flags, t) -> (s_x, s_adj)``, ``t`` of shape ``(B,)`` (e.g.
            :func:`sdekit.graphs.score_function` of a trained :class:`~sdekit.graphs.GDSSNetwork`).
        sde: the :class:`~sdekit.graphs.GraphSDE`.
        flags: ``(B, N)`` node flags (e.g. :func:`sdekit.graphs.sample_node_flags`).
        features: ``F``, the node-feature width.
        sampler: ``"s4"``, ``"pc"`` or a :class:`GraphSampler` (``"s4"``/``"pc"`` take GDSS's
            community-small corrector ``snr=0.05, scale_eps=0.7``).
        steps: grid steps (GDSS: 1000); the NFE is ``sampler.nfe(steps)``.
        generator: a ``torch.Generator`` for the prior and all noise (on the flags' device).
        x_T, adj_T: the starting state (default: ``N(0, I)``, ``A`` symmetric, masked, as GDSS).
        quantize: round ``adj`` at 0.5 at the end.
        callback: ``callback(k, t, x, adj)`` after every step ``k = 1..steps`` (e.g. to check invariants).
        progress: show a progress bar.

    Returns:
        a :class:`GraphSample`.

    Raises:
        TypeError / ValueError: an unknown sampler, a bad step count or flags, a starting state that is
            not a valid graph state for ``flags``.
    """
    if isinstance(sampler, str):
        if sampler not in _SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(_SAMPLERS)} or a GraphSampler, got {sampler!r}")
        sampler = _SAMPLERS[sampler]()
    if not isinstance(sampler, GraphSampler):
        raise TypeError(f"sampler must be a name or a GraphSampler, got {type(sampler).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(sde, GraphSDE):
        raise TypeError(f"sde must be a GraphSDE, got {type(sde).__name__}")
    if not isinstance(flags, torch.Tensor) or flags.dim() != 2:
        raise ValueError(f"flags must be a (batch, nodes) tensor, got "
                         f"{tuple(flags.shape) if isinstance(flags, torch.Tensor) else type(flags).__name__}")
    B, N = flags.shape
    dtype = flags.dtype if flags.is_floating_point() else torch.get_default_dtype()
    flags = flags.to(dtype)
    if x_T is None:
        x_T = mask_x(torch.randn((B, N, features), generator=generator, dtype=dtype, device=flags.device), flags)
    if adj_T is None:
        adj_T = symmetric_noise((B, N, N), flags, generator, dtype=dtype, device=flags.device)
    check_graph_state(x_T, adj_T, flags)
    if x_T.shape[-1] != features:
        raise ValueError(f"x_T must have {features} features (the features argument), got {x_T.shape[-1]}")

    ctx = _Step(score_fn, sde, flags, generator)
    grid = torch.linspace(sde.t_max, sde.t_min, steps + 1, dtype=torch.float64).tolist()
    nx = N * features

    def step(k: int, t0: float, t1: float, y: torch.Tensor, state) -> tuple[torch.Tensor, None]:
        x, adj = y[:, :nx].reshape(B, N, features), y[:, nx:].reshape(B, N, N)
        tt0 = torch.full((B,), t0, dtype=dtype, device=y.device)
        tt1 = torch.full((B,), t1, dtype=dtype, device=y.device)
        x, adj = sampler.step(ctx, tt0, tt1, x, adj, last=k == steps - 1)
        if callback is not None:
            callback(k + 1, t1, x, adj)
        return torch.cat([x.reshape(B, -1), adj.reshape(B, -1)], 1), None

    y0 = torch.cat([x_T.reshape(B, -1), adj_T.reshape(B, -1)], 1)
    yT = fixed_loop(step, y0, None, grid, [0, steps], lambda g: list(g), f"graphs {sampler.name}", progress)[-1]
    x, relaxed = yT[:, :nx].reshape(B, N, features), yT[:, nx:].reshape(B, N, N)
    adj = quantize_adjacency(relaxed) if quantize else relaxed
    return GraphSample(x=x, adj=adj, adj_relaxed=relaxed, flags=flags, nfe=ctx.calls)
