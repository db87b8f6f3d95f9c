"""Sampler benchmark: sdekit, diffusers and k-diffusion on exact oracles, side by side.

Every library drives the SAME model function, an exact denoiser, so the only error left is the
sampler's:

* problems: Gaussian mixtures in 2, 16 and 64 dimensions (a few well-separated components, exact
  denoiser in closed form) and the optimal denoiser of the scikit-learn digits (8x8, the empirical
  measure of the 1500 training images);
* all runs start from the same exact draw of the noised data at ``sigma~ = sigma / alpha = 157.4``,
  the noise level of the first step of diffusers' DDPM schedule (linear betas 1e-4..0.02, 1000 steps),
  so no sampler pays for a prior mismatch;
* the model is wrapped for each library: sdekit gets ``D(x, t)`` on an EDM schedule, k-diffusion gets
  ``D(x, sigma)`` (VE/EDM form) and diffusers gets an eps-prediction ``eps(x_t, timestep)`` on the
  discrete VP schedule of its betas (fractional timesteps interpolate ``log sigma~`` linearly, as
  diffusers does);
* metrics: sliced W2 (512 seeded directions, as ``sdekit.metrics.sliced_wasserstein``) between
  ``--n`` samples and ``--n`` independent exact samples, beside the noise floor (mean SW2 between
  independent exact sample sets, over three pairs); for deterministic samplers the endpoint RMSE
  against a high-accuracy probability-flow ODE reference (scipy DOP853, rtol 1e-10, in ``log sigma``)
  on the first 2000 samples, and the convergence order fitted on NFE >= 10; at the selection NFE the
  runs are repeated on further independent draws, beside the SW2 of each draw's exact ODE solution
  (DOP853, rtol 1e-5): the score of a perfect sampler, which shows how much of a ratio is noise;
* settings: each library runs a few documented candidate settings per sampler (grids, final-step
  options, solver orders) and the table reports the one with the lowest error at NFE 10 (endpoint
  RMSE for ODE samplers, SW2 for stochastic ones), chosen per problem, the same rule for every library.

Run ``python benchmarks/samplers.py`` (about 30 minutes on 2 cores; ``--quick`` for a 1-2 minute
check) or ``sdekit bench samplers``. Writes ``benchmarks/results/samplers.md``, ``samplers.png`` and
``samplers.json``.

The anchors are optional. diffusers: ``pip install -c constraints.txt diffusers`` (the ``bench`` extra).
k-diffusion is never a dependency: its full install pulls torchvision and CLIP, and a torchvision
wheel from PyPI does not import beside a local torch build. Install it with
``pip install --no-deps k-diffusion==0.1.1.post1 torchdiffeq`` (``make bench-deps``); this script loads
``k_diffusion.sampling`` without the package ``__init__`` (which imports the image and CLIP helpers)
and stubs ``torchvision.transforms.functional`` only if ``k_diffusion.utils`` cannot import it. A
missing anchor is skipped with a printed note.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import math
import sys
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from _machine import describe

from sdekit.data import digits
from sdekit.diffusion import (
    DDIM,
    DEIS,
    EDM,
    ERSDE,
    IPNDM,
    Denoiser,
    DPMSolverPP,
    EDMHeun,
    EmpiricalData,
    GaussianMixture,
    SASolver,
    SDEDPMSolverPP,
    UniPC,
    get_time_grid,
    sample,
)
from sdekit.diffusion.gits import GITS
from sdekit.metrics import random_directions, sliced_wasserstein

NFES = (5, 8, 10, 15, 20, 50)
QUICK_NFES = (5, 10, 20)
N_REF = 2000                      # samples whose endpoint is compared with the ODE reference
N_PROJ = 512
DDPM_BETAS = (1e-4, 0.02, 1000)   # diffusers' default linear betas
SDEKIT_SIGMA_MIN = 0.002          # EDM's; also k-diffusion's Karras grid
GITS_COEFFS = (0.8, 0.9, 1.0, 1.1, 1.15, 1.2, 1.3)   # the official code's sweep (0.8-1.2) and 1.3
GITS_REFINE = 8                   # sweeps of GITS.fit's grid polish (refine=) ...
GITS_REFINE_MAX_NFE = 20          # ... at NFE <= 20 (above, the plain dynamic-programming grid: cost)
ODE_SIGMA_END = 1e-5              # the reference ODE runs to here, then one exact denoising (sigma = 0)
HERE = Path(__file__).resolve().parent


def _log(*parts) -> None:
    print(*parts, flush=True)


# ------------------------------------------------------------------------------------------------
# Problems: exact oracles and their fast VE-form denoisers
# ------------------------------------------------------------------------------------------------
class MixtureVE:
    r"""The exact denoiser ``D(x, sigma)`` of a diagonal :class:`GaussianMixture` in VE form
    (``x = x_0 + sigma eps``), with one ``sigma`` for the whole batch: the component log-densities
    are three matrix products, so a call costs O(batch K d). Checked against ``oracle.denoiser``."""

    def __init__(self, oracle: GaussianMixture) -> None:
        if oracle.full:
            raise ValueError("MixtureVE needs diagonal covariances")
        self.oracle = oracle
        self.m = oracle.means                     # (K, d)
        self.lam = oracle.variances               # (K, d)
        self.log_w = torch.log(oracle.weights)
        self.schedule = EDM(sigma_min=1e-6, sigma_max=1e4)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64)
        if s.dim() == 1:
            if not bool((s == s[0]).all()):
                return self.oracle.denoiser(x, s, self.schedule)
            s = s[0]
        x64 = x.to(torch.float64)
        inv_c = 1.0 / (self.lam + s * s)                                  # (K, d)
        quad = (x64 * x64) @ inv_c.T - 2.0 * x64 @ (self.m * inv_c).T + (self.m ** 2 * inv_c).sum(1)
        logits = self.log_w - 0.5 * (quad - torch.log(inv_c).sum(1))
        r = torch.softmax(logits, dim=1)                                  # (B, K)
        gain = self.lam * inv_c                                           # (K, d)
        return (r @ (self.m * (1.0 - gain)) + x64 * (r @ gain)).to(x.dtype)


class EmpiricalVE:
    """The optimal denoiser of a finite data set in VE form, ``D(x, sigma)`` (sdekit's
    :class:`EmpiricalData` on an EDM schedule)."""

    def __init__(self, oracle: EmpiricalData) -> None:
        self.oracle = oracle
        self.schedule = EDM(sigma_min=1e-6, sigma_max=1e4)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64)
        if s.dim() == 1 and bool((s == s[0]).all()):
            s = s[0]
        return self.oracle.denoiser(x, s, self.schedule)


@dataclass
class Problem:
    name: str
    title: str
    dim: int
    n: int
    denoise: object                               # D(x, sigma), VE form
    exact: object                                 # exact(n, generator) -> (n, d) samples of p_0
    start: object                                 # start(n, sigma, generator) -> exact draw at sigma
    nfes: tuple = NFES


def _mixture(d: int, k: int, radius: float, seed: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    if d == 2:
        angle = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
        means = radius * torch.stack([angle.cos(), angle.sin()], 1)
        var = 0.1 + 0.2 * torch.rand(k, d, generator=g, dtype=torch.float64)
    else:
        means = torch.randn(k, d, generator=g, dtype=torch.float64)
        means = radius * means / means.norm(dim=1, keepdim=True)
        var = 0.2 + 0.8 * torch.rand(k, d, generator=g, dtype=torch.float64)
    weights = 1.0 + torch.rand(k, generator=g, dtype=torch.float64)
    return GaussianMixture(weights, means, var)


def _mixture_problem(name: str, d: int, k: int, radius: float, n: int, nfes) -> Problem:
    oracle = _mixture(d, k, radius, seed=d)
    fast = MixtureVE(oracle)
    probe = oracle.sample(64, torch.Generator().manual_seed(0)) + 1.5 * torch.randn(64, d, dtype=torch.float64)
    for s in (0.05, 1.5, 40.0):
        torch.testing.assert_close(fast(probe, s), oracle.denoiser(probe, s, fast.schedule), rtol=1e-9, atol=1e-9)

    def start(m, sigma, g):
        comp = torch.multinomial(oracle.weights, m, replacement=True, generator=g)
        z = torch.randn(m, d, generator=g, dtype=torch.float64)
        return oracle.means[comp] + (oracle.variances[comp] + sigma**2).sqrt() * z

    title = f"Gaussian mixture, d={d}, {k} components (|mean| {radius:g}, diagonal variances)"
    return Problem(name, title, d, n, fast, lambda m, g: oracle.sample(m, g), start, nfes)


def _digits_problem(n: int, nfes) -> Problem:
    data = digits("train", dtype=torch.float64)[0].reshape(-1, 64)
    oracle = EmpiricalData(data)

    def exact(m, g):
        return data[torch.randint(0, data.shape[0], (m,), generator=g)]

    def start(m, sigma, g):
        return exact(m, g) + sigma * torch.randn(m, 64, generator=g, dtype=torch.float64)

    title = "optimal denoiser of the scikit-learn digits (1500 images, d=64)"
    return Problem("digits", title, 64, n, EmpiricalVE(oracle), exact, start, nfes)


def make_problems(names, n: int, nfes, digits_n: int, digits_nfes) -> list[Problem]:
    table = {
        "gm2": lambda: _mixture_problem("gm2", 2, 5, 4.0, n, nfes),
        "gm16": lambda: _mixture_problem("gm16", 16, 4, 6.0, n, nfes),
        "gm64": lambda: _mixture_problem("gm64", 64, 4, 8.0, n, nfes),
        "digits": lambda: _digits_problem(digits_n, digits_nfes),
    }
    unknown = [p for p in names if p not in table]
    if unknown:
        raise SystemExit(f"unknown problem(s) {unknown}; choose from {sorted(table)}")
    return [table[p]() for p in names]


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
class SlicedW2:
    """``SW2(x, reference)`` with the reference's sorted projections computed once (the same seeded
    directions as ``sdekit.metrics.sliced_wasserstein``, so the values are identical)."""

    def __init__(self, reference: torch.Tensor, n_projections: int = N_PROJ, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.theta = random_directions(reference.shape[1], n_projections, g)
        self.ref = self._sorted(reference)
        self.seed, self.n_projections = seed, n_projections

    def _sorted(self, x):
        # numpy's sort is several times faster than torch.sort on the CPU for this shape.
        return np.sort((x.to(torch.float64) @ self.theta).T.contiguous().numpy(), axis=1)

    def __call__(self, x: torch.Tensor) -> float:
        if not bool(torch.isfinite(x).all()):
            return math.inf
        return float(np.sqrt(((self._sorted(x) - self.ref) ** 2).mean()))

    def pair(self, a: torch.Tensor, b: torch.Tensor) -> float:
        return float(np.sqrt(((self._sorted(a) - self._sorted(b)) ** 2).mean()))


def endpoint_errors(x: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """``(RMSE, median)``: the root mean square error over samples and coordinates, and the median over
    samples of each sample's RMS error over its coordinates. At high NFE the RMSE is carried by the
    few samples that start near a boundary between modes and end in the other one (their endpoint
    is exponentially sensitive), the median by the typical sample."""
    x = x[: ref.shape[0]].to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        return math.inf, math.inf
    per_sample = ((x - ref) ** 2).mean(dim=-1)
    return float(per_sample.mean().sqrt()), float(per_sample.median().sqrt())


def fitted_order(nfes, errors) -> float | None:
    """``-slope`` of ``log error`` against ``log NFE`` over NFE >= 10 (least squares)."""
    pts = [(math.log(n), math.log(e)) for n, e in zip(nfes, errors) if n >= 10 and e and 0 < e < math.inf]
    if len(pts) < 2:
        return None
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    return float(-np.polyfit(xs, ys, 1)[0])


def ode_reference(problem: Problem, x_T: torch.Tensor, sigma_max: float, ends, tol: float = 1e-10) -> dict:
    """High-accuracy probability-flow ODE solutions from ``x_T`` at ``sigma_max`` (scipy DOP853,
    rtol = atol = ``tol``, in ``s = log sigma``: ``dx/ds = x - D(x, sigma)``), at each sigma of ``ends``
    (``0`` = the solution at ``ODE_SIGMA_END`` followed by one exact denoising)."""
    from scipy.integrate import solve_ivp

    shape = x_T.shape

    def rhs(s, y):
        x = torch.from_numpy(y).reshape(shape)
        return (x - problem.denoise(x, math.exp(s))).reshape(-1).numpy()

    targets = sorted({max(e, ODE_SIGMA_END) for e in ends}, reverse=True)
    sol = solve_ivp(rhs, (math.log(sigma_max), math.log(targets[-1])), x_T.reshape(-1).numpy().copy(),
                    method="DOP853", rtol=tol, atol=tol, t_eval=[math.log(t) for t in targets])
    if not sol.success:
        raise RuntimeError(f"reference ODE failed on {problem.name}: {sol.message}")
    at = {t: torch.from_numpy(sol.y[:, i].copy()).reshape(shape) for i, t in enumerate(targets)}
    out = {}
    for e in ends:
        out[e] = problem.denoise(at[ODE_SIGMA_END], ODE_SIGMA_END) if e == 0 else at[max(e, ODE_SIGMA_END)]
    return out


# ------------------------------------------------------------------------------------------------
# Runs: one (library, sampler, setting) at one NFE -> samples at a known final sigma
# ------------------------------------------------------------------------------------------------
class Counted:
    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@dataclass
class Candidate:
    """One setting of one sampler: ``run(problem, x_T, nfe, seed) -> (samples, nfe, final_sigma)``."""

    setting: str
    run: object
    valid: object = None                          # valid(nfe) -> bool


@dataclass
class Row:
    library: str
    sampler: str
    stochastic: bool
    candidates: list
    chosen: str = ""
    sw2: dict = field(default_factory=dict)
    rmse: dict = field(default_factory=dict)
    nfe: dict = field(default_factory=dict)
    order: float | None = None
    selection: dict = field(default_factory=dict)
    replicates: list = field(default_factory=list)     # SW2 at the selection NFE on independent draws
    median: dict = field(default_factory=dict)   # median per-sample endpoint error (deterministic rows)
    rmse_by_setting: dict = field(default_factory=dict)  # deterministic rows: {setting: {nfe: (RMSE, median)}}


# -- sdekit -----------------------------------------------------------------------------------------
class SdekitRunner:
    def __init__(self, sigma_max: float) -> None:
        self.schedule = EDM(sigma_min=SDEKIT_SIGMA_MIN, sigma_max=sigma_max)
        self._gits: dict = {}

    def denoiser(self, problem):
        return Denoiser(lambda x, t: problem.denoise(x, t), self.schedule, prediction="x0")

    def gits(self, problem, sampler, nfe, key):
        """GITS grid (256 warm-up prior draws, DDIM-step cost, RK4 teacher on 60 Karras steps) for this
        sampler and budget; the weight per level is chosen among GITS_COEFFS by running the sampler on
        the warm-up draws against the teacher's endpoints, and at NFE <= GITS_REFINE_MAX_NFE the grid is
        polished for the sampler against the same endpoints (no reference solution is used)."""
        key = (problem.name, nfe, key)
        if key not in self._gits:
            self._gits[key] = GITS.fit(self.denoiser(problem), self.schedule, nfe, shape=(problem.dim,),
                                       sampler=sampler, coeff=GITS_COEFFS, dtype=torch.float64,
                                       refine=GITS_REFINE if nfe <= GITS_REFINE_MAX_NFE else 0,
                                       generator=torch.Generator().manual_seed(1234))
        return self._gits[key]

    def candidate(self, make_sampler, grid: str, label: str, key: str) -> Candidate:
        def run(problem, x_T, nfe, seed):
            sampler = make_sampler()
            steps = max(k for k in range(1, nfe + 1) if sampler.nfe(k) <= nfe)
            if grid == "gits":
                timesteps, steps = self.gits(problem, sampler, nfe, key), None
            else:
                timesteps = get_time_grid(grid)   # logsnr, karras (rho 7), vp-uniform, vp-quadratic
            with torch.no_grad():
                x, info = sample(self.denoiser(problem), self.schedule, x_T, solver=sampler, steps=steps,
                                 timesteps=timesteps, generator=torch.Generator().manual_seed(seed),
                                 return_info=True)
            return x, info.nfe, SDEKIT_SIGMA_MIN

        def valid(nfe):
            return make_sampler().nfe(1) <= nfe

        return Candidate(label, run, valid)


SDEKIT_SAMPLERS = {
    # name: (stochastic, {variant: factory}); every variant runs on each grid of --grids
    "ddim": (False, {"": lambda: DDIM()}),
    "dpm++2m": (False, {"": lambda: DPMSolverPP(2)}),
    "dpm++3m": (False, {"": lambda: DPMSolverPP(3)}),
    "deis": (False, {"tAB3": lambda: DEIS(3), "lambda-AB3": lambda: DEIS(3, variable="lambda")}),
    "ipndm": (False, {"": lambda: IPNDM()}),
    "unipc": (False, {"bh2 p2": lambda: UniPC(2), "bh2 p3": lambda: UniPC(3)}),
    "heun": (False, {"": lambda: EDMHeun()}),
    "sde-dpm++2m": (True, {"": lambda: SDEDPMSolverPP()}),
    "sa-solver": (True, {"": lambda: SASolver()}),
    "er-sde": (True, {"": lambda: ERSDE()}),
}


def sdekit_rows(runner: SdekitRunner, names, grids) -> list[Row]:
    rows = []
    for name in names:
        if name not in SDEKIT_SAMPLERS:
            _log(f"note: sdekit sampler {name!r} is not in the benchmark; skipped")
            continue
        stochastic, variants = SDEKIT_SAMPLERS[name]
        use = [g for g in grids if not (stochastic and g == "gits")]
        cands = [runner.candidate(f, g, f"{v}, {g}" if v else g, f"{name} {v}") for v, f in variants.items()
                 for g in use]
        rows.append(Row("sdekit", name, stochastic, cands))
    return rows


# -- diffusers --------------------------------------------------------------------------------------
class DiffusersEps:
    """The exact denoiser as a diffusers eps-prediction on the discrete VP schedule of ``alphas_cumprod``:
    at (possibly fractional) ``timestep`` the noise level is ``sigma~ = exp(interp(log sigma~_n))``,
    ``alpha = (1 + sigma~^2)^(-1/2)``, and ``eps = (x - alpha D(x / alpha, sigma~)) / sigma``."""

    def __init__(self, denoise, alphas_cumprod: torch.Tensor) -> None:
        ac = alphas_cumprod.to(torch.float64)
        self.log_sigma = 0.5 * torch.log((1 - ac) / ac).numpy()
        self.denoise = denoise

    def sigma_tilde(self, timestep) -> float:
        t = float(timestep)
        return float(np.exp(np.interp(t, np.arange(len(self.log_sigma)), self.log_sigma)))

    def __call__(self, x: torch.Tensor, timestep) -> torch.Tensor:
        st = self.sigma_tilde(timestep)
        alpha = 1.0 / math.sqrt(1.0 + st * st)
        x64 = x.to(torch.float64)
        d = self.denoise(x64 / alpha, st)
        return ((x64 - alpha * d) / (st * alpha)).to(x.dtype)


DIFFUSERS_SAMPLERS = {
    # name: (scheduler class name, stochastic, {setting: config overrides})
    "DPMSolverMultistep": ("DPMSolverMultistepScheduler", False, {
        "order 2, linspace": {"solver_order": 2},
        "order 2, karras": {"solver_order": 2, "use_karras_sigmas": True},
        "order 2, lu-lambdas": {"solver_order": 2, "use_lu_lambdas": True},
        "order 3, linspace": {"solver_order": 3},
        "order 3, karras": {"solver_order": 3, "use_karras_sigmas": True},
        "order 3, lu-lambdas": {"solver_order": 3, "use_lu_lambdas": True},
    }),
    "UniPCMultistep": ("UniPCMultistepScheduler", False, {
        "order 2, linspace": {"solver_order": 2},
        "order 2, karras": {"solver_order": 2, "use_karras_sigmas": True},
        "order 3, linspace": {"solver_order": 3},
        "order 3, karras": {"solver_order": 3, "use_karras_sigmas": True},
    }),
    "DEISMultistep": ("DEISMultistepScheduler", False, {
        "order 2, linspace": {"solver_order": 2},
        "order 2, karras": {"solver_order": 2, "use_karras_sigmas": True},
        "order 3, linspace": {"solver_order": 3},
        "order 3, karras": {"solver_order": 3, "use_karras_sigmas": True},
    }),
    "EulerDiscrete": ("EulerDiscreteScheduler", False, {
        "linspace": {},
        "karras": {"use_karras_sigmas": True},
    }),
    "DDIM": ("DDIMScheduler", False, {
        "trailing": {"timestep_spacing": "trailing", "clip_sample": False},
        "linspace": {"timestep_spacing": "linspace", "clip_sample": False},
    }),
    "SASolver": ("SASolverScheduler", True, {
        "p3 c4 (paper), linspace": {"predictor_order": 3, "corrector_order": 4},
        "p2 c2 (default), linspace": {},
        "p2 c2, karras": {"use_karras_sigmas": True},
    }),
}


def _diffusers_module():
    try:
        return importlib.import_module("diffusers")
    except Exception as e:                        # noqa: BLE001 - any import failure means "skip"
        _log(f"note: diffusers is not importable ({type(e).__name__}: {e}); its anchors are skipped "
             "(pip install -c constraints.txt diffusers)")
        return None


class DiffusersRunner:
    def __init__(self, diffusers) -> None:
        self.diffusers = diffusers
        beta_start, beta_end, n = DDPM_BETAS
        self.base = {"num_train_timesteps": n, "beta_start": beta_start, "beta_end": beta_end,
                     "beta_schedule": "linear", "prediction_type": "epsilon"}
        ac = diffusers.DDPMScheduler(**self.base).alphas_cumprod
        self.alphas_cumprod = ac.to(torch.float64)
        self.sigma_max = float(((1 - ac[-1]) / ac[-1]).sqrt())      # float32 values, as diffusers uses

    def candidate(self, cls_name: str, setting: str, overrides: dict) -> Candidate:
        def run(problem, x_T, nfe, seed):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")         # numpy-2 deprecation notes inside the schedulers
                return self._run(cls_name, setting, overrides, problem, x_T, nfe, seed)

        return Candidate(setting, run, lambda nfe: nfe >= 2)

    def _run(self, cls_name, setting, overrides, problem, x_T, nfe, seed):
        sched = getattr(self.diffusers, cls_name)(**self.base, **overrides)
        sched.set_timesteps(nfe)
        model = Counted(DiffusersEps(problem.denoise, self.alphas_cumprod))
        euler = cls_name == "EulerDiscreteScheduler"
        if hasattr(sched, "sigmas"):
            first, final = float(sched.sigmas[0]), float(sched.sigmas[-1])
        else:                                   # DDIM: timesteps and the final alphas_cumprod
            ac0 = float(sched.alphas_cumprod[int(sched.timesteps[0])])
            first = math.sqrt((1 - ac0) / ac0)
            fa = float(sched.final_alpha_cumprod)
            final = math.sqrt((1 - fa) / fa)
        if abs(first - self.sigma_max) > 1e-3 * self.sigma_max:
            raise RuntimeError(f"{cls_name} ({setting}) starts at sigma~={first}, not {self.sigma_max}")
        x = x_T.clone() if euler else x_T / math.sqrt(1.0 + first**2)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for t in sched.timesteps:
                inp = sched.scale_model_input(x, t)
                eps = model(inp, t)
                kwargs = {"generator": g} if cls_name == "SASolverScheduler" else {}
                x = sched.step(eps, t, x, return_dict=False, **kwargs)[0]
        x = x.to(torch.float64)
        if not euler:
            x = x * math.sqrt(1.0 + final**2)   # x_t / alpha: the VE-form state at the final sigma
        return x, model.calls, final


def diffusers_rows(runner: DiffusersRunner, names) -> list[Row]:
    rows = []
    for name in names:
        cls_name, stochastic, settings = DIFFUSERS_SAMPLERS[name]
        if not hasattr(runner.diffusers, cls_name):
            _log(f"note: diffusers has no {cls_name}; skipped")
            continue
        rows.append(Row("diffusers", name, stochastic,
                        [runner.candidate(cls_name, s, o) for s, o in settings.items()]))
    return rows


# -- k-diffusion ------------------------------------------------------------------------------------
def load_k_diffusion_sampling():
    """``k_diffusion.sampling`` without running ``k_diffusion/__init__.py`` (which imports its image,
    CLIP and training helpers); ``None`` with a note when k-diffusion or a dependency is missing."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        _log("note: k-diffusion is not installed; its anchors are skipped "
             "(pip install --no-deps k-diffusion==0.1.1.post1 torchdiffeq, or make bench-deps)")
        return None
    if "k_diffusion" not in sys.modules:
        pkg = types.ModuleType("k_diffusion")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules["k_diffusion"] = pkg
    try:
        importlib.import_module("torchvision.transforms.functional")
    except Exception:                             # noqa: BLE001 - absent or broken beside this torch
        # k_diffusion.utils imports it at module level but only its image helpers use it.
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
    try:
        return importlib.import_module("k_diffusion.sampling")
    except Exception as e:                        # noqa: BLE001
        _log(f"note: k_diffusion.sampling does not import ({type(e).__name__}: {e}); its anchors are skipped")
        return None


