"""Config loading: valid files load, and every error names the file and the bad field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from driftwatch.config import ConfigError, load_config, load_configs, parse_config

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "models" / "credit_default.yaml"


@pytest.fixture
def raw():
    return yaml.safe_load(DEMO.read_text())


def errors_of(raw_config) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(raw_config, source="model.yaml")
    return str(err.value)


def test_demo_config_loads_with_derived_defaults():
    cfg = load_config(DEMO)
    assert cfg.name == "credit_default"
    assert cfg.storage.output_prefix == "driftwatch/credit_default/"
    assert cfg.drift_rule("channel") == ("chisquare", 0.05)
    assert cfg.drift_rule("age") == ("wasserstein", 0.1)
    assert "email" not in cfg.dataset.feature_names


def test_shipped_configs_all_load():
    assert [c.name for c in load_configs(REPO / "config" / "models")] == ["credit_default"]


def test_bad_feature_threshold_names_the_feature(raw):
    raw["schema"]["features"][2]["drift_threshold"] = -1
    message = errors_of(raw)
    assert "model.yaml" in message
    assert "schema.features[loan_amount].drift_threshold" in message


def test_unknown_field_is_refused(raw):
    raw["drift"]["treshold"] = 0.3
    assert "drift.treshold" in errors_of(raw)


def test_method_that_does_not_fit_the_type(raw):
    raw["schema"]["features"][0]["drift_method"] = "chisquare"
    message = errors_of(raw)
    assert "schema.features[age]" in message and "does not apply to numeric" in message


def test_pii_cannot_be_a_feature(raw):
    raw["schema"]["pii_columns"].append("age")
    assert "PII columns cannot be features" in errors_of(raw)


def test_bad_recipient_and_bucket_are_both_reported(raw):
    raw["alerts"]["recipients"] = ["not-an-address"]
    raw["storage"]["bucket"] = "Bad_Bucket"
    message = errors_of(raw)
    assert "alerts.recipients" in message and "storage.bucket" in message


def test_output_under_incoming_is_refused(raw):
    raw["storage"]["output_prefix"] = "incoming/driftwatch/"
    assert "raw batches are read-only" in errors_of(raw)


def test_missing_section_is_named(raw):
    del raw["alerts"]
    assert "alerts: Field required" in errors_of(raw)


def test_retries_below_two_refused(raw):
    raw["monitor"]["retries"] = 1
    assert "monitor.retries" in errors_of(raw)


def test_load_configs_reports_every_bad_file_and_duplicate_names(tmp_path, raw):
    good = copy.deepcopy(raw)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(good))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(good))
    broken = copy.deepcopy(raw)
    broken["drift"]["dataset_drift_share"] = 2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(broken))
    (tmp_path / "d.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError) as err:
        load_configs(tmp_path)
    message = str(err.value)
    assert "c.yaml" in message and "drift.dataset_drift_share" in message
    assert "d.yaml: not valid YAML" in message
    assert "'credit_default' is used by more than one config file" in message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_configs(tmp_path / "nope")


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["a", "list"], source="x.yaml")
