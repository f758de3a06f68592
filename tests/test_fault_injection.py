"""Fault injection: training subprocesses (tests/fault_train.py, through the recipe command) are
SIGKILLed at random steps, half-way through checkpoint writes and between the step file and
``last.ckpt``, then resumed with ``trainer.resume=auto`` until they finish. The final weights, EMA,
optimiser state and every logged loss must equal an uninterrupted run's bit for bit — on the folder,
shard (two loader workers) and latent-cache paths, the generator trainer, and 2-process DDP (gloo).
Also: two runs in one folder (the second is refused), a fresh run in a used folder, a refused resume
that leaves ``config.yaml`` alone, and a 2-job Hydra sweep whose jobs keep separate folders.

The kill steps are drawn at random (seed printed; replay with ``DIFFTOK_FAULT_SEED=<seed>``), and
the totals of kills and bit-exact resumes are printed at the end of the module (under pytest-xdist:
summed over the workers, with each worker's seed, at the end of the session).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recipes.report import read_loss_curve, run_loss_logs

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "fault_train.py"
SEED = int(os.environ.get("DIFFTOK_FAULT_SEED", time.time_ns() % 100_000))
TALLY = {"kills": 0, "bit_exact_runs": 0, "resumed_segments": 0}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def closing_note(request):
    yield
    worker_output = getattr(request.config, "workeroutput", None)
    if worker_output is not None:  # a pytest-xdist worker: conftest.py sums the workers' tallies and prints them
        worker_output["fault_tally"] = {**TALLY, "seed": SEED}
        return
    line = (f"\nfault injection (seed {SEED}): {TALLY['kills']} SIGKILLs injected, {TALLY['resumed_segments']} resumed "
            f"segments, {TALLY['bit_exact_runs']} killed-and-resumed runs bit-identical to their uninterrupted run")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        print(line)  # shown even when pytest captures output


def run(spec: dict, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """One helper process (own process group, so its self-kill takes only it and its DDP workers)."""
    env = {**os.environ, "DIFFTOK_FAULT_SPEC": json.dumps(spec), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(HELPER), *overrides], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"helper timed out: {err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def killed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == -signal.SIGKILL, f"expected a SIGKILL, got rc {result.returncode}: {result.stderr[-4000:]}"
    TALLY["kills"] += 1


def tensors_equal(a, b, where: str = "") -> None:
    """Recursively: same structure, every tensor equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs (max |diff| {(a.double() - b.double()).abs().max().item():.3g})"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))}"
        for key in a:
            tensors_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            tensors_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def loss_rows(out: Path) -> list[dict[int, float]]:
    """``train/loss`` by step of every CSV log (one per segment) of a run."""
    return [dict(zip(*read_loss_curve([f], "train/loss"))) for f in run_loss_logs(out)]


def assert_bit_identical(reference: Path, resumed: Path, max_steps: int) -> None:
    """Final weights + EMA, optimiser state, export and every logged loss of ``resumed`` == ``reference``."""
    ref = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    got = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ref["global_step"] == got["global_step"] == max_steps
    assert any(k.startswith("ema.") for k in got["state_dict"]), "the run should keep an EMA"
    tensors_equal(ref["state_dict"], got["state_dict"], "state_dict")
    tensors_equal(ref["optimizer_states"], got["optimizer_states"], "optimizer_states")
    from safetensors.torch import load_file

    tensors_equal(load_file(reference / "export" / "model.safetensors"), load_file(resumed / "export" / "model.safetensors"), "export")
    (expected,) = loss_rows(reference)
    assert sorted(expected) == list(range(max_steps))
    merged: dict[int, float] = {}
    for segment in loss_rows(resumed):  # killed segments included: what they logged before dying must match too
        for step, value in segment.items():
            assert value == expected[step], f"logged loss at step {step}: {value!r} != {expected[step]!r}"
        merged.update(segment)
    assert sorted(merged) == list(range(max_steps)), "the merged loss log has gaps"
    assert not list((resumed / "checkpoints").glob(".*.tmp")), "unfinished checkpoint writes left behind"
    TALLY["bit_exact_runs"] += 1


def first_logged_step(out: Path) -> int:
    """The first step the newest segment logged: the checkpointed step's own row, one before it resumes."""
    return min(loss_rows(out)[-1])


def kill_and_resume(spec: dict, tmp_path: Path, kills: list[dict], *overrides: str) -> Path:
    """Uninterrupted reference run, then the same run killed at each of ``kills`` and resumed until done."""
    reference = tmp_path / "reference"
    ok(run({**spec, "out": str(reference)}, *overrides))
    out = tmp_path / "killed"
    for kill in kills:
        killed(run({**spec, "out": str(out), "kill": kill}, "trainer.resume=auto", *overrides))
        if kill["at"] == "ckpt_write":
            assert list((out / "checkpoints").glob(".*.tmp")), "the torn write should leave its temp file"
    final = ok(run({**spec, "out": str(out)}, "trainer.resume=auto", *overrides))
    TALLY["resumed_segments"] += len(kills)
    assert "report_rank0.json" in {p.name for p in out.iterdir()}, final.stderr[-2000:]
    assert_bit_identical(reference, out, spec["max_steps"])
    return out


