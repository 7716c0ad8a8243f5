"""Evaluation on a peer's GPUs between real nodes: two server processes with their own
databases, keys, brokers, control-plane workers and pools. Node B grants GPU-hours to an
institution of node A; a researcher at A evaluates A's model on B's pool; B's real worker runs
it in its sandbox; the result comes back signed by B and is checked here with securesystemslib
and nothing but B's published key."""

import base64
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from apps.catalog.mirrors import institution_slug
from tests.conftest import start_worker_process, wait_for
from tests.federation.nodes import REPO, Node, peer, peer_id, start_nodes

pytestmark = pytest.mark.timeout(900)

SETUP = """
import json, tempfile
from pathlib import Path
from apps.accounts.models import Institution, User
from apps.accounts.services import api_token_create
from apps.catalog import services
from apps.catalog.uploads import uploaded_file_from_bytes
from apps.evaluations.samples import digits

def store(user, path):
    upload = uploaded_file_from_bytes(path.read_bytes(), path.name)
    return services.artifact_store(user=user, upload=upload).sha256

user = User.objects.create_user("{user}", password=None, first_name="{first}")
institution = Institution.objects.create(name="{institution}", slug="{slug}", country="NL")
institution.memberships.create(user=user, role="admin")
_, token = api_token_create(user=user, name="cli", scope="read_write")
sample = digits.build_digits(Path(tempfile.mkdtemp()))
dataset = services.dataset_create(
    user=user, institution=institution, name="{slug} digits data", slug="{slug}-digits-data",
    license="CC-BY-4.0", files=[(sample.data_path.name, store(user, sample.data_path))])
common = dict(task_type="image-classification", evaluator="onnx",
              metrics=[{{"name": "accuracy", "higher_is_better": True}}],
              evaluator_config={{"task": "classification", "data_file": sample.data_path.name}},
              time_limit_minutes=5, memory_limit_mb=1024)
cpu = services.benchmark_create(user=user, institution=institution, name="{slug} digits",
                                slug="{slug}-digits", dataset=dataset, **common)
gpu = services.benchmark_create(user=user, institution=institution, name="{slug} digits on GPU",
                                slug="{slug}-digits-gpu", dataset=dataset, gpu_count=1,
                                gpu_memory_gb=16, **common)
model = services.model_create(user=user, institution=institution, name="{slug} logreg",
                              slug="{slug}-logreg", license="MIT")
version = services.version_create(user=user, model=model, label="1.0", publish=True,
                                  files=[(sample.model_path.name, store(user, sample.model_path))])
print(json.dumps({{"token": token, "institution": institution.pk, "version": version.pk,
                  "cpu_benchmark": cpu.pk, "gpu_benchmark": gpu.pk,
                  "accuracy": sample.accuracy}}))
"""

NODE = """
import json
from apps.accounts.models import Institution
from apps.compute import services
from apps.compute.models import ComputeNode
institution = Institution.objects.get(slug="{slug}")
node, token = services.node_create(user=institution.memberships.get().user,
                                   institution=institution, name="{name}")
if {gpus}:
    services.node_register(node=node, gpus=[{{"index": 0, "uuid": "GPU-test-0",
        "name": "NVIDIA A100 80GB", "memory_bytes": 85_000_000_000}}], cpu_slots=0,
        host_info={{"isolation": {{"level": "full"}}}})
print(json.dumps({{"token": token, "queue": node.queue}}))
"""


class Researcher:
    """A member of an institution of a node, calling its API with a personal token."""

    def __init__(self, node: Node, setup: dict):
        self.node = node
        self.setup = setup
        self.headers = {"Authorization": f"Bearer {setup['token']}"}

    def json(self, method: str, path: str, expect: int = 200, **kwargs):
        response = self.node.api(method, path, headers=self.headers, **kwargs)
        assert response.status_code == expect, (response.status_code, response.text[:3000])
        return response.json()


def gpu_stand_in(node: Node, queue: str, token: str) -> subprocess.Popen:
    """A GPU host's worker for machines without a GPU (tests/compute/gpu_test_worker.py)."""
    env = {
        **{key: value for key, value in os.environ.items() if key != "CELERY_BROKER_URL"},
        "TEST_WORKER_BROKER_URL": node.env["CELERY_BROKER_URL"],
        "TEST_WORKER_NODE_URL": node.url,
        "TEST_WORKER_NODE_TOKEN": token,
    }
    log_path = node.folder / "gpu-worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "tests.compute.gpu_test_worker", "worker",
                "--queues", queue, "--pool", "threads", "--concurrency", "1",
                "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    assert wait_for(lambda: " ready." in log_path.read_text(), timeout=60), log_path.read_text()
    return process