KDIFF_SAMPLERS = {
    # name: (function, stochastic, steps for an NFE budget)
    "dpmpp_2m": ("sample_dpmpp_2m", False, lambda nfe: nfe),
    "dpmpp_2m_sde": ("sample_dpmpp_2m_sde", True, lambda nfe: nfe),
    "heun": ("sample_heun", False, lambda nfe: (nfe + 1) // 2),
    "euler": ("sample_euler", False, lambda nfe: nfe),
}


class KDiffusionRunner:
    def __init__(self, sampling, sigma_max: float) -> None:
        self.k, self.sigma_max = sampling, sigma_max

    def candidate(self, fn_name: str, steps_of, grid: str) -> Candidate:
        def run(problem, x_T, nfe, seed):
            n = steps_of(nfe)
            if grid == "karras":
                sigmas = self.k.get_sigmas_karras(n, SDEKIT_SIGMA_MIN, self.sigma_max, rho=7.0)
            else:
                sigmas = self.k.get_sigmas_exponential(n, SDEKIT_SIGMA_MIN, self.sigma_max)
            sigmas = sigmas.to(torch.float64)
            model = Counted(lambda x, sigma: problem.denoise(x, sigma))
            fn = getattr(self.k, fn_name)
            extra = {}
            if fn_name == "sample_dpmpp_2m_sde":
                # Independent normals per step (k-diffusion's default_noise_sampler): the same law as its
                # default Brownian tree on a fixed grid, which is ~50x slower for 20,000 samples (torchsde).
                extra = {"noise_sampler": self.k.default_noise_sampler(x_T)}
            torch.manual_seed(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")        # torchsde: float32 sigma ends a hair outside the tree
                x = fn(model, x_T.clone(), sigmas, disable=True, **extra)
            return x, model.calls, 0.0

        return Candidate(grid, run, lambda nfe: steps_of(nfe) >= 1)


def kdiffusion_rows(runner: KDiffusionRunner, names) -> list[Row]:
    rows = []
    for name in names:
        fn_name, stochastic, steps_of = KDIFF_SAMPLERS[name]
        rows.append(Row("k-diffusion", name, stochastic,
                        [runner.candidate(fn_name, steps_of, g) for g in ("karras", "exponential")]))
    return rows


# ------------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------------
def evaluate(problem: Problem, rows: list[Row], sigma_max: float, select_nfe: int, seed: int,
             replicates: int = 3) -> dict:
    """Run every row on ``problem``. Draw 0 (initial states and exact reference set) serves every NFE;
    at ``select_nfe`` each row also runs on ``replicates - 1`` further independent draws, and every draw
    gets the SW2 of its exact probability-flow ODE solution (the perfect sampler on that draw)."""
    t_start = time.perf_counter()
    a, b = (problem.exact(256, torch.Generator().manual_seed(seed + 2 + i)) for i in range(2))
    check = SlicedW2(problem.exact(problem.n, torch.Generator().manual_seed(seed + 1)))
    assert abs(check.pair(a, b) - float(sliced_wasserstein(a, b, n_projections=N_PROJ))) < 1e-9
    floor_values = []
    for rep in range(3):
        gr = torch.Generator().manual_seed(seed + 10 + rep)
        floor_values.append(check.pair(problem.exact(problem.n, gr), problem.exact(problem.n, gr)))
    floor = float(np.mean(floor_values))
    floor_std = float(np.std(floor_values, ddof=1))
    _log(f"  noise floor SW2 = {floor:.4g} (std {floor_std:.2g} over 3 pairs of {problem.n} exact samples)")
    t0 = time.perf_counter()
    draws = []
    for rep in range(replicates):
        x_T = problem.start(problem.n, sigma_max, torch.Generator().manual_seed(seed + 1000 * rep))
        metric = SlicedW2(problem.exact(problem.n, torch.Generator().manual_seed(seed + 1000 * rep + 1)))
        exact_ode = ode_reference(problem, x_T, sigma_max, [0.0], tol=1e-5)[0.0]
        draws.append((x_T, metric, metric(exact_ode)))
    x_T, metric, _ = draws[0]
    n_ref = min(N_REF, problem.n)
    ends = sorted({0.0, SDEKIT_SIGMA_MIN, float(DDPM_SIGMA_MIN)})
    refs = ode_reference(problem, x_T[:n_ref], sigma_max, ends)
    ode_sw2 = [d[2] for d in draws]
    _log(f"  exact PF-ODE solutions of {replicates} draw(s) in {time.perf_counter() - t0:.1f} s; their SW2 / floor: "
         + ", ".join(f"{v / floor:.2f}" for v in ode_sw2))

    def measure(cand, nfe, with_sw2=True, rep=0):
        x_T, metric, _ = draws[rep]
        x, used, final = cand.run(problem, x_T, nfe, seed + 100 + nfe + 1000 * rep)
        if rep:
            return metric(x), None, used
        ref = refs[min(refs, key=lambda e: abs(e - final))]
        return (metric(x) if with_sw2 else None), endpoint_errors(x, ref), used

    def errors_only(cand, nfe):
        # Deterministic samplers treat samples independently: the first n_ref starts give the same endpoints.
        x, _, final = cand.run(problem, x_T[:n_ref], nfe, seed + 100 + nfe)
        return endpoint_errors(x, refs[min(refs, key=lambda e: abs(e - final))])

    for row in rows:
        t0 = time.perf_counter()
        cands = [c for c in row.candidates if c.valid is None or c.valid(select_nfe)]
        if len(cands) > 1:
            for c in cands:
                sw2, errs, _ = measure(c, select_nfe, with_sw2=row.stochastic)
                row.selection[c.setting] = sw2 if row.stochastic else errs[0]
            best = min(cands, key=lambda c: row.selection[c.setting])
        else:
            best = cands[0]
        row.chosen = best.setting
        for nfe in problem.nfes:
            if best.valid is not None and not best.valid(nfe):
                continue
            sw2, errs, used = measure(best, nfe)
            row.sw2[nfe], row.nfe[nfe] = sw2, used
            if not row.stochastic:
                row.rmse[nfe], row.median[nfe] = errs
        if select_nfe in row.sw2:
            row.replicates = [row.sw2[select_nfe]] + [measure(best, select_nfe, rep=r)[0] for r in range(1, replicates)]
        if not row.stochastic:  # every candidate's RMSE at every NFE, for the settings chosen per NFE
            row.rmse_by_setting[best.setting] = {k: (row.rmse[k], row.median[k]) for k in row.rmse}
            for c in cands:
                if c is not best:
                    row.rmse_by_setting[c.setting] = {
                        nfe: errors_only(c, nfe) for nfe in problem.nfes if c.valid is None or c.valid(nfe)}
        if not row.stochastic:
            row.order = fitted_order([row.nfe[k] for k in row.rmse], list(row.rmse.values()))
        reps = ", ".join(f"{v / floor:.2f}" for v in row.replicates)
        _log(f"  {row.library:11s} {row.sampler:18s} [{row.chosen}]  SW2/floor @NFE{select_nfe}: {reps}  "
             f"({time.perf_counter() - t0:.1f} s)")
    return {"floor": floor, "floor_std": floor_std, "floor_values": floor_values, "ode_sw2": ode_sw2,
            "seconds": time.perf_counter() - t_start}


DDPM_SIGMA_MIN = math.sqrt(DDPM_BETAS[0] / (1 - DDPM_BETAS[0]))   # sigma~ at diffusers' timestep 0


def _fmt_ratio(v, floor):
    return "—" if v is None else ("diverged" if not math.isfinite(v) else f"{v / floor:.2f}")


def _fmt(v):
    return "—" if v is None else ("diverged" if not math.isfinite(v) else f"{v:.2e}")


def _mean_std(values) -> tuple[float, float]:
    v = np.array(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else 0.0)


def best_rows(rows, library: str):
    """The library's row with the lowest mean SW2 at the selection NFE over the draws."""
    cand = [r for r in rows if r.library == library and r.replicates and all(map(math.isfinite, r.replicates))]
    return min(cand, key=lambda r: np.mean(r.replicates)) if cand else None


def best_error_per_nfe(rows, library: str, nfes, which: int = 0) -> dict:
    """``{nfe: (error, "sampler, setting")}``: the library's lowest endpoint error (``which``: 0 the RMSE,
    1 the median) at each NFE over its deterministic rows and all their candidate settings."""
    out = {}
    for k in nfes:
        found = [(errs[k][which], f"{r.sampler}, {setting}") for r in rows if r.library == library
                 and not r.stochastic for setting, errs in r.rmse_by_setting.items()
                 if k in errs and math.isfinite(errs[k][which])]
        if found:
            out[k] = min(found)
    return out


def write_markdown(path: Path, problems, results, versions: dict, select_nfe: int, seconds: float) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    reps = max(len(info["ode_sw2"]) for _, info in problems)
    lines = [
        "# Sampler benchmark: sdekit vs diffusers vs k-diffusion on exact oracles",
        "",
        f"Generated by `benchmarks/samplers.py` on {now}; machine: {describe()}; total {seconds:.0f} s.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}.",
        "",
        "Every library drives the same exact denoiser. All runs of a draw start from one exact sample of the noised",
        f"data at sigma~ = {problems[0][1]['sigma_max']:.4g} (diffusers' first DDPM step). SW2: sliced W2 ({N_PROJ} "
        "seeded directions) to an independent exact sample set of the same size, as a ratio to the noise floor",
        "(mean SW2 between independent exact sets over 3 pairs; a perfect sampler scores about 1, give or take the",
        "spread of one pair, shown by the exact PF-ODE solution of the same draw). RMSE: endpoint error of",
        f"deterministic samplers against a DOP853 (rtol 1e-10) probability-flow ODE solution on the first {N_REF}",
        "samples. Order: fitted on NFE >= 10. Settings: per problem, each sampler's candidate with the lowest error at",
        f"NFE {select_nfe} (RMSE for ODE samplers, SW2 for stochastic ones), the same rule for every library. NFE is",
        "counted (model calls made); EDM Heun and k-diffusion's Heun make 2 steps - 1 calls. sdekit's grids:",
        "`logsnr` (uniform in log-SNR), `karras` (rho 7), `vp-uniform` / `vp-quadratic` (`VPTime`: uniform / quadratic",
        "in the time of the linear VP schedule, carried over by the log-SNR; DPM-Solver's time_uniform /",
        "time_quadratic, and vp-uniform is diffusers' linspace spacing) and `gits`. The `gits` grids",
        "are fitted per sampler and NFE from 256 warm-up prior draws (RK4 teacher on 61 Karras points, DDIM-step",
        "cost, weight per level chosen in 0.8-1.3 by the sampler's distance to the teacher's endpoints on the",
        f"warm-up draws, then at NFE <= {GITS_REFINE_MAX_NFE} polished for the sampler with `refine={GITS_REFINE}` "
        "against the same",
        "endpoints; no reference is used, and the fit's model calls are a one-off cost not counted in NFE).",
        "",
        f"## Headline: SW2 / noise floor at NFE {select_nfe}, mean ± std over {reps} independent draws",
        "",
        "Each library's best row (lowest mean). 'exact ODE' is the DOP853 solution of the same draws: the score",
        "of a perfect sampler, i.e. how far sampling noise alone moves the ratio from 1. Last column: sdekit's",
        "best minus the better anchor's best, paired over the same draws (same initial states, same exact",
        "reference sets), mean ± standard error; negative = sdekit lower.",
        "",
        "| problem | noise floor SW2 | exact ODE | sdekit best | diffusers best | k-diffusion best "
        "| sdekit - best anchor |",
        "|---|---|---|---|---|---|---|",
    ]
    for problem, info in problems:
        rows, floor = results[problem.name], info["floor"]
        m, sd = _mean_std([v / floor for v in info["ode_sw2"]])
        cells = [f"{floor:.3g} ± {info['floor_std']:.1g}", f"{m:.2f} ± {sd:.2f}"]
        bests = {lib: best_rows(rows, lib) for lib in ("sdekit", "diffusers", "k-diffusion")}
        for best in bests.values():
            if best is None:
                cells.append("not run")
                continue
            m, sd = _mean_std([v / floor for v in best.replicates])
            cells.append(f"**{m:.2f}** ± {sd:.2f} ({best.sampler}, {best.chosen})")
        anchors = [b for lib, b in bests.items() if lib != "sdekit" and b is not None]
        if bests["sdekit"] is not None and anchors:
            anchor = min(anchors, key=lambda r: np.mean(r.replicates))
            diff = (np.array(bests["sdekit"].replicates) - np.array(anchor.replicates)) / floor
            se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            cells.append(f"{diff.mean():+.3f} ± {se:.3f}")
        else:
            cells.append("—")
        lines.append(f"| {problem.name} | " + " | ".join(cells) + " |")
    for which, title in ((0, "RMSE"), (1, "median error")):
        lines += ["", f"## Headline: endpoint {title} with the settings chosen per NFE", "",
                  f"Each library's lowest endpoint {title} (deterministic samplers, the first {N_REF} samples of "
                  "draw 0) "
                  "at each NFE over all its samplers and candidate settings (the same rule for every library; a user "
                  "picks the settings for the budget), and sdekit's as a ratio to the better anchor's (< 1: sdekit "
                  "lower)."
                  + (" The median is each sample's RMS error over its coordinates, the median over samples: the "
                     "typical sample, where the RMSE at high NFE is carried by a few samples that start near a "
                     "boundary between modes. Not for digits: the optimal denoiser of 1500 images carries most "
                     "endpoints onto a training image exactly wherever a run ends at or near sigma 0 (diffusers, "
                     "k-diffusion), so the median there compares endpoints, not integration." if which else ""), ""]
        for problem, _ in problems:
            if which and problem.name == "digits":
                continue
            per_lib = {lib: best_error_per_nfe(results[problem.name], lib, problem.nfes, which)
                       for lib in ("sdekit", "diffusers", "k-diffusion")}
            lines += [f"**{problem.name}**", "",
                      "| library | " + " | ".join(f"NFE {k}" for k in problem.nfes) + " |",
                      "|---|" + "---|" * len(problem.nfes)]
            for lib, best in per_lib.items():
                if best:
                    lines.append(f"| {lib} | " + " | ".join(
                        f"{_fmt(best[k][0])} ({best[k][1]})" if k in best else "—" for k in problem.nfes) + " |")
            ratios = []
            for k in problem.nfes:
                anchors = [per_lib[lib][k][0] for lib in ("diffusers", "k-diffusion") if k in per_lib[lib]]
                ours = per_lib["sdekit"].get(k)
                best_anchor = min(anchors) if anchors else None
                if ours is None or best_anchor is None:
                    ratios.append("—")
                elif best_anchor > 0:
                    ratios.append(f"{ours[0] / best_anchor:.2f}x")
                else:  # an exact endpoint (the empirical denoiser snaps onto a data point)
                    ratios.append("equal (0)" if ours[0] == 0 else "anchor exact")
            lines += ["| sdekit / best anchor | " + " | ".join(ratios) + " |", ""]
    for problem, info in problems:
        rows, floor = results[problem.name], info["floor"]
        nfes = problem.nfes
        ode = info["ode_sw2"][0] / floor
        lines += ["", f"## {problem.name}: {problem.title}", "",
                  f"n = {problem.n} samples; noise floor SW2 = {floor:.4g} (pairs: "
                  f"{', '.join(f'{v:.4g}' for v in info['floor_values'])}); exact PF-ODE solution of draw 0: "
                  f"{ode:.2f}; {info['seconds']:.0f} s.", "",
                  f"SW2 / noise floor on draw 0 (last column: mean over the {len(info['ode_sw2'])} draws at NFE "
                  f"{select_nfe}):", "",
                  "| library | sampler | setting | " + " | ".join(f"NFE {k}" for k in nfes) + f" | NFE {select_nfe}, "
                  "mean |", "|---|---|---|" + "---|" * (len(nfes) + 1)]
        for r in rows:
            cells = [_fmt_ratio(r.sw2.get(k), floor) for k in nfes]
            mean = f"{np.mean(r.replicates) / floor:.2f}" if r.replicates else "—"
            lines.append(f"| {r.library} | {r.sampler} | {r.chosen} | " + " | ".join(cells) + f" | {mean} |")
        lines += ["", "Endpoint RMSE against the ODE reference (deterministic samplers) and fitted order:", "",
                  "| library | sampler | setting | " + " | ".join(f"NFE {k}" for k in nfes) + " | order |",
                  "|---|---|---|" + "---|" * len(nfes) + "---|"]
        for r in rows:
            if r.stochastic:
                continue
            cells = [_fmt(r.rmse.get(k)) for k in nfes]
            order = "—" if r.order is None else f"{r.order:.2f}"
            lines.append(f"| {r.library} | {r.sampler} | {r.chosen} | " + " | ".join(cells) + f" | {order} |")
        counted = sorted({(r.library, r.sampler, tuple(r.nfe[k] for k in nfes if k in r.nfe)) for r in rows
                          if any(r.nfe.get(k) != k for k in r.nfe)})
        if counted:
            lines += ["", "Counted NFE where it differs from the budget: " + "; ".join(
                f"{lib} {s}: {list(n)}" for lib, s, n in counted) + "."]
    lines += ["", f"Candidate settings and the value that chose between them at NFE {select_nfe} (endpoint RMSE for "
              "ODE samplers, SW2 for stochastic ones):", ""]
    for problem, _ in problems:
        for r in results[problem.name]:
            if r.selection:
                opts = ", ".join(f"{k}: {v:.3g}" for k, v in r.selection.items())
                lines.append(f"- {problem.name} / {r.library} {r.sampler}: {opts}")
    path.write_text("\n".join(lines) + "\n")


def write_plot(path: Path, problems, results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    colors = {"sdekit": "tab:blue", "diffusers": "tab:orange", "k-diffusion": "tab:green"}
    fig, axes = plt.subplots(2, len(problems), figsize=(4.2 * len(problems), 7.5), squeeze=False)
    for j, (problem, info) in enumerate(problems):
        ax, bx = axes[0, j], axes[1, j]
        styles = {}
        for r in results[problem.name]:
            k = styles.setdefault(r.library, 0)
            styles[r.library] += 1
            ls = ("-", "--", ":", "-.")[k % 4]
            marker = "osd^v<>p*h"[k % 10]
            ks = [n for n in problem.nfes if n in r.sw2 and math.isfinite(r.sw2[n])]
            if ks:
                ax.plot([r.nfe[n] for n in ks], [r.sw2[n] / info["floor"] for n in ks], ls, marker=marker,
                        ms=3, lw=1.2, color=colors[r.library], label=f"{r.library} {r.sampler}")
            ks = [n for n in problem.nfes if n in r.rmse and math.isfinite(r.rmse[n])]
            if ks:
                bx.plot([r.nfe[n] for n in ks], [r.rmse[n] for n in ks], ls, marker=marker, ms=3, lw=1.2,
                        color=colors[r.library])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{problem.name}: SW2 / noise floor")
        bx.set_xscale("log")
        bx.set_yscale("log")
        bx.set_title(f"{problem.name}: endpoint RMSE (ODE samplers)")
        bx.set_xlabel("NFE")
        for a in (ax, bx):
            a.set_xticks(list(problem.nfes))
            a.set_xticklabels([str(n) for n in problem.nfes])
            a.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            a.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=7)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="a 1-2 minute check: gm2 and gm16, 5000 samples, NFE 5/10/20, fewer samplers")
    p.add_argument("--problems", nargs="+", help="subset of gm2 gm16 gm64 digits (default: all)")
    p.add_argument("--nfe", nargs="+", type=int, help=f"NFE values (default {' '.join(map(str, NFES))})")
    p.add_argument("--n", type=int, help="samples per run and per exact set (default 20000)")
    p.add_argument("--digits-n", type=int, help="samples for the digits problem (default 5000)")
    p.add_argument("--libraries", nargs="+", default=["sdekit", "diffusers", "k-diffusion"],
                   choices=["sdekit", "diffusers", "k-diffusion"])
    p.add_argument("--grids", nargs="+", default=["logsnr", "karras", "vp-uniform", "vp-quadratic", "gits"],
                   help="sdekit grid candidates (logsnr, karras, vp-uniform, vp-quadratic, gits)")
    p.add_argument("--select-nfe", type=int, default=10,
                   help="NFE at which settings are chosen and draws are repeated (default 10)")
    p.add_argument("--replicates", type=int, default=None,
                   help="independent draws at the selection NFE (default 10; 1 with --quick; digits always 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=str(HERE / "results"), help="where samplers.md/.png/.json go")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return p


def main(argv=None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    args.replicates = args.replicates or (1 if quick else 10)
    nfes = tuple(sorted(args.nfe)) if args.nfe else (QUICK_NFES if quick else NFES)
    n = args.n or (5000 if quick else 20000)
    digits_n = args.digits_n or (2000 if quick else 5000)
    digits_nfes = tuple(k for k in nfes if k <= 20) if not args.nfe else nfes
    names = args.problems or (["gm2", "gm16"] if quick else ["gm2", "gm16", "gm64", "digits"])
    if args.select_nfe not in nfes:
        nfes = tuple(sorted({*nfes, args.select_nfe}))
    t_all = time.perf_counter()
    problems = make_problems(names, n, nfes, digits_n, tuple(sorted({*digits_nfes, args.select_nfe})))
    versions = {"sdekit": importlib.import_module("sdekit").__version__}
    sigma_max = math.sqrt((1 - _ddpm_alphas_cumprod()[-1]) / _ddpm_alphas_cumprod()[-1])
    rows_for = []
    if "sdekit" in args.libraries:
        runner = SdekitRunner(sigma_max)
        names_sdekit = (["ddim", "dpm++2m", "dpm++3m", "unipc", "ipndm", "sde-dpm++2m"] if quick
                        else list(SDEKIT_SAMPLERS))
        rows_for.append(lambda: sdekit_rows(runner, names_sdekit, args.grids))
    if "diffusers" in args.libraries:
        diffusers = _diffusers_module()
        if diffusers is not None:
            versions["diffusers"] = diffusers.__version__
            d_runner = DiffusersRunner(diffusers)
            if abs(d_runner.sigma_max - sigma_max) > 1e-3 * sigma_max:
                raise RuntimeError(f"diffusers' sigma_max {d_runner.sigma_max} != {sigma_max}")
            names_d = ["DPMSolverMultistep", "UniPCMultistep", "DDIM"] if quick else list(DIFFUSERS_SAMPLERS)
            rows_for.append(lambda: diffusers_rows(d_runner, names_d))
    if "k-diffusion" in args.libraries:
        sampling = load_k_diffusion_sampling()
        if sampling is not None:
            try:
                from importlib.metadata import version

                versions["k-diffusion"] = version("k-diffusion")
            except Exception:                     # noqa: BLE001
                versions["k-diffusion"] = "?"
            k_runner = KDiffusionRunner(sampling, sigma_max)
            names_k = ["dpmpp_2m", "dpmpp_2m_sde"] if quick else list(KDIFF_SAMPLERS)
            rows_for.append(lambda: kdiffusion_rows(k_runner, names_k))
    results, done = {}, []
    for problem in problems:
        _log(f"{problem.name}: {problem.title}; n={problem.n}, NFE {list(problem.nfes)}")
        rows = [row for make in rows_for for row in make()]
        reps = 1 if problem.name == "digits" else args.replicates
        info = evaluate(problem, rows, sigma_max, args.select_nfe, args.seed, replicates=reps)
        info["sigma_max"] = sigma_max
        results[problem.name] = rows
        done.append((problem, info))
    seconds = time.perf_counter() - t_all
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {p.name: {"floor": info["floor"], "floor_values": info["floor_values"], "n": p.n,
                        "exact_ode_sw2": info["ode_sw2"],
                        "rows": [{"library": r.library, "sampler": r.sampler, "setting": r.chosen,
                                  "stochastic": r.stochastic, "sw2": r.sw2, "rmse": r.rmse, "median": r.median,
                                  "nfe": r.nfe,
                                  "order": r.order, "selection": r.selection, "replicates": r.replicates,
                                  "rmse_by_setting": r.rmse_by_setting}
                                 for r in results[p.name]]}
               for p, info in done}
    (out / "samplers.json").write_text(json.dumps(payload, indent=1, default=str))
    # the raw numbers first: a failure in the report below loses no measurement
    write_markdown(out / "samplers.md", done, results, versions, args.select_nfe, seconds)
    write_plot(out / "samplers.png", done, results)
    _log(f"wrote {out / 'samplers.md'}, {out / 'samplers.png'} and {out / 'samplers.json'} ({seconds:.0f} s)")
    return 0


def _ddpm_alphas_cumprod() -> torch.Tensor:
    """diffusers' DDPM linear betas in float32, as diffusers computes them (no diffusers needed)."""
    beta_start, beta_end, n = DDPM_BETAS
    betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float64)


if __name__ == "__main__":
    sys.exit(main())
