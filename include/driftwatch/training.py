"""Challenger training: feature preparation, label join, time-based split and the sklearn pipeline.

Everything the model sees goes through `feature_frame`, at fit and at predict time alike, so the
configured features are the only columns that can reach the estimator (never the id, timestamp,
target or PII). The preprocessing lives inside the pipeline, so the registered model takes raw
feature frames: missing values and categories never seen in training are handled there.

This module imports scikit-learn at the top; it is only imported inside Airflow tasks.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from driftwatch.config import ConfigError, ModelConfig
from driftwatch.dtypes import positive_text
from driftwatch.errors import NotEnoughData, SchemaMismatch
from driftwatch.labels import target_values

ESTIMATORS: dict[str, type[BaseEstimator]] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "ridge": Ridge,
    "random_forest_regressor": RandomForestRegressor,
    "hist_gradient_boosting_regressor": HistGradientBoostingRegressor,
}
# Defaults that differ from sklearn's; hyperparameters from the config override them.
_ESTIMATOR_DEFAULTS: dict[str, dict[str, Any]] = {
    # lbfgs often needs more than 100 iterations on one-hot data and would warn about convergence.
    "logistic_regression": {"max_iter": 1000},
}
# Set from training.seed and training.class_weight, so the config has one place for each.
_RESERVED_HYPERPARAMETERS = {"random_state": "training.seed", "class_weight": "training.class_weight"}

MISSING_CATEGORY = "missing"
# Categories rarer than this (in training rows) share one "infrequent" column, which also takes
# unseen categories at predict time; MAX_CATEGORIES caps the columns per feature.
MIN_CATEGORY_COUNT = 5
MAX_CATEGORIES = 50


def feature_frame(df: pd.DataFrame, cfg: ModelConfig) -> pd.DataFrame:
    """The configured features only, in config order, with the dtypes the pipeline expects.

    Numeric features become float64 with ±inf as NaN; categorical features become str with
    missing values kept as NaN (the pipeline imputes them). A non-numeric value in a numeric
    feature is an error, not silently NaN: validation should have stopped such a batch.
    """
    names = cfg.dataset.feature_names
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise SchemaMismatch(f"missing feature column(s): {', '.join(missing)} (schema.features)")
    out: dict[str, pd.Series] = {}
    for spec in cfg.dataset.features:
        column = df[spec.name]
        if spec.type == "numeric":
            try:
                values = pd.to_numeric(column).astype("float64")
            except (TypeError, ValueError) as err:
                raise SchemaMismatch(
                    f"numeric feature {spec.name!r} holds non-numeric values ({err}): fix the data, or declare "
                    "the feature type: categorical"
                ) from None
            out[spec.name] = values.replace([np.inf, -np.inf], np.nan)
        else:
            raw = column.astype(object)
            missing_mask = pd.isna(raw)
            # object dtype with np.nan (not pd.NA), which SimpleImputer recognises as missing.
            out[spec.name] = pd.Series(
                np.where(missing_mask, np.nan, raw.astype(str)), index=df.index, dtype=object, name=spec.name
            )
    return pd.DataFrame(out, index=df.index)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"batch date {text!r} is not YYYY-MM-DD") from None


def split_by_time(frames: dict[str, pd.DataFrame], cfg: ModelConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Split labelled daily batches: the latest `holdout_days` dates are the holdout, earlier ones train.

    At most `window_days - holdout_days` training dates are used, the most recent ones; older
    dates are listed as unused. Dates in `info` are in chronological order.
    """
    tr = cfg.training
    dates = sorted(frames, key=_parse_date)
    if len(dates) < tr.holdout_days + 1:
        raise NotEnoughData(
            f"need at least {tr.holdout_days + 1} labelled batch dates ({tr.holdout_days} for the holdout "
            f"and 1 for training), got {len(dates)}"
        )
    holdout_dates = dates[-tr.holdout_days :]
    earlier = dates[: -tr.holdout_days]
    train_dates = earlier[-(tr.window_days - tr.holdout_days) :]
    unused = earlier[: len(earlier) - len(train_dates)]

    def concat(keys: list[str]) -> pd.DataFrame:
        return pd.concat([frames[k] for k in keys], ignore_index=True)

    train, holdout = concat(train_dates), concat(holdout_dates)
    if len(train) < tr.min_training_rows:
        raise NotEnoughData(
            f"only {len(train)} training rows from {len(train_dates)} date(s) ({', '.join(train_dates)}); "
            f"training.min_training_rows is {tr.min_training_rows}"
        )
    if holdout.empty:
        raise NotEnoughData(f"the holdout dates ({', '.join(holdout_dates)}) hold no rows")
    info = {
        "method": "time",
        "train_dates": train_dates,
        "holdout_dates": holdout_dates,
        "unused_dates": unused,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
    }
    return train, holdout, info


