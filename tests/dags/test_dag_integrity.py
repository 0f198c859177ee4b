"""DAG integrity: every DAG file imports cleanly, is documented, retries, and parses light."""

from __future__ import annotations

import ast
import json
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


def test_params_are_described(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for name in dag.params:
            param = dag.params.get_param(name)
            schema = param.schema
            assert param.description, f"{dag_id}: Param {name} has no description"
            assert schema.get("title"), f"{dag_id}: Param {name} has no title"
            assert "type" in schema, f"{dag_id}: Param {name} has no type"


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
