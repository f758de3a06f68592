"""``modality=NAME key=value ...`` command lines: the modality picks the settings schema of an offline tool."""

from __future__ import annotations

from typing import Any

from recipes.keyvalue import parse_key_values

__all__ = ["parse_tool_settings"]


def parse_tool_settings(tool: str, argv: list[str], *, prog: str, doc: str) -> Any:
    """Settings of ``tool`` (a :class:`core.modality.ToolSettings` field) for the modality named by ``modality=``.

    Raises:
        SystemExit: no ``modality=`` argument, an unknown modality, or one that does not offer ``tool``.
    """
    from core.modality import get_modality
    from core.registry import MODALITIES

    names = [a.partition("=")[2] for a in argv if a.startswith("modality=")]
    if not names or not names[-1]:
        if any(a in ("-h", "--help") for a in argv):
            print(f"{doc.strip()}\n\nregistered modalities: {', '.join(MODALITIES.list())}; add modality=NAME --help for its keys")
            raise SystemExit(0)
        raise SystemExit(f"{prog}: modality=NAME is required (registered: {', '.join(MODALITIES.list())})")
    if names[-1] not in MODALITIES.list():
        raise SystemExit(f"{prog}: unknown modality={names[-1]!r}; registered: {', '.join(MODALITIES.list())}")
    schema = getattr(get_modality(names[-1]).tool_settings, tool)
    if schema is None:
        raise SystemExit(f"{prog}: modality '{names[-1]}' offers no {tool} command (its Modality.tool_settings.{tool} is None)")
    return parse_key_values(schema, argv, prog=prog, doc=doc)
