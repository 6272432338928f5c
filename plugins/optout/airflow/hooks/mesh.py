"""``MeshHook``: mesh-client behind an Airflow connection of type ``mesh``.

Connection fields: host = the MESH URL (``https://msg.intspineservices.nhs.uk`` for INT,
``https://mesh-sync.spineservices.nhs.uk`` for live), login = our mailbox ID, password = its password.
Extras, read from an explicit list of keys only (see ``MESH_EXTRAS`` in ``optout.airflow.provider``):
``shared_secret``, ``client_cert``, ``client_key``, ``ca_cert`` (paths to PEM files on the worker),
``service_mailbox`` (the national service's mailbox: required, there is no default) and
``workflow_id`` (default ``SPINE_NTT_UPHOLDING``). The password and shared secret are masked by
Airflow's secrets masker (their names say so) and registered with it again here, so no log shows them.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from optout.airflow.provider import MESH_EXTRAS

if TYPE_CHECKING:
    from mesh_client import MeshClient

    from optout.mesh_transport import MeshSettings


class MeshHook(BaseHook):
    """Connect to MESH as our mailbox.

    :param mesh_conn_id: the Airflow connection (type ``mesh``) to use.
    :param max_retries: HTTP retries mesh-client makes itself on 429/5xx (never for the first chunk of a send).
    """

    conn_name_attr = "mesh_conn_id"
    default_conn_name = "mesh_default"
    conn_type = "mesh"
    hook_name = "MESH"

    def __init__(self, mesh_conn_id: str = default_conn_name, *, max_retries: int = 3) -> None:
        super().__init__()
        self.mesh_conn_id = mesh_conn_id
        self.max_retries = max_retries
        self._client: MeshClient | None = None

    @cached_property
    def settings(self) -> MeshSettings:
        """The connection as library settings; only the keys in ``MESH_EXTRAS`` are read from extras."""
        from airflow.sdk.log import mask_secret

        from optout.errors import InputError
        from optout.mesh_transport import WORKFLOW_ID, MeshSettings

        conn = self.get_connection(self.mesh_conn_id)
        extras = conn.extra_dejson
        if _extra(extras, "shared_key") is not None:
            mask_secret(str(_extra(extras, "shared_key")))
            raise InputError(
                f"connection {self.mesh_conn_id}: rename the extra shared_key to shared_secret "
                "(Airflow's secrets masker hides a field by its name, and shared_key is not one it hides)",
                field="shared_key",
            )
        values = {key: _extra(extras, key) for key in MESH_EXTRAS}
        for secret in (conn.password, values["shared_secret"]):
            if secret:
                mask_secret(secret)
        return MeshSettings(
            url=_url(conn.host or "", conn.port, conn.schema),
            mailbox=conn.login or "",
            password=conn.password or "",
            service_mailbox=values["service_mailbox"] or "",
            shared_key=values["shared_secret"],
            client_cert=values["client_cert"],
            client_key=values["client_key"],
            ca_cert=values["ca_cert"],
            workflow_id=values["workflow_id"] or WORKFLOW_ID,
        )

    def get_conn(self) -> MeshClient:
        """The MeshClient for this connection, created once per hook."""
        if self._client is None:
            from optout.mesh_transport import connect

            self._client = connect(self.settings, max_retries=self.max_retries)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def test_connection(self) -> tuple[bool, str]:
        """Authenticate with MESH (its handshake); the message never contains a secret."""
        from optout.errors import OptOutError
        from optout.mesh_transport import handshake

        try:
            handshake(self.get_conn())
        except OptOutError as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"could not reach MESH with connection {self.mesh_conn_id}: {type(exc).__name__}: {exc}"
        finally:
            self.close()
        return True, f"MESH accepted mailbox {self.settings.mailbox} at {self.settings.url}"


def _extra(extras: dict[str, Any], key: str) -> str | None:
    """An extra by its plain name, or the ``extra__mesh__`` form older UIs save."""
    value = extras.get(key, extras.get(f"extra__mesh__{key}"))
    return str(value).strip() or None if value is not None else None


def _url(host: str, port: int | None, scheme: str | None) -> str:
    """The host field may hold a whole URL; otherwise https (or the schema field) and the port are added."""
    host = host.strip().rstrip("/")
    if "://" not in host and host:
        host = f"{scheme or 'https'}://{host}"
    if port and host.count(":") < 2:
        host = f"{host}:{port}"
    return host
