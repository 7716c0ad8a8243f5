"""Evaluators for the worker's tests. They run in the job's sandbox like any other, so what they
saw is written to the file their config names."""

import json
import os
from pathlib import Path

from worker.evaluation import EvaluationContext


def broken(context: EvaluationContext) -> dict[str, float]:
    """Records what it was given, then fails as a careless evaluator would."""
    Path(context.config["record"]).write_text(
        json.dumps(
            {
                "scratch": str(context.scratch_dir),
                "model": context.model_files[0].path.read_bytes().hex(),
                "env": context.env,
                "environ": dict(os.environ),
                "cwd": os.getcwd(),
            }
        )
    )
    raise ValueError("labels_key 'y' is not in data.npz")


def with_provenance(context: EvaluationContext) -> dict[str, float]:
    """Succeeds, recording a seed and trying to overwrite a fact only the worker may state."""
    context.provenance.update(seed=1234, batch_size=8, host="forged")
    return {"accuracy": 0.5}