def split_random(frame: pd.DataFrame, cfg: ModelConfig, reason: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Hold out a seeded random `training.holdout_fraction` of rows, stratified by class where it can be.

    For data with no time order (a reference without a timestamp column): `reason` says why, and
    goes into the split info that the evaluation report and the MLflow run show.
    """
    from sklearn.model_selection import train_test_split

    tr = cfg.training
    target = _target(frame, cfg) if cfg.dataset.target.name in frame.columns else None
    labelled = frame.loc[target.notna()] if target is not None else frame
    stratify = None
    if target is not None and is_classification(cfg):
        classes = target.loc[labelled.index]
        # Stratifying needs two rows of every class on each side of the split.
        if classes.nunique() >= 2 and classes.value_counts().min() * tr.holdout_fraction >= 2:
            stratify = classes
    if len(labelled) * tr.holdout_fraction < 1:
        raise NotEnoughData(f"{len(labelled)} labelled reference rows: too few to hold out {tr.holdout_fraction:.0%}")
    train, holdout = train_test_split(labelled, test_size=tr.holdout_fraction, random_state=tr.seed, stratify=stratify)
    train, holdout = train.sort_index().reset_index(drop=True), holdout.sort_index().reset_index(drop=True)
    if len(train) < tr.min_training_rows:
        raise NotEnoughData(
            f"only {len(train)} training rows after holding out {tr.holdout_fraction:.0%} of the reference; "
            f"training.min_training_rows is {tr.min_training_rows}"
        )
    info = {
        "method": "random",
        "reason": reason,
        "holdout_fraction": tr.holdout_fraction,
        "stratified": stratify is not None,
        "seed": tr.seed,
        "train_rows": len(train),
        "holdout_rows": len(holdout),
    }
    return train, holdout, info


def _reference_days(reference: pd.DataFrame, cfg: ModelConfig) -> dict[str, pd.DataFrame] | str:
    """The reference split by day of its timestamp, or why it cannot be (then the holdout is random)."""
    column = cfg.dataset.timestamp_column
    if column is None:
        return "the schema has no timestamp_column"
    if column not in reference.columns:
        return f"the reference has no timestamp column {column!r}"
    stamps = pd.to_datetime(reference[column], errors="coerce", utc=True)
    days = stamps.dt.date.astype(str)[stamps.notna()]
    if days.nunique() <= cfg.training.holdout_days:
        return f"the reference's {column!r} spans {days.nunique()} day(s), not more than holdout_days"
    dated = reference[stamps.notna()]
    return {day: part.reset_index(drop=True) for day, part in dated.groupby(days)}


def split_reference(reference: pd.DataFrame, cfg: ModelConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Split the first model's reference: its latest days held out, or a random share when it has no dates."""
    by_day = _reference_days(reference, cfg)
    if isinstance(by_day, str):
        return split_random(reference, cfg, reason=by_day)
    windowed = cfg.model_copy(update={"training": cfg.training.model_copy(update={"window_days": len(by_day)})})
    return split_by_time(by_day, windowed)


def is_classification(cfg: ModelConfig) -> bool:
    """Whether the configured target is a classification target."""
    return cfg.dataset.target.task == "classification"


def _estimator(cfg: ModelConfig) -> BaseEstimator:
    """The configured estimator with seed, class weight and hyperparameters applied."""
    tr = cfg.training
    cls = ESTIMATORS[tr.estimator]
    accepted = set(cls().get_params())
    for name, source in _RESERVED_HYPERPARAMETERS.items():
        if name in tr.hyperparameters:
            raise ConfigError(f"training.hyperparameters.{name} of {tr.estimator}: set it with {source} instead")
    unknown = sorted(set(tr.hyperparameters) - accepted)
    if unknown:
        raise ConfigError(
            f"training.hyperparameters: unknown hyperparameter(s) {', '.join(map(repr, unknown))} "
            f"for estimator {tr.estimator} "
            f"({cls.__name__}); accepted: {', '.join(sorted(accepted))}"
        )
    params: dict[str, Any] = dict(_ESTIMATOR_DEFAULTS.get(tr.estimator, {}))
    if "random_state" in accepted:
        params["random_state"] = tr.seed
    if is_classification(cfg) and "class_weight" in accepted:
        params["class_weight"] = tr.class_weight
    params.update(tr.hyperparameters)
    return cls(**params)


def build_pipeline(cfg: ModelConfig) -> Pipeline:
    """Unfitted pipeline: impute/scale numerics, impute/one-hot categoricals, then the estimator."""
    numeric = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            (
                "onehot",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    min_frequency=MIN_CATEGORY_COUNT,
                    max_categories=MAX_CATEGORIES,
                    sparse_output=False,
                ),
            ),
        ]
    )
    transformers = []
    if cfg.dataset.numeric_features:
        transformers.append(("numeric", numeric, cfg.dataset.numeric_features))
    if cfg.dataset.categorical_features:
        transformers.append(("categorical", categorical, cfg.dataset.categorical_features))
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)
    return Pipeline([("preprocess", preprocess), ("model", _estimator(cfg))])


