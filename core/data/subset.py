"""Seeded subsets: class-stratified evaluation subsets (never "the first N files") and the train/holdout split.

Taking the first N files of a class-sorted folder covers only the first classes (SSDD's
``dataset.limit=5000`` on ImageNet val is 100 of 1000 classes). Here every class is shuffled with
its own seed, the class order is shuffled too, and images are taken round-robin: one per class per
round. ImageNet val (50 per class) with N = 5000 gives exactly 5 images of every class.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence

__all__ = ["stratified_subset", "holdout_split"]


def stratified_subset(labels: Sequence[Hashable], count: int, seed: int = 0) -> list[int]:
    """Indices of ``count`` items (all when fewer), stratified over ``labels`` and fixed by ``seed``.

    The result is in selection order: the first ``num_classes`` indices come from distinct classes,
    and a larger ``count`` extends a smaller one's selection.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    by_class: dict[Hashable, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    classes = sorted(by_class, key=repr)  # repr: labels of mixed types still sort deterministically
    for label in classes:
        random.Random(f"{seed}:class:{label!r}").shuffle(by_class[label])
    random.Random(f"{seed}:order").shuffle(classes)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(count, len(labels)):
        for label in classes:
            members = by_class[label]
            if depth < len(members):
                chosen.append(members[depth])
                if len(chosen) == count:
                    break
        depth += 1
    return chosen


def holdout_split(count: int, holdout: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train indices, held-out indices)`` of ``count`` items: ``holdout`` of them drawn by a seeded
    shuffle (not stratified: the folder datamodule's ``data.holdout``); both lists keep item order."""
    if holdout < 0:
        raise ValueError(f"holdout must be >= 0, got {holdout}")
    order = list(range(count))
    random.Random(seed).shuffle(order)
    held = set(order[:holdout])
    return [i for i in range(count) if i not in held], [i for i in range(count) if i in held]
