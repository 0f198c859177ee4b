"""DAG integrity: every DAG file imports cleanly, is documented, retries, and parses light."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY = {"pandas", "numpy", "sklearn", "scipy", "evidently", "great_expectations", "mlflow", "pyarrow"}

# Runs in a fresh interpreter: any socket connection or connection lookup while parsing fails loudly.
_PARSE_PROBE = r"""
import json, socket, sys, time, importlib.util
def _refuse(*args, **kwargs):
    raise RuntimeError(f"network access while parsing a DAG file: {args[1:] if len(args) > 1 else args}")
socket.socket.connect = _refuse
socket.create_connection = _refuse
import airflow.sdk
from airflow.sdk import Asset, Param, dag, task
from airflow.sdk.bases.hook import BaseHook
from airflow.sdk.definitions.connection import Connection
def _no_conn(*args, **kwargs):
    raise RuntimeError("a connection was fetched while parsing a DAG file")
BaseHook.get_connection = classmethod(_no_conn)
Connection.get = classmethod(_no_conn)
before = set(sys.modules)
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
from airflow.sdk import DAG
dags = sorted(v.dag_id for v in vars(module).values() if isinstance(v, DAG))
new_modules = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print(json.dumps({"seconds": elapsed, "dags": dags, "new_modules": new_modules}))
"""


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, "\n".join(f"{k}: {v}" for k, v in dagbag.import_errors.items())


def test_every_configured_model_has_its_dags(dagbag):
    from driftwatch.config import load_configs

    names = [cfg.name for cfg in load_configs()]
    assert names, "no model config found"
    for name in names:
        assert {f"monitor__{name}", f"retrain__{name}"} <= set(dagbag.dag_ids)


def test_dags_have_tags_docs_and_retries(dagbag):
    assert dagbag.dags, "the DagBag is empty"
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} has no real doc_md"
        for task in dag.tasks:
            retries = task.retries
            assert isinstance(retries, int), f"{dag_id}.{task.task_id}: retries is unset ({retries!r})"
            assert retries >= 2, f"{dag_id}.{task.task_id}: retries is {retries}, expected at least 2"


# Tasks that wait on something outside (a batch landing, a person) are bounded by their own timeout.
WAITS = {"wait_for_batch", "await_approval"}


def test_no_task_or_run_can_hang(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.dagrun_timeout is not None, f"{dag_id} has no dagrun_timeout"
        for task in dag.tasks:
            timeout = task.execution_timeout
            if task.task_id in WAITS:
                assert timeout is None, f"{dag_id}.{task.task_id}: its own timeout, not execution_timeout, bounds it"
                continue
            assert timeout is not None, f"{dag_id}.{task.task_id} has no execution_timeout"
            assert timeout < dag.dagrun_timeout, f"{dag_id}.{task.task_id}: execution_timeout past the run's deadline"


def _types(schema: dict) -> set[str]:
    kinds = schema.get("type", [])
    return {kinds} if isinstance(kinds, str) else set(kinds)


def _bound(schema: dict, key: str) -> float | None:
    """A numeric bound, at the top of the schema or under allOf (where the form does not clamp it)."""
    found = [s[key] for s in [schema, *schema.get("allOf", [])] if key in s]
    return found[0] if found else None


def _wrong_values(schema: dict) -> list[tuple[object, str]]:
    """Values the Param must refuse, each with the words jsonschema's refusal contains."""
    kinds, wrong = _types(schema), []
    if kinds & {"number", "integer"}:
        if (high := _bound(schema, "maximum")) is not None:
            wrong.append((high + 1, "greater than the maximum"))
        if (low := _bound(schema, "minimum")) is not None:
            wrong.append((low - (1 if "integer" in kinds else 0.001), "less than the minimum"))
    if "string" in kinds:
        if schema.get("minLength", 0) > 1:
            wrong.append(("x" * (schema["minLength"] - 1), "is too short"))
        if "maxLength" in schema:
            wrong.append(("x" * (schema["maxLength"] + 1), "is too long"))
        if schema.get("format") == "date":
            wrong.append(("2026-02-30", "is not a 'date'"))
        if "pattern" in schema:
            value = next(v for v in ("x!", "1a", " ") if not re.search(schema["pattern"], v))
            wrong.append((value, "does not match"))
    if "array" in kinds and "enum" in schema.get("items", {}):
        wrong.append((["no_such_value"], "is not one of"))
    return wrong


