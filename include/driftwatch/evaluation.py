"""Holdout evaluation of a model, the champion/challenger promotion gate and its HTML report.

`evaluate` returns plain JSON (floats, ints, strings, None) so it can travel through XCom and be
logged to MLflow. A metric that cannot be computed on the holdout (one class only, no rows) is
None with a reason in `unavailable`; evaluation never raises because of the data it is given.

`gate` compares two such evaluations under `EvaluationConfig`. Both must come from the same
holdout: the caller evaluates the champion on the challenger's holdout.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from driftwatch.config import LOWER_IS_BETTER, ModelConfig
from driftwatch.labels import target_values
from driftwatch.metrics import THRESHOLD, finite, metric_values
from driftwatch.training import feature_frame, is_classification, positive_class, predict_scores

MISSING_SLICE = "(missing)"
# Comparisons allow for float rounding, so that 0.805 - 0.800 counts as an improvement of 0.005.
_EPS = 1e-9


def _label(value: Any) -> str:
    return str(value.item() if isinstance(value, np.generic) else value)


def _per_class(y: np.ndarray, predicted: np.ndarray, labels: list[Any]) -> tuple[list[dict], dict]:
    """Per-class precision/recall/f1/support and the confusion matrix (rows true, columns predicted)."""
    if len(y) == 0:
        nothing = np.full(len(labels), np.nan)
        precision, recall, f1, support = nothing, nothing, nothing, np.zeros(len(labels), dtype=int)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            precision, recall, f1, support = skm.precision_recall_fscore_support(
                y, predicted, labels=labels, zero_division=np.nan
            )
    rows = [
        {
            "label": _label(label),
            "precision": finite(precision[i]),
            "recall": finite(recall[i]),
            "f1": finite(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    ]
    matrix = skm.confusion_matrix(y, predicted, labels=labels) if len(y) else np.zeros((len(labels),) * 2, dtype=int)
    confusion = {"labels": [_label(x) for x in labels], "matrix": [[int(v) for v in row] for row in matrix]}
    return rows, confusion


def _slice_values(column: pd.Series) -> np.ndarray:
    return column.fillna(MISSING_SLICE).astype(str).to_numpy()


def labelled_rows(holdout: pd.DataFrame, cfg: ModelConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """The holdout rows that have a target, and their target values."""
    target = cfg.dataset.target.name
    if target not in holdout.columns:
        raise ValueError(f"holdout has no target column {target!r}")
    values = target_values(holdout[target], cfg)
    return holdout[values.notna()], values[values.notna()].to_numpy()


def _labelled_scores(
    model: Pipeline, holdout: pd.DataFrame, cfg: ModelConfig
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The holdout rows that have a target, their target values and the model's scores of them."""
    labelled, y = labelled_rows(holdout, cfg)
    scores = predict_scores(model, labelled, cfg) if len(labelled) else np.empty(0)
    return labelled, y, scores


def holdout_estimator(model: Pipeline, holdout: pd.DataFrame, cfg: ModelConfig) -> dict[str, Any]:
    """The label-free performance estimator of `model`, fitted on its scores over the labelled holdout.

    For regression `fit_estimator` is still asked, and answers kind "none" with its reason, so
    every version records whether it can be estimated and why not.
    """
    from driftwatch.estimation import fit_estimator

    _, y, scores = _labelled_scores(model, holdout, cfg)
    # 1 = the model's positive class, the class `scores` are probabilities of.
    positive = y == positive_class(model, cfg) if is_classification(cfg) else np.zeros(len(y), dtype=bool)
    return fit_estimator(
        scores, np.asarray(positive, dtype=bool), cfg.evaluation.primary_metric, seed=cfg.training.seed
    )


