"""Real nodes for federation tests: each one a separate `manage.py runserver` process with its
own PostgreSQL database, var dir (so its own key files and artifact store) and port on
127.0.0.1, started as an operator would start a node."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis as redis_lib
import requests
from django.conf import settings

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _admin_dsn() -> str:
    db = settings.DATABASES["default"]
    user = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgresql://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"


class Node:
    """One node. `start()` creates its database, migrates and serves; `stop()` ends the server
    (by its pid) and drops the database."""

    def __init__(
        self, name: str, folder: Path, *, page_size: int = 500, redis_db: int | None = None
    ):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.database = f"rx_node_{name.lower()}_{secrets.token_hex(4)}"
        self.process: subprocess.Popen | None = None
        self.processes: list[subprocess.Popen] = []
        self.token = ""
        db = settings.DATABASES["default"]
        user = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FEDERATION_", "OAI_"))},
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DEBUG": "false",
            "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'platform'}",
            "DATABASE_URL": f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{self.database}",
            "PLATFORM_VAR_DIR": str(folder / "var"),
            "CACHE_URL": "locmemcache://",
            "CELERY_BROKER_URL": "filesystem://",
            "FEDERATION_NODE_URL": self.url,
            "FEDERATION_FEED_PAGE_SIZE": str(page_size),
            "FEDERATION_RETRIES": "1",
            "FEDERATION_BACKOFF_SECONDS": "0.05",
            # A rotated key is looked up again at the next signature that names it.
            "FEDERATION_KEY_REFETCH_SECONDS": "1",
            "NODE_NAME": f"Node {name}",
            "API_THROTTLE_USER": "100000/minute",
            "API_THROTTLE_ANON": "100000/minute",
        }
        if redis_db is not None:
            # A node with a pool: its own broker and cache (two Redis databases, emptied first),
            # a control-plane Celery worker with beat, and GPU workers (`start_pool`).
            redis = settings.CELERY_BROKER_URL.rsplit("/", 1)[0]
            self.env.update(
                CELERY_BROKER_URL=f"{redis}/{redis_db}",
                CACHE_URL=f"{redis}/{redis_db + 1}",
                CELERY_CONTROL_QUEUE=f"control-{name.lower()}",
                FEDERATION_DELIVERY_RETRY_SECONDS="2",
            )
            for db in (redis_db, redis_db + 1):
                redis_lib.Redis.from_url(f"{redis}/{db}").flushdb()

    def manage(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"node {self.name}: manage.py {args[0]} failed:\n{done.stderr}")
        return done.stdout

    def python(self, code: str, timeout: float = 300) -> str:
        """Runs `code` in the node's Django (as an operator's shell would)."""
        return self.manage("shell", "--no-imports", "-c", code, timeout=timeout)

    def create_database(self) -> None:
        with psycopg.connect(_admin_dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')

    def migrate(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def serve(self, *, first_start: bool = True) -> None:
        log = (self.folder / "server.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.name} stopped:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"node {self.name} did not start:\n{self.log()}")
        if not first_start:
            return
        self.token = self.python(
            "from apps.accounts.models import User\n"
            "from apps.accounts.services import api_token_create\n"
            "user = User.objects.create_user('operator', is_staff=True, password=None)\n"
            "_, secret = api_token_create(user=user, name='operator', scope='read_write')\n"
            "print(secret)\n"
        ).strip()

    def stop_server(self) -> None:
        """Stops the web server only (the node is down for its peers); `serve(first_start=
        False)` brings it back."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text() if path.exists() else ""

    def start_control_worker(self) -> None:
        """The node's control plane: dispatcher, reconciler, deliveries, with their beat."""
        log_path = self.folder / "control.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "config", "worker", "--beat",
                    "--schedule", str(self.folder / "beat-schedule"),
                    "--queues", self.env["CELERY_CONTROL_QUEUE"], "--pool", "solo",
                    "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                    "--without-heartbeat", "--hostname", f"control-{self.name}@%h",
                ],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while "ready." not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name}: control worker:\n{log_path.read_text()}")
            time.sleep(0.2)

    def stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes = []

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.url}/api/v1/{path.lstrip('/')}", headers=headers, timeout=120, **kwargs
        )

    def json(self, method: str, path: str, expect: int = 200, **kwargs):
        response = self.api(method, path, **kwargs)
        assert response.status_code == expect, (response.status_code, response.text[:2000])
        return response.json()

    def mirrored_papers(self, origin: "Node") -> int:
        """Read straight from the node's database: fast enough to catch a sync mid-way."""
        with psycopg.connect(
            self.env["DATABASE_URL"].replace("postgres://", "postgresql://")
        ) as db:
            row = db.execute(
                "SELECT count(*) FROM catalog_paper WHERE origin_node = %s", [origin.url]
            ).fetchone()
        return row[0] if row else 0

    def stop(self) -> None:
        self.stop_processes()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with psycopg.connect(_admin_dsn(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def start_nodes(nodes: list[Node]) -> None:
    """Creates and migrates every node's database side by side, then starts their servers."""
    for node in nodes:
        node.folder.mkdir(parents=True, exist_ok=True)
        node.create_database()
    migrations = [node.migrate() for node in nodes]
    for node, migration in zip(nodes, migrations, strict=True):
        _, errors = migration.communicate(timeout=600)
        if migration.returncode != 0:
            raise RuntimeError(f"node {node.name}: migrate failed:\n{errors.decode()}")
    for node in nodes:
        node.serve()


def peer(a: Node, b: Node) -> None:
    """A's staff asks B to peer; B's staff approves. Both through the API."""
    a.json("POST", "federation/peers/", expect=201, json={"base_url": b.url})
    pending = b.json("GET", "federation/peers/", params={"state": "pending"})["results"]
    request = next(p for p in pending if p["node_id"] == a.url)
    b.json("POST", f"federation/peers/{request['id']}/approve/", json={})


def peer_id(node: Node, other: Node) -> int:
    peers = node.json("GET", "federation/peers/")["results"]
    return next(p["id"] for p in peers if p["node_id"] == other.url)


def dumps(value) -> str:
    return json.dumps(value)
