"""The inside of the sandbox: `python -m worker.sandbox --request-fd N --result-fd M`.

The worker starts this under bubblewrap (or, where bubblewrap is missing, it first enters the
fallback namespaces of `worker.sandbox.namespaces`). This process is the sandbox's supervisor
and never runs evaluator code: it reads the request, forks the evaluation, and waits. The
evaluation (the forked process) imports the evaluator, runs it, and sends its metrics and the
facts it recorded back through a pipe. The supervisor checks them and writes them to the result
descriptor, which the evaluation never holds and, the supervisor being non-dumpable, cannot
reach through /proc either. The worker checks them again and writes the provenance itself.
"""

import contextlib
import ctypes
import importlib
import json
import os
import random
import resource
import select
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import psutil

from worker.evaluation import EvaluationContext, EvaluationError, FetchedFile, Stopped
from worker.sandbox import (
    MAX_RESULT_BYTES,
    PR_SET_CHILD_SUBREAPER,
    checked_metrics,
    hide_from_same_user,
    namespaces,
)

POLL_SECONDS = 0.1
# What an evaluator may record about itself (batch size, execution provider, task versions).
MAX_FACTS_BYTES = 256 * 1024


def _log_line(line: str) -> None:
    print(line, flush=True)


def _fetched(entry: dict[str, Any]) -> FetchedFile:
    return FetchedFile(
        str(entry["filename"]),
        str(entry["sha256"]),
        int(entry["size"]),
        str(entry["format"]),
        Path(entry["path"]),
    )


