"""The resolution-sweep worker decodes tiled and untiled and reports memory; the guard extrapolates (no timing asserts)."""

from __future__ import annotations

import pytest

from benchmarks.decode_sweep import _estimate_gb, decode_once


def test_sweep_worker_decodes_tiled_and_untiled():
    untiled = decode_once("ssdd-s", 64, 0)
    tiled = decode_once("ssdd-s", 64, 4)
    for row in (untiled, tiled):
        assert row["finite"] and row["seconds"] > 0 and row["peak_rss_gb"] >= row["baseline_gb"] > 0
    assert (untiled["tile"], tiled["tile"]) == (0, 4)


def test_memory_guard_extrapolates_with_pixels_untiled_and_flat_tiled():
    rows = [{"model": "m", "size": 512, "tile": 0, "peak_rss_gb": 3.0, "baseline_gb": 1.0, "decode_gb": 2.0},
            {"model": "m", "size": 512, "tile": 64, "peak_rss_gb": 1.5, "baseline_gb": 1.0, "decode_gb": 0.5}]
    assert _estimate_gb(rows, "m", 1024, 0) == pytest.approx(1.0 + 2.0 * 4)
    assert _estimate_gb(rows, "m", 2048, 64) == pytest.approx(1.5)
    assert _estimate_gb(rows, "other", 1024, 0) is None
