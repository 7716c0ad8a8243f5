"""Evaluations end to end, with real processes: models and data go in through the REST API, the
control-plane Celery worker dispatches, a `python -m worker run` process fetches the files from
the live node over HTTP, runs the evaluator in its sandbox and posts the result; the test then
computes the same figures itself and compares."""

import io
import time
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from apps.accounts.models import Institution
from apps.catalog.models import Artifact
from apps.compute import services as compute_services
from apps.compute.models import DeviceAssignment, Job
from apps.evaluations.models import Result
from apps.evaluations.samples import digits, sentences, tiny_lm
from tests.conftest import processes_with, sleep_marker, start_worker_process, wait_for

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def pool(control_worker, settings, live_server, institution_admin, institution, tmp_path):
    """A CPU node of the institution with a real worker process (two slots) and a dispatcher."""
    settings.CELERY_TASK_DEFAULT_QUEUE = control_worker
    node, token = compute_services.node_create(
        user=institution_admin, institution=institution, name="eval-cpu"
    )
    worker = start_worker_process(
        token=token,
        node_url=live_server.url,
        broker_url=settings.CELERY_BROKER_URL,
        folder=tmp_path / "worker",
        cpu_slots=2,
    )
    yield node, worker
    worker.stop()


@pytest.fixture
def researcher(client_as):
    return client_as("member")


