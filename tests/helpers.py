"""Helpers shared by the DAG-driving test families (integration, datasets)."""

from __future__ import annotations

from driftwatch import layout


def asset_events(cfg) -> list[dict]:
    """The extras of every retraining-request Asset event emitted for this model."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == layout.drift_asset_name(cfg))
            .all()
        )
        return [dict(r.extra or {}) for r in rows]
