"""Device check: the core gives the same numbers on CUDA as on the CPU (noise is generated on the
CPU per key and moved), for every SDE solver, both Brownian sources and odeint.
Run on a machine with a GPU: ``python benchmarks/gpu_check.py``; prints max deviations."""

import sys

import torch

sys.path.insert(0, "src")
import sdekit  # noqa: E402
from sdekit.core.solvers import SDE_METHODS  # noqa: E402


class Tanh(torch.nn.Module):
    noise_type = "diagonal"

    def __init__(self, sde_type):
        super().__init__()
        self.sde_type = sde_type

    def f(self, t, y):
        return -0.25 * y * (1 - y**2) + torch.sin(t)

    def g(self, t, y):
        return 0.5 * (1 - y**2)


def run(device):
    out = {}
    for method in sorted(SDE_METHODS):
        solver = sdekit.core.solvers.sde_solver(method)
        sde = Tanh(solver.sde_type)
        y0 = torch.full((256, 8), 0.1, dtype=torch.float64, device=device)
        bm = sdekit.BrownianPath(0.0, 1.0, y0.shape, seed=list(range(256)), dtype=torch.float64, device=device,
                                 levy_area="space-time")
        out[f"path/{method}"] = sdekit.sdeint(sde, y0, [0.0, 0.5, 1.0], method=method, dt=1 / 64, bm=bm).cpu()
        grid = sdekit.BrownianGrid(torch.linspace(0, 1, 65), y0.shape, seed=3, dtype=torch.float64, device=device,
                                   levy_area="space-time")
        out[f"grid/{method}"] = sdekit.sdeint(sde, y0, [0.0, 1.0], method=method, dt=1 / 64, bm=grid).cpu()
    A = torch.tensor([[0.0, 1.0], [-1.0, -0.1]], dtype=torch.float64, device=device)
    out["odeint/dopri5"] = sdekit.odeint(lambda t, y: y @ A.T, torch.ones(4, 2, dtype=torch.float64, device=device),
                                         torch.linspace(0, 5, 6)).cpu()
    return out


if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("no CUDA device")
    print(torch.cuda.get_device_name(), torch.__version__)
    cpu, gpu = run("cpu"), run("cuda")
    worst = 0.0
    for key in cpu:
        dev = (cpu[key] - gpu[key]).abs().max().item()
        worst = max(worst, dev)
        print(f"{key:<28} max |cpu - cuda| = {dev:.2e}")
    print(f"worst {worst:.2e}")
    assert worst < 1e-10, worst
