"""The Airflow plugin (entry point ``airflow.plugins``)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class OptOutPlugin(AirflowPlugin):
    name = "optout"
