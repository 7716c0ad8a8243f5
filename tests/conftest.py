import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from rest_framework.test import APIClient

from apps.accounts.models import Membership
from tests.factories import InstitutionFactory, MembershipFactory, UserFactory


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttle counters live in the (Redis) cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def artifact_dir(settings, tmp_path):
    """Artifacts stored in a folder of the test's own, so it can see what was left behind."""
    location = tmp_path / "artifacts"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        },
    }
    return location


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def institution(db):
    return InstitutionFactory(name="Northbridge University", slug="northbridge", country="GB")


@pytest.fixture
def other_institution(db):
    return InstitutionFactory(name="Rheinau Institute", slug="rheinau", country="DE")


@pytest.fixture
def member(institution):
    return MembershipFactory(institution=institution, role=Membership.Role.MEMBER).user


@pytest.fixture
def institution_admin(institution):
    return MembershipFactory(institution=institution, role=Membership.Role.ADMIN).user


@pytest.fixture
def outsider(other_institution):
    """A member of another institution."""
    return MembershipFactory(institution=other_institution, role=Membership.Role.ADMIN).user


@pytest.fixture
def staff(db):
    return UserFactory(username="staffer", is_staff=True)


@pytest.fixture
def actors(member, institution_admin, outsider, staff):
    """Every kind of caller, by name, for permission matrices (None is anonymous)."""
    return {
        "anonymous": None,
        "outsider": outsider,
        "member": member,
        "institution_admin": institution_admin,
        "staff": staff,
    }


@pytest.fixture
def client_as(api_client, actors):
    def _client_as(actor: str) -> APIClient:
        user = actors[actor]
        if user is not None:
            api_client.force_authenticate(user)
        return api_client

    return _client_as


REPO = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def control_worker(transactional_db, tmp_path):
    """A real control-plane Celery worker process, consuming a queue of its own on the test
    Redis and writing to the test database. Yields the queue name."""
    from django.conf import settings

    queue = f"control-test-{uuid.uuid4().hex[:12]}"
    log_path = tmp_path / "control-worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'platform'}",
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "config", "worker",
                "--queues", queue, "--pool", "solo", "--loglevel", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--hostname", f"{queue}@%h",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"control worker did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield queue
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sleep_marker() -> str:
    """A `sleep` duration no other process on the host uses. Evaluations run in a PID namespace
    of their own, so tests find their processes by command line, not by the pids they see."""
    return f"300.{secrets.randbelow(10**9)}"


def processes_with(marker: str) -> list[psutil.Process]:
    """The live (not zombie) processes whose command line holds `marker`."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        command = " ".join(process.info["cmdline"] or [])
        if marker in command and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def wait_for(condition, *, timeout: float = 30.0, interval: float = 0.2) -> bool:
    """Polls `condition` until it holds or `timeout` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


class WorkerProcess:
    """A `python -m worker run` subprocess and its log."""

    def __init__(self, process: subprocess.Popen, log_path: Path, cache_dir: Path):
        self.process = process
        self.log_path = log_path
        self.cache_dir = cache_dir

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), as a host admin stops a worker."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_worker_process(
    *, token: str, node_url: str, broker_url: str, folder: Path, cpu_slots: int = 1
) -> WorkerProcess:
    """Starts the GPU worker (on this host's CPU) as a host admin would, and waits until it has
    registered and consumes its queue. The caller stops it."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "worker.log"
    # Celery reads CELERY_BROKER_URL from the environment before the broker it is given.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("WORKER_") and key != "CELERY_BROKER_URL"
    }
    env.update(WORKER_BROKER_URL=broker_url, WORKER_NODE_URL=node_url, WORKER_NODE_TOKEN=token)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "worker", "run", "--cpu-slots", str(cpu_slots),
                "--cache-dir", str(folder / "cache"), "--scratch-dir", str(folder / "scratch"),
            ],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = WorkerProcess(process, log_path, folder / "cache")
    deadline = time.monotonic() + 60
    while " ready." not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            pytest.fail(f"the worker did not start:\n{log_path.read_text()}")
        time.sleep(0.2)
    return worker
