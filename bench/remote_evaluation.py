"""Evaluation on a peer's GPUs: the same evaluations submitted at the node that runs them and
from a peer node, and what signing and checking a result costs.

    .venv/bin/python bench/remote_evaluation.py                      # 5 of each, about 2 minutes
    .venv/bin/python bench/remote_evaluation.py --runs 15 --poll 0.1 --hold-seconds 5

Two real nodes (the test suite's harness, tests/federation/nodes.py): A and B, each a
`manage.py runserver` process with its own PostgreSQL database, var dir, key, Redis broker and
cache (databases 5 and 6 for A, 7 and 8 for B) and control-plane Celery worker with beat. B
has a pool: one `python -m worker run --cpu-slots 1`. A's researcher Ada and B's researcher Bob
each publish one digits classifier (the ONNX logistic regression of
apps/evaluations/samples/digits.py) as one version per run, each with bytes of its own (a
metadata entry differs, the weights do not), so that every run evaluates a model its pool has
not seen. B publishes two CPU benchmarks on the digits data set, one per workload:

- digits: the `onnx` evaluator scores the classifier (about 0.4 s of evaluation);
- hold: the built-in `smoke` evaluator fetches and checks every model and data set file, then
  holds for `--hold-seconds` (3): an evaluation of a few seconds.

The nodes peer and sync through the API, and B's staff grant GPU-hours to A's institution.

1. Submit to result, for each workload in turn, alternating (local, remote, then remote,
   local, ...) after one warm-up of each: locally, Bob's `POST /api/v1/jobs/` at B, followed
   with `GET jobs/{id}/` until it has succeeded with its metrics; remotely, Ada's
   `POST /api/v1/federation/remote-jobs/` at A on A's mirror of B's benchmark, followed with
   `GET federation/remote-jobs/{id}/` (read live from B) until it has succeeded with its result
   stored at A. Both poll every `--poll` seconds. Reported per workload: the wall time per run,
   median, p90 and the ratio of the medians; the same from the nodes' own stamps (submitted to
   stored, free of the polling's step); and the phases of each run from the API answers and
   B's record of the peer's request. Then both workloads side by side.
2. Signing and checking one result (the digits workload's last remote one), in-process,
   `--iterations` times each: in a Django shell of B (the node that signs) `result_statement`
   and `sign_statement` of a real result and `verify_envelope` with B's own key; in a shell of
   A (the node that checks) `verify_envelope` with B's pinned key and `verify_peer_result`.
   Baselines in the same process: `json.dumps` of the statement, and a bare Ed25519 sign and
   verify (cryptography) of the bytes DSSE signs.

Prints tables and, last, one JSON line (`--json FILE` also writes it to a file, `--keep-logs DIR`
keeps the nodes' logs). Every process it started is stopped by its pid, both
databases are dropped and the four Redis databases emptied at the end, also on an error, Ctrl-C
or SIGTERM. It refuses to start while another process uses Redis databases 5 to 8 (the test
suite's real-node test of remote evaluation uses 9 to 12, so the two can run at once).
"""

import argparse
import copy
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]

MARK = "BENCH-JSON "
REDIS_DATABASES = (5, 6, 7, 8)
FINISHED = ("succeeded", "failed", "cancelled", "timed_out", "refused")
# (key, label, whether a local run has it)
PHASES = (
    ("request", "request -> taken at B (local: job queued; remote: accepted)", True),
    ("prepare", "accepted -> job queued at B (model files fetched from A)", False),
    ("queue", "queued at B -> claimed (dispatch, message, claim)", True),
    ("run", "claimed -> finished (files, sandbox, evaluation, result)", True),
    ("deliver", "finished at B -> stored at A (sign, send, verify, store)", False),
    ("seen", "stored -> seen by the client's poll", True),
)
CONTROL_TASKS = ("evaluation_prepare_task", "outcome_deliver_task", "jobs_dispatch_task")
TASK_DONE = re.compile(r"Task apps\.\w+\.tasks\.(\w+)\[[^\]]+\] succeeded in ([0-9.e-]+)s")
SQL_TABLE = re.compile(r'FROM "(\w+)"')


def _emit(value: Any) -> None:
    print(MARK + json.dumps(value))


