"""`python -m worker`: inventory and connectivity checks, run as a host admin would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def worker(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("WORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=REPO,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inventory_reports_the_host_and_explains_missing_gpus():
    result = worker("inventory")
    assert result.returncode == 0, result.stderr
    inventory = json.loads(result.stdout)
    assert inventory["cpu_count"] >= 1 and inventory["memory_bytes"] > 0
    if inventory["gpus"]:
        assert inventory["driver_version"]
        assert all(gpu["memory_bytes"] > 0 and gpu["uuid"] for gpu in inventory["gpus"])
    else:
        assert inventory["gpu_unavailable_reason"]


def test_check_lists_missing_settings():
    result = worker("check")
    assert result.returncode == 2
    for name in ["--broker-url", "--node-url", "--node-token"]:
        assert name in result.stderr


def test_check_refuses_a_node_url_that_is_not_http():
    result = worker(
        "check", "--broker-url", "redis://127.0.0.1:6379/0", "--node-url", "ftp://node",
        "--node-token", "t",
    )  # fmt: skip
    assert result.returncode == 2
    assert "http(s) base URL" in result.stderr


@pytest.mark.django_db
def test_check_passes_against_a_live_node_and_redis(live_server, settings):
    result = worker(
        "check",
        env={
            "WORKER_BROKER_URL": settings.CELERY_BROKER_URL,
            "WORKER_NODE_URL": live_server.url,
            "WORKER_NODE_TOKEN": "node-token",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].startswith("ok   broker: redis://")
    assert result.stdout.splitlines()[1].startswith(f"ok   node: {live_server.url}")


def test_check_fails_clearly_when_nothing_answers():
    result = worker(
        "check", "--broker-url", "redis://127.0.0.1:1/0", "--node-url", "http://127.0.0.1:1",
        "--node-token", "t",
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL broker:") and lines[1].startswith("FAIL node:")


def test_worker_package_never_imports_django():
    code = (
        "import sys, worker.__main__;"
        "print(any(m.startswith(('django', 'apps')) for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr
