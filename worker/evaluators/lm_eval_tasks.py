"""The lm-eval evaluator's child process: `python -m worker.evaluators.lm_eval_tasks REQUEST
OUTCOME`. It loads the dataset's tasks (their `!function` helpers and Jinja templates are the
benchmark's code) and runs lm-evaluation-harness, then writes lm-eval's raw results to OUTCOME
for the evaluator to check (see `worker.evaluators.child`)."""

import json
import sys
from pathlib import Path
from typing import Any


def _run(request: dict[str, Any]) -> dict[str, Any]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    tasks = list(request["tasks"])
    task_manager = TaskManager(include_path=request["task_folder"], include_defaults=False)
    known = task_manager.all_tasks
    unknown = [name for name in tasks if name not in known]
    if unknown:
        return {
            "error": f"Unknown task {', '.join(map(repr, unknown))}: the dataset's task files "
            f"define {', '.join(known) or 'no tasks'}."
        }
    seed = request["seed"]
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=request["model_args"],
        tasks=tasks,
        num_fewshot=request["num_fewshot"],
        limit=request["limit"],
        batch_size=request["batch_size"],
        device=request["device"],
        bootstrap_iters=request["bootstrap_iters"],
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        task_manager=task_manager,
    )
    if results is None:
        return {"error": "lm-eval returned no results (not the main process)."}
    kept = ("results", "versions", "n-samples")
    return {"results": {key: results.get(key, {}) for key in kept}}


def main(request_path: str, outcome_path: str) -> None:
    outcome = _run(json.loads(Path(request_path).read_text()))
    Path(outcome_path).write_text(json.dumps(outcome, default=str))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
