"""Directed-chain SDE generators of time series, trained by the signature MMD.

Min, Hu, Ichiba, "Directed Chain Generative Adversarial Networks", ICML 2023. A directed-chain SDE is

``dX_t = b(t, X_t, X~_t) dt + s(t, X_t, X~_t) dW_t``,  ``Law(X~) = Law(X)``,

where the neighbourhood path ``X~`` is an independent path of the same law (the previous node of an
infinite directed chain of paths). Training feeds real paths as ``X~`` and matches the law of the
generated ``X`` to the data; generation walks the chain: a generated batch is the neighbourhood of the next
(``DirectedChainSDE.chain``), starting from any batch. ``b`` and ``s`` are MLPs of ``(t, X, X~(t))``
(width 128, 2 hidden layers, LipSwish, as the paper's code), ``s`` of shape ``(d, noise)`` (general Itô
noise); the SDE is solved by :func:`sdekit.sdeint` (Euler–Maruyama on the data's time grid, as the paper).

The plain neural SDE baseline (:class:`sdekit.timeseries.NeuralSDEGenerator`) is the same generator without ``X~``.
:class:`sdekit.timeseries.SignatureMMDLoss` is a :class:`sdekit.train.Trainer` loss: the signature MMD
(:func:`sdekit.timeseries.signature_mmd`) between generated and real time-augmented paths, the paper's loss
being its biased truncated form at depth 8 with a basepoint.

Data: the stochastic opinion-dynamics particle system of the paper (:func:`sdekit.timeseries.opinion_dynamics`),
``dX^i = -(1/N) sum_j phi(|X^i - X^j|) (X^i - X^j) dt + sigma dW^i`` with
``phi(r) = theta1 exp(-0.01 / (1 - (r - theta2)^2))`` for ``r < theta2 + 1`` and 0 beyond, ``X^i_0 ~ U[-2, 2]``,
simulated by :func:`sdekit.sdeint` on a seeded :class:`sdekit.BrownianGrid`; its marginals split into two
clusters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core import SDE, BrownianGrid, sdeint
from .signature import signature_mmd, time_augment

__all__ = ["NeuralSDEGenerator", "DirectedChainSDE", "SignatureMMDLoss", "OpinionDynamics", "opinion_dynamics"]


def _check_times(ts: Any, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """``ts`` as a finite, strictly increasing 1-D tensor of at least 2 times."""
    if not isinstance(ts, torch.Tensor):
        try:
            ts = torch.as_tensor(ts, dtype=dtype)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"ts must be a 1-D tensor or sequence of numbers, got {type(ts).__name__}") from err
    ts = ts.to(dtype=dtype, device=device)
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError(f"ts must be 1-D with at least 2 times, got shape {tuple(ts.shape)}")
    if not bool(torch.isfinite(ts).all()):
        raise ValueError("ts must be finite")
    steps = ts[1:] - ts[:-1]
    if not bool((steps > 0).all()):
        k = int((steps <= 0).nonzero()[0])
        raise ValueError(f"ts must be strictly increasing; got ts[{k + 1}] = {float(ts[k + 1]):g} <= "
                         f"ts[{k}] = {float(ts[k]):g}")
    return ts


def _check_int(name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


class _LipSwish(nn.Module):
    """``0.909 silu(x)``: 1-Lipschitz (Chen et al., "Residual Flows", NeurIPS 2019)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.909 * nn.functional.silu(x)


def _mlp(inputs: int, out: int, width: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Linear(inputs, width), _LipSwish()]
    for _ in range(layers - 1):
        mods += [nn.Linear(width, width), _LipSwish()]
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


