"""Evaluate an audio tokenizer's reconstructions offline: SI-SDR, waveform L1, PESQ-WB, STOI.

    python -m recipes.audio.evaluate checkpoint=outputs/run/export data.root=/data/speech/test
    python -m recipes.audio.evaluate checkpoint=outputs/run/checkpoints/last.ckpt data.shards=/data/test-shards \\
        num_clips=200 sample_rate=16000 seconds=4.0 hop=256 steps=[1,10,50] batch_size=8 seed=0 out=outputs/eval
    python -m recipes.audio.evaluate checkpoint=outputs/quickstart/export data.demo=true steps=[1,10]

``checkpoint`` is a save_pretrained folder or a Lightning .ckpt (EMA weights when present). Each clip is the
file resampled to ``sample_rate``, mixed to ``channels``, centre-cropped to ``seconds`` rounded down to a
multiple of ``hop`` (the tokenizer's hop) and RMS-normalised to ``level_db`` dBFS; shorter files are skipped
and counted. Reconstructions are rounded to 16-bit PCM before the metrics. PESQ / STOI need the ``pesq`` /
``pystoi`` packages (``speech=false`` turns them off for music). Writes metrics.json, reconstructions.png
(mel spectrograms) and reconstructions_<row>_<col>.wav under ``out``. See docs/audio-data.md.
"""

from __future__ import annotations

from recipes.keyvalue import parse_key_values


def main(argv: list[str] | None = None) -> dict:
    from core.eval.command import evaluate_checkpoint, format_table
    from modalities.audio.eval_suite import AudioEvalSettings
    from modalities.audio.metrics import TABLE_COLUMNS

    settings = parse_key_values(AudioEvalSettings, argv, prog="evaluate", doc=__doc__ or "")
    report = evaluate_checkpoint(settings)
    print(format_table(report, [column for column in TABLE_COLUMNS if any(column[0] in v for v in report["metrics"].values())]))
    print(f"metrics: {settings.out}/metrics.json   previews: {report['grid']}")
    return report


if __name__ == "__main__":
    main()
