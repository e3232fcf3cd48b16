"""``--config FILE.yaml``: options of one command from a YAML mapping ``option: value``.

Rules (docs/cli.md and docs/recipes.md say the same):
- keys are the command's long flags, with ``-`` or ``_`` (``n-concepts`` or ``n_concepts``);
  anything else (unknown flags, internal names such as ``func`` or ``argv``) is refused;
- a flag given on the command line wins over the config, under whichever of its names the
  config uses (``--layers 2`` beats ``layer:``);
- each value is checked as if typed on the command line (same types and choices); flags take
  ``true``/``false``; a list is a comma list;
- ``${VAR}`` is replaced from the environment only in options that name files, folders, models
  or data (those with type :func:`xlvlm.cli.validate.path`); elsewhere it stays as written, so
  that no environment variable (a token, say) can leak into prompts or stored settings;
- YAML aliases (``*name``) are refused: options need none, and an "alias bomb" would otherwise
  expand exponentially; a key set twice is refused (YAML would keep the last one silently); a
  config file may be at most 1 MiB.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from xlvlm.cli.validate import path as path_type
from xlvlm.errors import XlvlmError

MAX_CONFIG_BYTES = 1 << 20
#: Nesting of [ and { in a config: an option's value is at most a list. PyYAML takes time
#: quadratic in the depth (5,000 "{" take it tens of seconds), so deeper is refused unparsed.
MAX_CONFIG_DEPTH = 8
_UNSET = object()


def load_config(file: str | Path) -> dict:
    """The raw mapping of a config file (keys and YAML values), with one-line errors."""
    import yaml

    file = Path(file)
    if not file.is_file():
        raise XlvlmError(f"{file}: config file not found")
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise XlvlmError(f"{file}: config file larger than 1 MiB; a config holds a few option: value lines")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise XlvlmError(f"{file}: not UTF-8 text; give a YAML file of option: value lines") from None
    from xlvlm.io import nesting_depth

    if nesting_depth(text) > MAX_CONFIG_DEPTH:
        raise XlvlmError(f"{file}: [ and {{ nested more than {MAX_CONFIG_DEPTH} deep; a config holds option: value "
                         f"lines (a value at most a list)")
    try:
        # Events first (linear in the text): an alias is refused before anything is expanded.
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise XlvlmError(f"{file}: YAML aliases (*name) are not allowed in a config; write each value out")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if isinstance(node, yaml.MappingNode):  # PyYAML keeps the last of two equal keys without a word
            keys = [key.value for key, _ in node.value]
            twice = next((key for i, key in enumerate(keys) if key in keys[:i]), None)
            if twice is not None:
                raise XlvlmError(f"{file}: {twice!r} is set twice; keep one")
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise XlvlmError(f"{file}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise XlvlmError(f"{file}: expected a mapping of option: value")
    return data


def expand_environment(text: str, file: Path, key: str) -> str:
    """``${VAR}`` from the environment; an unset variable is an error, not an empty string."""
    missing = [name for name in re.findall(r"\$\{(\w+)\}", text) if name not in os.environ]
    if missing:
        raise XlvlmError(f"{file}: {key}: environment variable {missing[0]} is not set (used in {text!r}); "
                         f"export it first")
    return re.sub(r"\$\{(\w+)\}", lambda m: os.environ[m.group(1)], text)


def _options(leaf: argparse.ArgumentParser) -> tuple[dict, dict]:
    """(dest -> action, spelling -> dest) for the options a config may set."""
    actions = {a.dest: a for a in leaf._actions if a.option_strings and a.dest not in ("help", "config")}
    spellings = {}
    for dest, action in actions.items():
        spellings[dest] = dest
        for option in action.option_strings:
            if option.startswith("--"):
                spellings[option[2:].replace("-", "_")] = dest
    return actions, spellings


def _convert(action: argparse.Action, value, key: str, file: Path):
    """A YAML value checked and converted as the same option on the command line would be."""
    where = f"{file}: {key}"
    if action.nargs == 0:  # a flag (store_true)
        if not isinstance(value, bool):
            raise XlvlmError(f"{where}: expected true or false, not {value!r}")
        return action.const if value else action.default
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        value = ",".join(str(v) for v in value)
    if value is None or isinstance(value, (bool, dict, list)):
        raise XlvlmError(f"{where}: expected a value as on the command line (text, a number or a comma list), "
                         f"not {value!r}")
    text = str(value)
    if action.type is path_type:
        text = expand_environment(text, file, key)
    try:
        converted = action.type(text) if action.type else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise XlvlmError(f"{where}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        raise XlvlmError(f"{where}: {converted!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def leaf_parsers(parser: argparse.ArgumentParser):
    """The parsers of the commands that run something (``extract``, ``steer compute``, ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                has_children = any(isinstance(a, argparse._SubParsersAction) for a in child._actions)
                yield from (leaf_parsers(child) if has_children else [child])


def given_on_command_line(build_parser, argv: list[str]) -> set[str]:
    """The option dests ``argv`` sets, under any of their names or abbreviations: parse it again
    with every default replaced by a marker and keep what changed."""
    probe = build_parser()
    for leaf in leaf_parsers(probe):
        leaf.set_defaults(**{a.dest: _UNSET for a in leaf._actions if a.option_strings and a.dest != "help"})
    parsed = probe.parse_args(argv)
    return {dest for dest, value in vars(parsed).items() if value is not _UNSET}


def apply_config_file(build_parser, args: argparse.Namespace, argv: list[str]) -> None:
    """Fill the options of ``args`` that ``argv`` did not give from ``args.config`` (if any)."""
    if not getattr(args, "config", None):
        return
    leaf = next(leaf for leaf in leaf_parsers(build_parser()) if leaf.get_default("func") is args.func)
    apply_config(leaf, args, given_on_command_line(build_parser, argv))


def apply_config(leaf: argparse.ArgumentParser, args: argparse.Namespace, given: set[str]) -> None:
    """Set every option of ``args.config`` that the command line did not give."""
    file = Path(args.config)
    actions, spellings = _options(leaf)
    seen: dict[str, str] = {}
    for key, value in load_config(file).items():
        dest = spellings.get(str(key).replace("-", "_"))
        if dest is None:
            raise XlvlmError(f"{file}: unknown option {key!r} for `{leaf.prog}`; use its long flags "
                             f"(see `{leaf.prog} --help`)")
        if dest in seen:
            raise XlvlmError(f"{file}: {seen[dest]!r} and {key!r} set the same option; keep one")
        seen[dest] = str(key)
        if dest not in given:
            setattr(args, dest, _convert(actions[dest], value, str(key), file))
