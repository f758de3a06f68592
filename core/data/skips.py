"""One skip-and-count path for unreadable samples (folder datasets, shard streams, scans, shard writing).

A corrupt file must never stop a long run, but it must not go unnoticed either: every skip is
recorded with its reason, the first few and then every 1000th are logged, and the count is reported.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterator

__all__ = ["UnreadableSampleError", "UNREADABLE_ERRORS", "SkipLog"]


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

    def record(self, ref: object, reason: str) -> None:
        """Count one skip of ``ref`` (logged when among the first or a multiple of ``every``)."""
        self.count += 1
        self.reasons.setdefault(str(ref), reason)
        if self.count <= self.first or self.count % self.every == 0:
            self.logger.warning("skipping unreadable %s %s (%s); %d skipped so far", self.what, ref, reason, self.count)

    def examples(self, limit: int = 100) -> dict[str, str]:
        """The first ``limit`` skipped references with their reasons."""
        return dict(list(self.reasons.items())[:limit])

    def __contains__(self, ref: object) -> bool:
        return str(ref) in self.reasons

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        return iter(self.reasons)
