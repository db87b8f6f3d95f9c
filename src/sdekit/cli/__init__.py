"""The ``sdekit`` command (also ``python -m sdekit``): ``train``, ``sample``, ``demo`` and ``bench``.

User errors (bad arguments, missing or corrupt checkpoints, settings that do not fit together)
print one line, ``sdekit <command>: error: ...``, and exit with status 2; there is no traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .. import __version__
from ._common import CLIError, Parser
from .demo import DemoResult, run_demo

__all__ = ["main", "run_demo", "DemoResult", "CLIError"]


def build_parser() -> Parser:
    """The argument parser with every subcommand registered."""
    from . import _bench, _sample, _train, demo

    parser = Parser(prog="sdekit", description="Stochastic differential equations for generative modelling.")
    parser.add_argument("--version", action="version", version=f"sdekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample,demo,bench}", parser_class=Parser)
    sub.required = True
    _train.add_parser(sub)
    _sample.add_parser(sub)
    demo.add_parser(sub)
    _bench.add_parser(sub)
    return parser


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 user error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse errors exit 2 with one line (see Parser.error)
    prog = f"sdekit {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as e:  # CLIError, CheckpointError, SpecError are ValueErrors
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
