"""The cluster policy (entry point ``airflow.policy``)."""

from __future__ import annotations
