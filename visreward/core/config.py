"""Config dataclasses -> command-line options, with `--config file.yaml` and flag overrides.

Every field is declared with `option(default, help)`; precedence is
dataclass default < YAML file < command-line flag. The resolved config is saved as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .atomic import write_text
from .errors import VisrewardError

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices=None, positional: bool = False):
    """A config field with its help string (and, optionally, its allowed values)."""
    metadata = {"help": help, "choices": choices, "positional": positional}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation) -> tuple[type, bool]:
    """(element type, is_list) for annotations like int, str | None, list[str]."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (list, tuple):
        return (args[0] if args else str), True
    if args and origin is not None:
        return _base_type(args[0])
    return annotation, False


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    parser.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file; flags override it")
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        kind, is_list = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        )
        help_text = f.metadata.get("help", "") + (f" (default: {default})" if default not in (None, [], "") else "")
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        else:
            kwargs["type"] = kind
            if is_list:  # `--reward a --reward b` and `--reward a b` both give [a, b]
                kwargs["nargs"] = "+"
                kwargs["action"] = "extend"
        if f.metadata.get("positional"):
            kwargs.pop("default")
            kwargs.pop("action", None)
            kwargs["nargs"] = "*" if is_list else None
            parser.add_argument(f.name, metavar=f.name.upper(), **kwargs)
        else:
            parser.add_argument(_flag(f.name), dest=f.name, **kwargs)


def config_from_args(config_cls: type[T], args: argparse.Namespace) -> T:
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values.update(load_config_file(args.config, config_cls))
    names = {f.name for f in dataclasses.fields(config_cls)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return build_config(config_cls, values, source="command line")


def load_config_file(path: str | os.PathLike, config_cls: type) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise VisrewardError(f"{path}: cannot read config ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise VisrewardError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise VisrewardError(f"{path}: a config file must be a mapping of option: value")
    data = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = set(data) - {f.name for f in dataclasses.fields(config_cls)}
    if unknown:
        raise VisrewardError(f"{path}: unknown option(s) {', '.join(sorted(unknown))}")
    return data


def build_config(config_cls: type[T], values: dict, source: str) -> T:
    try:
        config = config_cls(**values)
    except TypeError as e:
        raise VisrewardError(f"{source}: {e}") from None
    for f in dataclasses.fields(config_cls):
        choices = f.metadata.get("choices")
        if choices and getattr(config, f.name) not in choices:
            raise VisrewardError(f"{source}: {f.name} must be one of {', '.join(map(str, choices))}")
    return config


def save_config(config, path: str | os.PathLike) -> None:
    write_text(path, json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n")