def cpu_worker(node: Node, token: str, folder: str):
    return start_worker_process(
        token=token,
        node_url=node.url,
        broker_url=node.env["CELERY_BROKER_URL"],
        folder=node.folder / folder,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, django_db_blocker):
    folder = tmp_path_factory.mktemp("remote")
    a = Node("A", folder / "a", redis_db=9)
    b = Node("B", folder / "b", redis_db=11)
    for node in (a, b):
        # Leases of seconds: an attempt whose worker is killed is requeued at once.
        node.env.update(
            COMPUTE_NODE_OFFLINE_AFTER_SECONDS="3600",
            COMPUTE_HEARTBEAT_SECONDS="1",
            COMPUTE_LEASE_SECONDS="3",
            COMPUTE_CLAIM_TIMEOUT_SECONDS="4",
        )
    workers: list = []
    tokens: dict[str, str] = {}
    try:
        with django_db_blocker.unblock():
            start_nodes([a, b])
        setup_a = json.loads(
            a.python(SETUP.format(user="ada", first="Ada", institution="North", slug="north"))
        )
        setup_b = json.loads(
            b.python(SETUP.format(user="bob", first="Bob", institution="South", slug="south"))
        )
        peer(a, b)
        for node, other in ((a, b), (b, a)):
            node.json("POST", f"federation/peers/{peer_id(node, other)}/sync/")
        for node, slug in ((a, "north"), (b, "south")):
            node.start_control_worker()
            cpu = json.loads(node.python(NODE.format(slug=slug, name="cpu", gpus=False)))
            tokens[node.name] = cpu["token"]
            workers.append(cpu_worker(node, cpu["token"], "worker"))
        gpu = json.loads(b.python(NODE.format(slug="south", name="gpu", gpus=True)))
        yield {
            "a": a,
            "b": b,
            "ada": Researcher(a, setup_a),
            "bob": Researcher(b, setup_b),
            "setup_a": setup_a,
            "setup_b": setup_b,
            "gpu": gpu,
            "workers": workers,
            "cpu_tokens": tokens,
        }
    finally:
        for worker in workers:
            worker.stop()
        for node in (a, b):
            with django_db_blocker.unblock():
                node.stop()


def grant(cluster, name: str, gpu_hours: float) -> dict:
    """B's staff grants GPU-hours to A's institution; returns the grant as A shows it."""
    a, b = cluster["a"], cluster["b"]
    now = timezone.now()
    made = b.json(
        "POST",
        "allocations/",
        expect=201,
        json={
            "institution": institution_slug(node=a.url, slug="north"),
            "name": name,
            "gpu_hours": str(gpu_hours),
            "starts_at": (now - timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=30)).isoformat(),
        },
    )

    def announced():
        held = cluster["ada"].json("GET", "allocations/")["results"]
        return next((g for g in held if g["held_at"] == b.url and g["name"] == name), None)

    assert wait_for(lambda: announced() is not None, timeout=30), (made, b.log()[-3000:])
    return {"at_b": made, "at_a": announced()}


def mirror_of(node: Node, origin: Node, path: str, origin_id: int) -> int:
    """The id at `node` of the record `origin_id` of `origin`."""
    records = node.json("GET", path, params={"origin": origin.url, "page_size": 100})["results"]
    return next(r["id"] for r in records if r["origin"]["id"] == str(origin_id))


def submit(cluster, *, benchmark: int, allocation: int, expect: int = 201, **extra) -> dict:
    return cluster["ada"].json(
        "POST",
        "federation/remote-jobs/",
        expect=expect,
        json={
            "model_version": cluster["setup_a"]["version"],
            "benchmark": benchmark,
            "allocation": allocation,
            **extra,
        },
    )


def follow(cluster, remote_job_id: int, states: tuple[str, ...], timeout: float = 120) -> dict:
    seen = {}

    def reached():
        seen.update(cluster["ada"].json("GET", f"federation/remote-jobs/{remote_job_id}/"))
        return seen["state"] in states

    assert wait_for(reached, timeout=timeout, interval=1), (
        seen,
        cluster["b"].log()[-3000:],
        (cluster["b"].folder / "control.log").read_text()[-5000:],
    )
    return seen