def _evaluate(request: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
    module_name, _, function_name = str(request["evaluator"]["entry"]).partition(":")
    evaluate = getattr(importlib.import_module(module_name), function_name)
    seed = int(request["seed"])
    random.seed(seed)
    if "numpy" in sys.modules:  # seeded only where the evaluator uses it: importing costs time
        sys.modules["numpy"].random.seed(seed)
    context = EvaluationContext(
        job=int(request["job"]),
        attempt=int(request["attempt"]),
        evaluator=str(request["evaluator"]["name"]),
        config=dict(request["config"]),
        model_files=[_fetched(entry) for entry in request["model_files"]],
        dataset_files=[_fetched(entry) for entry in request["dataset_files"]],
        scratch_dir=Path(request["scratch_dir"]),
        env=dict(request["env"]),
        devices=list(request["devices"]),
        gpu_indices=[int(index) for index in request["gpu_indices"]],
        time_limit_seconds=int(request["time_limit_seconds"]),
        stop=stop,
        log=_log_line,
    )
    return {"metrics": evaluate(context), "facts": context.provenance}


def _run_evaluation(request: dict[str, Any], pipe: int) -> None:
    """The forked evaluation: runs the evaluator, sends its outcome, exits."""
    stop = threading.Event()
    # The worker's SIGTERM asks the evaluator to stop; SIGKILL follows if it does not.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    outcome: dict[str, Any]
    try:
        outcome = _evaluate(request, stop)
    except EvaluationError as error:
        outcome = {"error": str(error)}
    except Stopped:
        outcome = {"stopped": True}
    except (Exception, SystemExit) as error:
        traceback.print_exc()
        outcome = {"error": f"{type(error).__name__}: {error}"}
    try:
        message = json.dumps(outcome, default=str).encode()
    except (TypeError, ValueError) as error:
        message = json.dumps({"error": f"The evaluator's outcome is not JSON: {error}"}).encode()
    with contextlib.suppress(OSError), os.fdopen(pipe, "wb") as channel:
        channel.write(message)
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter shutdown: an evaluator's leftover threads must not hold the outcome back.
    os._exit(0)


def _scratch_used(scratch: str) -> tuple[int, bool]:
    """Bytes used in the scratch tmpfs, and whether it is full."""
    try:
        found = os.statvfs(scratch)
    except OSError:
        return 0, False
    return (found.f_blocks - found.f_bfree) * found.f_frsize, found.f_bavail == 0


def _collect(child: int, pipe: int, scratch: str | None) -> tuple[bytes, dict[str, Any]]:
    """The evaluation's message (at most MAX_RESULT_BYTES + 1 bytes of it) once it exited,
    with the most scratch space it was seen to use."""
    received = bytearray()
    os.set_blocking(pipe, False)
    exit_fd = os.pidfd_open(child)
    watching = [pipe, exit_fd]
    peak, filled = 0, False
    while True:
        ready = select.select(watching, [], [], POLL_SECONDS)[0]
        if pipe in ready:
            with contextlib.suppress(BlockingIOError):
                chunk = os.read(pipe, 65536)
                if not chunk:
                    watching.remove(pipe)
                elif len(received) <= MAX_RESULT_BYTES:
                    received += chunk
        if scratch is not None:
            used, full = _scratch_used(scratch)
            peak, filled = max(peak, used), filled or full
        if exit_fd in ready:
            break
    with contextlib.suppress(BlockingIOError, OSError):
        while pipe in watching and (chunk := os.read(pipe, 65536)):
            if len(received) <= MAX_RESULT_BYTES:
                received += chunk
    os.close(exit_fd)
    os.waitpid(child, 0)
    return bytes(received), {"scratch_peak_bytes": peak, "scratch_full": filled}


def _checked_outcome(message: bytes) -> dict[str, Any]:
    if not message:
        return {"error": "The evaluation process ended before it reported a result: see the log."}
    if len(message) > MAX_RESULT_BYTES:
        return {"error": "The evaluation's outcome is larger than any result."}
    try:
        outcome = json.loads(message)
    except ValueError:
        return {"error": "The evaluation's outcome is not JSON."}
    if not isinstance(outcome, dict):
        return {"error": "The evaluation's outcome is not a result."}
    if "error" in outcome or outcome.get("stopped"):
        return {key: outcome[key] for key in ("error", "stopped") if key in outcome}
    try:
        metrics = checked_metrics(outcome.get("metrics"))
    except EvaluationError as error:
        return {"error": str(error)}
    facts = outcome.get("facts")
    if not isinstance(facts, dict) or len(json.dumps(facts)) > MAX_FACTS_BYTES:
        facts = {}
    return {"metrics": metrics, "facts": facts}


def _end_descendants() -> None:
    """Ends every process the evaluation started. Orphans are re-parented to this process (a
    subreaper), so one that double-forked away from its parent is found too."""
    me = psutil.Process()
    for _ in range(100):
        children = me.children(recursive=True)
        if not children:
            return
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(children, timeout=0.1)


def main(request_fd: int, result_fd: int) -> None:
    with os.fdopen(request_fd, "rb") as channel:
        request = json.loads(channel.read())
    sandbox_facts: dict[str, str] = {}
    if request["mode"] == "namespaces":
        sandbox_facts, own_pids = namespaces.isolate(request)
        if own_pids:
            namespaces.become_init(result_fd)
        namespaces.lock_down(request, sandbox_facts, own_pids=own_pids)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Orphans of the evaluation become this process's children, so they end with it.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # The evaluation cannot read this process's memory or open descriptors through /proc.
    hide_from_same_user()
    # The worker's SIGTERM is for the evaluation; its SIGKILL ends this process too.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.close(readable)
        os.close(result_fd)
        _run_evaluation(request, writable)
    os.close(writable)
    scratch = request["scratch_dir"] if request["mode"] == "bubblewrap" else None
    message, usage = _collect(child, readable, scratch)
    _end_descendants()
    result = {**_checked_outcome(message), **usage, "sandbox": sandbox_facts}
    with os.fdopen(result_fd, "wb") as channel:
        channel.write(json.dumps(result).encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    options = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
    main(int(options["--request-fd"]), int(options["--result-fd"]))
