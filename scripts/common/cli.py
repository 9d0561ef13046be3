"""Command-line plumbing of the training scripts: one `HfArgumentParser` over the scripts' dataclasses and
`MixupTrainingArguments`, `--config FILE.yaml` under the command line, `--recipe NAME` under both, one-line errors.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad input to a script (an option, a file, a column): reported in one line, without a traceback."""


@contextlib.contextmanager
def input_errors() -> Iterator[None]:
    """Inside the block, a `ValueError` is bad input: it becomes an `InputError` (still a `ValueError`)."""
    try:
        yield
    except InputError:
        raise
    except ValueError as err:
        raise InputError(str(err)) from err


def run_main(main: Callable[[], Any]) -> Any:
    """Call a script's `main()`; an `InputError` is printed as one line (`script: error: ...`) and exits with 2."""
    try:
        return main()
    except InputError as err:
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as it is written, and `(default: X)` after every option that has a real default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        flag = action.option_strings[0] if action.option_strings else ""
        if flag.startswith("--no_") and isinstance(action, argparse._StoreFalseAction):
            return f"The same as --{flag[5:]} false."
        default = action.default
        if default in (None, argparse.SUPPRESS) or "%(default)" in text or not action.option_strings:
            return text
        if isinstance(default, (list, tuple)) and not default:
            return text
        return f"{text} (default: {default})"


def closest(name: str, known: Sequence[str]) -> str:
    """`; did you mean 'x'?` for the known name closest to `name`, or an empty string."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _option_value(args: list[str], flag: str) -> str | None:
    """The value of `flag` in `args` (`--flag value` or `--flag=value`; the last one wins), or None."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise InputError(f"{flag} needs a value.")
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def _mixing_first(parser: argparse.ArgumentParser) -> None:
    """Show the mixing options and the recipes first in `--help`, before the script's and transformers' options."""
    from hiddenmix import RECIPES
    from hiddenmix.config import MIX_OPTION_NAMES, TRAINER_MIX_OPTIONS

    names = {"recipe", *MIX_OPTION_NAMES, *TRAINER_MIX_OPTIONS}
    if not any(action.dest in MIX_OPTION_NAMES for action in parser._actions):
        return  # a script without mixing options (the SetFit baseline)
    recipes = "\n".join(f"  {name:<16} {recipe.use}" for name, recipe in RECIPES.items())
    group = parser.add_argument_group(
        "mixing options (hiddenmix)", f"--recipe NAME starts them from a measured recipe:\n{recipes}"
    )
    for action in parser._actions:
        if action.dest in names:
            for other in parser._action_groups:
                if other is not group and action in other._group_actions:
                    other._group_actions.remove(action)
            group._group_actions.append(action)
    parser._action_groups.remove(group)
    parser._action_groups.insert(0, group)


def parse_args(
    dataclass_types: Sequence[type],
    args: Sequence[str] | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    description: str | None = None,
    prog: str | None = None,
) -> tuple:
    """Parse `args` into one instance of each of `dataclass_types`.

    Precedence, lowest first: the dataclasses' own defaults; `defaults` (the script's own choices); the recipe
    (`--recipe NAME`, else the YAML file's `recipe:`, else `defaults`'; `none` for none), whose values are
    `MixupTrainingArguments` fields; the YAML file of `--config FILE`; the command line.

    Raises:
        InputError: an unknown option or YAML key (naming the closest known one), an unknown recipe, a bad value
            (the dataclasses' own checks), or an unreadable config file.
    """
    import yaml
    from transformers import HfArgumentParser

    from hiddenmix import get_recipe

    args = list(sys.argv[1:] if args is None else args)
    usage = f"{prog or '%(prog)s'} [--config FILE.yaml] [--recipe NAME] [--OPTION VALUE ...]   (options below)"
    parser = HfArgumentParser(
        dataclass_types, description=description, prog=prog, usage=usage, formatter_class=_HelpFormatter
    )
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="A YAML file of option: value; the command line overrides it, and it overrides --recipe.",
    )
    _mixing_first(parser)
    known = {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype)}
    flags = sorted({s for action in parser._actions for s in action.option_strings})
    for key in defaults or {}:
        if key not in known:
            raise InputError(f"parse_args(defaults=...): unknown key {key!r}{closest(key, sorted(known))}")
    parser.set_defaults(**(defaults or {}))

    config_file = _option_value(args, "--config")
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"--config {config_file}: cannot be read ({err}).") from err
        if not isinstance(values, dict):
            raise InputError(f"--config {config_file}: the file must hold a mapping of option: value.")
        for key in values:
            if key not in known:
                raise InputError(f"--config {config_file}: unknown key {key!r}{closest(key, sorted(known))}")
    if "recipe" in known:
        recipe = _option_value(args, "--recipe") or values.get("recipe") or (defaults or {}).get("recipe")
        if recipe not in (None, "none"):
            try:
                arguments = get_recipe(recipe).arguments
            except ValueError as err:
                raise InputError(str(err)) from err
            parser.set_defaults(**{k: list(v) if isinstance(v, tuple) else v for k, v in arguments.items()})
    parser.set_defaults(**values)

    parser.exit_on_error = False  # a bad value (e.g. a choice) is an InputError like every other bad input
    try:
        parsed, extra = parser.parse_known_args(args)
    except argparse.ArgumentError as err:
        raise InputError(str(err)) from err
    if extra:
        first = next((a for a in extra if a.startswith("-")), extra[0])
        name = first.split("=", 1)[0]
        raise InputError(
            f"unknown option {name!r}{closest(name, flags)}"
            if name.startswith("-")
            else f"unexpected argument {first!r} (options are --name value)"
        )
    with input_errors():
        return tuple(
            dtype(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(dtype) if f.init})
            for dtype in dataclass_types
        )


def check_output_dir(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an output folder that already holds files, unless `overwrite`. Nothing is written here."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"output_dir={str(path)!r} exists and is not a folder.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(
            f"output_dir={str(path)!r} already holds another run ({sorted(p.name for p in path.iterdir())[:5]}); "
            "choose another folder or pass --overwrite_output_dir true."
        )
    return path


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON whole or not at all (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
