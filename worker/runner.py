"""One claimed attempt of a job, from its files to its result.

`JobRun` fetches the files into the cache, lays them out in a fresh scratch directory, runs the
evaluator in a sandboxed subprocess (`worker.sandbox`) and reports back.
"""

import contextlib
import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from worker.evaluation import EvaluationContext, EvaluationError, FetchedFile, Stopped
from worker.evaluators import EvaluatorSpec
from worker.file_cache import FileCache, default_cache_dir
from worker.inventory import Inventory
from worker.node_client import NodeClient, NodeError, NodeUnavailable, StaleAttempt
from worker.sandbox import (
    FULL,
    SandboxLimits,
    checked_metrics,
    isolation_capability,
    run_sandboxed,
)

logger = logging.getLogger(__name__)

LOG_FLUSH_SECONDS = 1.0
# How long a finished attempt keeps trying to report while the node cannot be reached.
OUTCOME_RETRY_LIMIT_SECONDS = 30 * 60
OUTCOME_RETRY_WAIT_SECONDS = 10.0
LOG_FLUSH_CHARS = 64 * 1024


def remove_tree(folder: Path) -> None:
    """Removes a scratch folder whatever the evaluation did to its permissions (a folder
    without read or search permission cannot be emptied until it gets them back)."""
    try:
        shutil.rmtree(folder)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    with contextlib.suppress(OSError):
        os.chmod(folder, stat.S_IRWXU)
    for parent, folders, _files in os.walk(folder):
        for name in folders:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(parent, name), stat.S_IRWXU, follow_symlinks=False)
    shutil.rmtree(folder, ignore_errors=True)


def default_scratch_root() -> Path:
    """A folder of its own, beside the file cache and not in /tmp: an evaluation's sandbox
    covers it to hide the other jobs' folders."""
    return default_cache_dir().parent / "scratch"


