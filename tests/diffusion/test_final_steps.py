"""The multistep samplers stay on the data at every step count (issue 10, item 2).

Before ``lower_order_final`` acted on every grid, a 15-step run on VP's default grid (uniform in ``t`` to
``t_min = 1e-3``, whose last step is 3.1 in log-SNR against 0.7 for the one before) extrapolated at
order 2-3 over that last step: SA-Solver put about 40% of its samples where ``log p < -8`` on the mixture
below (exact samples: about 0.08%), and DPM-Solver++(3M) / UniPC(p=3) had 10x the endpoint error of 10
steps. Here, on the default grid of each schedule, more steps never make a sampler worse: the endpoint
error against the probability-flow ODE and the share of samples far off the data do not grow from 10 to
15, 20 and 25 steps (within three standard errors of the paired estimate), and from 15 steps on at most
0.5% of the samples are far off on VP and CosineVP.

On EDM's Karras grid the third-order methods are not there yet: they throw 10-20% of the samples off the
data at 15 steps, on steps 11-13 of 15 (log-SNR steps near 1 where the samples settle into the
components), whatever the order of the last steps; see ``test_third_order_on_the_karras_grid_at_15_steps``.
k-diffusion's deterministic 3M (``dpmpp_3m_sde``, ``eta = 0``) on the same grid does the same or worse
(48% at 10 steps, 15% at 12, 2.4% at 15; ``benchmarks/results/karras_third_order.md``).
"""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.diffusion import EDM, VP, CosineVP, GaussianMixture, sample
from sdekit.diffusion.samplers.deis import DEIS
from sdekit.diffusion.samplers.dpm_solver import DPMSolverPP, SDEDPMSolverPP
from sdekit.diffusion.samplers.pf_ode import PFODE
from sdekit.diffusion.samplers.sa_solver import SASolver
from sdekit.diffusion.samplers.unipc import UniPC

F64 = torch.float64
N = 3000
STEPS = (10, 15, 20, 25)
FAR = -8.0          # log-density threshold of "far off the data"
CAP = 0.005         # at most 0.5% far off from 15 steps on (exact samples: about 0.08%)


def _circle(k: int, radius: float, var: float) -> GaussianMixture:
    angles = [2 * math.pi * i / k for i in range(k)]
    return GaussianMixture([1.0] * k, [[radius * math.cos(a), radius * math.sin(a)] for a in angles], [var] * k)


MIXTURE = _circle(5, 4.0, 0.08)          # exact samples: 0.06-0.1% with log p_0 < -8
DETERMINISTIC = {
    "dpm++2m": lambda: DPMSolverPP(2), "dpm++3m": lambda: DPMSolverPP(3), "unipc": lambda: UniPC(2),
    "unipc-p3": lambda: UniPC(3), "deis": lambda: DEIS(3), "sa-solver-tau0": lambda: SASolver(tau=0.0),
}
STOCHASTIC = {"sa-solver": lambda: SASolver(), "sde-dpm++2m": lambda: SDEDPMSolverPP()}
SCHEDULES = {"VP": VP, "CosineVP": CosineVP, "EDM": EDM}


def _far(oracle, schedule, x) -> torch.Tensor:
    """Per sample: log p_{t_min}(x) < -8 (the law the sampler targets)."""
    return oracle.log_prob(x, schedule.t_min, schedule) < FAR


@pytest.fixture(scope="module", params=list(SCHEDULES))
def problem(request):
    """The schedule, its denoiser, ``x_T`` and the probability-flow ODE solution from it (RK4 on 60 log-SNR
    steps: mean error ~1e-5, far below the samplers' at 25 steps)."""
    schedule = SCHEDULES[request.param]()
    den = MIXTURE.as_denoiser(schedule)
    x_T = MIXTURE.at(schedule.t_max, schedule).sample(N, torch.Generator().manual_seed(0))
    ref = sample(den, schedule, x_T, solver=PFODE("rk4"), steps=60, timesteps="logsnr")
    return request.param, schedule, den, x_T, ref


def _runs(problem, make):
    _, schedule, den, x_T, ref = problem
    out = []
    for steps in STEPS:
        x = sample(den, schedule, x_T, solver=make(), steps=steps, generator=torch.Generator().manual_seed(1))
        out.append(((x - ref).norm(dim=-1), _far(MIXTURE, schedule, x).double()))
    return out