def _upload(client, path: Path) -> str:
    file = io.BytesIO(path.read_bytes())
    file.name = path.name
    response = client.post("/api/v1/artifacts/", {"file": file}, format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()["sha256"]


def _files(client, paths: list[Path]) -> list[dict]:
    return [{"filename": path.name, "sha256": _upload(client, path)} for path in paths]


def publish_model(client, institution: Institution, slug: str, paths: list[Path]) -> int:
    """Publishes a model version holding `paths` through the API; returns the version id."""
    model = client.post(
        "/api/v1/models/",
        {"institution": institution.slug, "name": slug.title(), "slug": slug, "license": "MIT"},
        format="json",
    )
    assert model.status_code == 201, model.json()
    version = client.post(
        f"/api/v1/models/{model.json()['id']}/versions/",
        {"label": "1.0", "files": _files(client, paths), "publish": True},
        format="json",
    )
    assert version.status_code == 201, version.json()
    return version.json()["id"]


def create_benchmark(
    client, institution: Institution, slug: str, paths: list[Path], **fields
) -> int:
    dataset = client.post(
        "/api/v1/datasets/",
        {
            "institution": institution.slug,
            "name": f"{slug} data",
            "slug": f"{slug}-data",
            "license": "CC-BY-4.0",
            "files": _files(client, paths),
        },
        format="json",
    )
    assert dataset.status_code == 201, dataset.json()
    benchmark = client.post(
        "/api/v1/benchmarks/",
        {
            "institution": institution.slug,
            "name": slug.title(),
            "slug": slug,
            "task_type": "evaluation",
            "dataset": dataset.json()["id"],
            "gpu_count": 0,
            "time_limit_minutes": 5,
            **fields,
        },
        format="json",
    )
    assert benchmark.status_code == 201, benchmark.json()
    return benchmark.json()["id"]


def submit(client, version: int, benchmark: int) -> int:
    response = client.post(
        "/api/v1/jobs/", {"model_version": version, "benchmark": benchmark}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def finished(client, job_id: int, worker, timeout: float = 120) -> dict:
    def done() -> bool:
        return Job.objects.get(pk=job_id).state not in Job.ACTIVE_STATES

    assert wait_for(done, timeout=timeout, interval=0.5), worker.log()
    return client.get(f"/api/v1/jobs/{job_id}/").json()


def test_an_onnx_classifier_is_scored_exactly_as_onnxruntime_scores_it(
    pool, researcher, institution, tmp_path
):
    _node, worker = pool
    sample = digits.build_digits(tmp_path / "digits")
    strong = publish_model(researcher, institution, "digits-logreg", [sample.model_path])
    weak = publish_model(researcher, institution, "digits-tree", [sample.weak_model_path])
    benchmark = create_benchmark(
        researcher,
        institution,
        "digits-held-out",
        [sample.data_path],
        metrics=[
            {"name": "accuracy", "higher_is_better": True},
            {"name": "macro_f1", "higher_is_better": True},
        ],
        evaluator="onnx",
        evaluator_config={"task": "classification", "data_file": sample.data_path.name},
    )
    jobs = [submit(researcher, version, benchmark) for version in (strong, weak)]
    for job_id in jobs:
        body = finished(researcher, job_id, worker)
        assert body["state"] == "succeeded", (body, worker.log())

    data = np.load(sample.data_path)
    session = onnxruntime.InferenceSession(sample.model_path, providers=["CPUExecutionProvider"])
    labels = session.run(None, {session.get_inputs()[0].name: data["X"]})[0]
    expected = float(np.mean(labels == data["y"]))
    result = Result.objects.get(job_id=jobs[0])
    assert result.metrics["accuracy"] == pytest.approx(expected, abs=1e-12)
    assert result.metrics["accuracy"] == pytest.approx(sample.accuracy, abs=1e-12)

    provenance = researcher.get(f"/api/v1/results/{result.pk}/").json()["provenance"]
    stored = Artifact.objects.get(model_files__version_id=strong)
    assert provenance["model_files"] == {sample.model_path.name: stored.sha256}
    assert provenance["evaluator"] == "onnx" and provenance["evaluator_version"]
    assert provenance["packages"]["onnxruntime"] == onnxruntime.__version__
    assert provenance["execution_provider"] == "CPUExecutionProvider"
    assert provenance["gpus"] == "cpu" and provenance["node"] == "eval-cpu"
    assert provenance["batch_size"] and "seed" in provenance
    assert provenance["network"].startswith(("isolated", "not isolated: "))
    assert provenance["files"].startswith(("only this job's files", "not isolated: "))

    board = researcher.get(f"/api/v1/benchmarks/{benchmark}/leaderboard/").json()
    assert [entry["result"]["model"]["name"] for entry in board["entries"]] == [
        "Digits-Logreg",
        "Digits-Tree",
    ]
    assert board["entries"][1]["score"] == pytest.approx(sample.weak_accuracy, abs=1e-12)


def _mean_pooled(session, tokenizer, sentences_: list[str]) -> np.ndarray:
    tokenizer.enable_padding()
    tokenizer.enable_truncation(max_length=128)
    encoded = tokenizer.encode_batch(sentences_)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    names = {i.name for i in session.get_inputs()}
    hidden = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
    pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def test_a_sentence_encoder_is_scored_by_spearman_correlation(
    pool, researcher, institution, tmp_path
):
    from scipy.stats import spearmanr
    from tokenizers import Tokenizer

    _node, worker = pool
    pairs = sentences.write_sts_pairs(tmp_path / "sts")
    version = publish_model(researcher, institution, "minilm", [sentences.minilm_model_path()])
    benchmark = create_benchmark(
        researcher,
        institution,
        "sentence-similarity",
        [pairs, sentences.minilm_tokenizer_path()],
        metrics=[{"name": "spearman", "higher_is_better": True}],
        evaluator="embedding-similarity",
        evaluator_config={"pairs_file": pairs.name, "tokenizer_file": "tokenizer.json"},
    )
    body = finished(researcher, submit(researcher, version, benchmark), worker)
    assert body["state"] == "succeeded", (body, worker.log())

    session = onnxruntime.InferenceSession(
        sentences.minilm_model_path(), providers=["CPUExecutionProvider"]
    )
    tokenizer = Tokenizer.from_file(str(sentences.minilm_tokenizer_path()))
    first = _mean_pooled(session, tokenizer, [p[0] for p in sentences.STS_PAIRS])
    second = _mean_pooled(session, tokenizer, [p[1] for p in sentences.STS_PAIRS])
    expected = spearmanr((first * second).sum(axis=1), [p[2] for p in sentences.STS_PAIRS])
    assert body["metrics"]["spearman"] == pytest.approx(float(expected.statistic), abs=1e-6)
    assert body["metrics"]["spearman"] > 0.6


def test_a_language_model_runs_through_lm_eval_offline(pool, researcher, institution, tmp_path):
    _node, worker = pool
    model_files = tiny_lm.build_tiny_lm(tmp_path / "tiny-lm")
    task_files = tiny_lm.build_tiny_tasks(tmp_path / "tasks")
    version = publish_model(researcher, institution, "tiny-gpt", model_files)
    benchmark = create_benchmark(
        researcher,
        institution,
        "tiny-tasks",
        task_files,
        metrics=[{"name": "tiny_choice/acc", "higher_is_better": True}],
        evaluator="lm-eval",
        evaluator_config={"tasks": ["tiny_choice", "tiny_cloze"], "seed": 3},
    )
    body = finished(researcher, submit(researcher, version, benchmark), worker, timeout=180)
    assert body["state"] == "succeeded", (body, worker.log())
    metrics = body["metrics"]
    for name in ("tiny_choice/acc", "tiny_choice/acc_norm", "tiny_cloze/acc"):
        assert 0 <= metrics[name] <= 1, name
    provenance = Result.objects.get(job_id=body["id"]).provenance
    assert provenance["seed"] == 3 and provenance["device"] == "cpu"
    assert {"lm-eval", "torch", "transformers"} <= set(provenance["packages"])


def _command_benchmark(
    client, institution, slug: str, script: Path, *, args: tuple = (), **fields
) -> int:
    return create_benchmark(
        client,
        institution,
        slug,
        [script],
        metrics=[{"name": "reached", "higher_is_better": True}],
        evaluator="command",
        evaluator_config={"script": script.name, "args": list(args)},
        **fields,
    )


def test_the_sandbox_holds_through_the_worker(
    pool, researcher, institution, tmp_path, live_server, artifact_dir
):
    """Network, memory, cancel and a tampered file, each through the real worker."""
    _node, worker = pool
    sample = digits.build_digits(tmp_path / "digits")
    version = publish_model(researcher, institution, "digits-logreg", [sample.model_path])
    scripts = tmp_path / "scripts"
    scripts.mkdir()

    host, port = live_server.thread.host, live_server.thread.port
    probe = scripts / "probe_network.py"
    probe.write_text(
        "import json, os, socket\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=3).close()\n"
        "    reached = 1\n"
        "except OSError as error:\n"
        "    print('no network:', error)\n"
        "    reached = 0\n"
        "worker = int(open(f'/proc/{os.getppid()}/stat').read().split(') ')[1].split()[1])\n"
        "try:\n"
        "    environ = open(f'/proc/{worker}/environ', 'rb').read()\n"
        "    token_seen = int(b'WORKER_NODE_TOKEN' in environ)\n"
        "except OSError as error:\n"
        "    print('worker environment:', error)\n"
        "    token_seen = 0\n"
        "metrics = {'reached': reached, 'token_seen': token_seen}\n"
        "json.dump(metrics, open(os.environ['METRICS_FILE'], 'w'))\n"
    )
    job = submit(researcher, version, _command_benchmark(researcher, institution, "net", probe))
    body = finished(researcher, job, worker)
    assert body["state"] == "succeeded", (body, worker.log())
    network = Result.objects.get(job_id=job).provenance["network"]
    if network.startswith("isolated"):
        assert body["metrics"]["reached"] == 0
    else:
        assert network.startswith("not isolated: ")
    assert body["metrics"]["token_seen"] == 0  # the worker's environment holds the node token

    hog = scripts / "hog.py"
    hog.write_text("import time\nblocks = [b'x' * 2**20 for _ in range(400)]\ntime.sleep(30)\n")
    benchmark = _command_benchmark(researcher, institution, "hog", hog, memory_limit_mb=128)
    body = finished(researcher, submit(researcher, version, benchmark), worker)
    assert body["state"] == "failed"
    assert "over the benchmark's limit of 128 MiB" in body["failure_reason"]

    marker = sleep_marker()
    sleeper = scripts / "sleeper.sh"
    sleeper.write_text('sleep "$1"\n')
    benchmark = _command_benchmark(researcher, institution, "nap", sleeper, args=[marker])
    job = submit(researcher, version, benchmark)
    assert wait_for(lambda: processes_with(marker), timeout=60), worker.log()
    assert researcher.post(f"/api/v1/jobs/{job}/cancel/", {}, format="json").status_code == 200
    cancelled_at = time.monotonic()
    assert not DeviceAssignment.objects.filter(job_id=job).exists()
    # Well before the next heartbeat (15 s): the worker stops on the message's revocation.
    assert wait_for(lambda: not processes_with(marker), timeout=5), "the script outlived its job"
    print(f"cancel -> script gone: {time.monotonic() - cancelled_at:.2f} s")

    honest = scripts / "honest.py"
    honest.write_text(probe.read_text().replace("reached = 1", "reached = 2"))
    benchmark = _command_benchmark(researcher, institution, "tampered", honest)
    stored = (
        Path(artifact_dir)
        / Artifact.objects.get(dataset_files__dataset__benchmarks=benchmark).storage_name
    )
    changed = bytearray(stored.read_bytes())
    changed[0] ^= 0x20  # same size, other bytes: what a corrupted disk or a swapped file gives
    stored.write_bytes(bytes(changed))
    body = finished(researcher, submit(researcher, version, benchmark), worker)
    assert body["state"] == "failed"
    assert "sha256" in body["failure_reason"]
