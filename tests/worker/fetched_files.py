"""Files as the worker hands them to an evaluator: verified and linked into the job's folder."""

import hashlib
from pathlib import Path

from worker.evaluation import FetchedFile

# The format the node detects for each suffix the evaluator tests use.
FORMATS = {
    ".onnx": "onnx",
    ".npz": "npz",
    ".parquet": "parquet",
    ".safetensors": "safetensors",
    ".tsv": "csv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "json",
}


def fetched_files(paths: list[Path], folder: Path) -> list[FetchedFile]:
    folder.mkdir(parents=True, exist_ok=True)
    fetched = []
    for path in paths:
        link = folder / path.name
        link.symlink_to(path)
        data = path.read_bytes()
        fetched.append(
            FetchedFile(
                filename=path.name,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                format=FORMATS.get(path.suffix, "other"),
                path=link,
            )
        )
    return fetched
