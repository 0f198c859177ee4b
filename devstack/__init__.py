"""Embedded local stack for development and demos: S3 (moto), an SMTP sink and Airflow.

Everything listens on 127.0.0.1 only and keeps its state under the repository's ignored
``.state`` folder (or ``$DRIFTWATCH_STATE_DIR``). See ``python -m devstack.stack --help``.
"""
