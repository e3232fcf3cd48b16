"""The ``xlvlm`` command line: one module per command, each a thin layer over the Python API.

Shared option groups live in :mod:`xlvlm.cli.options`, argument types in
:mod:`xlvlm.cli.validate`, ``--config`` in :mod:`xlvlm.cli.config`. Building the parser imports
neither torch nor transformers (choices are the names of the packages' light registries,
:mod:`xlvlm.concepts.registry`, :mod:`xlvlm.steer.registry`, ...), so ``--help`` and argument
errors answer at once; each command imports what it needs when it runs.

Bad input exits with status 2 and one line ``xlvlm: error: ...``, and so does a failure of the
machine the user can fix (a full disk, a read-only folder, a file where a folder is expected:
:func:`xlvlm.errors.describe_os_error`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from xlvlm.cli import concepts, demo, evaluate, extract, organism, patch, report, serve, shift, steer
from xlvlm.cli import validate as valid
from xlvlm.cli.config import apply_config_file, leaf_parsers
from xlvlm.cli.options import Parser
from xlvlm.errors import XlvlmError, command_line_words, describe_os_error
from xlvlm.threads import use_safe_threads

COMMANDS = (extract, steer, concepts, shift, patch, evaluate, organism, report, serve, demo)
ENVIRONMENT_HELP = ("CPU threads: unless the environment sets them, xlvlm runs with OMP_WAIT_POLICY=PASSIVE (idle "
                "threads sleep instead of spinning, so runs stay fast when other work shares the cores) and "
                "OMP_NUM_THREADS = the CPUs this process may use; set either variable to choose otherwise. "
                "Progress bars are drawn only on a terminal (XLVLM_PROGRESS=1 forces them, 0 hides them); "
                "long commands (demo, steer learn, organism steer-hallucination) announce each stage in one line, and "
                "generation or a streaming fit that runs long says how far it is in a line every 30 s or every pass.")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="xlvlm", description="Explain and steer vision-language models.", epilog=ENVIRONMENT_HELP)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    for leaf in leaf_parsers(parser):
        leaf.add_argument("--config", type=valid.path, help="YAML file of option: value (command-line flags win; "
                          "${VAR} from the environment in options naming files, folders or models)")
    return parser


def _apply_config(args: argparse.Namespace, argv: list[str]) -> None:
    """Fill options not given on the command line from --config (the rules: xlvlm.cli.config)."""
    apply_config_file(build_parser, args, argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "torch" not in sys.modules:  # OpenMP reads its settings once, when torch loads
        use_safe_threads()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2, its one line already printed)
        return exc.code
    args.argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        if args.command in ("steer", "organism"):
            parser.parse_args([args.command, "--help"])
        parser.print_help()
        return 1
    try:
        _apply_config(args, argv)
        for name in getattr(args, "required", ()):
            if getattr(args, name, None) in (None, ""):
                raise XlvlmError(f"--{name.replace('_', '-')} is required (on the command line or in --config)")
        with command_line_words():
            args.func(args)
    except XlvlmError as exc:
        print(f"xlvlm: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        message = describe_os_error(exc)
        if message is None:
            raise
        print(f"xlvlm: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Only extract resumes (its store keeps finished shards); other stages start over.
        then = "rerun the same command to resume" if args.command == "extract" else \
            "its output was not completed; rerun the command to start it again"
        print(f"xlvlm: interrupted; {then}", file=sys.stderr)
        return 130
    return 0
