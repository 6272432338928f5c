"""Provider metadata (entry point ``apache_airflow_provider``): makes the ``mesh`` connection type known.

The connection form is declared here (``conn-fields``, ``ui-field-behaviour``), which is how Airflow 3.2+
builds it without importing the hook or any form library.
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
    "shared_key": _text("Shared key", "The MESH environment's shared secret for the auth token.", secret=True),
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
            }
        ],
    }
