"""Evaluators for the worker's tests. They run in the job's sandbox like any other, so what they
saw goes to the job's log, the one way out besides the metrics."""

import ctypes
import json
import os
from pathlib import Path

from worker.evaluation import EvaluationContext


def broken(context: EvaluationContext) -> dict[str, float]:
    """Records what it was given, then fails as a careless evaluator would."""
    seen = {
        "scratch": str(context.scratch_dir),
        "model": context.model_files[0].path.read_bytes().hex(),
        "env": context.env,
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
    }
    context.log("SEEN " + json.dumps(seen))
    raise ValueError("labels_key 'y' is not in data.npz")


def with_provenance(context: EvaluationContext) -> dict[str, float]:
    """Succeeds, recording a seed and trying to overwrite a fact only the worker may state."""
    context.provenance.update(seed=1234, batch_size=8, host="forged")
    return {"accuracy": 0.5}


def escape(context: EvaluationContext) -> dict[str, float]:
    """Evaluation code running in the sandbox's own process (as lm-eval task code does) tries
    to undo the isolation: unmount the cover over the other jobs' folders, write outside its
    scratch directory, and signal a process of the host."""
    libc = ctypes.CDLL(None, use_errno=True)
    detach = 2
    unmounted = libc.umount2(str(context.scratch_dir.parent).encode(), detach) == 0
    try:
        Path(context.config["outside"]).write_text("written from the sandbox")
        wrote = True
    except OSError:
        wrote = False
    try:
        os.kill(int(context.config["host_pid"]), 0)
        signalled = True
    except OSError:
        signalled = False
    status = Path("/proc/self/status").read_text()
    capabilities = int(status.split("CapEff:")[1].split()[0], 16)
    return {
        "unmounted": int(unmounted),
        "wrote_outside": int(wrote),
        "signalled_host": int(signalled),
        "capabilities": capabilities,
    }