def worker_version() -> str:
    try:
        return version("research-exchange")
    except PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def device_env(gpu_indices: list[int], inventory: Inventory) -> dict[str, str]:
    """The environment that shows the evaluator its GPUs and no others (none for a CPU job).
    UUIDs, when NVML gave them, do not depend on how CUDA numbers the devices."""
    uuids = {gpu.index: gpu.uuid for gpu in inventory.gpus}
    names = [uuids.get(index, "") for index in gpu_indices]
    visible = names if all(names) else [str(index) for index in gpu_indices]
    return {"CUDA_VISIBLE_DEVICES": ",".join(visible), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


class LogStream:
    """The attempt's output, sent to the node by offset every second or every 64 KiB."""

    def __init__(
        self,
        client: NodeClient,
        job: int,
        attempt: int,
        *,
        flush_seconds: float = LOG_FLUSH_SECONDS,
        flush_chars: int = LOG_FLUSH_CHARS,
    ) -> None:
        self.client = client
        self.job = job
        self.attempt = attempt
        self.flush_seconds = flush_seconds
        self.flush_chars = flush_chars
        self.offset = 0
        self._pending = ""
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        # Set once the node refuses this attempt's log (it is no longer this worker's) or keeps
        # no more of it (the log reached the node's limit): the rest is not sent.
        self._refused = False
        self._full = False
        self._thread = threading.Thread(target=self._loop, name=f"log-{job}-{attempt}", daemon=True)
        self._thread.start()

    def write(self, line: str) -> None:
        if self._full:
            return
        logger.info("job %s attempt %s: %s", self.job, self.attempt, line.rstrip("\n"))
        # The node stores text: a NUL byte from a tool's output would get the piece refused.
        line = line.replace("\x00", "\ufffd")
        with self._lock:
            self._pending += line if line.endswith("\n") else line + "\n"
            full = len(self._pending) >= self.flush_chars
        if full:
            self._wake.set()

    def _loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._send_lock:
            while not self._refused and not self._full:
                with self._lock:
                    text, self._pending = (
                        self._pending[: self.flush_chars],
                        self._pending[self.flush_chars :],
                    )
                if not text:
                    return
                try:
                    length = self.client.append_log(self.job, self.attempt, self.offset, text)
                    if length < self.offset + len(text):
                        self._full = True
                        logger.warning(
                            "job %s attempt %s: the node keeps no more of this log; the rest "
                            "is dropped",
                            self.job,
                            self.attempt,
                        )
                    self.offset = length
                except StaleAttempt:
                    self._refused = True
                except NodeUnavailable as error:
                    logger.warning("job %s: log not sent, kept for later: %s", self.job, error)
                    with self._lock:
                        self._pending = text + self._pending
                    return
                except NodeError as error:
                    logger.warning("job %s: log piece refused: %s", self.job, error)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join()
        self.flush()


def _checked_filename(filename: str) -> str:
    if not filename or filename in (".", "..") or Path(filename).name != filename:
        raise EvaluationError(f"Refusing the file name {filename!r}: not a plain file name.")
    return filename


def _pickled_files(model: dict[str, Any]) -> list[str]:
    return [str(file["filename"]) for file in model["files"] if file.get("format") == "pickle"]


def isolation_refusal(capability: dict[str, str], spec: dict[str, Any]) -> str:
    """Why this worker must not run the attempt, given what it can isolate; "" when it may.
    The node says whether the benchmark requires full isolation, and whether the attempt is
    trusted (a benchmark of the node's own institution, on a node marked trusted-only)."""
    level = capability["level"]
    if spec.get("isolation_required") == FULL and level != FULL:
        return (
            f"The benchmark requires full isolation; this worker offers {level} isolation "
            f"({capability['reason']}). Install bubblewrap on the worker's host."
        )
    if level != FULL and not spec.get("trusted"):
        return (
            f"This worker cannot fully isolate evaluations ({capability['reason']}): it runs only "
            "benchmarks of its own institution, and only once an admin marks its node "
            "trusted-only."
        )
    return ""


class JobRun:
    """One attempt this worker claimed. `execute` never raises: every outcome is reported to
    the node (or, for a stopped attempt, deliberately not)."""

    def __init__(
        self,
        *,
        client: NodeClient,
        cache: FileCache,
        spec: dict[str, Any],
        specs: dict[str, EvaluatorSpec],
        inventory: Inventory,
        stop: threading.Event,
        scratch_root: Path | None = None,
        limits: SandboxLimits | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.spec = spec
        self.job = int(spec["job"])
        self.attempt = int(spec["attempt"])
        self.specs = specs
        self.inventory = inventory
        self.stop = stop
        self.scratch_root = scratch_root
        self.limits = limits
        self.evaluator_name = str(spec["benchmark"]["evaluator"])
        self.gpu_indices = [int(index) for index in spec.get("gpu_indices", [])]
        self.time_limit_seconds = int(spec.get("time_limit_seconds") or 0)
        self.memory_limit_mb = int(spec.get("memory_limit_mb") or 0)
        # What the sandbox reported about the evaluation: evaluator version, packages, network...
        self.evaluation_provenance: dict[str, Any] = {}
        self.timed_out = False
        self._scratch: Path | None = None
        self.model_files: list[FetchedFile] = []
        self.dataset_files: list[FetchedFile] = []
        self._pinned: list[str] = []
        self.log: Callable[[str], None] = lambda line: None

    @property
    def scratch_dir(self) -> Path:
        """This attempt's own working directory, removed when it ends."""
        if self._scratch is None:
            raise RuntimeError("The attempt has not started: it has no scratch directory yet.")
        return self._scratch

    def _time_up(self) -> None:
        self.timed_out = True
        self.stop.set()

    def execute(self) -> str:
        """Runs the attempt; returns "succeeded", "failed", "timed_out" or "stopped"."""
        started_at = _now()
        stream = LogStream(self.client, self.job, self.attempt)
        self.log = stream.write
        timer = None
        if self.time_limit_seconds:
            timer = threading.Timer(self.time_limit_seconds, self._time_up)
            timer.daemon = True
            timer.start()
        prefix = f"job-{self.job}-attempt-{self.attempt}-"
        root = (self.scratch_root or default_scratch_root()).resolve()
        root.mkdir(parents=True, exist_ok=True)
        scratch = self._scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        metrics: dict[str, Any] | None = None
        failure: tuple[str, str] | None = None
        try:
            devices = ", ".join(self.spec.get("devices", []))
            self.log(f"attempt {self.attempt} on {socket.gethostname()}: {devices}")
            evaluator = self.specs.get(self.evaluator_name)
            pickled = _pickled_files(self.spec["model"])
            if pickled:
                failure = (
                    "failed",
                    f"Refusing the model file(s) {', '.join(pickled)}: pickle files run code when "
                    "loaded, and the pool never evaluates them. Publish the weights as "
                    "safetensors, ONNX or GGUF.",
                )
            elif evaluator is None:
                failure = (
                    "failed",
                    f"evaluator {self.evaluator_name} is not installed on this worker",
                )
            elif refusal := isolation_refusal(isolation_capability(), self.spec):
                failure = ("failed", refusal)
            else:
                self.fetch_files()
                metrics = checked_metrics(self.run_evaluator(evaluator))
                # An evaluation that finished as its time ran out still has its result.
                if self.stop.is_set() and not self.timed_out:
                    raise Stopped()
                self.log(f"metrics: {metrics}")
        except Stopped:
            metrics = None
            if self.timed_out:
                failure = (
                    "timed_out",
                    f"Ran past its time limit of {self.time_limit_seconds} seconds.",
                )
        except Exception as error:
            self.log(traceback.format_exc())
            known = isinstance(error, EvaluationError | NodeError)
            failure = ("failed", str(error) if known else f"{type(error).__name__}: {error}")
        finally:
            if timer is not None:
                timer.cancel()
            stream.close()
            self.cache.release(self._pinned)
            remove_tree(scratch)
        return self._report_until_heard(metrics, failure, started_at)

    def _report_until_heard(
        self, metrics: dict[str, Any] | None, failure: tuple[str, str] | None, started_at: str
    ) -> str:
        """Reports the outcome; while the node cannot be reached, tries again as long as the
        attempt is still this worker's (the heartbeat thread sets `stop` once a whole lease
        went by without contact). Reports are idempotent, so a repeat does no harm."""
        deadline = time.monotonic() + OUTCOME_RETRY_LIMIT_SECONDS
        while True:
            outcome = self._report(metrics, failure, started_at)
            if outcome != "unreported" or time.monotonic() > deadline:
                return outcome
            if self.stop.wait(OUTCOME_RETRY_WAIT_SECONDS):
                return outcome

    def _report(
        self, metrics: dict[str, Any] | None, failure: tuple[str, str] | None, started_at: str
    ) -> str:
        try:
            if failure is not None:
                state, reason = failure
                self.client.report_failure(self.job, self.attempt, state, reason)
                logger.info("job %s attempt %s %s: %s", self.job, self.attempt, state, reason)
                return state
            if metrics is None:
                logger.info("job %s attempt %s stopped", self.job, self.attempt)
                return "stopped"
            self.client.post_result(self.job, self.attempt, metrics, self.provenance(started_at))
            logger.info("job %s attempt %s succeeded: %s", self.job, self.attempt, metrics)
            return "succeeded"
        except StaleAttempt as stale:
            # Cancelled or requeued while it ran: the node no longer wants this attempt's word.
            logger.info("job %s attempt %s: outcome not taken: %s", self.job, self.attempt, stale)
            return "stopped"
        except NodeError as refusal:
            if failure is None and metrics is not None:
                reason = f"The node refused the result: {refusal.message}"
                return self._report(None, ("failed", reason), started_at)
            logger.error("job %s attempt %s: outcome refused: %s", self.job, self.attempt, refusal)
            return "unreported"
        except NodeUnavailable as error:
            logger.error(
                "job %s attempt %s: outcome not reported yet: %s", self.job, self.attempt, error
            )
            return "unreported"

    def _fetch(self, files: list[dict[str, Any]], folder: str) -> list[FetchedFile]:
        target = self.scratch_dir / folder
        target.mkdir(exist_ok=True)
        fetched = []
        for file in files:
            if self.stop.is_set():
                raise Stopped()
            filename = _checked_filename(str(file["filename"]))
            sha256, size = str(file["sha256"]).lower(), int(file["size"])
            self.log(f"fetching {folder}/{filename} ({size} bytes, sha256 {sha256[:12]})")
            cached = self.cache.fetch(self.client, url=file["url"], sha256=sha256, size=size)
            self._pinned.append(sha256)
            link = target / filename
            link.symlink_to(cached)
            fetched.append(FetchedFile(filename, sha256, size, str(file.get("format", "")), link))
        return fetched

    def fetch_files(self) -> None:
        """Every model and dataset file, verified, in scratch_dir/model and scratch_dir/dataset."""
        self.model_files = self._fetch(self.spec["model"]["files"], "model")
        dataset = self.spec["benchmark"].get("dataset") or {"files": []}
        self.dataset_files = self._fetch(dataset["files"], "dataset")

    def context(self) -> EvaluationContext:
        return EvaluationContext(
            job=self.job,
            attempt=self.attempt,
            evaluator=self.evaluator_name,
            config=dict(self.spec["benchmark"].get("config") or {}),
            model_files=self.model_files,
            dataset_files=self.dataset_files,
            scratch_dir=self.scratch_dir,
            env=device_env(self.gpu_indices, self.inventory),
            devices=list(self.spec.get("devices", [])),
            gpu_indices=self.gpu_indices,
            time_limit_seconds=self.time_limit_seconds,
            stop=self.stop,
            log=self.log,
        )

    def run_evaluator(self, evaluator: EvaluatorSpec) -> dict[str, Any]:
        outcome = run_sandboxed(
            evaluator,
            self.context(),
            memory_limit_mb=self.memory_limit_mb,
            cache_root=self.cache.root,
            limits=self.limits,
            gpu_numbers=self._gpu_numbers(),
        )
        level = outcome.provenance["isolation"]["level"]
        if self.spec.get("isolation_required") == FULL and level != FULL:
            raise EvaluationError(
                f"The benchmark requires full isolation; this evaluation ran with {level} "
                "isolation, so its result is not reported."
            )
        self.evaluation_provenance = outcome.provenance
        return outcome.metrics

    def _gpu_numbers(self) -> list[int]:
        """The minor numbers of the GPUs given (their /dev/nvidiaN), where NVML told them."""
        minors = {gpu.index: gpu.minor_number for gpu in self.inventory.gpus}
        return [
            minors[index] if minors.get(index, -1) >= 0 else index for index in self.gpu_indices
        ]

    def provenance(self, started_at: str) -> dict[str, Any]:
        gpus_by_index = {gpu.index: gpu for gpu in self.inventory.gpus}
        assigned = [gpus_by_index[i] for i in self.gpu_indices if i in gpus_by_index]
        # The worker's own facts win over anything the evaluator wrote under the same name.
        return {
            **self.evaluation_provenance,
            "worker_version": worker_version(),
            "python": sys.version.split()[0],
            "host": socket.gethostname(),
            "gpus": [{"index": gpu.index, "name": gpu.name, "uuid": gpu.uuid} for gpu in assigned]
            or "cpu",
            "driver_version": self.inventory.driver_version,
            "cuda_version": self.inventory.cuda_version,
            "devices": list(self.spec.get("devices", [])),
            "evaluator": self.evaluator_name,
            "model_files": {file.filename: file.sha256 for file in self.model_files},
            "dataset_files": {file.filename: file.sha256 for file in self.dataset_files},
            "started_at": started_at,
            "finished_at": _now(),
        }