def _not_worse(new: torch.Tensor, old: torch.Tensor, floor: float = 0.0) -> tuple[bool, str]:
    """``mean(new) <= max(mean(old), floor) + 3`` standard errors (paired over the samples)."""
    diff = new - old
    se = float(diff.std() / math.sqrt(diff.numel()))
    bar = max(float(old.mean()), floor) + 3.0 * se + 1.0 / diff.numel()
    return float(new.mean()) <= bar, f"{float(new.mean()):.4f} vs {float(old.mean()):.4f} (bar {bar:.4f})"


@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_endpoint_error_and_far_off_share_do_not_grow_with_the_steps(problem, name):
    schedule_name, schedule, _, _, ref = problem
    runs = _runs(problem, DETERMINISTIC[name])
    ode_share = float(_far(MIXTURE, schedule, ref).double().mean())
    report = [f"{s}: error {float(e.mean()):.4f}, far {100 * float(f.mean()):.2f}%" for s, (e, f) in zip(STEPS, runs)]
    for i in range(1, len(STEPS)):
        ok, why = _not_worse(runs[i][0], runs[i - 1][0])
        assert ok, f"{name} on {schedule_name}: error grows from {STEPS[i - 1]} to {STEPS[i]} steps, {why}; {report}"
        if schedule_name == "EDM" and i == 1 and name in ("dpm++3m", "unipc-p3", "sa-solver-tau0"):
            continue  # the Karras-grid defect documented above (test_third_order_on_the_karras_grid_at_15_steps)
        # far-off share: no higher than before, or than the ODE's own share (the samplers converge to it)
        ok, why = _not_worse(runs[i][1], runs[i - 1][1], floor=ode_share)
        assert ok, f"{name} on {schedule_name}: far-off share grows from {STEPS[i - 1]} to {STEPS[i]}, {why}; {report}"
    if schedule_name != "EDM":
        for s, (_, far) in zip(STEPS[1:], runs[1:]):
            assert float(far.mean()) <= CAP, f"{name} on {schedule_name}, {s} steps: far off {report}"


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_far_off_share_of_stochastic_samplers_does_not_grow_with_the_steps(problem, name):
    schedule_name, schedule, _, _, ref = problem
    runs = _runs(problem, STOCHASTIC[name])
    floor = float(_far(MIXTURE, schedule, ref).double().mean())
    report = [f"{s}: far {100 * float(f.mean()):.2f}%" for s, (_, f) in zip(STEPS, runs)]
    for i in range(2 if schedule_name == "EDM" else 1, len(STEPS)):
        ok, why = _not_worse(runs[i][1], runs[i - 1][1], floor=floor)
        assert ok, f"{name} on {schedule_name}: far-off share grows from {STEPS[i - 1]} to {STEPS[i]}, {why}; {report}"
    if schedule_name != "EDM":
        for s, (_, far) in zip(STEPS[1:], runs[1:]):
            assert float(far.mean()) <= CAP, f"{name} on {schedule_name}, {s} steps: far off {report}"


def test_six_tight_components_on_vp():
    """The issue's second mixture: DPM-Solver++(2M), SDE-DPM++(2M) and SA-Solver went from 1-3% far off at
    10 steps to 3-66% at 15 on VP's default grid; now at most 0.5% from 15 steps on."""
    oracle = _circle(6, 3.0, 0.01)
    schedule = VP()
    den = oracle.as_denoiser(schedule)
    x_T = oracle.at(schedule.t_max, schedule).sample(N, torch.Generator().manual_seed(2))
    for make in (lambda: DPMSolverPP(2), lambda: SDEDPMSolverPP(), lambda: SASolver()):
        for steps in (15, 25):
            x = sample(den, schedule, x_T, solver=make(), steps=steps, generator=torch.Generator().manual_seed(3))
            share = float(_far(oracle, schedule, x).double().mean())
            assert share <= CAP, f"{make()!r}, {steps} steps: {100 * share:.2f}% far off"


@pytest.mark.xfail(strict=True, reason="third-order multistep steps of about 1 in log-SNR on EDM's Karras grid "
                   "throw samples off the tight components (steps 11-13 of 15); not the last steps' order")
def test_third_order_on_the_karras_grid_at_15_steps():
    schedule = EDM()
    den = MIXTURE.as_denoiser(schedule)
    x_T = MIXTURE.at(schedule.t_max, schedule).sample(N, torch.Generator().manual_seed(0))
    x = sample(den, schedule, x_T, solver=DPMSolverPP(3), steps=15)
    assert float(_far(MIXTURE, schedule, x).double().mean()) <= CAP
