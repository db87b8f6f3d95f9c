"""What every subcommand shares: the one-line-error parser, errors, output helpers."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import torch

__all__ = ["CLIError", "Parser", "save_samples", "positive_int", "nonnegative_int", "positive_float",
           "start_run", "fit_and_report"]


class CLIError(ValueError):
    """A user error that the command reports in one line, exiting with status 2."""


class Parser(argparse.ArgumentParser):
    """``argparse`` with one-line errors: ``sdekit train: error: ... (see sdekit train --help)``."""

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse's signature
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_number(text: str, cast, ok, expected: str):
    """``cast(text)`` when it parses and ``ok`` holds, else an argparse error saying what was ``expected``."""
    try:
        v = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
    return v


def positive_int(text: str) -> int:
    return parse_number(text, int, lambda v: v >= 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    return parse_number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return parse_number(text, float, lambda v: 0 < v < float("inf"), "a positive finite number")


def say(*parts, file=None) -> None:
    print(*parts, file=file or sys.stdout, flush=True)


def start_run(trainer: Any, out: Path, resume: bool, is_main: bool, doc: dict) -> None:
    """Before ``sdekit train`` fits: resume from ``out`` (refusing a run already at its step count) and, on the
    main process, create ``out`` and write ``doc`` to ``out/config.json`` atomically."""
    if resume:
        trainer.load_checkpoint(out)
        if trainer.step >= trainer.config.steps:
            raise CLIError(f"{out} is already trained for {trainer.step} steps; pass a larger --steps")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".config.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, out / "config.json")


def fit_and_report(trainer: Any, out: Path, is_main: bool) -> int:
    """Fit to the configured step count and, on the main process, report the steps, time and recent loss."""
    start, start_step = time.perf_counter(), trainer.step
    trainer.fit()
    if is_main:
        tail = trainer.loss_history[-min(100, len(trainer.loss_history)):]
        say(f"trained {trainer.step - start_step} steps in {time.perf_counter() - start:.1f} s "
            f"(mean loss of the last {len(tail)}: {sum(tail) / len(tail):.4f}); checkpoint: {out}")
    return 0


SAMPLE_SUFFIXES = (".pt", ".safetensors", ".npy", ".png")


def save_samples(path: Path, x: torch.Tensor, *, reference: torch.Tensor | None = None,
                 title: str = "samples") -> None:
    """Write samples by suffix: ``.pt`` (a tensor via ``torch.save``), ``.safetensors`` (key
    ``samples``), ``.npy`` or ``.png`` (a scatter plot for 2-D data, an image grid for images)."""
    suffix = path.suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise CLIError(f"--out must end in one of {', '.join(SAMPLE_SUFFIXES)}, got {str(path)!r}")
    if not path.parent.exists():
        raise CLIError(f"--out directory {str(path.parent)!r} does not exist")
    x = x.detach().cpu()
    if suffix == ".pt":
        torch.save(x, path)
    elif suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({"samples": x.contiguous()}, str(path))
    elif suffix == ".npy":
        import numpy as np

        np.save(path, x.numpy())
    else:
        from ._plots import sample_figure

        sample_figure(path, {"samples": x} if reference is None else {"data": reference, title: x})
