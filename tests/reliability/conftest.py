"""The MESH fixtures of the integration tests (mesh-sandbox, the stand-in, a cohort table), for the no-leak run."""

from __future__ import annotations

from tests.integration.conftest import mesh_connection, mesh_sandbox, stand_in
from tests.integration.test_refresh import cohort_db

__all__ = ["cohort_db", "mesh_connection", "mesh_sandbox", "stand_in"]