def _valid_conf(params) -> dict:
    """A conf that passes: the defaults, and a plain valid value for a required Param without one."""
    from jsonschema import ValidationError

    conf = {}
    for name in params:
        try:
            params.get_param(name).resolve(raises=True)
        except (ValidationError, ValueError):  # ValueError: no default at all
            schema = params.get_param(name).schema
            conf[name] = "2026-01-05" if schema.get("format") == "date" else "x" * max(schema.get("minLength", 1), 1)
    params.deep_merge(conf).validate()
    return conf


def _all_params(dagbag):
    assert dagbag.dags, "the DagBag is empty"
    for dag_id, dag in dagbag.dags.items():
        for name in dag.params:
            yield dag_id, dag, name, dag.params.get_param(name)


def test_params_have_title_description_type_and_bounds(dagbag):
    for dag_id, _dag, name, param in _all_params(dagbag):
        schema, where = param.schema, f"{dag_id}: Param {name}"
        assert param.description, f"{where} has no description"
        assert schema.get("title"), f"{where} has no title"
        kinds = _types(schema)
        assert kinds - {"null"}, f"{where} has no type"
        if kinds & {"number", "integer"}:
            assert _bound(schema, "minimum") is not None and _bound(schema, "maximum") is not None, (
                f"{where} is a number without both bounds"
            )
            # Airflow's trigger form clamps a top-level minimum/maximum silently: 5 becomes 1.0.
            assert not {"minimum", "maximum"} & set(schema), (
                f"{where}: put its bounds under allOf, or the trigger form clamps a wrong value instead of refusing it"
            )
        if "string" in kinds:
            assert {"format", "pattern", "enum", "maxLength"} & set(schema), f"{where} is a string with no bound"
        if "array" in kinds:
            assert "enum" in schema.get("items", {}) or "maxItems" in schema, f"{where} is an array with no bound"


def test_params_refuse_wrong_values_with_a_message_naming_them(dagbag):
    """The check Airflow runs when a run is created (form, REST API or CLI): the serialized DAG's
    params merged with the run's conf, then validated."""
    from airflow.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    checked = 0
    for dag_id, dag, name, param in _all_params(dagbag):
        served = DagSerialization.from_dict(DagSerialization.to_dict(dag)).params
        valid = _valid_conf(served)
        refusals = _wrong_values(param.schema)
        if "object" not in _types(param.schema):
            refusals.append(({"a": "dict"}, "is not of type"))
        for value, words in refusals:
            with pytest.raises(ParamValidationError) as refused:
                served.deep_merge({**valid, name: value}).validate()
            message = str(refused.value)
            assert f"Invalid input for param {name}: " in message and words in message, (
                f"{dag_id}: {name}={value!r} was refused with {message!r}, expected {words!r}"
            )
            checked += 1
    assert checked >= 20, f"only {checked} wrong values were checked: did the Params lose their bounds?"


def test_a_valid_threshold_override_passes_and_a_wrong_one_does_not(dagbag):
    from airflow.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    served = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags["monitor__credit_default"])).params
    assert served.deep_merge({"drift_share_threshold": 0.5}).validate()["drift_share_threshold"] == 0.5
    assert served.deep_merge({"drift_share_threshold": None}).validate()["drift_share_threshold"] is None
    with pytest.raises(ParamValidationError, match=r"drift_share_threshold: 5 is greater than the maximum of 1\.0"):
        served.deep_merge({"drift_share_threshold": 5}).validate()
    with pytest.raises(ParamValidationError, match=r"drift_share_threshold: 'high' is not of type"):
        served.deep_merge({"drift_share_threshold": "high"}).validate()


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_no_heavy_top_level_imports(path):
    tree = ast.parse(path.read_text())
    offenders = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            offenders += [a.name for a in node.names if a.name.split(".")[0] in HEAVY]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in HEAVY:
            offenders.append(node.module)
    assert not offenders, f"{path.name} imports {offenders} at the top: import them inside the tasks"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parses_in_fresh_interpreter_without_network_or_connections(path, tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "PYTHONPATH": f"{REPO / 'include'}:{REPO / 'plugins'}:{REPO / 'dags'}",
        "DRIFTWATCH_CONFIG_DIR": str(REPO / "config" / "models"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE_PROBE, str(path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{path.name} failed to parse:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dags"], f"{path.name} defines no DAG"
    heavy = HEAVY & set(result["new_modules"])
    assert not heavy, f"parsing {path.name} imported {sorted(heavy)}: keep them inside the tasks"
    print(f"{path.name}: parsed in {result['seconds']:.3f} s (after airflow.sdk), DAGs {result['dags']}")
