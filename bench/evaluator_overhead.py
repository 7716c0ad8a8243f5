"""Evaluator overhead: one onnx evaluation through the whole worker path against a plain
onnxruntime loop over the same model and data, in the same run.

    .venv/bin/python bench/evaluator_overhead.py                       # about 2 minutes here
    .venv/bin/python bench/evaluator_overhead.py --rows 20000 --repeats 3   # a quick look

The model is a seeded MLP classifier built with onnx.helper (features -> hidden -> hidden ->
classes, Relu, a softmax output); the data a seeded .npz (X float32, y int64: the model's own
class on 90 % of the rows, a random one on the rest). Both are stored through the catalogue
services as a model version and an "onnx" benchmark, once per size, and kept.

- Plain loop, in this process: np.load, an onnxruntime session on the CPU provider, the same
  batches, argmax, accuracy and macro-F1 with numpy; what a researcher writes by hand.
- Full path: services.job_submit; the control worker's dispatcher places the job, the node
  worker (`python -m worker run`, one CPU slot) claims it, takes the files from its cache (a
  warm-up job filled it), runs the evaluator in its sandbox subprocess, streams the log and
  posts the result to the node (gunicorn). Timed from the claim (started_at) and from the
  submission (submitted_at) to finished_at, all stored by the node.

After one warm-up of each, the two alternate (plain, full, plain, full...) so that drift on the
machine touches both. Reported: medians, minimums and the ratio of the medians; the phases of
each full job from the node worker's log; and what starting the sandbox's interpreter and its
imports cost alone. Everything runs on 127.0.0.1, on the bench database and on Redis databases
7 (broker) and 8 (cache), which it flushes. Everything it starts it stops by pid. Prints a
table and writes bench/results/evaluator-overhead-<date>.json.
"""

import argparse
import itertools
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "platform")]
BROKER_URL = "redis://127.0.0.1:6379/7"
CACHE_URL = "redis://127.0.0.1:6379/8"
CONTROL_QUEUE = "bench-overhead-control"
WORK = Path(tempfile.gettempdir()) / "research-exchange-bench-evaluator-overhead"
# The artifact files live outside the repository, where every process of the run finds them.
MEDIA_ROOT = WORK / "media"
os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
os.environ["CELERY_BROKER_URL"] = BROKER_URL
os.environ["CACHE_URL"] = CACHE_URL
os.environ["CELERY_CONTROL_QUEUE"] = CONTROL_QUEUE
os.environ["MEDIA_ROOT"] = str(MEDIA_ROOT)

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import redis  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from apps.accounts.models import Institution, User  # noqa: E402
from apps.catalog import services as catalog_services  # noqa: E402
from apps.catalog.models import Benchmark, ModelVersion, ResearchModel  # noqa: E402
from apps.compute import services  # noqa: E402
from apps.compute.models import Job  # noqa: E402
from bench.pool import (  # noqa: E402
    Processes,
    beat,
    check_no_strangers,
    cpu_snapshot,
    cpu_used,
    log_offsets,
    logs_read,
    namespace_clear,
    namespace_people,
    others_park,
    others_unpark,
    pool_setup_facts,
    pool_start,
    pool_teardown,
    process_groups,
    report_head,
    stored_artifact,
)
from bench.seed_catalog import database_prepare  # noqa: E402
from worker.evaluators.onnx import macro_f1  # noqa: E402
from worker.sandbox import sandbox_env  # noqa: E402

RESULTS = REPO / "bench" / "results"
FILES = WORK / "files"
INSTITUTION = "bench-evaluator-overhead"
ADMIN = "bench-overhead-admin"
SUBMITTER = "bench-overhead-submitter"
NODE_NAME = "bench-overhead-node"
MODEL_FILENAME = "mlp.onnx"
DATA_FILENAME = "test.npz"
# Share of rows whose label is a random class instead of the model's own.
LABEL_NOISE = 0.1
JOB_TIMEOUT_SECONDS = 600
# The end of a job is read from the database timestamps; polling often would only take CPU
# from the evaluation it waits for.
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Sizes:
    rows: int
    features: int
    hidden: int
    classes: int
    batch_size: int
    seed: int

    @property
    def model_key(self) -> str:
        return f"{self.features}x{self.hidden}x{self.classes}-s{self.seed}"

    @property
    def data_key(self) -> str:
        return f"{self.rows}r-{self.model_key}"