def _target(frame: pd.DataFrame, cfg: ModelConfig) -> pd.Series:
    name = cfg.dataset.target.name
    if name not in frame.columns:
        raise SchemaMismatch(f"training data has no target column {name!r} (schema.target.name)")
    return target_values(frame[name], cfg)


def _plain(value: Any) -> Any:
    """A numpy scalar as the matching Python value, for JSON."""
    return value.item() if isinstance(value, np.generic) else value


def train(cfg: ModelConfig, frame: pd.DataFrame) -> tuple[Pipeline, dict]:
    """Fit the configured pipeline on a labelled frame; rows without a target are dropped.

    Classification needs exactly two classes (the metrics and `predict_scores` are binary).
    """
    target = _target(frame, cfg)
    keep = target.notna() & ~target.isin([np.inf, -np.inf])
    dropped = int((~keep).sum())
    X, y = feature_frame(frame.loc[keep], cfg), target.loc[keep]
    if is_classification(cfg) and y.dtype == "float64":  # integer classes that had missing rows
        y = y.astype("int64")
    if y.empty:
        raise NotEnoughData(f"no training rows with a target value ({dropped} rows without one)")
    info: dict[str, Any] = {
        "estimator": cfg.training.estimator,
        "rows": len(y),
        "dropped_missing_target": dropped,
        "features": len(X.columns),
    }
    if is_classification(cfg):
        counts = y.value_counts().sort_index()
        if len(counts) < 2:
            raise NotEnoughData(
                f"target {cfg.dataset.target.name!r} has a single class ({_plain(counts.index[0])!r}) in "
                f"{len(y)} training rows; a classifier needs both classes"
            )
        if len(counts) > 2:
            raise SchemaMismatch(
                f"target {cfg.dataset.target.name!r} has {len(counts)} classes; only binary classification is "
                "supported: map the classes to two, or use task: regression"
            )
        info["class_counts"] = {str(_plain(k)): int(v) for k, v in counts.items()}
    else:
        info["target_mean"] = float(y.mean())
        info["target_std"] = float(y.std(ddof=0))

    model = build_pipeline(cfg)
    started = time.perf_counter()
    model.fit(X, y)
    info["seconds"] = round(time.perf_counter() - started, 3)
    if is_classification(cfg):
        positive = positive_class(model, cfg)
        # Text, like evaluate()'s, so numeric-only consumers (MLflow metrics) skip it.
        info["positive_label"] = str(_plain(positive))
        info["positive_rate"] = float((y == positive).mean())
    return model, info


def positive_class(model: Pipeline, cfg: ModelConfig) -> Any:
    """The fitted class that counts as positive: target.positive_label, else the larger class label."""
    classes = list(model.classes_)
    wanted = positive_text(cfg.dataset.target.positive_label)
    if wanted is None:
        return classes[-1]
    by_text = {str(c): c for c in classes}
    # A boolean label in the config against 0/1 labels in the data (or the reverse) names the same class.
    aliases = {"True": "1", "1": "True", "False": "0", "0": "False"}
    for candidate in (wanted, wanted.lower(), aliases.get(wanted)):
        if candidate in by_text:
            return by_text[candidate]
    lowered = {str(c).lower(): c for c in classes}
    if wanted.lower() in lowered:
        return lowered[wanted.lower()]
    raise SchemaMismatch(
        f"schema.target.positive_label {cfg.dataset.target.positive_label!r} is not one of the classes in the "
        f"labels ({', '.join(map(repr, by_text))}): set it to one of them"
    )


def predict_scores(model: Pipeline, X: pd.DataFrame, cfg: ModelConfig) -> np.ndarray:
    """Positive-class probabilities (classification) or predictions (regression), as float64."""
    features = feature_frame(X, cfg)
    if is_classification(cfg):
        column = list(model.classes_).index(positive_class(model, cfg))
        return np.asarray(model.predict_proba(features)[:, column], dtype="float64")
    return np.asarray(model.predict(features), dtype="float64")
