"""One skip-and-count path for unreadable samples (folder datasets, shard streams, scans, shard writing).

A corrupt file must never stop a long run, but it must not go unnoticed either: every skip is
recorded with its reason, the first few and then every 1000th are logged, and the count is reported.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

__all__ = ["UNREADABLE_ERRORS", "SKIP_REASONS", "skip_reason", "SkipLog"]

# what decoders raise on corrupt data (PIL raises SyntaxError for some broken headers; missing members: KeyError)
UNREADABLE_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, KeyError)
# why a sample is skipped, counted separately: a corrupt file is a data bug, a too-short one (e.g. an audio
# clip shorter than the training crop) a filtering choice; an error names its reason by a ``skip_reason`` attribute
SKIP_REASONS = ("unreadable", "too_short")


def skip_reason(err: BaseException) -> str:
    """The :data:`SKIP_REASONS` entry of a skip-causing error (``unreadable`` unless it says otherwise)."""
    reason = getattr(err, "skip_reason", "unreadable")
    return reason if reason in SKIP_REASONS else "unreadable"


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
        self.counts: Counter[str] = Counter()  # skips per SKIP_REASONS entry

    def record(self, ref: object, reason: str, kind: str = "unreadable") -> None:
        """Count one skip of ``ref`` under ``kind`` (a :data:`SKIP_REASONS` entry; logged when among the
        first or a multiple of ``every``)."""
        self.count += 1
        self.counts[kind] += 1
        self.reasons.setdefault(str(ref), reason)
        if self.count <= self.first or self.count % self.every == 0:
            self.logger.warning("skipping %s %s %s (%s); %d skipped so far", kind.replace("_", " "), self.what, ref, reason, self.count)

    def examples(self, limit: int = 100) -> dict[str, str]:
        """The first ``limit`` skipped references with their reasons."""
        return dict(list(self.reasons.items())[:limit])

    def __contains__(self, ref: object) -> bool:
        return str(ref) in self.reasons

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        return iter(self.reasons)