def gpu_draining(cluster, draining: bool) -> None:
    """B's admin drains its GPU node (jobs wait in the queue) or opens it again."""
    cluster["b"].python(
        "from apps.compute.models import ComputeNode\n"
        f"ComputeNode.objects.filter(name='gpu').update(draining={draining})\n"
    )


def b_database(cluster, sql: str, *params):
    import psycopg

    url = cluster["b"].env["DATABASE_URL"].replace("postgres://", "postgresql://")
    with psycopg.connect(url) as db:
        return db.execute(sql, params).fetchall()


def verify_with_published_key(envelope: dict, node: Node) -> dict:
    """A third party's check: securesystemslib and the node's well-known document only."""
    import requests

    identity = requests.get(f"{node.url}/.well-known/research-exchange", timeout=10).json()
    keys = [
        SSlibKey(
            keyid=key["key_id"],
            keytype="ed25519",
            scheme="ed25519",
            keyval={"public": base64.urlsafe_b64decode(key["public_key"] + "==").hex()},
        )
        for key in identity["keys"]
    ]
    verified = Envelope.from_dict(envelope).verify(keys, 1)
    assert len(verified) == 1
    return json.loads(base64.b64decode(envelope["payload"]))


def test_a_grant_of_b_shows_at_a_as_held_at_b(cluster):
    made = grant(cluster, "South for North", 10)

    assert made["at_a"]["budget_gpu_hours"] == pytest.approx(10)
    assert made["at_a"]["institution"] == "north"
    assert made["at_a"]["held_at"] == cluster["b"].url
    # B's own listing: a grant of its pool, to the mirror of A's institution.
    assert made["at_b"]["held_at"] is None


def test_an_evaluation_on_b_gpus_comes_back_signed_by_b_and_verified(cluster):
    a, b = cluster["a"], cluster["b"]
    held = grant(cluster, "South for North (CPU)", 5)["at_a"]
    benchmark = mirror_of(a, b, "benchmarks/", cluster["setup_b"]["cpu_benchmark"])

    submitted = submit(cluster, benchmark=benchmark, allocation=held["id"])
    assert submitted["state"] in ("preparing", "pending", "dispatched", "running")
    done = follow(cluster, submitted["id"], ("succeeded", "failed", "refused"))

    assert done["state"] == "succeeded", done
    result = cluster["ada"].json("GET", f"results/{done['result']}/")
    assert result["metrics"]["accuracy"] == pytest.approx(cluster["setup_a"]["accuracy"])
    assert result["attestation_status"] == "verified"
    # Anyone checks it with B's published key alone.
    envelope = cluster["ada"].json("GET", f"results/{done['result']}/attestation")
    statement = verify_with_published_key(envelope, b)
    assert statement["predicate"]["metrics"] == result["metrics"]
    # B ran it on its fully isolating CPU node, for the mirror of A's institution.
    rows = b_database(
        cluster,
        "SELECT j.state, j.from_peer, j.gpu_seconds, n.isolation FROM compute_job j "
        "JOIN compute_computenode n ON n.id = j.node_id WHERE j.id = %s",
        done["peer_job_id"],
    )
    assert rows == [("succeeded", True, done["gpu_seconds"], "full")]


def test_gpu_seconds_are_the_same_figure_at_both_nodes(cluster):
    a, b = cluster["a"], cluster["b"]
    gpu_draining(cluster, False)
    stand_in = gpu_stand_in(b, cluster["gpu"]["queue"], cluster["gpu"]["token"])
    try:
        held = grant(cluster, "South GPUs for North", 2)["at_a"]
        benchmark = mirror_of(a, b, "benchmarks/", cluster["setup_b"]["gpu_benchmark"])
        done = follow(
            cluster,
            submit(cluster, benchmark=benchmark, allocation=held["id"])["id"],
            ("succeeded", "failed", "refused"),
        )
    finally:
        stand_in.terminate()
        stand_in.wait(timeout=30)

    assert done["state"] == "succeeded", done
    assert done["gpu_seconds"] >= 1
    [(job_seconds, charged)] = b_database(
        cluster,
        "SELECT gpu_seconds, charged FROM compute_job WHERE id = %s",
        done["peer_job_id"],
    )
    assert charged and job_seconds == done["gpu_seconds"]
    grants_at_a = {g["id"]: g for g in cluster["ada"].json("GET", "allocations/")["results"]}
    [(used_at_b,)] = b_database(
        cluster,
        "SELECT used_gpu_seconds FROM compute_allocation WHERE name = %s",
        "South GPUs for North",
    )
    assert used_at_b == done["gpu_seconds"]
    assert grants_at_a[held["id"]]["used_gpu_hours"] == pytest.approx(used_at_b / 3600)
    # The usage record is B's signature over that figure.
    usage = cluster["ada"].json("GET", f"federation/remote-jobs/{done['id']}/")["usage_record"]
    statement = verify_with_published_key(usage, b)
    assert statement["predicate"]["gpu_seconds"] == done["gpu_seconds"]


