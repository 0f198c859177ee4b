"""Benchmark shadow scoring: scoring.score_batch with and without a challenger, in the same run.

    PYTHONPATH=include python -m bench.bench_shadow [--rows 1000000] [--repeats 3] [--out bench-shadow.json]

A batch of --rows rows of the demo schema (driftwatch.demo_data, config/models/credit_default.yaml)
is staged as the pipeline stages it (ingest.write_staged_file, then ingest.upload_staged to
layout.staged_key) in a moto S3 server on a loopback port, started and stopped here. A champion and
a challenger are trained with training.train on --train-rows rows each (different seeds). After one
untimed warm-up pass, score_batch runs --repeats times without and with shadow=(challenger, version),
alternating which goes first; each run's wall time, CPU time, peak RSS (VmHWM) and S3 traffic are
recorded and the medians compared: with / without, and the extra seconds per 1M rows. Shadow scoring
reads the row groups once and scores each twice, so the ratio is expected near 2 at most; nothing
is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import s3
from bench.measure import Steps
from driftwatch import ingest, layout
from driftwatch.config import ModelConfig, load_config
from driftwatch.demo_data import generate_reference
from driftwatch.scoring import score_batch
from driftwatch.training import train

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "models" / "credit_default.yaml"
BATCH_DATE = "2026-01-10"
MODES = ("without shadow", "with shadow")


def stage_batch(client: Any, cfg: ModelConfig, rows: int, seed: int, work: Path, steps: Steps) -> int:
    """Generate `rows` demo rows, write the staged Parquet and upload it to the staged key; its size in bytes."""
    frame = steps.run(f"generate {rows} rows", lambda: generate_reference(seed, rows))
    path = work / "staged.parquet"
    batch = ingest.drop_unused_columns(frame, cfg)
    steps.run("write the staged Parquet", lambda: ingest.write_staged_file(path, batch, cfg))
    client.create_bucket(Bucket=cfg.storage.bucket)
    steps.run(
        "upload the staged batch", lambda: ingest.upload_staged(client, cfg, layout.staged_key(cfg, BATCH_DATE), path)
    )
    return path.stat().st_size


def _median(rows: list[dict[str, Any]], field: str) -> float:
    return float(statistics.median(r[field] for r in rows))


def measure(args: argparse.Namespace, work: Path, endpoint: str) -> dict[str, Any]:
    """Stage the batch, train both models, time score_batch in both modes; the figures."""
    cfg = load_config(DEMO_CONFIG)
    client = s3.TimedClient(s3.client(endpoint))
    setup = Steps()
    staged_bytes = stage_batch(client, cfg, args.rows, args.seed, work, setup)
    champion, _ = setup.run(
        "train the champion", lambda: train(cfg, generate_reference(args.seed + 1, args.train_rows))
    )
    challenger, _ = setup.run(
        "train the challenger", lambda: train(cfg, generate_reference(args.seed + 2, args.train_rows))
    )
    # Imports and each model's first call are not part of the measurement: one untimed pass first.
    setup.run(
        "warm-up pass, with shadow", lambda: score_batch(client, cfg, BATCH_DATE, champion, "1", (challenger, "2"))
    )
    steps = Steps(client)
    shadows: list[dict[str, Any]] = []
    for i in range(args.repeats):
        order = MODES if i % 2 == 0 else MODES[::-1]
        for mode in order:
            shadow = (challenger, "2") if mode == "with shadow" else None
            print(f"  repeat {i + 1}/{args.repeats}: score_batch {mode}...", flush=True)
            # Only the comparison is kept: the scores of one run are not held through the next.
            compared = steps.run(
                mode, lambda s=shadow: score_batch(client, cfg, BATCH_DATE, champion, "1", shadow=s).get("shadow")
            )
            if compared is not None:
                shadows.append(compared)
    runs = {mode: [r for r in steps.rows if r["step"] == mode] for mode in MODES}
    medians = {
        mode: {f: _median(rs, f) for f in ("seconds", "cpu_seconds", "peak_mb", "s3_bytes", "s3_requests")}
        for mode, rs in runs.items()
    }
    without, with_ = medians["without shadow"], medians["with shadow"]
    return {
        "rows": args.rows,
        "staged_bytes": staged_bytes,
        "repeats": args.repeats,
        "medians": medians,
        "ratio": with_["seconds"] / without["seconds"],
        "cpu_ratio": with_["cpu_seconds"] / without["cpu_seconds"],
        "peak_ratio": with_["peak_mb"] / without["peak_mb"],
        "extra_seconds_per_1m_rows": (with_["seconds"] - without["seconds"]) * 1_000_000 / args.rows,
        "champion_ms_per_1k": statistics.median(s["champion_ms_per_1k"] for s in shadows),
        "challenger_ms_per_1k": statistics.median(s["challenger_ms_per_1k"] for s in shadows),
        "shadow": {k: v for k, v in shadows[-1].items() if isinstance(v, int | float | str)},
        "setup": setup.rows,
        "runs": steps.rows,
    }


def report(figures: dict[str, Any]) -> None:
    """Print every run, the medians and the derived figures."""
    print(f"\n{'run':<16} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9} {'S3 MiB':>8} {'S3 req':>7}")
    for row in figures["runs"]:
        print(
            f"{row['step']:<16} {row['seconds']:8.2f} {row['cpu_seconds']:8.2f} {row['peak_mb']:9.0f} "
            f"{row['s3_bytes'] / 2**20:8.1f} {row['s3_requests']:7d}"
        )
    print(
        f"\nMedians of {figures['repeats']} runs each, {figures['rows']} rows "
        f"({figures['staged_bytes'] / 2**20:.1f} MiB staged):"
    )
    for mode, m in figures["medians"].items():
        print(
            f"  {mode:<15} {m['seconds']:7.2f} s wall, {m['cpu_seconds']:7.2f} s CPU, peak RSS {m['peak_mb']:.0f} MiB"
        )
    print(
        f"  with / without shadow: {figures['ratio']:.2f}x wall (CPU {figures['cpu_ratio']:.2f}x, "
        f"peak RSS {figures['peak_ratio']:.2f}x); "
        f"extra {figures['extra_seconds_per_1m_rows']:.2f} s per 1M rows"
    )
    print(
        f"  predict_scores inside the pass: champion {figures['champion_ms_per_1k']:.2f} ms/1k rows, "
        f"challenger {figures['challenger_ms_per_1k']:.2f} ms/1k rows"
    )
    shadow = figures["shadow"]
    compared = ", ".join(f"{k} {shadow[k]:.4f}" for k in ("agreement", "psi", "positive_rate_change") if k in shadow)
    print(f"  last shadow comparison: {compared}")
    before, after = figures["load_average_before_after"]
    print(f"  load average (1 min) before / after: {before} / {after} on {os.cpu_count()} CPUs")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the staged batch")
    parser.add_argument("--repeats", type=int, default=3, help="score_batch runs per mode; medians are compared")
    parser.add_argument("--train-rows", type=int, default=20_000, help="training rows of each model")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="write the figures as JSON here too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    # The client talks to the bench's own moto server only: no AWS profile or credential file is read.
    os.environ |= {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    print(f"Shadow scoring cost: score_batch at {args.rows} rows, without and with a challenger...", flush=True)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="driftwatch-bench-shadow-") as scratch:
        work = Path(scratch)
        with s3.moto_server(work / "moto.log") as server:
            figures = measure(args, work, server.endpoint)
    # The machine may be shared: a load average above the CPU count means timings are inflated.
    figures["load_average_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    report(figures)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
