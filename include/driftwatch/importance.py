"""Permutation feature importance on the holdout, the champion/challenger comparison and attribution drift.

A feature's importance is how much the primary metric worsens (drops, or rises for a loss) when
that feature's values are shuffled across the holdout rows, in the metric's units: about 0 for a
feature the model ignores, and slightly negative by chance. Shuffling happens on the raw feature
frame the pipeline takes, so a categorical feature counts once, not once per one-hot column.

Attribution drift is a change in which features a model relies on: the nDCG of the challenger's
ranking against the champion's importances. Input drift cannot see it when the inputs keep their
distributions and only their relation to the target moves.

This module imports scikit-learn at the top; it is only imported inside Airflow tasks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import ndcg_score
from sklearn.pipeline import Pipeline
from sklearn.utils import resample

from driftwatch.config import LOWER_IS_BETTER, ModelConfig
from driftwatch.evaluation import labelled_rows
from driftwatch.metrics import metric_values
from driftwatch.reports.markup import finite
from driftwatch.training import feature_frame, is_classification, positive_class, predict_scores

Scorer = Callable[[Pipeline, pd.DataFrame, np.ndarray], float]


def _scorer(cfg: ModelConfig, positive: Any) -> Scorer:
    """The primary metric as sklearn's greater-is-better scorer; NaN where it is undefined."""
    name = cfg.evaluation.primary_metric
    sign = -1.0 if name in LOWER_IS_BETTER else 1.0
    classification = is_classification(cfg)

    def score(model: Pipeline, X: pd.DataFrame, y: np.ndarray) -> float:
        value = metric_values(y, predict_scores(model, X, cfg), positive, classification, only=name)[0].get(name)
        return math.nan if value is None else sign * value

    return score


def _sample(
    labelled: pd.DataFrame, y: np.ndarray, strata: np.ndarray | None, *, max_samples: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """At most `max_samples` rows, a seeded sample stratified by `strata` (the positive class) when given."""
    if len(y) <= max_samples:
        return labelled, y
    picked = np.sort(
        resample(np.arange(len(y)), replace=False, n_samples=max_samples, random_state=seed, stratify=strata)
    )
    return labelled.iloc[picked], y[picked]


def _ranked(names: list[str], means: np.ndarray, stds: np.ndarray) -> list[dict[str, Any]]:
    """Features by mean importance, largest first (ties keep config order); undefined ones last."""
    rows = [{"feature": n, "mean": finite(m), "std": finite(s)} for n, m, s in zip(names, means, stds, strict=True)]
    rows.sort(key=lambda r: -r["mean"] if r["mean"] is not None else math.inf)
    return [{**row, "rank": i} for i, row in enumerate(rows, start=1)]


def permutation_importance_table(
    model: Pipeline, frame: pd.DataFrame, cfg: ModelConfig, *, max_samples: int, seed: int, repeats: int = 5
) -> dict[str, Any]:
    """Permutation importance of a fitted pipeline on the labelled rows of `frame`, as plain JSON.

    `features` is ranked by mean importance; `baseline` is the primary metric unshuffled. When the
    metric is undefined on these rows (one class only, no rows) `features` is empty and `reason` says why.
    """
    name, classification = cfg.evaluation.primary_metric, is_classification(cfg)
    labelled, y = labelled_rows(frame, cfg)
    positive = positive_class(model, cfg) if classification else None
    strata = (y == positive) if classification else None
    labelled, y = _sample(labelled, y, strata, max_samples=max_samples, seed=seed)
    X = feature_frame(labelled, cfg)
    table: dict[str, Any] = {
        "metric": name,
        "lower_is_better": name in LOWER_IS_BETTER,
        "rows": len(y),
        "repeats": repeats,
        "seed": seed,
        "baseline": None,
        "features": [],
    }
    scores = predict_scores(model, X, cfg) if len(y) else np.empty(0)
    values, reasons = metric_values(y, scores, positive, classification)
    table["baseline"] = finite(values.get(name))
    if table["baseline"] is None:
        table["reason"] = reasons.get(name, f"metric {name!r} is not computed for this task")
        return table
    started = time.perf_counter()
    result = permutation_importance(model, X, y, scoring=_scorer(cfg, positive), n_repeats=repeats, random_state=seed)
    table["seconds"] = round(time.perf_counter() - started, 3)
    table["features"] = _ranked(list(X.columns), result.importances_mean, result.importances_std)
    return table


def _by_feature(table: dict | None) -> dict[str, dict[str, Any]]:
    return {row["feature"]: row for row in (table or {}).get("features") or []}


def compare_importance(challenger: dict, champion: dict | None) -> list[dict[str, Any]]:
    """Per feature, both models' importance and rank, in the challenger's order.

    `rank_change` is the champion's rank minus the challenger's: positive means the feature matters
    more to the challenger. Features only one model has get None for the other's numbers.
    """
    ours, theirs = _by_feature(challenger), _by_feature(champion)
    order = list(ours) + [n for n in theirs if n not in ours]
    rows = []
    for feature in order:
        new, old = ours.get(feature, {}), theirs.get(feature, {})
        change = old["rank"] - new["rank"] if new and old else None
        rows.append(
            {
                "feature": feature,
                "challenger_mean": new.get("mean"),
                "challenger_std": new.get("std"),
                "challenger_rank": new.get("rank"),
                "champion_mean": old.get("mean"),
                "champion_std": old.get("std"),
                "champion_rank": old.get("rank"),
                "rank_change": change,
            }
        )
    return rows


def ranking_ndcg(reference: dict | None, current: dict | None) -> float | None:
    """nDCG of the current importances as a ranking of the reference's (clipped at 0) relevance.

    1.0 when the current model ranks the features the reference relies on in the same order; None
    when it is undefined (fewer than two features in both, or no reference feature above 0).
    """
    ref, cur = _by_feature(reference), _by_feature(current)
    common = [n for n in ref if n in cur and ref[n].get("mean") is not None and cur[n].get("mean") is not None]
    if len(common) < 2:
        return None
    relevance = np.clip([ref[n]["mean"] for n in common], 0.0, None)
    if not relevance.any():
        return None
    # Rounding can put a perfect ranking a hair above 1.
    return min(float(ndcg_score([relevance], [[cur[n]["mean"] for n in common]])), 1.0)


def importance_report(
    challenger: Pipeline, champion: Pipeline | None, holdout: pd.DataFrame, cfg: ModelConfig
) -> dict[str, Any]:
    """Both models' importance on the same holdout rows, compared, with the attribution-drift verdict."""
    ev = cfg.evaluation

    def table(model: Pipeline) -> dict[str, Any]:
        return permutation_importance_table(
            model,
            holdout,
            cfg,
            max_samples=ev.importance_max_samples,
            seed=cfg.training.seed,
            repeats=ev.importance_repeats,
        )

    ours = table(challenger)
    theirs = table(champion) if champion is not None else None
    ndcg = ranking_ndcg(theirs, ours)
    return {
        "challenger": ours,
        "champion": theirs,
        "comparison": compare_importance(ours, theirs),
        "ndcg": ndcg,
        "threshold": ev.attribution_drift_threshold,
        "attribution_drift": None if ndcg is None else ndcg < ev.attribution_drift_threshold,
    }


def importance_summary(report: dict[str, Any], top: int = 3) -> dict[str, Any]:
    """The few numbers of an importance report that travel through XCom and into emails."""
    features = report["challenger"].get("features") or []
    return {
        "ndcg": report.get("ndcg"),
        "attribution_drift": report.get("attribution_drift"),
        "top_features": [row["feature"] for row in features[:top]],
    }