def test_b_refuses_without_a_grant_when_it_is_exhausted_and_when_suspended(cluster):
    a, b = cluster["a"], cluster["b"]
    gpu_benchmark = mirror_of(a, b, "benchmarks/", cluster["setup_b"]["gpu_benchmark"])
    # 6 GPU-minutes: one job that may run 5 minutes on one GPU holds most of it (B's GPU node
    # is drained, so it waits); a second one does not fit.
    gpu_draining(cluster, True)
    tiny = grant(cluster, "A sliver", 0.1)["at_a"]
    first = submit(cluster, benchmark=gpu_benchmark, allocation=tiny["id"])
    assert first["state"] in ("preparing", "pending"), first
    refused = submit(cluster, benchmark=gpu_benchmark, allocation=tiny["id"])
    assert refused["state"] == "refused"
    assert "may use up to 0.08 GPU-hours" in refused["reason"], refused
    assert "held by queued and running jobs" in refused["reason"]
    follow(cluster, first["id"], ("pending",))
    cluster["ada"].json("POST", f"federation/remote-jobs/{first['id']}/cancel/", json={})

    # A's own check: a grant it does not hold.
    missing = submit(cluster, benchmark=gpu_benchmark, allocation=999_999, expect=400)
    assert "No such grant" in missing["error"]["message"]

    # B suspends the peering: the request is refused by B's signature check.
    held = grant(cluster, "While suspended", 1)["at_a"]
    peer_at_b = peer_id(b, a)
    before = b_database(cluster, "SELECT count(*) FROM federation_inboundjob")
    b.json("POST", f"federation/peers/{peer_at_b}/suspend/", json={})
    try:
        after = submit(cluster, benchmark=gpu_benchmark, allocation=held["id"], expect=400)
        assert "not an approved peer" in after["error"]["message"]
    finally:
        b.json("POST", f"federation/peers/{peer_at_b}/reinstate/", json={})
    # Nothing reached B while it was suspended.
    assert b_database(cluster, "SELECT count(*) FROM federation_inboundjob") == before


def test_a_request_sent_again_makes_no_second_job_at_b(cluster):
    a, b = cluster["a"], cluster["b"]
    held = grant(cluster, "Resend", 5)["at_a"]
    benchmark = mirror_of(a, b, "benchmarks/", cluster["setup_b"]["cpu_benchmark"])
    done = follow(
        cluster,
        submit(cluster, benchmark=benchmark, allocation=held["id"])["id"],
        ("succeeded", "failed"),
    )
    resent = a.python(
        "from apps.federation import client, remote_jobs\n"
        "from apps.federation.contract import EVALUATIONS_PATH\n"
        "from apps.federation.models import RemoteJob\n"
        f"job = RemoteJob.objects.get(pk={done['id']})\n"
        "answer = client.peer_call(job.peer, 'POST', EVALUATIONS_PATH,"
        " json=remote_jobs._request(job))\n"
        "print(answer['state'], answer['job'])\n"
    ).split()
    assert resent == ["succeeded", str(done["peer_job_id"])]
    rows = b_database(
        cluster,
        "SELECT count(*) FROM federation_inboundjob WHERE request_id = %s",
        done["request_id"],
    )
    assert rows == [(1,)]