def evaluate(model: Pipeline, holdout: pd.DataFrame, cfg: ModelConfig) -> dict:
    """Every metric of the task on a labelled holdout, per class, and the primary metric per slice."""
    classification = is_classification(cfg)
    labelled, y, scores = _labelled_scores(model, holdout, cfg)
    positive = positive_class(model, cfg) if classification else None

    values, reasons = metric_values(y, scores, positive, classification)
    name = cfg.evaluation.primary_metric
    primary: dict[str, Any] = {"name": name, "value": values.get(name), "lower_is_better": name in LOWER_IS_BETTER}
    if primary["value"] is None:
        primary["reason"] = reasons.get(name, f"metric {name!r} is not computed for this task")
    result: dict[str, Any] = {
        "task": cfg.dataset.target.task,
        "n": len(labelled),
        "dropped_missing_target": len(holdout) - len(labelled),
        "primary": primary,
        "metrics": values,
        "unavailable": reasons,
    }

    if classification:
        negatives = [c for c in model.classes_ if c != positive]
        predicted = np.where(scores >= THRESHOLD, positive, negatives[0] if negatives else positive)
        # Labels the model never saw can still turn up in the holdout; they get their own row.
        labels = list(model.classes_) + [v for v in pd.unique(y) if v not in set(model.classes_)]
        result["threshold"] = THRESHOLD
        result["positive_label"] = _label(positive)
        result["per_class"], result["confusion_matrix"] = _per_class(y, predicted, labels)
    else:
        result["target_mean"] = finite(np.mean(y)) if len(y) else None

    slices: dict[str, dict[str, dict[str, Any]]] = {}
    features = feature_frame(labelled, cfg) if cfg.evaluation.slice_columns else None
    for column in cfg.evaluation.slice_columns:
        keys = _slice_values(features[column])
        slices[column] = {}
        for value in sorted(set(keys)):
            mask = keys == value
            slice_values, slice_reasons = metric_values(y[mask], scores[mask], positive, classification)
            entry: dict[str, Any] = {"rows": int(mask.sum()), "value": slice_values.get(name)}
            if entry["value"] is None:
                entry["reason"] = slice_reasons.get(name, "not computable")
            slices[column][value] = entry
    result["slices"] = slices
    return result


@dataclass(frozen=True)
class GateCheck:
    """One promotion condition: its name, outcome and a sentence with the numbers."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict: promote only when every check passed."""

    passed: bool
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """Details of the failed checks."""
        return [c.detail for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks], "reasons": self.reasons}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def gated_metric(evaluation: dict, name: str) -> float | None:
    """The named metric of an evaluation: from `metrics`, else from `primary` if it is that metric."""
    value = (evaluation.get("metrics") or {}).get(name)
    if value is None and (evaluation.get("primary") or {}).get("name") == name:
        value = evaluation["primary"].get("value")
    return finite(value)


def _gain(challenger: float, champion: float, lower_is_better: bool) -> float:
    """How much better the challenger is (positive = better), whatever the metric's direction."""
    return champion - challenger if lower_is_better else challenger - champion


def _relative(gain: float, reference: float) -> float:
    """Gain as a share of the champion's magnitude; a zero champion makes any gain infinite."""
    if reference != 0:
        return gain / abs(reference)
    return math.copysign(math.inf, gain) if gain else 0.0


def _check_primary(name: str, value: float | None, challenger: dict) -> GateCheck:
    if value is None:
        reason = (challenger.get("primary") or {}).get("reason") or (challenger.get("unavailable") or {}).get(name)
        return GateCheck("primary_metric", False, f"challenger {name} could not be computed ({reason or 'unknown'})")
    return GateCheck("primary_metric", True, f"challenger {name} is {_fmt(value)} on {challenger.get('n', '?')} rows")


