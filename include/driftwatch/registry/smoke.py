"""Smoke test of a registered model in a fresh Python process, and that process's entry point.

The child runs as `python -m driftwatch.registry smoke ...` (see __main__.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftwatch.registry.common import RegistryError, TamperedArtifactError, _client, _parse_model_uri
from driftwatch.registry.store import _download_verified

if TYPE_CHECKING:
    import pandas as pd

_INCLUDE_DIR = Path(__file__).resolve().parents[2]


def smoke_test(
    tracking_uri: str,
    model_uri: str,
    sample: pd.DataFrame,
    *,
    max_latency_ms: float,
    registry_uri: str | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Load the registered model in a fresh Python process and predict on `sample`.

    A fresh process proves the model loads from the registry alone, with nothing borrowed from
    the training process's memory. Failed checks come back as {passed: False, problems}; only
    infrastructure errors (process crash, unreachable registry, unknown version) raise.
    """
    # Resolve aliases here: an unknown version fails fast without a process, and the child
    # tests one fixed version even if the alias moves meanwhile.
    mv = _parse_model_uri(_client(tracking_uri, registry_uri), model_uri)
    pinned_uri = f"models:/{mv.name}/{mv.version}"
    with tempfile.TemporaryDirectory(prefix="driftwatch-smoke-") as tmp:
        sample_path, result_path = Path(tmp) / "sample.parquet", Path(tmp) / "result.json"
        sample.to_parquet(sample_path, index=False)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            # Progress bars would crowd the stderr tail reported on failure.
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PYTHONPATH": os.pathsep.join(p for p in (str(_INCLUDE_DIR), os.environ.get("PYTHONPATH")) if p),
        }
        if registry_uri:
            env["MLFLOW_REGISTRY_URI"] = registry_uri
        command = [
            sys.executable,
            "-m",
            "driftwatch.registry",
            "smoke",
            "--model-uri",
            pinned_uri,
            "--sample",
            str(sample_path),
            "--max-latency-ms",
            repr(float(max_latency_ms)),
            "--output",
            str(result_path),
        ]
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise RegistryError(f"smoke test of {model_uri} did not finish within {timeout_s:.0f} s") from None
        if proc.returncode != 0 or not result_path.is_file():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RegistryError(f"smoke test process for {model_uri} failed (exit {proc.returncode}):\n{tail}")
        return {**json.loads(result_path.read_text(encoding="utf-8")), "model_uri": model_uri}


def _output_problems(output: Any, rows: int) -> list[str]:
    """Length, dtype and NaN checks on a model's predictions."""
    import numpy as np

    array = np.asarray(output)
    problems: list[str] = []
    if array.ndim == 0 or len(array) != rows:
        problems.append(f"output has {0 if array.ndim == 0 else len(array)} rows for {rows} input rows")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        problems.append(f"output dtype {array.dtype} is not numeric")
    elif np.isnan(array.astype(float)).any():
        problems.append(f"output has {int(np.isnan(array.astype(float)).sum())} NaN values")
    return problems


def _run_smoke(
    tracking_uri: str, registry_uri: str | None, model_uri: str, sample: pd.DataFrame, max_latency_ms: float
) -> dict[str, Any]:
    """The checks run inside the fresh process; registry errors propagate as infrastructure errors."""
    import mlflow.sklearn
    from mlflow.models import Model

    client = _client(tracking_uri, registry_uri)
    mv = _parse_model_uri(client, model_uri)
    result: dict[str, Any] = {
        "passed": False,
        "model_uri": model_uri,
        "version": str(mv.version),
        "rows": len(sample),
        "latency_ms": None,
        "load_ms": None,
        "max_latency_ms": max_latency_ms,
        "pid": os.getpid(),
        "problems": [],
    }
    problems: list[str] = result["problems"]
    with tempfile.TemporaryDirectory(prefix="driftwatch-smoke-model-") as tmp:
        try:
            local = _download_verified(client, mv, Path(tmp), tracking_uri)
        except TamperedArtifactError as err:
            problems.append(str(err))
            return result
        signature = Model.load(str(local / "MLmodel")).signature
        if signature is None:
            problems.append("model has no signature")
        else:
            absent = [c for c in signature.inputs.input_names() if c not in sample.columns]
            if absent:
                problems.append(f"sample lacks signature columns {absent}")
        started = time.perf_counter()
        try:
            model = mlflow.sklearn.load_model(str(local))
        except Exception as err:  # a model that cannot load is the failure this test exists to catch
            problems.append(f"model does not load: {type(err).__name__}: {err}")
            return result
        result["load_ms"] = round((time.perf_counter() - started) * 1000, 3)

    predict = model.predict_proba if hasattr(model, "predict_proba") else model.predict
    result["output"] = predict.__name__
    try:
        # A one-row call first pays the one-off lazy imports and thread-pool start-up, which
        # can take seconds on a busy host; the budget is for predicting, not for warming up.
        started = time.perf_counter()
        predict(sample.head(1))
        result["warmup_ms"] = round((time.perf_counter() - started) * 1000, 3)
        started = time.perf_counter()
        output = predict(sample)
        latency_ms = (time.perf_counter() - started) * 1000
    except Exception as err:
        problems.append(f"prediction failed: {type(err).__name__}: {err}")
        return result
    result["latency_ms"] = round(latency_ms, 3)
    problems.extend(_output_problems(output, len(sample)))
    if latency_ms > max_latency_ms:
        problems.append(
            f"predicting {len(sample)} rows took {latency_ms:.1f} ms, over the {max_latency_ms:g} ms budget"
        )
    result["passed"] = not problems
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m driftwatch.registry smoke --model-uri ... --sample ... --output ...`."""
    parser = argparse.ArgumentParser(prog="python -m driftwatch.registry")
    commands = parser.add_subparsers(dest="command", required=True)
    smoke = commands.add_parser("smoke", help="smoke-test a registered model (uses MLFLOW_TRACKING_URI)")
    smoke.add_argument("--model-uri", required=True)
    smoke.add_argument("--sample", required=True, help="Parquet file of feature rows")
    smoke.add_argument("--max-latency-ms", type=float, required=True)
    smoke.add_argument("--output", required=True, help="where to write the JSON result")
    args = parser.parse_args(argv)

    import pandas as pd

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        parser.error("MLFLOW_TRACKING_URI is not set")
    sample = pd.read_parquet(args.sample)
    result = _run_smoke(
        tracking_uri, os.environ.get("MLFLOW_REGISTRY_URI"), args.model_uri, sample, args.max_latency_ms
    )
    Path(args.output).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return 0