def test_a_model_file_that_does_not_match_its_sha256_fails_and_nothing_is_stored(cluster):
    a, b = cluster["a"], cluster["b"]
    held = grant(cluster, "Corrupt", 5)["at_a"]
    benchmark = mirror_of(a, b, "benchmarks/", cluster["setup_b"]["cpu_benchmark"])
    # A second version whose stored file is replaced on A's disk after publication.
    version, sha256 = a.python(
        "import tempfile\n"
        "from pathlib import Path\n"
        "from apps.catalog import services\n"
        "from apps.catalog.models import ModelVersion\n"
        "from apps.catalog.uploads import uploaded_file_from_bytes\n"
        "from apps.evaluations.samples import digits\n"
        f"first = ModelVersion.objects.get(pk={cluster['setup_a']['version']})\n"
        "user = first.model.institution.memberships.get().user\n"
        "sample = digits.build_digits(Path(tempfile.mkdtemp()))\n"
        "stored = services.artifact_store(user=user, upload=uploaded_file_from_bytes("
        "sample.weak_model_path.read_bytes(), 'model.onnx'))\n"
        "version = services.version_create(user=user, model=first.model, label='2.0',"
        " publish=True, files=[('model.onnx', stored.sha256)])\n"
        "with services.artifact_storage().open(stored.storage_name, 'wb') as f:\n"
        "    f.write(sample.model_path.read_bytes())\n"
        "print(version.pk, stored.sha256)\n"
    ).split()
    submitted = cluster["ada"].json(
        "POST",
        "federation/remote-jobs/",
        expect=201,
        json={"model_version": int(version), "benchmark": benchmark, "allocation": held["id"]},
    )
    done = follow(cluster, submitted["id"], ("failed", "succeeded"))

    assert done["state"] == "failed"
    assert f"other bytes than sha256:{sha256}" in done["reason"]
    assert b_database(
        cluster, "SELECT storage_name FROM catalog_artifact WHERE sha256 = %s", sha256
    ) == [("",)]


def test_cancel_from_a_stops_the_job_at_b(cluster):
    a, b = cluster["a"], cluster["b"]
    held = grant(cluster, "Cancelled", 2)["at_a"]
    benchmark = mirror_of(a, b, "benchmarks/", cluster["setup_b"]["gpu_benchmark"])
    # B's GPU node is drained: the job waits in B's queue.
    gpu_draining(cluster, True)
    submitted = submit(cluster, benchmark=benchmark, allocation=held["id"])
    pending = follow(cluster, submitted["id"], ("pending",))
    assert pending["queue_position"] >= 1

    cancelled = cluster["ada"].json(
        "POST", f"federation/remote-jobs/{submitted['id']}/cancel/", json={}
    )

    assert cancelled["state"] == "cancelled"
    assert b_database(
        cluster, "SELECT state FROM compute_job WHERE id = %s", pending["peer_job_id"]
    ) == [("cancelled",)]
    assert cancelled["gpu_seconds"] == 0


def test_a_down_while_b_finishes_gets_the_result_later_exactly_once(cluster):
    a, b = cluster["a"], cluster["b"]
    held = grant(cluster, "Outage", 5)["at_a"]
    benchmark = mirror_of(a, b, "benchmarks/", cluster["setup_b"]["gpu_benchmark"])
    gpu_draining(cluster, True)
    submitted = submit(cluster, benchmark=benchmark, allocation=held["id"])
    follow(cluster, submitted["id"], ("pending",))
    a.stop_server()
    gpu_draining(cluster, False)
    stand_in = gpu_stand_in(b, cluster["gpu"]["queue"], cluster["gpu"]["token"])
    try:
        # B finishes while A is down, and fails to deliver at least once.
        assert wait_for(
            lambda: (
                b_database(
                    cluster,
                    "SELECT i.delivery_attempts FROM federation_inboundjob i "
                    "JOIN compute_job j ON j.id = i.job_id "
                    "WHERE i.request_id = %s AND j.state = 'succeeded' AND i.delivered_at IS NULL",
                    submitted["request_id"],
                )
                not in ([], [(0,)])
            ),
            timeout=90,
            interval=1,
        )
    finally:
        stand_in.terminate()
        stand_in.wait(timeout=30)
        a.serve(first_start=False)

    # B's beat delivers it once A is back (A does not ask).
    assert wait_for(
        lambda: (
            b_database(
                cluster,
                "SELECT count(*) FROM federation_inboundjob WHERE request_id = %s "
                "AND delivered_at IS NOT NULL",
                submitted["request_id"],
            )
            == [(1,)]
        ),
        timeout=90,
        interval=1,
    ), (b.folder / "control.log").read_text()[-4000:]
    done = cluster["ada"].json("GET", f"federation/remote-jobs/{submitted['id']}/")
    assert done["state"] == "succeeded"
    results = cluster["ada"].json("GET", "results/", params={"origin": b.url, "page_size": 100})
    assert [r["id"] for r in results["results"]].count(done["result"]) == 1


