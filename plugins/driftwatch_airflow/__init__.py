"""Airflow-side glue for driftwatch: hooks that turn Airflow connections into clients."""
