"""One skip-and-count path for unreadable samples (folder datasets, shard streams, scans, shard writing).

A corrupt file must never stop a long run, but it must not go unnoticed either: every skip is
recorded with its reason, the first few and then every 1000th are logged, and the count is reported.
Skips are also counted per *kind* (``unreadable``; ``too_short`` for a readable sample too short for
the requested length, e.g. a video with fewer frames than a clip needs), so a data set with many short
videos is not mistaken for a corrupt one.
"""

from __future__ import annotations

import logging
import tarfile
from collections import Counter
from collections.abc import Iterator, Mapping

__all__ = ["UnreadableSampleError", "UNREADABLE_ERRORS", "TooShortError", "skip_kind", "skip_notes", "SkipLog"]


class UnreadableSampleError(OSError):
    """A sample that exists but cannot be decoded (safely); the message says why and, when there is one, the fix.

    Modality decoders raise it for failures whose native type is not an ``OSError`` (e.g. PIL's
    ``DecompressionBombError``), so core catches one tuple without knowing any decoder library.
    """


# The ONE definition of "this sample cannot be read": every skip-and-count site (folder datasets, shard
# streams, evaluation loaders, shard checks) catches exactly this tuple. PIL raises SyntaxError for some
# broken headers and EOFError for truncated streams; missing tar members give KeyError, broken tars TarError.
UNREADABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, UnreadableSampleError, ValueError, SyntaxError, EOFError, KeyError, tarfile.TarError,
)


class TooShortError(ValueError):
    """A readable sample that is shorter than the requested length; skipped and counted as ``too_short``."""

    skip_kind = "too_short"


def skip_kind(err: BaseException) -> str:
    """The skip count an error belongs to: its ``skip_kind`` attribute, else ``unreadable``."""
    return str(getattr(err, "skip_kind", "unreadable"))


def skip_notes(counts: Mapping[str, int], unit: str) -> list[str]:
    """One line per skip kind, e.g. ``["1 too-short clip(s) skipped", "2 unreadable clip(s) skipped"]``."""
    return [f"{n} {kind.replace('_', '-')} {unit}(s) skipped" for kind, n in sorted(counts.items()) if n]


class SkipLog:
    """Records ``{reference: reason}`` for skipped samples and logs the first ``first`` and every ``every``-th.

    Args:
        logger: where warnings go (the modality's logger, e.g. ``difftok.image``).
        what: noun used in messages (``"image"``, ``"shard sample"``).
        first: skips logged one by one before thinning out.
        every: afterwards, log every ``every``-th skip.
    """

    def __init__(self, logger: logging.Logger, what: str = "sample", first: int = 10, every: int = 1000) -> None:
        self.logger, self.what, self.first, self.every = logger, what, first, every
        self.reasons: dict[str, str] = {}
        self.count = 0
        self.counts: Counter[str] = Counter()  # kind -> skips (see skip_kind)

    def record(self, ref: object, reason: str, kind: str = "unreadable") -> None:
        """Count one skip of ``ref`` under ``kind`` (logged when among the first or a multiple of ``every``)."""
        self.count += 1
        self.counts[kind] += 1
        self.reasons.setdefault(str(ref), reason)
        if self.count <= self.first or self.count % self.every == 0:
            self.logger.warning("skipping %s %s %s (%s); %d skipped so far", kind.replace("_", "-"), self.what, ref, reason, self.count)

    def examples(self, limit: int = 100) -> dict[str, str]:
        """The first ``limit`` skipped references with their reasons."""
        return dict(list(self.reasons.items())[:limit])

    def __contains__(self, ref: object) -> bool:
        return str(ref) in self.reasons

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        return iter(self.reasons)
