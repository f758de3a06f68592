"""Deltas every CPU recipe applies to its paper recipe: the bundled photographs, one CPU process.

Used by ``quickstart``, ``dito_cpu_evidence`` and ``ssdd_cpu_evidence`` through
:func:`core.training.config.with_overrides`; each recipe adds its own sizes and cadences.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CPU_DEMO_DELTAS"]

CPU_DEMO_DELTAS: dict[str, Any] = {
    "data.demo": True,  # the photographs bundled with scikit-image: no dataset to download
    "data.num_workers": 0,  # decoding a few cached photographs is cheaper than spawning workers
    "trainer.accelerator": "cpu",  # the evidence is meant to reproduce on any laptop
    "trainer.log_every_n_steps": 10,  # runs are hundreds, not hundreds of thousands, of steps
    "trainer.preview_count": 2,  # two held-out photographs in each preview grid
}
