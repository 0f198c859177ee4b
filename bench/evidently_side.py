"""Evidently's side of the bench: DataDriftPreset on the full batch, and how far its decisions agree with ours."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from bench.drift_data import bench_config
from bench.measure import Steps, decisions, run_child

DISPLAY_NAMES = {
    "Wasserstein distance (normed)": "wasserstein",
    "K-S p_value": "ks",
    "PSI": "psi",
    "Jensen-Shannon distance": "jensenshannon",
    "Kullback-Leibler divergence": "kl_div",
    "Hellinger distance": "hellinger",
    "chi-square p_value": "chisquare",
}


def _read_plain(spec: dict[str, Any], cfg: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference and the batch as plain pandas reads them (no categoricals), features only."""
    names = cfg.dataset.feature_names
    return pd.read_parquet(spec["reference"], columns=names), pd.read_parquet(spec["current"], columns=names)


def _evidently_decisions(report_json: dict[str, Any]) -> dict[str, Any]:
    statuses = {t["metric_config"]["metric_id"]: t["status"] for t in report_json["tests"] if t.get("id") == "drift"}
    out = {}
    for metric in report_json["metrics"]:
        config = metric.get("config", {})
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        method = config.get("method")
        out[config["column"]] = {
            "method": DISPLAY_NAMES.get(method, method),
            "threshold": config.get("threshold"),
            "score": float(metric["value"]),
            "drifted": statuses.get(metric["id"]) in ("FAIL", "WARNING"),
        }
    return out


def child_evidently_default(spec: dict[str, Any]) -> dict[str, Any]:
    steps, cfg = Steps(), bench_config()
    reference, current = _read_plain(spec, cfg)
    from evidently import DataDefinition, Dataset, Report  # imports are not part of the measurement
    from evidently.presets import DataDriftPreset

    def run() -> dict[str, Any]:
        definition = DataDefinition(
            numerical_columns=cfg.dataset.numeric_features, categorical_columns=cfg.dataset.categorical_features
        )
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
        )
        return json.loads(snapshot.json())

    report_json = steps.run("Evidently DataDriftPreset() (full batch)", run)
    return {"steps": steps.rows, "evidently": _evidently_decisions(report_json)}


def child_evidently_configured(spec: dict[str, Any]) -> dict[str, Any]:
    from driftwatch import drift

    steps, cfg = Steps(), bench_config()
    reference, current = _read_plain(spec, cfg)
    import evidently.presets  # noqa: F401  (imports are not part of the measurement)

    result, html, report_json = steps.run(
        "drift.run_drift_report (full batch)", lambda: drift.run_drift_report(reference, current, cfg)
    )
    return {"steps": steps.rows, "evidently": decisions(result), "html_bytes": len(html.encode())}


def agreement(fast: dict[str, Any], evidently: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for name, ours in fast.items():
        theirs = evidently.get(name)
        if theirs is None:
            continue
        rows.append(
            {
                "feature": name,
                "method": ours["method"],
                "evidently_method": theirs["method"],
                "threshold": ours["threshold"],
                "evidently_score": theirs["score"],
                "fast_score": ours["score"],
                "abs_diff": abs(theirs["score"] - ours["score"]),
                "evidently_drifted": theirs["drifted"],
                "fast_drifted": ours["drifted"],
                "agree": theirs["drifted"] == ours["drifted"],
            }
        )
    agreeing = sum(r["agree"] for r in rows)
    return {
        "agree": agreeing,
        "columns": len(rows),
        "share": agreeing / len(rows) if rows else None,
        "per_column": rows,
    }


def _run(name: str, run_spec: dict[str, Any]) -> dict[str, Any]:
    result = run_child(name, run_spec, timeout=7200)
    extra = {"html_bytes": result["html_bytes"]} if "html_bytes" in result else {}
    return {
        "seconds": result["steps"][0]["seconds"],
        "cpu_seconds": result["steps"][0]["cpu_seconds"],
        "process_peak_mb": result["process_peak_mb"],
        **extra,
        "decisions": result["evidently"],
    }


def run_evidently(entry: dict[str, Any], run_spec: dict[str, Any]) -> None:
    """Both Evidently runs on the full batch, their speed-ups over the fast decision and the agreement."""
    print("  Evidently DataDriftPreset() on the full batch...", flush=True)
    entry["evidently_default"] = ev = _run("evidently_default", run_spec)
    print("  Evidently configured (drift.run_drift_report) on the full batch...", flush=True)
    entry["evidently_configured"] = evc = _run("evidently_configured", run_spec)
    entry["speedup_default"] = ev["seconds"] / entry["fast_decision_seconds"]
    entry["speedup_configured"] = evc["seconds"] / entry["fast_decision_seconds"]
    # The fast path's CPU time counts all its threads: a conservative ratio.
    entry["cpu_speedup_default"] = ev["cpu_seconds"] / entry["fast_decision_cpu_seconds"]
    entry["agreement_configured"] = agreement(entry["fast"]["fast"], evc["decisions"])
    entry["agreement_default"] = agreement(entry["fast_default"]["fast"], ev["decisions"])