def _parse(output: str) -> Any:
    for line in reversed(output.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    raise RuntimeError(f"no result in the node's output:\n{output[-3000:]}")


# Run inside a node's Django shell (`Node.python`).
def node_seed(
    *,
    username: str,
    institution_name: str,
    slug: str,
    versions: int,
    pool: bool,
    hold_seconds: float = 0,
) -> None:
    """A researcher (admin of a new institution) with an API token, and a model with `versions`
    published versions of the digits classifier, each one file of its own bytes. With `pool`,
    also the digits data set, its two CPU benchmarks (the classifier scored by the `onnx`
    evaluator; every file checked by the `smoke` evaluator, which then holds for
    `hold_seconds`), and a CPU compute node of the institution."""
    import onnx

    from apps.accounts.models import Institution, User
    from apps.accounts.services import api_token_create
    from apps.catalog import services
    from apps.catalog.uploads import uploaded_file_from_bytes
    from apps.compute import services as compute_services
    from apps.evaluations.samples import digits

    user = User.objects.create_user(username, password=None, first_name=username.capitalize())
    institution = Institution.objects.create(name=institution_name, slug=slug, country="NL")
    institution.memberships.create(user=user, role="admin")
    _, token = api_token_create(user=user, name="bench", scope="read_write")

    def store(content: bytes, name: str) -> str:
        upload = uploaded_file_from_bytes(content, name)
        return services.artifact_store(user=user, upload=upload).sha256

    with tempfile.TemporaryDirectory() as folder:
        sample = digits.build_digits(Path(folder))
        data_name, model_name = sample.data_path.name, sample.model_path.name
        data = sample.data_path.read_bytes()
        model = onnx.load_model_from_string(sample.model_path.read_bytes())
    research_model = services.model_create(
        user=user,
        institution=institution,
        name=f"{institution_name} logreg",
        slug=f"{slug}-logreg",
        license="MIT",
    )
    version_ids = []
    for number in range(1, versions + 1):
        del model.metadata_props[:]
        model.metadata_props.add(key="copy", value=f"{slug}-{number}")
        sha256 = store(model.SerializeToString(), model_name)
        version = services.version_create(
            user=user,
            model=research_model,
            label=f"1.{number}",
            publish=True,
            files=[(model_name, sha256)],
        )
        version_ids.append(version.pk)
    seeded: dict[str, Any] = {"token": token, "versions": version_ids, "accuracy": sample.accuracy}
    if pool:
        dataset = services.dataset_create(
            user=user,
            institution=institution,
            name=f"{institution_name} digits data",
            slug=f"{slug}-digits-data",
            license="CC-BY-4.0",
            files=[(data_name, store(data, data_name))],
        )
        benchmark = services.benchmark_create(
            user=user,
            institution=institution,
            name=f"{institution_name} digits",
            slug=f"{slug}-digits",
            dataset=dataset,
            task_type="image-classification",
            evaluator="onnx",
            metrics=[{"name": "accuracy", "higher_is_better": True}],
            evaluator_config={"task": "classification", "data_file": data_name},
            time_limit_minutes=5,
            memory_limit_mb=1024,
        )
        hold = services.benchmark_create(
            user=user,
            institution=institution,
            name=f"{institution_name} files check",
            slug=f"{slug}-files-check",
            dataset=dataset,
            task_type="pool-check",
            evaluator="smoke",
            metrics=[{"name": "files", "higher_is_better": True}],
            evaluator_config={"hold_seconds": hold_seconds},
            time_limit_minutes=5,
            memory_limit_mb=1024,
        )
        _, node_token = compute_services.node_create(user=user, institution=institution, name="cpu")
        seeded.update(benchmark=benchmark.pk, hold_benchmark=hold.pk, node_token=node_token)
    _emit(seeded)


class _SqlClock:
    """A database execute wrapper that adds up the time its statements take."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.running = False

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: Any):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if self.running:
                self.seconds += time.perf_counter() - started


def _cost(
    call: Callable[[Any], Any], iterations: int, prepare: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """Microseconds per call (median and mean of `iterations`, `prepare` untimed before each),
    of which the SQL statements' (mean); which tables one call reads."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    argument = prepare() if prepare else None
    with CaptureQueriesContext(connection) as queries:
        call(argument)
    times = []
    clock = _SqlClock()
    with connection.execute_wrapper(clock):
        for _ in range(iterations):
            argument = prepare() if prepare else None
            clock.running = True
            started = time.perf_counter()
            call(argument)
            times.append(time.perf_counter() - started)
            clock.running = False
    return {
        "median_us": statistics.median(times) * 1e6,
        "mean_us": statistics.fmean(times) * 1e6,
        "queries": len(queries),
        "sql_us": clock.seconds / iterations * 1e6,
        "tables": [
            match.group(1) if (match := SQL_TABLE.search(query["sql"])) else query["sql"][:40]
            for query in queries.captured_queries
        ],
    }


def _canonical(statement: dict[str, Any]) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def _pae(envelope: dict[str, Any]) -> bytes:
    from securesystemslib.dsse import Envelope

    return Envelope.from_dict(copy.deepcopy(envelope)).pae()


# Run inside B's Django shell: B signs its results.
def node_sign_cost(*, result_id: int, iterations: int) -> None:
    from apps.evaluations.models import Result
    from apps.federation import attestations, keys
    from apps.federation.models import NodeKey

    def fresh() -> Result:
        # As the signing after the result's commit reads it.
        return Result.objects.get(pk=result_id)

    statement = attestations.result_statement(fresh())
    envelope = attestations.sign_statement(statement)
    pae = _pae(envelope)
    private_key = keys.signing_key().private_key
    public_key = private_key.public_key()
    signature = private_key.sign(pae)
    own_keys = {key.key_id: key.public_key for key in NodeKey.objects.all()}
    costs = {
        "json_dumps": _cost(lambda _: _canonical(statement), iterations),
        "ed25519_sign": _cost(lambda _: private_key.sign(pae), iterations),
        "result_statement": _cost(attestations.result_statement, iterations, fresh),
        "signing_key": _cost(lambda _: keys.signing_key(), iterations),
        "sign_statement": _cost(lambda _: attestations.sign_statement(statement), iterations),
        "statement_and_sign": _cost(
            lambda result: attestations.sign_statement(attestations.result_statement(result)),
            iterations,
            fresh,
        ),
        "ed25519_verify": _cost(lambda _: public_key.verify(signature, pae), iterations),
        "verify_envelope": _cost(
            lambda _: attestations.verify_envelope(envelope, own_keys), iterations
        ),
    }
    _emit({"costs": costs, "statement_bytes": len(_canonical(statement))})


# Run inside A's Django shell: A checks the results its peer ran for it.
def node_verify_cost(*, result_id: int, peer_node: str, iterations: int) -> None:
    import base64

    from apps.evaluations.models import Result
    from apps.federation import attestations, keys
    from apps.federation.models import Peer

    result = Result.objects.select_related("model_version", "benchmark__dataset").get(pk=result_id)
    envelope = result.attestation
    if envelope is None:
        raise RuntimeError(f"result {result_id} came without an attestation")
    peer = Peer.objects.get(node_id=peer_node)
    pinned = {key.key_id: key.public_key for key in peer.keys.all()}
    [entry] = envelope["signatures"]
    signature = base64.b64decode(entry["sig"])
    public_key = keys.public_key_from_text(pinned[entry["keyid"]])
    pae = _pae(envelope)
    statement = attestations.verify_envelope(envelope, pinned)

    def digests() -> tuple[list[str], list[str]]:
        # What the outcome's check reads before it calls verify_peer_result.
        model = list(result.model_version.files.values_list("artifact__sha256", flat=True))
        dataset = list(result.benchmark.dataset.files.values_list("artifact__sha256", flat=True))
        return model, dataset

    read = digests()

    def check(files: tuple[list[str], list[str]]) -> str:
        return attestations.verify_peer_result(
            peer=peer,
            envelope=envelope,
            metrics=result.metrics,
            model_sha256s=files[0],
            dataset_sha256s=files[1],
            live=True,  # as an outcome that has just arrived is checked
        )

    if check(read) != "verified":
        raise RuntimeError(f"verify_peer_result did not verify result {result_id}")
    costs = {
        "json_dumps": _cost(lambda _: _canonical(statement), iterations),
        "ed25519_verify": _cost(lambda _: public_key.verify(signature, pae), iterations),
        "verify_envelope": _cost(
            lambda _: attestations.verify_envelope(envelope, pinned), iterations
        ),
        "verify_peer_result": _cost(lambda _: check(read), iterations),
        "digests_and_verify": _cost(lambda _: check(digests()), iterations),
    }
    _emit({"costs": costs})


def _call(node: Any, function: str, timeout: float = 600, **kwargs: Any) -> Any:
    arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return _parse(
        node.python(
            f"from bench.remote_evaluation import {function}\n{function}({arguments})\n", timeout
        )
    )


def _redis_users(databases: tuple[int, ...]) -> list[int]:
    """Processes other than this one whose broker or cache is one of these Redis databases."""
    names = (b"CELERY_BROKER_URL", b"WORKER_BROKER_URL", b"TEST_WORKER_BROKER_URL", b"CACHE_URL")
    wanted = {str(n).encode() for n in databases}
    users = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environment:
            name, _, value = item.partition(b"=")
            if (
                name in names
                and value.startswith(b"redis://")
                and value.rsplit(b"/", 1)[-1] in wanted
            ):
                users.append(int(entry.name))
                break
    return users


def _configure_django() -> None:
    """The harness reads the test settings: where to create and drop databases, which Redis."""
    import django
    from django.conf import settings

    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    django.setup()
    host = settings.DATABASES["default"]["HOST"] or "127.0.0.1"
    redis_host = settings.CELERY_BROKER_URL.split("://", 1)[-1].split(":", 1)[0]
    for where in (host, redis_host):
        if where not in ("127.0.0.1", "localhost"):
            raise SystemExit(f"This bench talks to 127.0.0.1 only, not {where}.")


def _stamp(value: str | None) -> float:
    if not value:
        raise RuntimeError("a timestamp is missing")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass
class Workload:
    """One of B's benchmarks, evaluated locally at B and from A, and what each result shows."""

    name: str
    label: str
    benchmark_at_b: int
    benchmark_at_a: int
    expected: dict[str, float]
    local_versions: list[int]
    remote_versions: list[int]


class Bench:
    """The two nodes, their researchers and B's pool, once started."""

    def __init__(self, args: argparse.Namespace, folder: Path, started: list) -> None:
        self.args = args
        self.folder = folder
        self.started = started
        self.a: Any = None
        self.b: Any = None
        self.seed_a: dict[str, Any] = {}
        self.seed_b: dict[str, Any] = {}
        self.grant_at_a = 0
        self.workloads: list[Workload] = []

    def api(self, node: Any, token: str, method: str, path: str, expect: int = 200, **kw: Any):
        response = node.api(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json()

    def b_database(self, sql: str, *params: Any) -> list[tuple]:
        import psycopg

        url = self.b.env["DATABASE_URL"].replace("postgres://", "postgresql://")
        with psycopg.connect(url) as db:
            return db.execute(sql, params).fetchall()

    def start(self) -> None:
        from django.utils import timezone

        from apps.catalog.mirrors import institution_slug
        from tests.conftest import start_worker_process, wait_for
        from tests.federation.nodes import Node, peer, peer_id, start_nodes

        began = time.perf_counter()
        self.a = Node("A", self.folder / "a", redis_db=5)
        self.b = Node("B", self.folder / "b", redis_db=7)
        for node in (self.a, self.b):
            node.env["COMPUTE_NODE_OFFLINE_AFTER_SECONDS"] = "3600"
            # The production default (the harness sets 2 s): how often a node's beat pushes
            # outcomes not yet delivered and pulls the jobs it asked peers to run.
            node.env["FEDERATION_DELIVERY_RETRY_SECONDS"] = "10"
        self.started.extend([self.a, self.b])
        start_nodes([self.a, self.b])
        per_workload = self.args.runs + self.args.warmup
        versions = 2 * per_workload
        self.seed_a = _call(
            self.a,
            "node_seed",
            username="ada",
            institution_name="North",
            slug="north",
            versions=versions,
            pool=False,
        )
        self.seed_b = _call(
            self.b,
            "node_seed",
            username="bob",
            institution_name="South",
            slug="south",
            versions=versions,
            pool=True,
            hold_seconds=self.args.hold_seconds,
        )
        peer(self.a, self.b)
        for node, other in ((self.a, self.b), (self.b, self.a)):
            node.json("POST", f"federation/peers/{peer_id(node, other)}/sync/")
        for node in (self.a, self.b):
            node.start_control_worker()
        worker = start_worker_process(
            token=self.seed_b["node_token"],
            node_url=self.b.url,
            broker_url=self.b.env["CELERY_BROKER_URL"],
            folder=self.b.folder / "worker",
        )
        self.started.insert(0, worker)

        now = timezone.now()
        self.b.json(
            "POST",
            "allocations/",
            expect=201,
            json={
                "institution": institution_slug(node=self.a.url, slug="north"),
                "name": "South for North",
                "gpu_hours": "5",
                "starts_at": (now - timedelta(days=1)).isoformat(),
                "ends_at": (now + timedelta(days=30)).isoformat(),
            },
        )

        def announced() -> bool:
            held = self.api(self.a, self.seed_a["token"], "GET", "allocations/")["results"]
            found = [g["id"] for g in held if g["held_at"] == self.b.url]
            self.grant_at_a = found[0] if found else 0
            return bool(found)

        if not wait_for(announced, timeout=60):
            raise RuntimeError(f"B's grant never reached A:\n{self.b.log()[-3000:]}")
        benchmarks = self.a.json(
            "GET", "benchmarks/", params={"origin": self.b.url, "page_size": 100}
        )["results"]

        def mirror(benchmark: int) -> int:
            return next(r["id"] for r in benchmarks if r["origin"]["id"] == str(benchmark))

        hold = self.args.hold_seconds
        self.workloads = [
            Workload(
                name="digits",
                label="digits (onnx evaluator)",
                benchmark_at_b=self.seed_b["benchmark"],
                benchmark_at_a=mirror(self.seed_b["benchmark"]),
                expected={"accuracy": self.seed_b["accuracy"]},
                local_versions=self.seed_b["versions"][:per_workload],
                remote_versions=self.seed_a["versions"][:per_workload],
            ),
            Workload(
                name="hold",
                label=f"hold (smoke evaluator: files checked, then held {hold:g} s)",
                benchmark_at_b=self.seed_b["hold_benchmark"],
                benchmark_at_a=mirror(self.seed_b["hold_benchmark"]),
                # The version's model file and the data set's file.
                expected={"files": 2},
                local_versions=self.seed_b["versions"][per_workload:],
                remote_versions=self.seed_a["versions"][per_workload:],
            ),
        ]
        print(f"Nodes A and B, B's pool and the grant ready in {time.perf_counter() - began:.0f} s")

    def _follow(self, node: Any, token: str, path: str, done: Callable[[dict], bool]):
        """Polls `path` until `done` or a finished state; returns the answer, when the client
        saw it (wall clock) and how many polls it took."""
        deadline = time.monotonic() + self.args.timeout
        polls = 0
        while True:
            answer = self.api(node, token, "GET", path)
            polls += 1
            if done(answer) or answer["state"] in FINISHED:
                return answer, time.time(), polls
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not finish in {self.args.timeout} s: {answer}")
            time.sleep(self.args.poll)

    def local(self, workload: Workload, version: int) -> dict[str, Any]:
        token = self.seed_b["token"]
        submitted = time.time()
        job = self.api(
            self.b,
            token,
            "POST",
            "jobs/",
            expect=201,
            json={"model_version": version, "benchmark": workload.benchmark_at_b},
        )
        answered = time.time()
        job, seen, polls = self._follow(
            self.b,
            token,
            f"jobs/{job['id']}/",
            lambda j: j["state"] == "succeeded" and j["metrics"] is not None,
        )
        if job["state"] != "succeeded":
            raise RuntimeError(f"local job {job['id']} ended {job['state']}: {job}")
        _check_metrics(workload, job["metrics"], f"local job {job['id']}")
        queued, started, finished = (
            _stamp(job[k]) for k in ("submitted_at", "started_at", "finished_at")
        )
        return {
            "job": job["id"],
            "wall_s": seen - submitted,
            "stored_s": finished - queued,
            "answer_s": answered - submitted,
            "polls": polls,
            "phases": {
                "request": queued - submitted,
                "queue": started - queued,
                "run": finished - started,
                "seen": seen - finished,
            },
        }

    def remote(self, workload: Workload, version: int) -> dict[str, Any]:
        token = self.seed_a["token"]
        submitted = time.time()
        remote_job = self.api(
            self.a,
            token,
            "POST",
            "federation/remote-jobs/",
            expect=201,
            json={
                "model_version": version,
                "benchmark": workload.benchmark_at_a,
                "allocation": self.grant_at_a,
            },
        )
        answered = time.time()
        if remote_job["state"] in FINISHED:
            raise RuntimeError(f"B did not take the request: {remote_job}")
        remote_job, seen, polls = self._follow(
            self.a,
            token,
            f"federation/remote-jobs/{remote_job['id']}/",
            lambda j: j["state"] == "succeeded" and j["result"] is not None,
        )
        if remote_job["state"] != "succeeded":
            raise RuntimeError(
                f"remote job {remote_job['id']} ended {remote_job['state']}: "
                f"{remote_job}\n{(self.b.folder / 'control.log').read_text()[-3000:]}"
            )
        result = self.api(self.a, token, "GET", f"results/{remote_job['result']}/")
        _check_metrics(workload, result["metrics"], f"remote job {remote_job['id']}")
        if result["attestation_status"] != "verified":
            raise RuntimeError(f"result {result['id']} at A is {result['attestation_status']}")
        at_b = self.api(self.b, self.b.token, "GET", f"jobs/{remote_job['peer_job_id']}/")
        [(accepted, delivered, attempts)] = self.b_database(
            "SELECT created_at, delivered_at, delivery_attempts FROM federation_inboundjob "
            "WHERE request_id = %s",
            remote_job["request_id"],
        )
        queued, started, finished = (
            _stamp(at_b[k]) for k in ("submitted_at", "started_at", "finished_at")
        )
        stored = _stamp(remote_job["finished_at"])
        return {
            "remote_job": remote_job["id"],
            "job_at_b": at_b["id"],
            "result_at_a": remote_job["result"],
            "wall_s": seen - submitted,
            "stored_s": stored - _stamp(remote_job["submitted_at"]),
            "answer_s": answered - submitted,
            "polls": polls,
            "push_done_s": delivered.timestamp() - finished if delivered else None,
            "delivery_attempts": attempts,
            "phases": {
                "request": accepted.timestamp() - submitted,
                "prepare": queued - accepted.timestamp(),
                "queue": started - queued,
                "run": finished - started,
                "deliver": stored - finished,
                "seen": seen - stored,
            },
        }

    def result_at_b(self, job_id: int) -> int:
        [(result_id,)] = self.b_database(
            "SELECT id FROM evaluations_result WHERE job_id = %s", job_id
        )
        return result_id


def _check_metrics(workload: Workload, metrics: dict[str, Any], what: str) -> None:
    for name, expected in workload.expected.items():
        if abs(metrics.get(name, math.inf) - expected) > 1e-9:
            raise RuntimeError(f"{what}: {name} {metrics.get(name)}, expected {expected}")


def _summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [run[key] for run in runs]
    return {
        "median": statistics.median(values),
        "p90": _percentile(values, 0.9),
        "min": min(values),
        "max": max(values),
    }


def _control_tasks(log: str) -> dict[str, list[float]]:
    """Seconds each of B's control-plane tasks ran, from its worker's log."""
    ran: dict[str, list[float]] = {name: [] for name in CONTROL_TASKS}
    for line in log.splitlines():
        match = TASK_DONE.search(line)
        if not match or match.group(1) not in ran:
            continue
        ran[match.group(1)].append(float(match.group(2)))
    return ran


def _print_timing(
    title: str, local: list[dict], remote: list[dict], poll: float, tasks: dict[str, list[float]]
) -> dict[str, Any]:
    print(f"\n{title}, {len(local)} runs of each (the client polls every {poll} s)")
    print(
        f"  {'run':>3}  {'local s':>8}  {'remote s':>8}   {'local stored s':>14}  "
        f"{'remote stored s':>15}"
    )
    for number, (one, other) in enumerate(zip(local, remote, strict=True), 1):
        print(
            f"  {number:>3}  {one['wall_s']:8.2f}  {other['wall_s']:8.2f}   "
            f"{one['stored_s']:14.2f}  {other['stored_s']:15.2f}"
        )
    figures: dict[str, Any] = {}
    for key, label in (
        ("wall_s", "client, submit -> seen"),
        ("stored_s", "nodes, submitted -> stored"),
    ):
        here, there = _summary(local, key), _summary(remote, key)
        ratio = there["median"] / here["median"]
        figures[key] = {"local": here, "remote": there, "ratio": ratio}
        verdict = "met" if ratio <= 1.2 else "NOT met"
        print(
            f"  {label:28} median {here['median']:.2f} / {there['median']:.2f} s, "
            f"p90 {here['p90']:.2f} / {there['p90']:.2f} s: remote / local "
            f"{ratio:.2f} (aim <= 1.2: {verdict})"
        )

    print("\n  Where the time goes (medians, s):")
    print(f"  {'phase':62} {'local':>7} {'remote':>7}")
    phases: dict[str, dict[str, float | None]] = {}
    for name, label, local_has in PHASES:
        theirs = statistics.median(run["phases"][name] for run in remote)
        mine = statistics.median(run["phases"][name] for run in local) if local_has else None
        phases[name] = {"local": mine, "remote": theirs}
        shown = f"{mine:7.3f}" if mine is not None else f"{'-':>7}"
        print(f"  {label:62} {shown} {theirs:7.3f}")
    figures["phases"] = phases
    answer_local = statistics.median(run["answer_s"] for run in local)
    answer_remote = statistics.median(run["answer_s"] for run in remote)
    push = [run["push_done_s"] for run in remote if run["push_done_s"] is not None]
    print(
        f"  submit answered (POST round trip): local {answer_local:.3f} s, "
        f"remote {answer_remote:.3f} s"
    )
    if push:
        print(
            f"  B's push of the outcome done, after the job finished: median "
            f"{statistics.median(push):.3f} s; delivery attempts "
            f"{[run['delivery_attempts'] for run in remote]}"
        )
    print(
        f"  polls per run: local {[run['polls'] for run in local]}, "
        f"remote {[run['polls'] for run in remote]}"
    )
    print("  B's control worker, task run time (median, count; the rest of a phase is waiting):")
    for name, seconds in tasks.items():
        if seconds:
            print(f"    {name:28} {statistics.median(seconds):.3f} s ({len(seconds)})")
    figures["control_tasks_s"] = {
        name: statistics.median(seconds) if seconds else None for name, seconds in tasks.items()
    }
    figures["answer_s"] = {"local": answer_local, "remote": answer_remote}
    figures["push_done_s"] = statistics.median(push) if push else None
    return figures


SIGN_ROWS = (
    ("json_dumps", "baseline: json.dumps of the statement (canonical)", "ed25519_sign"),
    ("ed25519_sign", "baseline: Ed25519 sign of the DSSE bytes (cryptography)", "ed25519_sign"),
    ("result_statement", "result_statement (result read untimed)", "ed25519_sign"),
    ("signing_key", "keys.signing_key() (inside sign_statement)", "ed25519_sign"),
    ("sign_statement", "sign_statement", "ed25519_sign"),
    ("statement_and_sign", "result_statement + sign_statement", "ed25519_sign"),
    ("ed25519_verify", "baseline: Ed25519 verify (cryptography)", "ed25519_verify"),
    ("verify_envelope", "verify_envelope, B's own key", "ed25519_verify"),
)
VERIFY_ROWS = (
    ("json_dumps", "baseline: json.dumps of the statement (canonical)", "ed25519_verify"),
    ("ed25519_verify", "baseline: Ed25519 verify (cryptography)", "ed25519_verify"),
    ("verify_envelope", "verify_envelope, B's pinned key", "ed25519_verify"),
    ("verify_peer_result", "verify_peer_result", "ed25519_verify"),
    ("digests_and_verify", "files' sha256 read + verify_peer_result", "ed25519_verify"),
)


def _print_costs(title: str, costs: dict[str, dict], rows: tuple) -> None:
    print(f"\n  {title}")
    print(
        f"  {'operation':58} {'median us':>10} {'mean us':>9} {'queries':>7} "
        f"{'SQL us':>7} {'x Ed25519':>9} {'x dumps':>8}"
    )
    # Signing rows compare with the bare sign, verifying rows with the bare verify.
    dumps = costs["json_dumps"]["median_us"]
    for key, label, base in rows:
        cost = costs[key]
        print(
            f"  {label:58} {cost['median_us']:10.1f} {cost['mean_us']:9.1f} "
            f"{cost['queries']:7d} {cost['sql_us']:7.0f} "
            f"{cost['median_us'] / costs[base]['median_us']:9.1f} "
            f"{cost['median_us'] / dumps:8.1f}"
        )
    for key, label, _ in rows:
        if costs[key]["queries"]:
            print(f"    {label}, tables read: {', '.join(costs[key]['tables'])}")


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _measure(bench: Bench, workload: Workload) -> tuple[list[dict], list[dict]]:
    """The warm-ups, then the measured runs in pairs whose order alternates."""
    args = bench.args
    print(f"\nWorkload {workload.label}:")
    for number in range(args.warmup):
        warm = (
            bench.local(workload, workload.local_versions[number]),
            bench.remote(workload, workload.remote_versions[number]),
        )
        print(f"  warm-up: local {warm[0]['wall_s']:.2f} s, remote {warm[1]['wall_s']:.2f} s")
    local: list[dict[str, Any]] = []
    remote: list[dict[str, Any]] = []
    for number in range(args.runs):
        index = args.warmup + number
        order = [
            (bench.local, workload.local_versions, local),
            (bench.remote, workload.remote_versions, remote),
        ]
        if number % 2:
            order.reverse()
        for measure, versions, runs in order:
            runs.append(measure(workload, versions[index]))
        print(
            f"  run {number + 1}: local {local[-1]['wall_s']:.2f} s, "
            f"remote {remote[-1]['wall_s']:.2f} s"
        )
    return local, remote


def _print_workloads(measured: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    print("\n1c. Both workloads, submit to result (median / p90, s):")
    print(
        f"  {'workload':58} {'view':6} {'local':>11} {'remote':>11} {'remote/local':>12}  "
        "aim <= 1.2"
    )
    ratios: dict[str, dict[str, float]] = {}
    for name, figures in measured.items():
        ratios[name] = {}
        for key, view in (("wall_s", "client"), ("stored_s", "nodes")):
            timed = figures["timing"][key]
            here, there = timed["local"], timed["remote"]
            ratios[name][view] = timed["ratio"]
            print(
                f"  {figures['label']:58} {view:6} {here['median']:5.2f}/{here['p90']:5.2f} "
                f"{there['median']:5.2f}/{there['p90']:5.2f} {timed['ratio']:12.2f}  "
                f"{'met' if timed['ratio'] <= 1.2 else 'NOT met'}"
            )
    return ratios


def run(args: argparse.Namespace, folder: Path, started: list) -> dict[str, Any]:
    bench = Bench(args, folder, started)
    load_before = os.getloadavg()[0]
    print(f"Load average before: {load_before:.2f} ({os.cpu_count()} cores)")
    bench.start()
    control_log = bench.b.folder / "control.log"
    measured: dict[str, dict[str, Any]] = {}
    for letter, workload in zip("ab", bench.workloads, strict=False):
        log_from = len(control_log.read_text())
        local, remote = _measure(bench, workload)
        tasks = _control_tasks(control_log.read_text()[log_from:])
        timing = _print_timing(
            f"1{letter}. Submit to result, workload {workload.label}",
            local,
            remote,
            args.poll,
            tasks,
        )
        measured[workload.name] = {
            "label": workload.label,
            "local": local,
            "remote": remote,
            "timing": timing,
        }
    ratios = _print_workloads(measured)

    # The signed result of a real evaluation, with metrics of its own.
    last = measured["digits"]["remote"][-1]
    signing = _call(
        bench.b,
        "node_sign_cost",
        result_id=bench.result_at_b(last["job_at_b"]),
        iterations=args.iterations,
    )
    checking = _call(
        bench.a,
        "node_verify_cost",
        result_id=last["result_at_a"],
        peer_node=bench.b.url,
        iterations=args.iterations,
    )
    print(
        f"\n2. Signing and checking one result ({args.iterations} iterations each; "
        f"statement {signing['statement_bytes']:,} bytes of canonical JSON)"
    )
    _print_costs("At B, the node that ran it and signs:", signing["costs"], SIGN_ROWS)
    _print_costs("At A, the node that asked and checks:", checking["costs"], VERIFY_ROWS)
    load_after = os.getloadavg()[0]
    print(f"\nLoad average after: {load_after:.2f}")
    return {
        "bench": "remote_evaluation",
        "commit": _commit(),
        "runs": args.runs,
        "poll_s": args.poll,
        "hold_s": args.hold_seconds,
        "load_average": [load_before, load_after],
        "ratios": ratios,
        "workloads": measured,
        "signing_at_b": signing,
        "checking_at_a": checking,
    }


def _stop(started: list) -> None:
    import redis
    from django.conf import settings

    for item in started:
        try:
            item.stop()
        except Exception as error:  # stop the others anyway
            print(f"could not stop {item}: {error}", file=sys.stderr)
    base = settings.CELERY_BROKER_URL.rsplit("/", 1)[0]
    for database in REDIS_DATABASES:
        redis.Redis.from_url(f"{base}/{database}").flushdb()


def _keep_logs(folder: Path, target: Path) -> None:
    for log in folder.glob("*/**/*.log"):
        name = target / "-".join(log.relative_to(folder).parts)
        name.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each path")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs of each first")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=180, help="seconds a run may take")
    parser.add_argument(
        "--hold-seconds",
        type=float,
        default=3,
        help="how long the hold workload's evaluation holds, after checking its files",
    )
    parser.add_argument(
        "--iterations", type=int, default=200, help="iterations of each signing measurement"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--keep-logs", type=Path, help="copy the nodes' server, control and worker logs here"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0 or args.iterations < 1:
        parser.error("--runs and --iterations must be at least 1, --warmup at least 0")
    if not 0 <= args.hold_seconds <= 3600:
        parser.error("--hold-seconds must be from 0 to 3600 (the smoke evaluator's bounds)")

    users = _redis_users(REDIS_DATABASES)
    if users:
        raise SystemExit(
            f"Redis databases {REDIS_DATABASES} are in use by the processes {users} (another "
            "run of this benchmark, or bench/evaluator_overhead.py): run this later."
        )
    _configure_django()
    from django.conf import settings

    # SIGTERM ends the run like Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started: list = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rx-bench-remote-evaluation-") as folder:
        try:
            figures = run(args, Path(folder), started)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _stop(started)
            if args.keep_logs:
                _keep_logs(Path(folder), args.keep_logs)
            # The test settings made an empty key folder for this process; nothing signed here.
            shutil.rmtree(settings.FEDERATION_KEY_DIR, ignore_errors=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"\nDone in {time.perf_counter() - began:.0f} s; processes stopped, databases dropped.")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