class NeuralSDEGenerator(SDE):
    """Neural SDE generator ``dX = b(t, X) dt + s(t, X) dW`` of ``d``-channel paths (general Itô noise).

    The baseline of :class:`sdekit.timeseries.DirectedChainSDE` (the same networks without the neighbourhood
    input), as in the directed-chain GAN paper (Min, Hu, Ichiba, ICML 2023).

    Arguments:
        channels: ``d``, channels of a path (not counting time).
        noise: ``m``, dimension of the Brownian motion (the paper: 3 for opinion dynamics).
        width, layers: of the drift and diffusion MLPs (LipSwish).

    ``f(t, x): (B, d) -> (B, d)``, ``g(t, x): (B, d) -> (B, d, m)``.
    """

    directed = False

    def __init__(self, channels: int, noise: int = 3, width: int = 128, layers: int = 2) -> None:
        for name, value in (("channels", channels), ("noise", noise), ("width", width), ("layers", layers)):
            _check_int(name, value)
        super().__init__(noise_type="general", sde_type="ito")
        self.channels, self.noise = channels, noise
        inputs = 1 + channels * (2 if self.directed else 1)
        self.drift = _mlp(inputs, channels, width, layers)
        self.diffusion = _mlp(inputs, channels * noise, width, layers)

    def _inputs(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1, 1).expand(x.shape[0], 1)
        return torch.cat([t, x], dim=-1)

    def f(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        return self.drift(self._inputs(t, x))

    def g(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        return self.diffusion(self._inputs(t, x)).view(x.shape[0], self.channels, self.noise)

    def _check_x0(self, x0: torch.Tensor) -> torch.Tensor:
        if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
            got = f"tensor of dtype {x0.dtype}" if isinstance(x0, torch.Tensor) else type(x0).__name__
            raise TypeError(f"x0 must be a floating tensor (B, {self.channels}), got {got}")
        if x0.dim() != 2 or x0.shape[1] != self.channels:
            raise ValueError(f"x0 must have shape (B, {self.channels}), got {tuple(x0.shape)}")
        if not bool(torch.isfinite(x0).all()):
            raise ValueError("x0 contains NaN or inf")
        return x0

    def _solve(self, ts: torch.Tensor, x0: torch.Tensor, bm: Any) -> torch.Tensor:
        dt = float((ts[1:] - ts[:-1]).max())  # one Euler step per interval of ts
        ys = sdeint(self, x0, ts, method="euler", dt=dt, bm=bm)  # (L, B, d)
        assert isinstance(ys, torch.Tensor)  # a tensor state gives a tensor path
        return ys.transpose(0, 1)

    def sample(self, ts: torch.Tensor, x0: torch.Tensor, *, bm: Any = None) -> torch.Tensor:
        """Paths ``(B, L, d)`` at the times ``ts: (L,)`` from ``x0: (B, d)`` (Euler–Maruyama, one step per
        interval of ``ts``, as the paper); ``bm``: a Brownian source of shape ``(B, m)`` (default: torch's
        generator)."""
        x0 = self._check_x0(x0)
        ts = _check_times(ts, x0.dtype, x0.device)
        return self._solve(ts, x0, bm)


class DirectedChainSDE(NeuralSDEGenerator):
    """Directed-chain SDE ``dX = b(t, X, X~) dt + s(t, X, X~) dW`` (Min, Hu, Ichiba, ICML 2023).

    Same arguments as :class:`sdekit.timeseries.NeuralSDEGenerator`; ``b`` and ``s`` also see the neighbourhood
    path ``X~`` at the solver time (linear interpolation of the neighbour's points between the times ``ts``).

    ``f(t, x): (B, d) -> (B, d)``, ``g(t, x): (B, d) -> (B, d, m)``; the neighbour is set by
    ``sample`` (or ``set_neighbour``) before the solve.
    """

    directed = True

    def __init__(self, channels: int, noise: int = 3, width: int = 128, layers: int = 2) -> None:
        super().__init__(channels, noise, width, layers)
        self._neighbour: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_neighbour(self, ts: torch.Tensor, neighbour: torch.Tensor) -> None:
        """Use ``neighbour: (B, L, d)`` observed at ``ts: (L,)`` as ``X~`` in the following solves.

        Raises:
            TypeError / ValueError: a non-floating neighbour, one of another shape than ``(B, len(ts), d)``
                (series of inconsistent lengths), NaN or inf in it, or ``ts`` not strictly increasing.
        """
        if not isinstance(neighbour, torch.Tensor) or not neighbour.is_floating_point():
            got = (f"tensor of dtype {neighbour.dtype}" if isinstance(neighbour, torch.Tensor)
                   else type(neighbour).__name__)
            raise TypeError(f"neighbour must be a floating tensor (B, L, {self.channels}), got {got}")
        ts = _check_times(ts, neighbour.dtype, neighbour.device)
        if neighbour.dim() != 3 or neighbour.shape[1:] != (ts.numel(), self.channels):
            raise ValueError(f"neighbour must have shape (B, {ts.numel()}, {self.channels}) (one point per time of "
                             f"ts, {self.channels} channels), got {tuple(neighbour.shape)}")
        if not bool(torch.isfinite(neighbour).all()):
            raise ValueError("neighbour contains NaN or inf; fill missing values first (e.g. by interpolation)")
        self._neighbour = (ts, neighbour)

    def _at(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        if self._neighbour is None:
            raise RuntimeError("DirectedChainSDE: set the neighbourhood path (sample(..., neighbour=...) or "
                               "set_neighbour) before solving")
        ts, path = self._neighbour
        if path.shape[0] != x.shape[0]:
            raise ValueError(f"the neighbour batch ({path.shape[0]}) must equal the state batch ({x.shape[0]})")
        t = torch.as_tensor(t, dtype=ts.dtype, device=ts.device).reshape(1)
        k = (torch.searchsorted(ts, t, right=True) - 1).clamp(0, ts.numel() - 2)
        w = ((t - ts[k]) / (ts[k + 1] - ts[k])).clamp(0, 1)
        return torch.lerp(path[:, k[0]], path[:, k[0] + 1], w.to(path.dtype))

    def _inputs(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([super()._inputs(t, x), self._at(t, x).to(x.dtype)], dim=-1)

    def sample(self, ts: torch.Tensor, x0: torch.Tensor, *, neighbour: torch.Tensor | None = None,
               bm: Any = None) -> torch.Tensor:
        """Paths ``(B, L, d)`` at ``ts: (L,)`` from ``x0: (B, d)`` driven by the neighbourhood paths
        ``neighbour: (B, L, d)`` (the same times); without ``neighbour`` the one set last is used."""
        x0 = self._check_x0(x0)
        ts = _check_times(ts, x0.dtype, x0.device)
        if neighbour is not None:
            self.set_neighbour(ts, neighbour)
        elif self._neighbour is None:
            raise ValueError("DirectedChainSDE.sample needs neighbour= (B, L, d) paths (or set_neighbour first)")
        return self._solve(ts, x0, bm)

    def chain(self, ts: torch.Tensor, x0: torch.Tensor, start: torch.Tensor, *, bm: Any = None) -> torch.Tensor:
        """Walk the directed chain: ``X^0 = start``, ``X^{k+1}`` = ``sample`` from ``x0[k]`` with
        neighbour ``X^k``; returns ``(K, B, L, d)`` for ``x0: (K, B, d)`` (``start: (B, L, d)`` at ``ts``).

        ``bm``: ``None`` or a sequence of ``K`` Brownian sources."""
        if not isinstance(x0, torch.Tensor) or x0.dim() != 3:
            got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
            raise ValueError(f"x0 must be a tensor (K, B, {self.channels}) of initial values per link, got {got}")
        if bm is not None and len(bm) != x0.shape[0]:
            raise ValueError(f"bm must hold one Brownian source per link ({x0.shape[0]}), got {len(bm)}")
        links, current = [], start
        for k in range(x0.shape[0]):
            current = self.sample(ts, x0[k], neighbour=current, bm=None if bm is None else bm[k])
            links.append(current)
        return torch.stack(links)


class SignatureMMDLoss:
    """Signature-MMD generator loss for :class:`sdekit.train.Trainer`: ``loss_fn(model, paths)``.

    For a batch of real paths ``paths: (B, L, d)`` at the times ``ts``, the generator starts from the real
    initial values ``paths[:, 0]``; a :class:`sdekit.timeseries.DirectedChainSDE` gets the batch rolled by one as its
    neighbourhood (real paths of the same law, each generated path driven by another path than the one it is
    compared with). Generated and real paths are time-augmented (:func:`sdekit.timeseries.time_augment`) and
    compared by :func:`sdekit.timeseries.signature_mmd` (Min, Hu, Ichiba, ICML 2023: truncated at depth 8,
    basepoint).

    Arguments:
        ts: ``(L,)`` strictly increasing times of the data.
        depth: truncation of the signature (``None``: the PDE signature kernel).
        dyadic_order, static_kernel, sigma: of the PDE kernel (with ``depth=None``).
        unbiased: the unbiased MMD^2 (default) or ``sqrt`` of the biased one, ``|mean S(x) - mean S(y)|``
            (the paper's loss).
    """

    def __init__(self, ts: torch.Tensor, *, depth: int | None = 8, dyadic_order: int = 0,
                 static_kernel: str = "linear", sigma: float = 1.0, unbiased: bool = True) -> None:
        self.ts = _check_times(ts, torch.get_default_dtype() if not isinstance(ts, torch.Tensor)
                               or not ts.is_floating_point() else ts.dtype)
        if depth is not None:
            _check_int("depth", depth)
        self.depth, self.unbiased = depth, unbiased
        self.kernel = {"dyadic_order": dyadic_order, "static_kernel": static_kernel, "sigma": sigma}

    def generate(self, model: nn.Module, paths: torch.Tensor) -> torch.Tensor:
        """Generated paths ``(B, L, d)`` for the real batch ``paths`` (see the class docstring)."""
        ts = self.ts.to(dtype=paths.dtype, device=paths.device)
        if paths.dim() != 3 or paths.shape[1] != ts.numel():
            raise ValueError(f"paths must have shape (B, {ts.numel()}, d) to match ts, got {tuple(paths.shape)}")
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        if isinstance(inner, DirectedChainSDE):
            return inner.sample(ts, paths[:, 0], neighbour=paths.roll(1, dims=0))
        if isinstance(inner, NeuralSDEGenerator):
            return inner.sample(ts, paths[:, 0])
        raise TypeError(f"model must be a NeuralSDEGenerator or DirectedChainSDE, got {type(inner).__name__}")

    def __call__(self, model: nn.Module, paths: torch.Tensor, generator: torch.Generator | None = None,
                 model_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        fake = self.generate(model, paths)
        ts = self.ts.to(dtype=paths.dtype, device=paths.device)
        mmd = signature_mmd(time_augment(fake, ts), time_augment(paths, ts), depth=self.depth, basepoint=True,
                            unbiased=self.unbiased, **self.kernel)
        return mmd if self.unbiased else mmd.clamp_min(1e-12).sqrt()


class OpinionDynamics(SDE):
    """Stochastic opinion dynamics of ``N`` interacting agents (a mean-field particle system, diagonal noise).

    ``dX^i = -(1/N) sum_j phi(|X^i - X^j|) (X^i - X^j) dt + sigma dW^i``,
    ``phi(r) = theta1 exp(-0.01 / (1 - (r - theta2)^2))`` for ``r < theta2 + 1``, else 0
    (Min, Hu, Ichiba, ICML 2023, their data: ``theta1 = 6``, ``theta2 = 0.2``, ``sigma = 0.1``).
    The state is ``(N, 1)``: all agents of one system; the drift is ``O(N^2)`` (computed in blocks of
    ``block`` agents).
    """

    def __init__(self, theta1: float = 6.0, theta2: float = 0.2, sigma: float = 0.1, *, block: int = 2048) -> None:
        super().__init__(noise_type="diagonal", sde_type="ito")
        for name, value in (("theta1", theta1), ("sigma", sigma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                    or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if isinstance(theta2, bool) or not isinstance(theta2, (int, float)) or not math.isfinite(theta2):
            raise ValueError(f"theta2 must be a finite number, got {theta2!r}")
        self.theta1, self.theta2, self.sigma = float(theta1), float(theta2), float(sigma)
        self.block = _check_int("block", block)

    def phi(self, r: torch.Tensor) -> torch.Tensor:
        """Interaction strength at distance ``r >= 0`` (0 from ``theta2 + 1`` on)."""
        u = (r - self.theta2).clamp(-1 + 1e-6, 1 - 1e-6)
        inside = (r - self.theta2).abs() < 1
        return torch.where(inside, self.theta1 * torch.exp(-0.01 / (1 - u.square())), torch.zeros_like(r))

    def f(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        out = []
        for lo in range(0, x.shape[0], self.block):
            diff = x[lo:lo + self.block, None, :] - x[None, :, :]  # (b, N, 1)
            r = diff.square().sum(-1, keepdim=True).sqrt()
            out.append(-(self.phi(r) * diff).mean(1))
        return torch.cat(out)

    def g(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.sigma)


def opinion_dynamics(n: int, *, steps: int = 100, t_end: float = 1.0, theta1: float = 6.0, theta2: float = 0.2,
                     sigma: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float32
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulate one opinion-dynamics system of ``n`` agents: ``(ts (steps + 1,), paths (n, steps + 1, 1))``.

    ``X_0 ~ U[-2, 2]``, Euler–Maruyama with ``dt = t_end / steps`` (the paper: ``n = 8192``, ``dt = 0.01``,
    ``t_end = 1``) by :func:`sdekit.sdeint` on a :class:`sdekit.BrownianGrid` seeded by ``seed``; see
    :class:`sdekit.timeseries.OpinionDynamics`. Agents of one system are exchangeable, weakly dependent paths of
    one law.
    """
    _check_int("n", n, 2)
    _check_int("steps", steps)
    if isinstance(t_end, bool) or not isinstance(t_end, (int, float)) or not t_end > 0 or not math.isfinite(t_end):
        raise ValueError(f"t_end must be a positive finite number, got {t_end!r}")
    sde = OpinionDynamics(theta1, theta2, sigma)
    gen = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(n, 1, generator=gen, dtype=torch.float64) * 4 - 2).to(dtype)
    ts = torch.linspace(0, t_end, steps + 1, dtype=dtype)
    bm = BrownianGrid(ts, (n, 1), seed=seed + 1, dtype=dtype)
    with torch.no_grad():
        ys = sdeint(sde, x0, ts, method="euler", dt=float((ts[1:] - ts[:-1]).max()), bm=bm)
    assert isinstance(ys, torch.Tensor)  # a tensor state gives a tensor path
    return ts, ys.transpose(0, 1).contiguous()
