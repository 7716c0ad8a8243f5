"""What an evaluator is given and returns, and the evaluators this worker can run.

An evaluator is a callable taking an `EvaluationContext` and returning its metrics
({name: number}). It reads the files the job fetched, writes only under `scratch_dir`, runs on
the devices `env` names (CUDA_VISIBLE_DEVICES), and returns early by raising `Stopped` once
`stop` is set: the job was cancelled, requeued, or ran out of time.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped()


Evaluator = Callable[[EvaluationContext], dict[str, float]]


def builtin_evaluators() -> dict[str, Evaluator]:
    from worker.evaluators.smoke import evaluate as smoke

    return {"smoke": smoke}
