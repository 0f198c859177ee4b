"""Benchmark label-free performance estimation (driftwatch.estimation, CBPE): its cost and its error.

    PYTHONPATH=include python -m bench.bench_estimation [--rows 1000000] [--out bench-estimation.json]

Both in one run:

* cost   the demo model (config/models/credit_default.yaml, trained as the pipeline trains it)
         scores --rows rows with training.predict_scores; estimate_performance on those scores
         is timed against it (the median of --repeats runs); goal: <= 10% added to scoring;
* error  a HistGradientBoostingClassifier on 10 Gaussian features, its estimator fitted on a
         labelled holdout, then --batches batches of --batch-rows rows whose inputs move further
         and further along the model's direction (mean shift 0 to --max-shift sd) and narrow
         (sd 1 to 1/(1 + 0.3 * shift)), so that the realized AUC falls while P(y|x) stays the
         same; the mean absolute error of the estimated against the realized ROC AUC, and how
         many realized values fall within the band; goal: MAE <= 0.02.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from bench.measure import Steps
from driftwatch.config import load_config
from driftwatch.demo_data import TARGET_COLUMN, generate_reference
from driftwatch.estimation import estimate_performance, expected_metric, fit_estimator
from driftwatch.training import predict_scores, train

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "models" / "credit_default.yaml"
COST_GOAL, MAE_GOAL = 0.10, 0.02
FEATURES = 10


def measure_cost(rows: int, repeats: int, seed: int) -> dict[str, Any]:
    """Seconds of predict_scores and of estimate_performance over the same `rows` rows of the demo model."""
    cfg = load_config(DEMO_CONFIG)
    steps = Steps()
    model, _ = steps.run("train the demo model (20k rows)", lambda: train(cfg, generate_reference(seed, 20_000)))
    holdout = generate_reference(seed + 1, 20_000)
    positive = holdout[TARGET_COLUMN].to_numpy() == 1
    estimator = fit_estimator(predict_scores(model, holdout, cfg), positive, "roc_auc", seed=seed)
    batch = steps.run(f"generate {rows} rows", lambda: generate_reference(seed + 2, rows))
    scores = steps.run(f"predict_scores, {rows} rows", lambda: predict_scores(model, batch, cfg))
    for i in range(repeats):
        estimate = steps.run(f"estimate_performance {i + 1}", lambda: estimate_performance(estimator, scores))
    predict = next(r for r in steps.rows if r["step"].startswith("predict_scores"))
    estimated = [r for r in steps.rows if r["step"].startswith("estimate_performance")]
    seconds = statistics.median(r["seconds"] for r in estimated)
    return {
        "rows": rows,
        "predict_seconds": predict["seconds"],
        "estimate_seconds_median": seconds,
        "ratio": seconds / predict["seconds"],
        "cpu_ratio": statistics.median(r["cpu_seconds"] for r in estimated) / predict["cpu_seconds"],
        "estimate": estimate,
        "steps": steps.rows,
    }


def _shifted(rng: np.random.Generator, n: int, weights: np.ndarray, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows moved by `shift` along the weights' direction and narrowed; y ~ Bernoulli(P(y|x)), the same P throughout.

    Narrower inputs are what makes the realized AUC fall: a translation alone barely changes it.
    """
    spread = 1.0 / (1.0 + 0.3 * shift)
    x = spread * rng.normal(size=(n, FEATURES)) + shift * weights / np.linalg.norm(weights)
    logit = x @ weights - 1.0 + 0.5 * np.sin(2 * x[:, 0])  # not linear: the model has something to learn
    return x, rng.random(n) < 1.0 / (1.0 + np.exp(-logit))


def measure_error(batches: int, batch_rows: int, max_shift: float, seed: int) -> dict[str, Any]:
    """Estimated vs realized ROC AUC over batches of growing covariate shift."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.6, FEATURES)
    model = HistGradientBoostingClassifier(random_state=seed).fit(*_shifted(rng, 20_000, weights, 0.0))
    x_hold, y_hold = _shifted(rng, 20_000, weights, 0.0)
    estimator = fit_estimator(model.predict_proba(x_hold)[:, 1], y_hold, "roc_auc", seed=seed)
    rows = []
    for shift in np.linspace(0.0, max_shift, batches):
        x, y = _shifted(rng, batch_rows, weights, float(shift))
        scores = model.predict_proba(x)[:, 1]
        estimate = estimate_performance(estimator, scores)
        realized = expected_metric("roc_auc", y.astype(np.float64), scores)
        inside = estimate["lower"] <= realized <= estimate["upper"]
        rows.append({"shift": float(shift), "estimated": estimate["value"], "realized": realized, "in_band": inside})
    errors = [abs(r["estimated"] - r["realized"]) for r in rows]
    return {
        "reference_auc": estimator["reference_value"],
        "calibrated": estimator["calibrated"],
        "mae": float(np.mean(errors)),
        "max_error": float(np.max(errors)),
        "in_band": sum(r["in_band"] for r in rows),
        "batches": rows,
    }


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows scored for the cost figure")
    parser.add_argument("--repeats", type=int, default=3, help="estimate_performance runs; the median is kept")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-rows", type=int, default=20_000)
    parser.add_argument("--max-shift", type=float, default=1.5, help="mean shift of the last batch, in sd")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="write the figures as JSON here too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    print(f"Cost: predict_scores and estimate_performance at {args.rows} rows...", flush=True)
    cost = measure_cost(args.rows, args.repeats, args.seed)
    print(f"Error: {args.batches} batches of {args.batch_rows} rows, covariate shift 0 to {args.max_shift}...")
    error = measure_error(args.batches, args.batch_rows, args.max_shift, args.seed)
    print(f"\n{'shift':>6} {'estimated':>10} {'realized':>9} in band")
    for row in error["batches"]:
        print(f"{row['shift']:6.2f} {row['estimated']:10.4f} {row['realized']:9.4f} {row['in_band']}")
    met = {True: "goal met", False: "goal NOT met"}
    print(
        f"\n(a) estimate_performance / predict_scores at {cost['rows']} rows: "
        f"{cost['estimate_seconds_median']:.3f} s / {cost['predict_seconds']:.3f} s = {cost['ratio']:.1%} "
        f"(CPU {cost['cpu_ratio']:.1%}); goal <= {COST_GOAL:.0%}: {met[cost['ratio'] <= COST_GOAL]}"
    )
    print(
        f"(b) ROC AUC estimate vs realized over {args.batches} shifted batches: MAE {error['mae']:.4f} "
        f"(max {error['max_error']:.4f}, {error['in_band']}/{args.batches} in band); "
        f"goal <= {MAE_GOAL}: {met[error['mae'] <= MAE_GOAL]}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"cost": cost, "error": error}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