def mlp_bytes(sizes: Sizes) -> bytes:
    """The serialized MLP: Gemm + Relu twice, then Gemm and Softmax; weights seeded."""
    rng = np.random.default_rng(sizes.seed)
    widths = [sizes.features, sizes.hidden, sizes.hidden, sizes.classes]
    initializers, nodes, previous = [], [], "X"
    for layer, (width_in, width_out) in enumerate(itertools.pairwise(widths), 1):
        weights = rng.standard_normal((width_in, width_out)) * np.sqrt(2 / width_in)
        bias = rng.standard_normal(width_out) * 0.01
        initializers += [
            numpy_helper.from_array(weights.astype(np.float32), f"w{layer}"),
            numpy_helper.from_array(bias.astype(np.float32), f"b{layer}"),
        ]
        nodes.append(helper.make_node("Gemm", [previous, f"w{layer}", f"b{layer}"], [f"z{layer}"]))
        previous = f"z{layer}"
        if layer < len(widths) - 1:
            nodes.append(helper.make_node("Relu", [previous], [f"a{layer}"]))
            previous = f"a{layer}"
    nodes.append(helper.make_node("Softmax", [previous], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "bench_mlp",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", sizes.features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", sizes.classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def dataset_write(sizes: Sizes, model_path: Path, path: Path) -> None:
    """Seeded features; labels are the model's own classes, a random class on LABEL_NOISE of
    the rows, so the accuracy is far from chance and any disagreement between paths shows."""
    rng = np.random.default_rng(sizes.seed + 1)
    features = rng.standard_normal((sizes.rows, sizes.features)).astype(np.float32)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    labels = np.concatenate(
        [
            session.run(None, {"X": features[start : start + sizes.batch_size]})[0].argmax(1)
            for start in range(0, sizes.rows, sizes.batch_size)
        ]
    ).astype(np.int64)
    noisy = rng.random(sizes.rows) < LABEL_NOISE
    labels[noisy] = rng.integers(0, sizes.classes, int(noisy.sum()))
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, X=features, y=labels)
    partial.rename(path)


def files_prepare(sizes: Sizes) -> tuple[Path, Path]:
    """The model and data files, built once per size and kept beside the media folder."""
    FILES.mkdir(parents=True, exist_ok=True)
    model_path = FILES / f"mlp-{sizes.model_key}.onnx"
    data_path = FILES / f"data-{sizes.data_key}.npz"
    if not model_path.exists():
        partial = model_path.with_suffix(".partial")
        partial.write_bytes(mlp_bytes(sizes))
        partial.rename(model_path)
    if not data_path.exists():
        print(f"Building {data_path.name} (labels from one pass of the model)", flush=True)
        dataset_write(sizes, model_path, data_path)
    return model_path, data_path


def stored_file(user: User, path: Path, name: str) -> str:
    """The artifact's digest; stored through the service (once: artifacts are by sha256)."""
    return stored_artifact(user, path.read_bytes(), name)


def namespace_prepare(
    sizes: Sizes, model_path: Path, data_path: Path
) -> tuple[User, User, Institution, ModelVersion, Benchmark]:
    """The institution, its admin and submitter, the MLP's model version and the onnx benchmark
    over the data, made through the services for each size, then reused."""
    institution, admin, submitter = namespace_people(
        slug=INSTITUTION,
        name="Evaluator Overhead Bench Institute",
        admin=ADMIN,
        submitter=SUBMITTER,
    )
    weights = stored_file(admin, model_path, MODEL_FILENAME)
    data = stored_file(admin, data_path, DATA_FILENAME)
    model = ResearchModel.objects.filter(institution=institution).first()
    if model is None:
        model = catalog_services.model_create(
            user=admin, institution=institution, name="Overhead bench MLP",
            slug="overhead-bench-mlp", license="MIT",
            summary="A seeded MLP classifier built with onnx.helper.",
        )  # fmt: skip
    label = f"1.0-{sizes.model_key}"
    version = ModelVersion.objects.filter(model=model, label=label).first()
    if version is None:
        version = catalog_services.version_create(
            user=admin, model=model, label=label, files=[(MODEL_FILENAME, weights)], publish=True
        )
    slug = f"overhead-{sizes.data_key}-b{sizes.batch_size}"
    benchmark = Benchmark.objects.filter(institution=institution, slug=slug).first()
    if benchmark is None:
        dataset = catalog_services.dataset_create(
            user=admin, institution=institution, name=f"Overhead bench data {sizes.data_key}",
            slug=f"overhead-data-{sizes.data_key}", license="CC-BY-4.0",
            files=[(DATA_FILENAME, data)],
        )  # fmt: skip
        benchmark = catalog_services.benchmark_create(
            user=admin, institution=institution, name=f"Overhead {sizes.data_key}", slug=slug,
            task_type="classification", dataset=dataset,
            metrics=[
                {"name": "accuracy", "higher_is_better": True},
                {"name": "macro_f1", "higher_is_better": True},
            ],
            evaluator="onnx",
            evaluator_config={
                "task": "classification", "data_file": DATA_FILENAME,
                "batch_size": sizes.batch_size,
            },
            gpu_count=0, time_limit_minutes=10, memory_limit_mb=4096,
        )  # fmt: skip
    return admin, submitter, institution, version, benchmark


def plain_loop(model_path: Path, data_path: Path, batch_size: int) -> dict:
    """The hand-written evaluation, timed by phase."""
    began = time.perf_counter()
    with np.load(data_path) as data:
        features, labels = data["X"], data["y"]
    loaded = time.perf_counter()
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    opened = time.perf_counter()
    predicted = np.concatenate(
        [
            session.run(None, {input_name: features[start : start + batch_size]})[0].argmax(1)
            for start in range(0, len(labels), batch_size)
        ]
    )
    inferred = time.perf_counter()
    metrics = {
        "accuracy": float(np.mean(predicted == labels)),
        "macro_f1": macro_f1(labels, predicted),
    }
    ended = time.perf_counter()
    return {
        "seconds": ended - began,
        "phases": {
            "np.load": loaded - began,
            "session": opened - loaded,
            "inference": inferred - opened,
            "metrics": ended - inferred,
        },
        "metrics": metrics,
    }


def _reaped_children_seconds(pid: int) -> dict[int, float]:
    """CPU of the children `pid` has waited for (cutime + cstime): the sandbox processes."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return {}
    return {pid: (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")}


class CpuMeter:
    """CPU seconds per group of processes over one repetition, the sandbox processes apart."""

    def __init__(self, processes: Processes) -> None:
        self.processes = processes
        self.groups = process_groups(processes, BROKER_URL)

    def snapshot(self) -> dict:
        snapshot = cpu_snapshot(self.groups())
        snapshot["sandbox"] = _reaped_children_seconds(self.processes.started["node-worker"].pid)
        return snapshot

    @staticmethod
    def used(before: dict, after: dict, seconds: float) -> dict:
        used = cpu_used(before, after)
        used["machine_cores"] = round(used["machine"] / seconds, 2)
        used["other_cores"] = round(used["other"] / seconds, 2)
        return used


@dataclass(frozen=True)
class FinishedJob:
    """A job that succeeded, with the times the node stored."""

    pk: int
    submitted_at: datetime
    started_at: datetime
    finished_at: datetime
    metrics: dict[str, float]

    def seconds(self, since: str) -> float:
        return (self.finished_at - getattr(self, since)).total_seconds()


def full_job(submitter: User, version: ModelVersion, benchmark: Benchmark) -> FinishedJob:
    job = services.job_submit(user=submitter, model_version=version, benchmark=benchmark)
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while Job.objects.filter(pk=job.pk, state__in=Job.ACTIVE_STATES).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job.pk} did not finish in {JOB_TIMEOUT_SECONDS} s")
        time.sleep(POLL_SECONDS)
    job = Job.objects.select_related("result").get(pk=job.pk)
    if job.state != Job.State.SUCCEEDED or job.started_at is None or job.finished_at is None:
        raise SystemExit(f"job {job.pk} ended {job.state}: {job.failure_reason}")
    return FinishedJob(
        pk=job.pk,
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        metrics=job.result.metrics,
    )


LOG_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): [^\]]*\] job (\d+) attempt \d+: "
)
# The lines of one job, in order, that mark its phases: the runner's, then the evaluator's
# (printed in the sandbox, logged by the worker as they arrive), then the runner's again.
MARKS = (
    ("run started", re.compile(r"^attempt \d+ on ")),
    ("last file taken from the cache", re.compile(r"^fetching dataset/")),
    ("evaluator read the data", re.compile(r": \d+ rows, features ")),
    ("session open", re.compile(r" on \w+ExecutionProvider, batches of ")),
    ("evaluator done", re.compile(r"^accuracy ")),
    ("sandbox ended", re.compile(r"^metrics: ")),
)


EVALUATOR_BATCHES = "session open -> evaluator done"


def job_marks(log: str, job_id: int) -> dict[str, datetime]:
    """When the node worker logged each of the job's marking lines (its local clock)."""
    found: dict[str, datetime] = {}
    for line in log.splitlines():
        match = LOG_LINE.match(line)
        if not match or int(match.group(2)) != job_id:
            continue
        text = line[match.end() :]
        for name, marker in MARKS:
            if name not in found and marker.search(text):
                stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
                found[name] = stamp.astimezone(UTC)
    return found


def job_phases(job: FinishedJob, log: str) -> dict[str, float]:
    """Seconds between the claim, the marking log lines and the stored end."""
    marks = job_marks(log, job.pk)
    points = [("claim (started_at)", job.started_at)]
    points += [(name, marks[name]) for name, _marker in MARKS if name in marks]
    points.append(("result stored (finished_at)", job.finished_at))
    return {
        f"{before} -> {after}": (later - earlier).total_seconds()
        for (before, earlier), (after, later) in itertools.pairwise(points)
    }


IMPORT_PROBES = {
    "interpreter start (python -P -c pass)": "pass",
    "import numpy": "import numpy",
    "import onnxruntime": "import onnxruntime",
    "import worker.sandbox + worker.evaluators.onnx": (
        "import worker.sandbox, worker.evaluators.onnx"
    ),
}


def import_costs(repeats: int) -> dict[str, list[float]]:
    """Wall seconds of a fresh interpreter doing only the sandbox child's imports, in the
    environment the sandbox gives it."""
    timings: dict[str, list[float]] = {name: [] for name in IMPORT_PROBES}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-imports-") as folder:
        scratch = Path(folder)
        (scratch / "tmp").mkdir()
        env = sandbox_env(scratch, {"CUDA_VISIBLE_DEVICES": "", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
        for _round in range(repeats):
            for name, code in IMPORT_PROBES.items():
                began = time.perf_counter()
                subprocess.run(  # noqa: S603
                    [sys.executable, "-P", "-c", code], cwd=scratch, env=env, check=True
                )
                timings[name].append(time.perf_counter() - began)
    return timings


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def metrics_agree(plain: dict[str, float], full: dict[str, float]) -> bool:
    return all(math.isclose(plain[name], full[name], rel_tol=0, abs_tol=1e-12) for name in plain)


def measure(
    *, repeats: int, sizes: Sizes, model_path: Path, data_path: Path, submitter: User,
    version: ModelVersion, benchmark: Benchmark, processes: Processes,
) -> dict:  # fmt: skip
    meter = CpuMeter(processes)
    print("warm-up: one plain loop, one full job (its fetch fills the worker's file cache)")
    warm_plain = plain_loop(model_path, data_path, sizes.batch_size)
    warm_job = full_job(submitter, version, benchmark)
    print(
        f"  plain {warm_plain['seconds']:.2f} s; full "
        f"{warm_job.seconds('started_at'):.2f} s (with the fetch)",
        flush=True,
    )
    time.sleep(1)  # gunicorn logs a request after its answer: the warm-up's last one too
    offsets = log_offsets(processes)
    plain_runs: list[dict] = []
    full_runs: list[dict] = []
    for number in range(1, repeats + 1):
        before = meter.snapshot()
        began = time.perf_counter()
        run = plain_loop(model_path, data_path, sizes.batch_size)
        run["cpu"] = meter.used(before, meter.snapshot(), time.perf_counter() - began)
        plain_runs.append(run)

        before = meter.snapshot()
        began = time.perf_counter()
        job = full_job(submitter, version, benchmark)
        waited = time.perf_counter() - began
        after = meter.snapshot()
        full_runs.append(
            {
                "job": job.pk,
                "started_to_finished": job.seconds("started_at"),
                "submitted_to_finished": job.seconds("submitted_at"),
                "submitted_to_started": (job.started_at - job.submitted_at).total_seconds(),
                "metrics": job.metrics,
                "cpu": meter.used(before, after, waited),
                "phases": job_phases(job, processes.log("node-worker")),
            }
        )
        print(
            f"  {number}/{repeats}: plain {run['seconds']:.2f} s; full "
            f"{full_runs[-1]['started_to_finished']:.2f} s from the claim, "
            f"{full_runs[-1]['submitted_to_finished']:.2f} s from the submission; "
            f"other cores {run['cpu']['other_cores']} / {full_runs[-1]['cpu']['other_cores']}",
            flush=True,
        )
    return {
        "warm_up": {
            "plain_seconds": round(warm_plain["seconds"], 3),
            "full_started_to_finished_seconds": round(warm_job.seconds("started_at"), 3),
        },
        "plain": plain_runs,
        "full": full_runs,
        "logs": logs_read(processes, offsets),
    }


def summarize(measured: dict) -> dict:
    plain, full = measured["plain"], measured["full"]
    plain_seconds = stats([run["seconds"] for run in plain])
    started = stats([run["started_to_finished"] for run in full])
    submitted = stats([run["submitted_to_finished"] for run in full])
    phase_names = list(plain[0]["phases"])
    full_phase_names = list(dict.fromkeys(name for run in full for name in run["phases"]))
    # What each path spends outside its batches (the part that machine noise stretches most):
    # the plain loop's np.load, session and metrics; everything of the full path's from the
    # claim to the stored result but the evaluator's batches and metrics.
    plain_outside = [run["seconds"] - run["phases"]["inference"] for run in plain]
    full_outside = [
        run["started_to_finished"] - run["phases"][EVALUATOR_BATCHES]
        for run in full
        if EVALUATOR_BATCHES in run["phases"]
    ]
    return {
        "plain_seconds": plain_seconds,
        "full_started_to_finished_seconds": started,
        "full_submitted_to_finished_seconds": submitted,
        "full_submitted_to_started_seconds": stats([run["submitted_to_started"] for run in full]),
        "ratio_started_to_finished": round(started["median"] / plain_seconds["median"], 3),
        "ratio_submitted_to_finished": round(submitted["median"] / plain_seconds["median"], 3),
        "outside_batches_median_seconds": {
            "plain": round(statistics.median(plain_outside), 3),
            "full, claim -> result stored": round(statistics.median(full_outside), 3),
        },
        "plain_phases_median_seconds": {
            name: round(statistics.median(run["phases"][name] for run in plain), 3)
            for name in phase_names
        },
        "full_phases_median_seconds": {
            name: round(
                statistics.median(run["phases"][name] for run in full if name in run["phases"]), 3
            )
            for name in full_phase_names
        },
        "cpu_seconds_median": {
            "plain loop (this process)": statistics.median(
                run["cpu"]["bench client"] for run in plain
            ),
            "full: sandbox processes": statistics.median(run["cpu"]["sandbox"] for run in full),
            "full: node worker itself": statistics.median(
                run["cpu"]["node-worker"] for run in full
            ),
            "full: gunicorn": statistics.median(run["cpu"]["gunicorn"] for run in full),
            "full: control worker": statistics.median(run["cpu"]["control-worker"] for run in full),
            "full: postgres": statistics.median(run["cpu"]["postgres"] for run in full),
            "full: this process (waiting)": statistics.median(
                run["cpu"]["bench client"] for run in full
            ),
        },
        "other_cores_median": {
            "plain": statistics.median(run["cpu"]["other_cores"] for run in plain),
            "full": statistics.median(run["cpu"]["other_cores"] for run in full),
        },
        "metrics_agree": all(
            metrics_agree(plain_run["metrics"], full_run["metrics"])
            for plain_run in plain
            for full_run in full
        ),
    }


def report_print(report: dict) -> None:
    summary, sizes = report["summary"], report["sizes"]
    print()
    print(
        f"{sizes['rows']:,} rows x {sizes['features']} features -> {sizes['hidden']} -> "
        f"{sizes['hidden']} -> {sizes['classes']}, batches of {sizes['batch_size']}; "
        f"{report['repeats']} repetitions each"
    )
    print(f"{'path':<46}{'median s':>10}{'min s':>8}{'max s':>8}{'x plain':>9}")
    plain = summary["plain_seconds"]
    rows = [
        ("plain onnxruntime loop", plain, 1.0),
        (
            "full path, claim -> result stored",
            summary["full_started_to_finished_seconds"],
            summary["ratio_started_to_finished"],
        ),
        (
            "full path, submission -> result stored",
            summary["full_submitted_to_finished_seconds"],
            summary["ratio_submitted_to_finished"],
        ),
    ]
    for name, row, ratio in rows:
        print(f"{name:<46}{row['median']:>10.3f}{row['min']:>8.3f}{row['max']:>8.3f}{ratio:>9.3f}")
    print(f"metrics agree: {summary['metrics_agree']} ({report['plain'][0]['metrics']})")
    outside = summary["outside_batches_median_seconds"]
    print(
        f"outside the batches (median s): plain {outside['plain']:.3f}, full path "
        f"{outside['full, claim -> result stored']:.3f}"
    )
    print("plain loop phases (median s): " + ", ".join(
        f"{name} {value:.3f}" for name, value in summary["plain_phases_median_seconds"].items()
    ))  # fmt: skip
    print("full path phases (median s, from the node worker's log):")
    for name, value in summary["full_phases_median_seconds"].items():
        print(f"  {name:<70}{value:>8.3f}")
    print(
        f"  submission -> claim (dispatch, message){'':<31}"
        f"{summary['full_submitted_to_started_seconds']['median']:>8.3f}"
    )
    print("a fresh interpreter in the sandbox's environment (median s):")
    for name, value in report["imports"].items():
        print(f"  {name:<70}{value['median']:>8.3f}")
    print("CPU seconds per repetition (median): " + ", ".join(
        f"{name} {value:.2f}" for name, value in summary["cpu_seconds_median"].items()
    ))  # fmt: skip
    print(
        f"other programs' cores during the repetitions (median): plain "
        f"{summary['other_cores_median']['plain']}, full {summary['other_cores_median']['full']}"
    )
    print("worker endpoints (gunicorn, server time):")
    for name, row in report["logs"]["endpoints"].items():
        print(f"  {name:<28}{row['requests']:>5} req  mean {row['ms_mean']:>7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=1536, help="width of both hidden layers")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of each path")
    parser.add_argument("--import-repeats", type=int, default=5)
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args()
    sizes = Sizes(
        rows=args.rows, features=args.features, hidden=args.hidden, classes=args.classes,
        batch_size=args.batch_size, seed=args.seed,
    )  # fmt: skip

    started = time.perf_counter()
    database_prepare(reset=False)
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise SystemExit("The bench database lacks migrations.")
    restored = others_unpark()
    if restored:
        print(f"Put back {restored:,} jobs parked by an earlier run that did not finish")
    model_path, data_path = files_prepare(sizes)
    admin, submitter, institution, version, benchmark = namespace_prepare(
        sizes, model_path, data_path
    )
    print(f"Cleared {namespace_clear(institution):,} jobs of an earlier run", flush=True)
    broker, cache_db = redis.Redis.from_url(BROKER_URL), redis.Redis.from_url(CACHE_URL)
    broker.flushdb()
    cache_db.flushdb()
    folder = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    processes = Processes(folder)
    load_before = os.getloadavg()
    parked = 0
    beat_stop, beat_sent = threading.Event(), [0]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        parked = others_park(institution)
        if parked:
            print(f"Parked {parked:,} pending jobs of other namespaces", flush=True)
        node, token = services.node_create(user=admin, institution=institution, name=NODE_NAME)
        connection.close()
        pool_start(
            processes, node_token=token, slots=1, folder=folder, broker_url=BROKER_URL,
            control_queue=CONTROL_QUEUE,
        )  # fmt: skip
        threading.Thread(
            target=beat, args=(beat_stop, beat_sent, CONTROL_QUEUE), daemon=True
        ).start()
        measured = measure(
            repeats=args.repeats, sizes=sizes, model_path=model_path, data_path=data_path,
            submitter=submitter, version=version, benchmark=benchmark, processes=processes,
        )  # fmt: skip
        print("imports of a fresh sandbox interpreter", flush=True)
        imports = import_costs(args.import_repeats)
        check_no_strangers(node.pk, institution)
    finally:
        pool_teardown(
            beat_stop=beat_stop, processes=processes, parked=parked, institution=institution,
            flushed=[broker, cache_db], folder=folder, keep_logs=args.keep_logs,
        )  # fmt: skip

    stamp = datetime.now(UTC)
    report = {
        **report_head(load_before, onnxruntime=ort.__version__, numpy=np.__version__),
        "setup": {
            **pool_setup_facts(slots=1, beat_sent=beat_sent[0], parked=parked),
            "model_bytes": model_path.stat().st_size,
            "data_bytes": data_path.stat().st_size,
        },
        "sizes": asdict(sizes),
        "repeats": args.repeats,
        "summary": summarize(measured),
        "imports": {name: stats(values) for name, values in imports.items()},
        **measured,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report_print(report)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"evaluator-overhead-{stamp:%Y-%m-%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nWrote {path.relative_to(REPO)} ({report['seconds']} s)")
    if not report["summary"]["metrics_agree"]:
        raise SystemExit("The full path's metrics differ from the plain loop's: see the JSON.")


if __name__ == "__main__":
    main()
