"""What the benchmarks print about the machine they ran on, and how they hand out their report (shared by the
scripts in this folder)."""

from __future__ import annotations

import platform

import torch


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def describe(device=None) -> str:
    """One line: host, CPU, torch version and threads, and the GPU when ``device`` is CUDA."""
    text = f"{platform.node()} | {cpu_model()} | torch {torch.__version__} | threads {torch.get_num_threads()}"
    if device is not None and torch.device(device).type == "cuda":
        text += f" | {torch.cuda.get_device_name(device)}"
    return text


def emit(lines: list[str], out: str | None = None) -> None:
    """Print the report and, with ``out``, also write it to that file."""
    text = "\n".join(lines)
    print(text)
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")
