"""Evaluator specifications: what each evaluator accepts and how its benchmark config looks.

The node validates benchmarks against these specs and the worker runs the matching evaluator,
so both read them from here. An institution adds its own evaluator by publishing an
`EvaluatorSpec` under the entry point group `research_exchange.evaluators`.
"""

from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
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


def _object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_BATCH_SIZE = {"type": "integer", "minimum": 1, "maximum": 65536}
_DATASET_FILE = {"type": "string", "minLength": 1, "maxLength": 255}

BUILTIN_SPECS = (
    EvaluatorSpec(
        name="onnx",
        description=(
            "Classification or regression metrics of an ONNX model over arrays in a .npz file "
            "(features and labels), with onnxruntime."
        ),
        model_formats=("onnx",),
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
        config_schema=_object_schema(
            {
                "pairs_file": _DATASET_FILE,
                "tokenizer_file": _DATASET_FILE,
                "max_length": {"type": "integer", "minimum": 8, "maximum": 8192},
                "batch_size": _BATCH_SIZE,
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
        config_schema=_object_schema(
            {
                "tasks": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                },
                "num_fewshot": {"type": "integer", "minimum": 0, "maximum": 64},
                "limit": {"type": "integer", "minimum": 1},
                "batch_size": _BATCH_SIZE,
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
    specs = {spec.name: spec for spec in BUILTIN_SPECS}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        spec = entry_point.load()
        if isinstance(spec, EvaluatorSpec):
            specs[spec.name] = spec
    return specs
