"""Evaluator specifications: what each evaluator accepts and how its benchmark config looks.

The node validates benchmarks against these specs and the worker runs the matching evaluator,
so both read them from here. An institution adds its own evaluator by publishing an
`EvaluatorSpec` under the entry point group `research_exchange.evaluators`.
"""

from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import PackageNotFoundError, entry_points, version
from typing import Any

ENTRY_POINT_GROUP = "research_exchange.evaluators"

# Model formats that can be evaluated without running code from the model file.
SAFE_MODEL_FORMATS = ("onnx", "safetensors", "gguf")


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    description: str
    model_formats: tuple[str, ...]
    config_schema: dict[str, Any] = field(default_factory=dict)
    # "module:function" of the evaluate function, imported only inside the job's sandbox, so the
    # node can read specs without the evaluator's dependencies installed.
    entry: str = ""
    # Distributions whose versions shape the figures: recorded in each result's provenance.
    packages: tuple[str, ...] = ()
    # The version of the distribution that ships the evaluator (set when the specs are read).
    version: str = ""


# Every evaluation is seeded (default 0): the sandbox seeds Python's and NumPy's generators with
# it before the evaluator runs, and the result's provenance records it.
SEED_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
DEFAULT_SEED = 0


def _object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"seed": SEED_SCHEMA, **properties},
        "required": required,
        "additionalProperties": False,
    }


_BATCH_SIZE = {"type": "integer", "minimum": 1, "maximum": 65536}
_DATASET_FILE = {"type": "string", "minLength": 1, "maxLength": 255}
# Which of a model version's files to load, where it holds several of the format.
_MODEL_FILE = {"type": "string", "minLength": 1, "maxLength": 255}

BUILTIN_SPECS = (
    EvaluatorSpec(
        name="onnx",
        description=(
            "Classification metrics (accuracy, macro-F1, top-k accuracy) or regression metrics "
            "(MSE, MAE, RMSE, R2) of an ONNX model over features and labels in a .npz file or a "
            ".parquet table, with onnxruntime, on CUDA when the job holds a GPU."
        ),
        model_formats=("onnx",),
        entry="worker.evaluators.onnx:evaluate",
        packages=("onnxruntime", "onnxruntime-gpu", "numpy"),
        config_schema=_object_schema(
            {
                "task": {"enum": ["classification", "regression"]},
                "data_file": _DATASET_FILE,
                "features_key": {"type": "string", "minLength": 1, "default": "X"},
                "labels_key": {"type": "string", "minLength": 1, "default": "y"},
                "batch_size": _BATCH_SIZE,
                "top_k": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1, "maximum": 100},
                    "uniqueItems": True,
                },
                # The class of each column of the model's scores, where the model does not say.
                "class_labels": {
                    "type": "array",
                    "items": {"type": ["integer", "string"]},
                    "minItems": 2,
                    "uniqueItems": True,
                },
                "model_file": _MODEL_FILE,
            },
            ["task", "data_file"],
        ),
    ),
    EvaluatorSpec(
        name="embedding-similarity",
        description=(
            "Sentence-embedding quality: cosine similarity of an ONNX encoder's embeddings "
            "against gold similarity scores (Spearman correlation)."
        ),
        model_formats=("onnx",),
        entry="worker.evaluators.embedding:evaluate",
        packages=("onnxruntime", "onnxruntime-gpu", "numpy", "tokenizers"),
        config_schema=_object_schema(
            {
                "pairs_file": _DATASET_FILE,
                "tokenizer_file": _DATASET_FILE,
                "max_length": {"type": "integer", "minimum": 8, "maximum": 8192, "default": 128},
                "batch_size": _BATCH_SIZE,
                "model_file": _MODEL_FILE,
            },
            ["pairs_file", "tokenizer_file"],
        ),
    ),
    EvaluatorSpec(
        name="lm-eval",
        description=(
            "EleutherAI's lm-evaluation-harness on a transformers model stored as safetensors, "
            "with task files shipped in the benchmark's dataset."
        ),
        model_formats=("safetensors",),
        entry="worker.evaluators.lm_eval:evaluate",
        packages=("lm-eval", "transformers", "torch", "accelerate", "datasets"),
        config_schema=_object_schema(
            {
                # Task, group or tag names defined by the YAML files in the benchmark's dataset.
                "tasks": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": 255},
                    "minItems": 1,
                    "maxItems": 64,
                    "uniqueItems": True,
                },
                "num_fewshot": {"type": "integer", "minimum": 0, "maximum": 64},
                "limit": {"type": "integer", "minimum": 1},
                "batch_size": _BATCH_SIZE,
                # Seeds Python, NumPy, torch and the few-shot sampler (default 0).
                "seed": SEED_SCHEMA,
                "dtype": {"enum": ["float32", "float16", "bfloat16"], "default": "float32"},
                # Resamples for bootstrapped standard errors; 0 leaves those out.
                "bootstrap_iters": {"type": "integer", "minimum": 0, "maximum": 100000},
            },
            ["tasks"],
        ),
    ),
    EvaluatorSpec(
        name="command",
        description=(
            "A script from the benchmark's dataset, run in the sandbox, that writes metrics JSON."
        ),
        model_formats=SAFE_MODEL_FORMATS,
        entry="worker.evaluators.command:evaluate",
        config_schema=_object_schema(
            {
                "script": _DATASET_FILE,
                "args": {"type": "array", "items": {"type": "string"}, "maxItems": 64},
            },
            ["script"],
        ),
    ),
    EvaluatorSpec(
        name="smoke",
        description=(
            "A pool check: fetches every model and dataset file, verifies each sha256, and "
            "reports how many files and bytes arrived. Runs no code from the model; can hold "
            "its devices for a while to exercise scheduling."
        ),
        model_formats=SAFE_MODEL_FORMATS,
        entry="worker.evaluators.smoke:evaluate",
        config_schema=_object_schema(
            {"hold_seconds": {"type": "number", "minimum": 0, "maximum": 3600}}, []
        ),
    ),
)


def evaluator_specs() -> dict[str, EvaluatorSpec]:
    """The built-in evaluators and every one installed under the entry point group."""
    return dict(_installed_specs())


@cache
def _installed_specs() -> dict[str, EvaluatorSpec]:
    # Reading the entry points scans every installed distribution (about 5 ms per call): once
    # per process, as installing an evaluator means restarting the node and its workers anyway.
    specs = {
        spec.name: replace(spec, version=_version("research-exchange")) for spec in BUILTIN_SPECS
    }
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        spec = entry_point.load()
        if isinstance(spec, EvaluatorSpec):
            shipped_by = entry_point.dist.version if entry_point.dist else ""
            specs[spec.name] = replace(spec, version=spec.version or shipped_by)
    return specs


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return ""


def package_versions(spec: EvaluatorSpec) -> dict[str, str]:
    """The installed versions of the distributions the evaluator names (missing ones left out)."""
    found = {name: _version(name) for name in spec.packages}
    return {name: found_version for name, found_version in found.items() if found_version}
