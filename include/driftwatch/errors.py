"""The errors a retry cannot fix. Airflow tasks fail on their first attempt with these, naming the fix.

Everything else (a refused connection, a 5xx, a timeout) is left to the task's retries.
Only the standard library is imported: DAG files load configs, and ConfigError lives on this.
"""

from __future__ import annotations


class PermanentError(Exception):
    """Deterministic: the same inputs fail the same way, so the message must say what to change."""


class SchemaMismatch(PermanentError, ValueError):
    """Data whose columns or types do not fit the model's schema."""


class NotEnoughData(PermanentError, ValueError):
    """Too few validated, labelled rows or batches to train or evaluate a model."""


class ReferenceMismatch(PermanentError):
    """The drift reference names another model version than the champion, and cannot be repaired."""