def test_a_reproduction_on_b_gives_the_same_metrics_and_both_leaderboards_show_it(cluster):
    a, b, ada = cluster["a"], cluster["b"], cluster["ada"]
    setup = cluster["setup_a"]
    # A evaluates its model on its own benchmark, on its own pool.
    job = ada.json(
        "POST",
        "jobs/",
        expect=201,
        json={"model_version": setup["version"], "benchmark": setup["cpu_benchmark"]},
    )
    assert wait_for(
        lambda: ada.json("GET", f"jobs/{job['id']}/")["state"] in ("succeeded", "failed"),
        timeout=120,
        interval=1,
    )
    [original] = ada.json(
        "GET",
        "results/",
        params={"model_version": setup["version"], "benchmark": setup["cpu_benchmark"]},
    )["results"]
    a_peer_at_b = peer_id(b, a)
    b.json("POST", f"federation/peers/{a_peer_at_b}/sync/")  # B mirrors the result

    held = grant(cluster, "Reproduction", 5)["at_a"]
    done = follow(
        cluster,
        submit(
            cluster,
            benchmark=setup["cpu_benchmark"],
            allocation=held["id"],
            reproduction_of=original["id"],
        )["id"],
        ("succeeded", "failed", "refused"),
    )

    assert done["state"] == "succeeded", done
    reproduction = ada.json("GET", f"results/{done['result']}/")
    assert reproduction["reproduction_of"] == original["id"]
    assert reproduction["metrics"] == original["metrics"]
    assert reproduction["ran_by"]["node"] == b.url
    on_a = ada.json("GET", f"benchmarks/{setup['cpu_benchmark']}/leaderboard/")["entries"]
    assert [(e["result"]["id"], e["reproductions"], e["reproductions_agree"]) for e in on_a] == [
        (original["id"], 1, True)
    ]
    mirror = mirror_of(b, a, "benchmarks/", setup["cpu_benchmark"])
    on_b = b.json("GET", f"benchmarks/{mirror}/leaderboard/")["entries"]
    assert [(e["reproductions"], e["reproductions_agree"]) for e in on_b] == [(1, True)]
    assert on_b[0]["result"]["ran_by"]["node"] == a.url


HOLD = """
from apps.accounts.models import Institution
from apps.catalog import services
from apps.catalog.models import Benchmark
institution = Institution.objects.get(slug="south")
cpu = Benchmark.objects.get(slug="south-digits")
held = services.benchmark_create(
    user=institution.memberships.get().user, institution=institution, name="south files check",
    slug="south-files-check", dataset=cpu.dataset, task_type="pool-check", evaluator="smoke",
    metrics=[{"name": "files", "higher_is_better": True}], evaluator_config={"hold_seconds": 4})
print(held.pk)
"""


def test_b_worker_killed_mid_job_is_requeued_and_a_gets_one_result(cluster):
    a, b = cluster["a"], cluster["b"]
    held_benchmark = int(b.python(HOLD))
    a.json("POST", f"federation/peers/{peer_id(a, b)}/sync/")
    held = grant(cluster, "Killed worker", 5)["at_a"]
    submitted = submit(
        cluster, benchmark=mirror_of(a, b, "benchmarks/", held_benchmark), allocation=held["id"]
    )
    running = follow(cluster, submitted["id"], ("running",), timeout=60)
    [first] = [w for w in cluster["workers"] if w.cache_dir.parent == b.folder / "worker"]
    first.process.kill()  # the host dies mid-job
    first.process.wait(timeout=10)
    cluster["workers"].append(cpu_worker(b, cluster["cpu_tokens"]["B"], "second-worker"))

    done = follow(cluster, submitted["id"], ("succeeded", "failed"), timeout=120)

    assert done["state"] == "succeeded", done
    assert running["attempt"] == 1 and done["attempt"] == 2
    [(lease_lost,)] = b_database(
        cluster,
        "SELECT message FROM compute_jobevent WHERE job_id = %s AND attempt = 1 "
        "ORDER BY id DESC LIMIT 1",
        done["peer_job_id"],
    )
    assert "lease expired" in lease_lost
    assert b_database(
        cluster, "SELECT count(*) FROM evaluations_result WHERE job_id = %s", done["peer_job_id"]
    ) == [(1,)]
    results = cluster["ada"].json("GET", "results/", params={"origin": b.url, "page_size": 100})
    assert [r["id"] for r in results["results"]].count(done["result"]) == 1