def random_kills(rng: random.Random, plan: list[tuple[str, list[int]]]) -> list[dict]:
    return [{"at": how, "step": rng.choice(steps)} for how, steps in plan]


def test_folder_path_survives_kills_at_random_steps_and_during_checkpoint_writes(tmp_path, demo_dir):
    rng = random.Random(SEED)
    kills = random_kills(rng, [("step", [4, 5]), ("ckpt_write", [6, 9]), ("before_last", [12])])
    print(f"folder kills (seed {SEED}): {kills}")
    spec = {"kind": "folder", "data": str(demo_dir / "train"), "max_steps": 15, "every": 3}
    reference = tmp_path / "reference"
    ok(run({**spec, "out": str(reference)}))
    out = tmp_path / "killed"
    for kill in kills:
        killed(run({**spec, "out": str(out), "kill": kill}, "trainer.resume=auto"))
        if kill["at"] == "ckpt_write":
            assert list((out / "checkpoints").glob(".*.tmp")), "the torn write should leave its temp file"
        if kill["at"] == "before_last":
            last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
            assert last["global_step"] == kill["step"] - 3, "last.ckpt should lag the newest step file"
    ok(run({**spec, "out": str(out)}, "trainer.resume=auto"))
    TALLY["resumed_segments"] += len(kills)
    assert first_logged_step(out) == kills[-1]["step"] - 1, "resume must take the newest step file, not the older last.ckpt"
    assert not list((out / "checkpoints").glob("*-v*.ckpt")), "no versioned duplicates of step files"
    assert_bit_identical(reference, out, spec["max_steps"])
    summary = json.loads((out / "train_summary.json").read_text())
    # segments the final weights descend from: a segment killed before its first checkpoint is redone, its time lost
    assert 2 <= summary["segments"] <= len(kills) + 1 and summary["wall_time_s"] > summary["segment_wall_time_s"]


def test_shard_stream_with_two_workers_resumes_exactly(tmp_path, demo_dir):
    from modalities.image.shards import ShardSettings, convert_folder_to_shards

    shards = tmp_path / "shards"
    convert_folder_to_shards(demo_dir / "train", shards, ShardSettings(shard_size=3, seed=1), progress=False)
    rng = random.Random(SEED + 1)
    # checkpoints every 3 steps, 6 batches per epoch: resumes land mid-epoch on odd batches (worker roles rotate)
    kills = random_kills(rng, [("step", [4, 5]), ("step", list(range(10, 13)))])
    print(f"shard kills (seed {SEED}): {kills}")
    spec = {"kind": "shard", "data": str(shards), "max_steps": 14, "every": 3, "workers": 2}
    kill_and_resume(spec, tmp_path, kills)


@pytest.fixture(scope="module")
def tokenizer_and_cache(tmp_path_factory, demo_dir):
    from core.builder import build_autoencoder
    from core.pretrained import save_pretrained
    from recipes.image.cache_latents import main as cache_main
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    tokenizer = tmp_path_factory.mktemp("tokenizer")
    save_pretrained(build_autoencoder(tiny_config()), tokenizer)
    cache = tmp_path_factory.mktemp("latents") / "cache"
    cache_main([f"tokenizer={tokenizer}", f"data.root={demo_dir / 'train'}", "labels=file", "size=32", f"out={cache}",
                "batch_size=4", "num_workers=0", "samples_per_shard=3", "flip=true"])
    return tokenizer, cache


def test_latent_cache_generator_resumes_exactly(tmp_path, tokenizer_and_cache):
    tokenizer, cache = tokenizer_and_cache
    rng = random.Random(SEED + 2)
    kills = random_kills(rng, [("ckpt_write", [3, 6]), ("step", list(range(8, 11)))])
    print(f"latent kills (seed {SEED}): {kills}")
    spec = {"kind": "latent", "data": str(cache), "tokenizer": str(tokenizer), "max_steps": 12, "every": 3}
    kill_and_resume(spec, tmp_path, kills)


def test_generator_on_the_fly_resumes_exactly(tmp_path, tokenizer_and_cache, demo_dir):
    tokenizer, _ = tokenizer_and_cache
    rng = random.Random(SEED + 3)
    kills = random_kills(rng, [("before_last", [6]), ("step", [8, 9])])
    print(f"generator kills (seed {SEED}): {kills}")
    spec = {"kind": "generator", "data": str(demo_dir / "train"), "tokenizer": str(tokenizer), "max_steps": 10, "every": 3}
    kill_and_resume(spec, tmp_path, kills)


