"""An integrator's day with the `rx` command line, end to end: a live node, its control-plane
worker (the dispatcher) and a real `python -m worker run` process evaluating on the CPU. Log in,
publish a digits classifier from a folder, evaluate it and wait for the metrics, see an
evaluation fail with its reason, read the results and the leaderboard, download the model."""

import hashlib
import json
import re
import shutil

import pytest

from apps.catalog import services as catalog_services
from apps.compute import selectors as compute_selectors
from apps.compute import services as compute_services
from apps.compute.models import Job
from apps.evaluations.models import Result
from apps.evaluations.samples import digits
from tests.catalog.conftest import store
from tests.conftest import start_worker_process

pytestmark = [pytest.mark.usefixtures("artifact_dir"), pytest.mark.timeout(300)]


def _digits_benchmark(user, institution, data_path, slug: str, **config):
    data = store(user, data_path.read_bytes(), data_path.name)
    dataset = catalog_services.dataset_create(
        user=user,
        institution=institution,
        name=f"{slug} data",
        slug=f"{slug}-data",
        license="CC-BY-4.0",
        files=[(data_path.name, data.sha256)],
    )
    return catalog_services.benchmark_create(
        user=user,
        institution=institution,
        name=slug.replace("-", " ").title(),
        slug=slug,
        task_type="image-classification",
        dataset=dataset,
        metrics=[
            {"name": "accuracy", "higher_is_better": True},
            {"name": "macro_f1", "higher_is_better": True},
        ],
        evaluator="onnx",
        evaluator_config={"task": "classification", "data_file": data_path.name, **config},
        gpu_count=0,
        time_limit_minutes=5,
    )


def test_an_integrators_day_from_login_to_leaderboard_with_a_real_worker(
    control_worker, settings, live_server, rx_logged_out, member, member_token,
    institution_admin, institution, tmp_path,
):  # fmt: skip
    settings.CELERY_TASK_DEFAULT_QUEUE = control_worker
    _node, node_token = compute_services.node_create(
        user=institution_admin, institution=institution, name="rx-cpu"
    )
    worker = start_worker_process(
        token=node_token,
        node_url=live_server.url,
        broker_url=settings.CELERY_BROKER_URL,
        folder=tmp_path / "worker",
    )
    try:
        sample = digits.build_digits(tmp_path / "digits")
        benchmark = _digits_benchmark(member, institution, sample.data_path, "digits-held-out")
        broken = _digits_benchmark(
            member, institution, sample.data_path, "digits-mislabelled", features_key="pixels"
        )
        folder = tmp_path / "release"
        folder.mkdir()
        shutil.copy(sample.model_path, folder)
        rx = rx_logged_out

        login = rx("login", "--url", live_server.url, stdin=f"{member_token}\n")
        assert login.returncode == 0, login.stderr

        published = rx(
            "models", "publish", str(folder), "--institution", "northbridge",
            "--model", "digits", "--name", "Digits classifier", "--license", "MIT",
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        assert "Published northbridge/digits@1.0" in published.stdout

        evaluated = rx(
            "eval", "submit", "--model-version", "northbridge/digits@1.0",
            "--benchmark", str(benchmark.pk), "--wait", "--poll", "0.5",
            timeout=180,
        )  # fmt: skip
        assert evaluated.returncode == 0, (evaluated.stdout, evaluated.stderr, worker.log())
        job = Job.objects.get(benchmark=benchmark)
        result = Result.objects.get(job=job)
        # A short evaluation may end between two polls: the state seen on the way names the node.
        assert re.search(rf"job {job.pk}: (dispatched to|running on) rx-cpu", evaluated.stderr)
        assert f"job {job.pk} succeeded" in evaluated.stdout
        accuracy = result.metrics["accuracy"]
        assert accuracy == pytest.approx(sample.accuracy, abs=1e-12)
        assert f"accuracy  {accuracy:.6g}" in evaluated.stdout
        # The job's log streamed while it ran, before the outcome.
        log = compute_selectors.job_log(job=job, attempt=1, offset=0)
        assert log.strip() and log in evaluated.stdout
        assert evaluated.stdout.index(log) < evaluated.stdout.index(f"job {job.pk} succeeded")

        failed = rx(
            "eval", "submit", "--model-version", str(result.model_version_id),
            "--benchmark", str(broken.pk), "--wait", "--poll", "0.5",
            timeout=180,
        )  # fmt: skip
        assert failed.returncode == 1, (failed.stdout, failed.stderr, worker.log())
        failed_job = Job.objects.get(benchmark=broken)
        assert failed_job.state == Job.State.FAILED
        assert f"job {failed_job.pk} failed: " in failed.stdout
        assert "has no array 'pixels'" in failed.stdout
    finally:
        worker.stop()

    listed = rx("results", "list", "--benchmark", str(benchmark.pk), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [row["id"] for row in rows] == [result.pk]
    assert rows[0]["metrics"] == result.metrics and rows[0]["model"]["version"] == "1.0"

    table = rx("results", "list", "--model", "northbridge/digits").stdout.splitlines()
    assert table[0].split() == [
        "RESULT", "MODEL", "VERSION", "INSTITUTION", "BENCHMARK", "METRICS", "NODE", "FINISHED",
    ]  # fmt: skip
    assert table[1].split()[:4] == [str(result.pk), "Digits", "classifier", "1.0"]
    assert f"accuracy={accuracy:.6g}" in table[1] and "rx-cpu" in table[1]

    board = rx("leaderboard", str(benchmark.pk))
    assert board.returncode == 0, board.stderr
    lines = board.stdout.splitlines()
    assert lines[0] == f"benchmark {benchmark.pk}, by accuracy (higher is better)"
    assert lines[1].split() == [
        "RANK",
        "ACCURACY",
        "MODEL",
        "VERSION",
        "INSTITUTION",
        "RUNS",
        "RESULT",
    ]
    assert lines[2].split() == [
        "1", f"{accuracy:.6g}", "Digits", "classifier", "1.0", "northbridge", "1", str(result.pk),
    ]  # fmt: skip
    assert lines[1].index("ACCURACY") + len("ACCURACY") == lines[2].index(f"{accuracy:.6g}") + len(
        f"{accuracy:.6g}"
    )
    board_json = json.loads(rx("leaderboard", str(benchmark.pk), "--json").stdout)
    assert [entry["result"]["id"] for entry in board_json["entries"]] == [result.pk]

    dest = tmp_path / "fetched"
    fetched = rx("models", "download", "northbridge/digits", "--dest", str(dest))
    assert fetched.returncode == 0, fetched.stderr
    copy = dest / sample.model_path.name
    assert (
        hashlib.sha256(copy.read_bytes()).hexdigest()
        == hashlib.sha256(sample.model_path.read_bytes()).hexdigest()
    )
