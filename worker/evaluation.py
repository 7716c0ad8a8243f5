"""What an evaluator is given and returns.

An evaluator is a function taking an `EvaluationContext` and returning its metrics
({name: number}). It runs inside the job's sandboxed subprocess (`worker.sandbox`): it reads the
files the job fetched, writes only under `scratch_dir`, runs on the devices `env` names
(CUDA_VISIBLE_DEVICES is already set in its environment), and records what shaped its figures
(batch size, seed, execution provider, package versions) in `provenance`. It raises
`EvaluationError` with a message its user can act on.
"""

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1024 * 1024
# What the node stores of one result: enough for any benchmark, not a flood.
MAX_METRICS = 1000
MAX_METRIC_NAME_LENGTH = 200


def finite_number(value: object) -> bool:
    """A JSON number the platform can store and rank: no bool, NaN, infinity or an integer
    beyond what a float holds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            hasher.update(chunk)
    return hasher.hexdigest()


class Stopped(Exception):
    """The evaluation ended early because its stop event was set."""


class EvaluationError(Exception):
    """The evaluation failed in a way its user can act on: the message says how."""


@dataclass(frozen=True)
class FetchedFile:
    filename: str
    sha256: str
    size: int
    format: str
    # The verified file, as the evaluator sees it (inside scratch_dir).
    path: Path


@dataclass
class EvaluationContext:
    job: int
    attempt: int
    evaluator: str
    config: dict[str, Any]
    model_files: list[FetchedFile]
    dataset_files: list[FetchedFile]
    scratch_dir: Path
    env: dict[str, str]
    devices: list[str]
    gpu_indices: list[int]
    time_limit_seconds: int
    stop: threading.Event = field(default_factory=threading.Event)
    log: Callable[[str], None] = print
    # Facts the evaluator adds to the result's provenance: batch_size, seed, execution_provider...
    provenance: dict[str, Any] = field(default_factory=dict)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped()

    def dataset_file(self, filename: str) -> FetchedFile:
        """The dataset file the benchmark config names, or an error listing the files there are."""
        for fetched in self.dataset_files:
            if fetched.filename == filename:
                return fetched
        names = ", ".join(sorted(f.filename for f in self.dataset_files)) or "no files"
        raise EvaluationError(f"The dataset has no file {filename!r} (it has {names}).")

    def model_files_of(self, *formats: str) -> list[FetchedFile]:
        """The model files in any of these formats, or an error naming the formats expected."""
        found = [fetched for fetched in self.model_files if fetched.format in formats]
        if not found:
            have = ", ".join(sorted({f.format or "unknown" for f in self.model_files})) or "none"
            raise EvaluationError(
                f"The model version has no {' or '.join(formats)} file (its formats: {have})."
            )
        return found
