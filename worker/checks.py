"""Connectivity checks a host admin runs before putting a worker into a pool."""

import json
import urllib.error
import urllib.request

from kombu import Connection

from worker.settings import WorkerSettings


def check_broker(settings: WorkerSettings, *, timeout: float = 5.0) -> str:
    with Connection(settings.broker_url, connect_timeout=timeout) as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout)
        return connection.as_uri()


def check_node(settings: WorkerSettings, *, timeout: float = 5.0) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the URL was checked to be http(s)
        f"{settings.node_url}/healthz", headers={"Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


def run_checks(settings: WorkerSettings) -> list[tuple[str, bool, str]]:
    """Returns (check, passed, detail) for the broker and the node."""
    results = []
    try:
        results.append(("broker", True, check_broker(settings)))
    except Exception as error:
        results.append(("broker", False, f"{type(error).__name__}: {error}"))
    try:
        body = check_node(settings)
        results.append(("node", body.get("status") == "ok", f"{settings.node_url}: {body}"))
    except (urllib.error.URLError, OSError, ValueError) as error:
        results.append(("node", False, f"{settings.node_url}: {error}"))
    return results
