"""The evaluation sandbox's own start-up cost: a `smoke` evaluation of one small file through
`run_sandboxed`, the worker's real path without the node, timed from the call to its return.

    .venv/bin/python bench/sandbox_startup.py [--repeats 20] [--memory-limit-mb 1024]

Reports the median, minimum and maximum wall time, and, for comparison, a bare interpreter start
with the sandbox's imports (`python -P -c "import worker.sandbox"`). Runs on this machine only,
in a temporary folder it removes. The same script runs on earlier code (its `run_sandboxed`
takes the same two keywords), so a change's cost reads as before / after.
"""

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from worker import sandbox  # noqa: E402
from worker.evaluation import EvaluationContext, FetchedFile  # noqa: E402
from worker.evaluators import evaluator_specs  # noqa: E402


def _context(root: Path, run: int) -> EvaluationContext:
    scratch = root / "scratch" / f"job-1-attempt-{run}"
    (scratch / "model").mkdir(parents=True)
    content = b"a model file of a few bytes"
    cached = root / "cache" / hashlib.sha256(content).hexdigest()
    if not cached.exists():
        cached.parent.mkdir(exist_ok=True)
        cached.write_bytes(content)
        cached.chmod(0o444)
    link = scratch / "model" / "model.onnx"
    link.symlink_to(cached)
    digest = hashlib.sha256(content).hexdigest()
    return EvaluationContext(
        job=1,
        attempt=run,
        evaluator="smoke",
        config={},
        model_files=[FetchedFile("model.onnx", digest, len(content), "onnx", link)],
        dataset_files=[],
        scratch_dir=scratch,
        env={"CUDA_VISIBLE_DEVICES": ""},
        devices=["cpu:0"],
        gpu_indices=[],
        time_limit_seconds=60,
        stop=threading.Event(),
        log=lambda line: None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--memory-limit-mb", type=int, default=1024)
    args = parser.parse_args()
    spec = evaluator_specs()["smoke"]
    times, provenance = [], {}
    with tempfile.TemporaryDirectory(prefix="sandbox-startup-") as folder:
        root = Path(folder)
        for run in range(args.repeats + 1):
            context = _context(root, run)
            started = time.perf_counter()
            outcome = sandbox.run_sandboxed(
                spec, context, memory_limit_mb=args.memory_limit_mb, cache_root=root / "cache"
            )
            if run:  # the first run warms the page cache and any probe
                times.append(time.perf_counter() - started)
            provenance = outcome.provenance
    bare = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-P", "-c", "import worker.sandbox"], cwd=REPO, check=True)
        bare.append(time.perf_counter() - started)
    report = {
        "repeats": args.repeats,
        "sandbox_median_s": round(statistics.median(times), 4),
        "sandbox_min_s": round(min(times), 4),
        "sandbox_max_s": round(max(times), 4),
        "interpreter_and_imports_median_s": round(statistics.median(bare), 4),
        "isolation": provenance.get("isolation")
        or {key: provenance.get(key) for key in ("network", "files", "processes")},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
