"""What the ONNX evaluators share: picking the model file, opening an onnxruntime session on the
job's devices, casting to the types a model declares, and walking the data in batches."""

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort

from worker.evaluation import EvaluationContext, EvaluationError, FetchedFile

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

# onnxruntime's type names ("tensor(float)") for the element types a model input may declare.
TENSOR_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}

FLOAT_TYPES = ("tensor(float)", "tensor(double)", "tensor(float16)")

# How many progress lines a pass over the data logs, whatever its number of batches.
PROGRESS_LINES = 4


def onnx_model_file(context: EvaluationContext) -> FetchedFile:
    """The model version's ONNX file: the one config `model_file` names when there are several."""
    candidates = context.model_files_of("onnx")
    wanted = context.config.get("model_file")
    if wanted:
        for fetched in candidates:
            if fetched.filename == wanted:
                return fetched
        names = ", ".join(sorted(f.filename for f in candidates))
        raise EvaluationError(f"The model version has no ONNX file {wanted!r} (it has {names}).")
    if len(candidates) > 1:
        names = ", ".join(sorted(f.filename for f in candidates))
        raise EvaluationError(
            f"The model version has several ONNX files ({names}): name one with model_file "
            "in the benchmark config."
        )
    return candidates[0]


def open_session(context: EvaluationContext, fetched: FetchedFile) -> ort.InferenceSession:
    """An onnxruntime session on CUDA when the job holds a GPU and onnxruntime offers CUDA, else
    on CPU; the provider it really uses goes into the provenance."""
    available = ort.get_available_providers()
    wants_gpu = bool(context.gpu_indices)
    providers = [CPU_PROVIDER]
    if wants_gpu and CUDA_PROVIDER in available:
        providers = [CUDA_PROVIDER, CPU_PROVIDER]
    elif wants_gpu:
        context.log(
            f"onnxruntime {ort.__version__} offers no CUDA provider "
            f"({', '.join(available)}): running on CPU"
        )
    try:
        session = ort.InferenceSession(str(fetched.path), providers=providers)
    except Exception as error:
        raise EvaluationError(f"onnxruntime cannot load {fetched.filename}: {error}") from error
    # onnxruntime falls back to CPU, with only a warning, when the CUDA libraries do not load.
    used = session.get_providers()[0]
    if wants_gpu and CUDA_PROVIDER in providers and used != CUDA_PROVIDER:
        context.log(f"the CUDA provider did not load: running on {used}")
    context.provenance["execution_provider"] = used
    context.provenance["device"] = "cuda:0" if used == CUDA_PROVIDER else "cpu"
    context.provenance["onnx_model_file"] = fetched.filename
    return session


def tensor_dtype(node: Any) -> type[np.generic]:
    """The numpy type for a session input or output (`NodeArg`)."""
    dtype = TENSOR_DTYPES.get(node.type)
    if dtype is None:
        raise EvaluationError(f"The model's {node.name!r} has type {node.type}, not a tensor.")
    return dtype


def batch_size_of(context: EvaluationContext, default: int) -> int:
    batch_size = int(context.config.get("batch_size", default))
    context.provenance["batch_size"] = batch_size
    return batch_size


def batches(
    context: EvaluationContext, *, total: int, batch_size: int, what: str
) -> Iterator[slice]:
    """The slice of each batch over `total` items; checks the stop event before each batch and
    logs progress a few times a pass rather than once a batch."""
    count = max(1, -(-total // batch_size))
    marks = {round(count * step / PROGRESS_LINES) for step in range(1, PROGRESS_LINES + 1)}
    for number, start in enumerate(range(0, total, batch_size), start=1):
        context.check_stop()
        yield slice(start, min(start + batch_size, total))
        if number in marks:
            done = min(number * batch_size, total)
            context.log(f"{what}: {done}/{total} ({number}/{count} batches)")
