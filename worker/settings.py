"""The worker's three settings: where the broker is, where its node is, and the node token."""

import os
from dataclasses import dataclass
from urllib.parse import urlparse


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class WorkerSettings:
    broker_url: str
    node_url: str
    node_token: str

    @classmethod
    def load(
        cls,
        *,
        broker_url: str | None = None,
        node_url: str | None = None,
        node_token: str | None = None,
    ) -> "WorkerSettings":
        """Command-line values win over the WORKER_* environment variables."""
        values = {
            "broker_url": broker_url or os.environ.get("WORKER_BROKER_URL", ""),
            "node_url": (node_url or os.environ.get("WORKER_NODE_URL", "")).rstrip("/"),
            "node_token": node_token or os.environ.get("WORKER_NODE_TOKEN", ""),
        }
        missing = [name for name, value in values.items() if not value]
        if missing:
            names = ", ".join(
                f"--{name.replace('_', '-')} / WORKER_{name.upper()}" for name in missing
            )
            raise SettingsError(f"Missing worker settings: {names}.")
        node = urlparse(values["node_url"])
        if node.scheme not in ("http", "https") or not node.netloc:
            raise SettingsError(
                f"--node-url must be the node's http(s) base URL, got {values['node_url']!r}."
            )
        if "://" not in values["broker_url"]:
            raise SettingsError(
                f"--broker-url must be a URL such as redis://host:6379/0, "
                f"got {values['broker_url']!r}."
            )
        return cls(**values)
