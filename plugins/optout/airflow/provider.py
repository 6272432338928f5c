"""Provider metadata (entry point ``apache_airflow_provider``): connection types, the ``[optout]`` options.

The connection forms are declared here (``conn-fields``, ``ui-field-behaviour``), which is how Airflow 3.2+
builds them without importing the hooks or any form library. Every secret field's name contains one of
the words Airflow's secrets masker hides (``password``, ``secret``, ...), so its value never shows in a
log or the UI.
"""

from __future__ import annotations

from typing import Any

from optout import __version__


def _text(label: str, description: str, *, secret: bool = False, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"
    if default is not None:
        schema["default"] = default
    return {"label": label, "schema": schema, "description": description}


# The only extras MeshHook reads; anything else in a connection's extra is ignored.
MESH_EXTRAS: dict[str, dict[str, Any]] = {
    "service_mailbox": _text(
        "Service mailbox ID",
        "The national opt-out service's MESH mailbox (live: X26HC065; INT: the ID NHS England gives with your "
        "INT mailbox). Required: there is no default.",
    ),
    "shared_secret": _text(
        "Shared secret", "The MESH environment's shared key for the auth token (from NHS England).", secret=True
    ),
    "client_cert": _text("Client certificate", "Path on the worker to our MESH client certificate (PEM)."),
    "client_key": _text("Client key", "Path on the worker to the client certificate's private key (PEM)."),
    "ca_cert": _text("CA bundle", "Path to the CA bundle; empty uses mesh-client's bundle for the NHS endpoints."),
    "workflow_id": _text("Workflow ID", "MESH workflow of the check.", default="SPINE_NTT_UPHOLDING"),
}

MESH_UI_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"host": "MESH URL", "login": "Mailbox ID", "password": "Mailbox password"},
    "placeholders": {"host": "https://msg.intspineservices.nhs.uk", "login": "X26ABC1"},
}


STORE_EXTRAS: dict[str, dict[str, Any]] = {
    "dialect": _text(
        "SQLAlchemy dialect",
        "Driver of the store's database: postgresql+psycopg2 (default), or sqlite with the file's path as host.",
        default="postgresql+psycopg2",
    ),
}

STORE_UI_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": [],
    "relabeling": {"schema": "Database"},
    "placeholders": {"host": "postgres.example.nhs.uk", "schema": "optout"},
}


def _option(description: str, example: str | None, default: str | None, *, sensitive: bool = False) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": "0.1.0",
        "type": "string",
        "example": example,
        "default": default,
        "sensitive": sensitive,
    }


CONFIG: dict[str, Any] = {
    "optout": {
        "description": "National Data Opt-out: where the store is and what the cluster policy treats as an export.",
        "options": {
            "store_url": _option(
                "SQLAlchemy URL of the opt-out store and disclosure ledger, used when the connection "
                "optout_store_default is not defined (then OPTOUT_STORE_URL, then a SQLite file in the data "
                "folder). It may hold a password, so it is sensitive.",
                "postgresql+psycopg2://optout:***@db.example.nhs.uk/optout",
                None,
                sensitive=True,
            ),
            "organisation": _option(
                "The organisation's name, printed on the evidence pack and the data uses register.",
                "Example NHS Foundation Trust",
                None,
            ),
            "block_overdue_flows": _option(
                "true: a flow past its review date (or never reviewed) may not send. Default false.",
                "true",
                None,
            ),
            "unscoped_dags": _option(
                "Comma-separated DAG id globs that may load without declaring a scope (tags=[CPI_TAG] or "
                "no_cpi(dag, reason)): grandfathered DAGs, listed on the governance page. Empty: none.",
                "legacy_*,reporting_daily",
                "",
            ),
            "retain_outputs": _option(
                "How long filtered extract folders (the data itself) are kept before the nightly retention "
                "deletes them, one ledger entry each: a duration such as 30d. Empty: 30d.",
                "30d",
                None,
            ),
            "retain_validation": _option(
                "How long validation folders (the proof's result and Data Docs, counts only) are kept. Empty: 400d.",
                "400d",
                None,
            ),
            "retain_versions": _option(
                "How long the NHS numbers of old list versions are kept (never the version in use; the "
                "version's dates and counts stay). Empty: 30d.",
                "30d",
                None,
            ),
            "export_operators": _option(
                "Comma-separated operator class names (any class in a task's MRO) that the cluster policy "
                "treats as exports in a DAG tagged as handling confidential patient information. Empty: "
                "GatedExportOperator and the common transfers (SFTP, S3, GCS, Wasb, GenericTransfer, email).",
                "GatedExportOperator,SFTPOperator,MyUploadOperator",
                "",
            ),
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "optout",
        "name": "National Data Opt-out",
        "description": "Apply England's National Data Opt-out: MESH refresh, filtering, validation, gated export.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": "optout.airflow.hooks.mesh.MeshHook",
                "hook-name": "MESH",
                "connection-type": "mesh",
                "conn-fields": MESH_EXTRAS,
                "ui-field-behaviour": MESH_UI_BEHAVIOUR,
            },
            {
                "hook-class-name": "optout.airflow.hooks.store.OptOutStoreHook",
                "hook-name": "Opt-out store",
                "connection-type": "optout_store",
                "conn-fields": STORE_EXTRAS,
                "ui-field-behaviour": STORE_UI_BEHAVIOUR,
            },
        ],
        "config": CONFIG,
        # optout://cleared-list: the list version the refresh published (no handler: the URI is a name)
        "asset-uris": [{"schemes": ["optout"], "handler": None}],
        "extra-links": [
            "optout.airflow.operators.links.GovernancePageLink",
            "optout.airflow.operators.links.DataDocsLink",
        ],
    }
