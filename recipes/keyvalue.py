"""``key=value`` command lines for small tools (no training run, so no Hydra output folders).

Values use OmegaConf/YAML syntax (``steps=[1,10,50]``, ``shuffle=false``, ``data.root=/x``); keys are
checked against a dataclass schema, so typos fail with the list of valid keys.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = ["parse_key_values", "describe_fields", "parse_string_pairs"]

T = TypeVar("T")


def describe_fields(schema: Any, prefix: str = "") -> list[str]:
    """``key=default`` lines of a dataclass schema (nested dataclasses flattened with dots)."""
    lines = []
    for spec in dataclasses.fields(schema):
        default = spec.default if spec.default is not dataclasses.MISSING else (
            spec.default_factory() if spec.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            lines.extend(describe_fields(default, f"{prefix}{spec.name}."))
        else:
            lines.append(f"  {prefix}{spec.name}={default}")
    return lines


def parse_key_values(schema: type[T], argv: list[str] | None = None, *, prog: str, doc: str = "") -> T:
    """Build ``schema`` from ``key=value`` arguments; ``-h``/``--help`` prints ``doc`` and the keys."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(f"{doc.strip()}\n\nkeys (defaults):\n" + "\n".join(describe_fields(schema)))
        raise SystemExit(0)
    bad = [a for a in args if "=" not in a]
    if bad:
        raise SystemExit(f"{prog}: arguments must be key=value, got {bad}; run with --help for the keys")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(args))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise SystemExit(f"{prog}: {err}\nrun with --help for the valid keys") from err


def parse_string_pairs(argv: list[str], keys: tuple[str, ...], required: tuple[str, ...], usage: str) -> dict[str, str]:
    """Plain ``key=value`` strings (no YAML parsing, e.g. file paths) for tools without a schema.

    Raises:
        SystemExit: an argument is not ``key=value`` with a known key, or a required key is missing or empty.
    """
    args: dict[str, str] = {}
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            raise SystemExit(f"bad argument {item!r}: expected key=value with key in {keys}\n\n{usage}")
        args[key] = value
    missing = [k for k in required if not args.get(k)]
    if missing:
        raise SystemExit(f"missing {', '.join(f'{k}=...' for k in missing)}\n\n{usage}")
    return args
