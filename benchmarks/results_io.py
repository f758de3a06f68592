"""Where benchmark scripts leave their figures: one JSON file per run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_result"]


def write_result(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` as indented JSON (non-JSON values via ``str``) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}")
    return path