@pytest.mark.timeout(900)
def test_ddp_two_processes_resume_exactly_and_end_on_rank_zero(tmp_path, demo_dir):
    rng = random.Random(SEED + 4)
    kills = random_kills(rng, [("step", list(range(4, 9)))])
    print(f"ddp kills (seed {SEED}): {kills}")
    spec = {"kind": "folder", "data": str(demo_dir / "train"), "max_steps": 10, "every": 3, "devices": 2, "record_losses": True}
    out = kill_and_resume(spec, tmp_path, kills)
    assert not (out / "report_rank1.json").exists(), "only global rank 0 runs the end-of-run report"
    # the logged loss is the mean of the two ranks' own losses
    reference = tmp_path / "reference"
    per_rank = [{row["step"]: row["loss"] for row in map(json.loads, Path(f"{reference}.losses_rank{r}.jsonl").read_text().splitlines())}
                for r in (0, 1)]
    (logged,) = loss_rows(reference)
    for step, value in logged.items():
        mean = (per_rank[0][step] + per_rank[1][step]) / 2
        assert abs(value - mean) <= 1e-6 * max(1.0, abs(mean)), (step, value, per_rank[0][step], per_rank[1][step])
    assert any(per_rank[0][s] != per_rank[1][s] for s in logged), "the ranks should see different batches"


def test_one_owner_per_folder_and_refused_starts_write_nothing(tmp_path, demo_dir):
    spec = {"kind": "folder", "data": str(demo_dir / "train"), "max_steps": 6, "every": 3}
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, str(HELPER)], cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              env={**os.environ, "OMP_NUM_THREADS": "1",
                                   "DIFFTOK_FAULT_SPEC": json.dumps({**spec, "out": str(out), "kill": {"at": "hold", "step": 4}})})
    marker = Path(f"{out}.holding")
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert holder.poll() is None and time.time() < deadline, "the first run never reached step 4"
            time.sleep(0.2)
        config = (out / "config.yaml").read_bytes()
        second = run({**spec, "out": str(out)}, "trainer.resume=auto")
        assert second.returncode != 0 and "OutputFolderBusyError" in second.stderr
        assert f"in use by another run (pid {holder.pid} on host" in second.stderr
        assert (out / "config.yaml").read_bytes() == config
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    TALLY["kills"] += 1
    fresh = run({**spec, "out": str(out)})  # no trainer.resume: the folder holds a run
    assert fresh.returncode != 0 and "holds an earlier run" in fresh.stderr and "trainer.resume=auto" in fresh.stderr
    assert "stale lock" in fresh.stdout, "the killed owner's lock should be detected as stale"  # logs go to stdout
    other_model = run({**spec, "out": str(out)}, "trainer.resume=auto", "model.latent_channels=8")
    assert other_model.returncode != 0 and "CheckpointMismatchError" in other_model.stderr
    assert (out / "config.yaml").read_bytes() == config, "a refused resume must not rewrite config.yaml"
    resumed = ok(run({**spec, "out": str(out)}, "trainer.resume=auto"))  # the dead owner's lock is stale
    TALLY["resumed_segments"] += 1
    assert not (out / ".difftok.lock").exists()
    assert "resuming from a checkpoint that ended before the epoch ended" not in resumed.stderr
    assert first_logged_step(out) == 2  # resumed from step 3
    assert ok(run({**spec, "out": str(out)}, "overwrite=true"))
    assert len(run_loss_logs(out)) == 1, "overwrite=true starts the logs afresh"


def test_hydra_sweep_jobs_keep_their_own_folders(tmp_path, demo_dir):
    out = tmp_path / "sweep"
    spec = {"kind": "folder", "data": str(demo_dir / "train"), "max_steps": 2, "every": 0, "out": str(out)}
    ok(run(spec, "-m", "optim.lr=0.001,0.002"))
    import yaml

    jobs = sorted(p for p in (out / "multirun").iterdir() if p.is_dir())  # beside Hydra's multirun.yaml
    assert [j.name for j in jobs] == ["0", "1"]
    lrs = [yaml.safe_load((j / "config.yaml").read_text())["optim"]["lr"] for j in jobs]
    assert lrs == [0.001, 0.002]
    for job in jobs:
        assert (job / "export" / "model.safetensors").is_file() and (job / "report_rank0.json").is_file()
        # every=0: no periodic checkpoint, the final step's only
        assert sorted(p.name for p in (job / "checkpoints").glob("*.ckpt")) == ["last.ckpt", "step_0000002.ckpt"]
        mode = (job / "checkpoints" / "last.ckpt").stat().st_mode & 0o777
        assert mode == 0o666 & ~_umask(), oct(mode)
    assert not (out / "checkpoints").exists() and not (out / ".hydra").exists()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
