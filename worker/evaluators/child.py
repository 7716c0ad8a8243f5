"""Runs the part of a built-in evaluator that executes the benchmark's own code (lm-eval task
YAMLs with Jinja templates, `!function` helpers) in a child process of its own.

The child is a fresh interpreter: it holds none of the evaluation's descriptors (the result
channel among them), cannot read the evaluation's memory (the evaluation is non-dumpable and
the sandbox's system-call filter refuses ptrace), and hands back only its raw outcome, a JSON
file in the scratch directory that the evaluator reads, checks and turns into metrics. The
provenance is never the child's to write.
"""

import json
import subprocess
import sys
from typing import Any

from worker.evaluation import EvaluationContext, EvaluationError, Stopped

POLL_SECONDS = 0.1
MAX_OUTCOME_BYTES = 16 * 1024 * 1024


def run_dataset_code(context: EvaluationContext, module: str, request: dict[str, Any]) -> Any:
    """`python -m module REQUEST OUTCOME` in the scratch directory: the outcome it wrote."""
    folder = context.scratch_dir / f".{module.rsplit('.', 1)[-1]}"
    folder.mkdir(exist_ok=True)
    request_path, outcome_path = folder / "request.json", folder / "outcome.json"
    request_path.write_text(json.dumps(request))
    # The command is this interpreter and a module of the worker's; the request is data.
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-P", "-m", module, str(request_path), str(outcome_path)],
        cwd=context.scratch_dir,
        stdin=subprocess.DEVNULL,
    )
    while True:
        try:
            returncode = process.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            if context.stop.is_set():
                process.kill()
                process.wait()
                raise Stopped() from None
    try:
        with open(outcome_path, "rb") as file:
            content = file.read(MAX_OUTCOME_BYTES + 1)
    except OSError:
        content = b""
    if not content or len(content) > MAX_OUTCOME_BYTES:
        raise EvaluationError(
            f"The benchmark's code exited with code {returncode} without an outcome: see the log."
        )
    try:
        return json.loads(content)
    except ValueError:
        raise EvaluationError("The benchmark's code wrote an outcome that is not JSON.") from None