def _check_floor(name: str, value: float | None, floor: float | None, lower: bool) -> GateCheck:
    if floor is None:
        return GateCheck("floor", True, "no metric floor configured")
    if value is None:
        return GateCheck("floor", False, f"{name} not computable; cannot compare with the floor {_fmt(floor)}")
    ok = value <= floor + _EPS if lower else value >= floor - _EPS
    sign = ("<=" if ok else ">") if lower else (">=" if ok else "<")
    bound = "ceiling" if lower else "floor"
    return GateCheck("floor", ok, f"{name} {_fmt(value)} {sign} {bound} {_fmt(floor)}")


def _check_improvement(name: str, value: float | None, champion: dict | None, cfg: ModelConfig) -> GateCheck:
    ev = cfg.evaluation
    if champion is None:
        return GateCheck("improvement", True, "no champion: bootstrap")
    reference = gated_metric(champion, name)
    if value is None or reference is None:
        who = "challenger" if value is None else "champion"
        return GateCheck("improvement", False, f"{who} {name} not computable; cannot compare with the champion")
    lower = name in LOWER_IS_BETTER
    gain = _gain(value, reference, lower)
    direction = " (lower is better)" if lower else ""
    head = f"{name} {_fmt(value)} vs champion {_fmt(reference)}{direction}"
    if ev.improvement_mode == "relative":
        relative = _relative(gain, reference)
        ok = relative >= ev.min_improvement - _EPS
        sign = ">=" if ok else "<"
        return GateCheck(
            "improvement",
            ok,
            f"{head}: improvement {gain:+.4f} = {relative:+.2%} {sign} required {ev.min_improvement:+.2%}",
        )
    ok = gain >= ev.min_improvement - _EPS
    sign = ">=" if ok else "<"
    return GateCheck("improvement", ok, f"{head}: {gain:+.4f} {sign} required {ev.min_improvement:+.4f}")


def _check_slices(name: str, challenger: dict, champion: dict | None, cfg: ModelConfig) -> GateCheck:
    ev = cfg.evaluation
    if not ev.slice_columns:
        return GateCheck("slices", True, "no slice columns configured")
    if champion is None:
        return GateCheck("slices", True, "no champion: bootstrap, slices not compared")
    lower = name in LOWER_IS_BETTER
    compared, regressions = 0, []
    for column in ev.slice_columns:
        ours, theirs = (challenger.get("slices") or {}).get(column, {}), (champion.get("slices") or {}).get(column, {})
        for value in sorted(set(ours) & set(theirs)):
            a, b = ours[value], theirs[value]
            if min(a.get("rows", 0), b.get("rows", 0)) < ev.min_slice_rows:
                continue
            new, old = finite(a.get("value")), finite(b.get("value"))
            if new is None or old is None:
                continue
            compared += 1
            loss = -_gain(new, old, lower)
            if loss > ev.slice_tolerance + _EPS:
                regressions.append(f"{column}={value}: {name} {_fmt(new)} vs champion {_fmt(old)} ({-loss:+.4f})")
    if regressions:
        return GateCheck(
            "slices",
            False,
            f"{len(regressions)} of {compared} slice(s) regressed by more than {ev.slice_tolerance:.4f}: "
            + "; ".join(regressions),
        )
    if compared == 0:
        return GateCheck("slices", True, f"no slice has {ev.min_slice_rows}+ rows and a {name} in both evaluations")
    return GateCheck(
        "slices", True, f"all {compared} slice(s) with {ev.min_slice_rows}+ rows within {ev.slice_tolerance:.4f}"
    )


def gate(challenger: dict, champion: dict | None, cfg: ModelConfig) -> GateDecision:
    """Decide whether the challenger may replace the champion; every check is always reported."""
    ev = cfg.evaluation
    name = ev.primary_metric
    value = gated_metric(challenger, name)
    checks = [
        _check_primary(name, value, challenger),
        _check_floor(name, value, ev.metric_floor, ev.lower_is_better),
        _check_improvement(name, value, champion, cfg),
        _check_slices(name, challenger, champion, cfg),
    ]
    return GateDecision(passed=all(c.passed for c in checks), checks=checks)
