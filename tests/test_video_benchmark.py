"""Smoke test of benchmarks/video_decode_throughput.py (tiny clip; no timing asserts)."""

from __future__ import annotations

import json

import pytest


def test_video_decode_throughput_smoke(tmp_path):
    pytest.importorskip("diffusers")
    from benchmarks.video_decode_throughput import main

    out = tmp_path / "vdt.json"
    result = main(["--frames", "1", "--resolution", "32", "--steps", "2", "--repeats", "1", "--warmup", "0",
                   "--only", "video DiTo-S", "--json", str(out), "--threads", "2"])
    assert json.loads(out.read_text()) == result
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"video DiTo-S 1-step", "video DiTo-S 2-step", "Wan2.1 VAE decoder"}
    assert rows["Wan2.1 VAE decoder"]["ratio_vs_wan"] == 1.0 and rows["video DiTo-S 1-step"]["frames_per_s"] > 0
    assert rows["video DiTo-S 1-step"]["latent"] == [16, 1, 4, 4] and rows["video DiTo-S 1-step"]["params_M"] == 8.82
    # N steps cost N decoder forwards
    assert rows["video DiTo-S 2-step"]["gflops_per_frame"] == pytest.approx(2 * rows["video DiTo-S 1-step"]["gflops_per_frame"], rel=0.01)
