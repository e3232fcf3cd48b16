"""Render the CLI reference (docs/cli.md) from the parser itself, so it never drifts.

    python -m xlvlm.clidoc > docs/cli.md
"""

from __future__ import annotations

import argparse
import os

from xlvlm.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: list[str]):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield prefix + [name], child
                yield from _commands(child, prefix + [name])


def render() -> str:
    os.environ["COLUMNS"] = "100"  # help text wraps the same on every terminal
    parser = build_parser()
    parts = ["# CLI reference", "", "Generated from the parser by `python -m xlvlm.clidoc > docs/cli.md`; a test keeps",
             "it equal to `--help`.", "", "```", parser.format_help().rstrip(), "```"]
    for words, child in _commands(parser, ["xlvlm"]):
        parts += ["", f"## {' '.join(words)}", "", "```", child.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render(), end="")
