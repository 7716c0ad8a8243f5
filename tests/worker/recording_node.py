"""A stand-in for the node where only the worker's side is under test, and a `JobRun` over it
with the files a test chooses."""

import hashlib
import threading
from pathlib import Path

from worker.evaluators import EvaluatorSpec, evaluator_specs
from worker.file_cache import FileCache
from worker.inventory import Inventory
from worker.runner import JobRun
from worker.sandbox import SandboxLimits


class RecordingNode:
    """Serves the files it was given and records what the worker sends back."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.downloads: list[str] = []
        self.outcomes: list[tuple] = []
        self.provenance: dict = {}
        self.log = ""

    def download(self, url, dest_path, sha256, size=None):
        self.downloads.append(sha256)
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        dest_path.write_bytes(self.files[sha256])
        return dest_path

    def append_log(self, job, attempt, offset, text):
        self.log += text
        return len(self.log)

    def report_failure(self, job, attempt, state, reason):
        self.outcomes.append((state, reason))

    def post_result(self, job, attempt, metrics, provenance):
        self.provenance = provenance
        self.outcomes.append(("succeeded", metrics))


def probe_spec(entry: str) -> EvaluatorSpec:
    """An evaluator named "probe" whose evaluate function `entry` names."""
    return EvaluatorSpec(name="probe", description="", model_formats=(), entry=entry)


def _entries(files: dict[str, bytes], formats: dict[str, str]) -> list[dict]:
    return [
        {
            "filename": filename,
            "sha256": hashlib.sha256(content).hexdigest(),
            "size": len(content),
            "format": formats.get(filename, "other"),
            "url": f"/files/{hashlib.sha256(content).hexdigest()}",
        }
        for filename, content in files.items()
    ]


def job_run(
    tmp_path: Path,
    *,
    evaluator: str,
    specs: dict[str, EvaluatorSpec] | None = None,
    model: dict[str, bytes],
    dataset: dict[str, bytes] | None = None,
    formats: dict[str, str] | None = None,
    config: dict | None = None,
    time_limit_seconds: int = 60,
    memory_limit_mb: int = 0,
    limits: SandboxLimits | None = None,
    terms: dict | None = None,
) -> tuple[JobRun, RecordingNode]:
    """A claimed CPU attempt of `evaluator` over these model and dataset files (by name);
    `terms`: what the node adds to the claim (isolation_required, trusted)."""
    dataset = dataset or {}
    contents = {**model, **dataset}.values()
    node = RecordingNode({hashlib.sha256(content).hexdigest(): content for content in contents})
    spec = {
        "job": 9, "attempt": 1, "devices": ["cpu:0"], "gpu_indices": [],
        "time_limit_seconds": time_limit_seconds, "memory_limit_mb": memory_limit_mb,
        "model": {"files": _entries(model, formats or {})},
        "benchmark": {
            "evaluator": evaluator, "config": config or {},
            "dataset": {"files": _entries(dataset, formats or {})},
        },
        **(terms or {}),
    }  # fmt: skip
    run = JobRun(
        client=node,  # type: ignore[arg-type]
        cache=FileCache(tmp_path / "cache"),
        spec=spec,
        specs=evaluator_specs() if specs is None else specs,
        inventory=Inventory(cpu_count=2, memory_bytes=1),
        stop=threading.Event(),
        scratch_root=tmp_path / "scratch",
        limits=limits,
    )
    return run, node
