"""The "command" evaluator: runs a script shipped in the benchmark's dataset, which writes its
metrics as JSON ({name: number}) to the file METRICS_FILE names.

The script runs in the job's sandbox, in the scratch directory, with the sandbox's environment
plus MODEL_DIR, DATASET_DIR, METRICS_FILE and BENCHMARK_CONFIG (the benchmark's config as
JSON). Its output goes to the job's log.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from worker.evaluation import EvaluationContext, EvaluationError
from worker.sandbox import checked_metrics, exit_description

INTERPRETERS = {".py": [sys.executable], ".sh": ["/bin/sh"]}


def evaluate(context: EvaluationContext) -> dict[str, float]:
    script_name = str(context.config["script"])
    args = [str(arg) for arg in context.config.get("args", [])]
    script = context.dataset_file(script_name)
    interpreter = INTERPRETERS.get(Path(script_name).suffix.lower())
    if interpreter is None:
        raise EvaluationError(
            f"The script {script_name!r} is neither Python (.py) nor shell (.sh): the command "
            "evaluator runs only those."
        )
    metrics_file = context.scratch_dir / "metrics.json"
    env = {
        **os.environ,
        "MODEL_DIR": str(context.scratch_dir / "model"),
        "DATASET_DIR": str(context.scratch_dir / "dataset"),
        "METRICS_FILE": str(metrics_file),
        "BENCHMARK_CONFIG": json.dumps(context.config),
    }
    context.log(f"running {' '.join([script_name, *args])}")
    # Running the benchmark's own script is this evaluator's purpose; it stays in the sandbox's
    # process group, so stopping the sandbox stops it too.
    completed = subprocess.run(  # noqa: S603
        [*interpreter, str(script.path), *args],
        cwd=context.scratch_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    context.check_stop()
    if completed.returncode != 0:
        raise EvaluationError(
            f"The script {script_name} {exit_description(completed.returncode)}: its output "
            "is in the log."
        )
    if not metrics_file.exists():
        raise EvaluationError(
            f"The script {script_name} wrote no metrics: it must write JSON {{name: number}} "
            "to the file named by METRICS_FILE."
        )
    try:
        metrics = json.loads(metrics_file.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise EvaluationError(
            f"The metrics the script {script_name} wrote are not JSON: {error}."
        ) from error
    try:
        return checked_metrics(metrics)
    except EvaluationError as error:
        raise EvaluationError(f"The metrics the script {script_name} wrote: {error}") from error
