"""The "onnx" evaluator: classification or regression metrics of an ONNX model over a features
array and a labels array, read from a .npz file (or a .parquet table), with onnxruntime.

Classifiers converted by skl2onnx give a label output and class probabilities, either as a
tensor or as a list of {class: probability} maps (ZipMap); a network with a single scores output
(logits or probabilities, one column per class) works too: its argmax is the predicted class.
"""

import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from worker.evaluation import EvaluationContext, EvaluationError, FetchedFile
from worker.evaluators.onnx_runtime import (
    FLOAT_TYPES,
    batch_size_of,
    batches,
    onnx_model_file,
    open_session,
    tensor_dtype,
)

DEFAULT_BATCH_SIZE = 256
DEFAULT_FEATURES_KEY = "X"
DEFAULT_LABELS_KEY = "y"
LABEL_TYPES = ("tensor(int64)", "tensor(int32)", "tensor(string)")
# Share of rows on which the guessed class order of a scores tensor must give the model's own
# labels: argmax and the model's label can part on exact ties only.
CLASS_ORDER_AGREEMENT = 0.99


def evaluate(context: EvaluationContext) -> dict[str, float]:
    config = context.config
    model_file = onnx_model_file(context)
    data_file = context.dataset_file(config["data_file"])
    features, labels = _load_dataset(data_file, config)
    context.log(
        f"{data_file.filename}: {len(labels)} rows, features {tuple(features.shape[1:])}, "
        f"labels {labels.dtype}"
    )
    session = open_session(context, model_file)
    features = _fit_to_input(session, features)
    context.provenance["rows"] = len(labels)
    batch_size = _batch_size(context, session)
    context.log(
        f"{model_file.filename} on {context.provenance['execution_provider']}, "
        f"batches of {batch_size}"
    )
    if config["task"] == "classification":
        return _classification(context, session, features, labels, batch_size)
    return _regression(context, session, features, labels, batch_size)


def _load_dataset(fetched: FetchedFile, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    suffix = fetched.path.suffix.lower()
    if fetched.format == "npz" or suffix == ".npz":
        features, labels = _load_npz(fetched, config)
    elif fetched.format == "parquet" or suffix == ".parquet":
        features, labels = _load_parquet(fetched, config)
    else:
        raise EvaluationError(
            f"{fetched.filename} is {fetched.format or 'of an unknown format'}: the onnx "
            "evaluator reads .npz or .parquet files."
        )
    if features.ndim == 0 or labels.ndim == 0:
        raise EvaluationError(f"{fetched.filename}: features and labels must be arrays of rows.")
    if len(features) != len(labels):
        raise EvaluationError(
            f"{fetched.filename}: the features have {len(features)} rows but the labels "
            f"have {len(labels)}."
        )
    if len(labels) == 0:
        raise EvaluationError(f"{fetched.filename} has no rows.")
    return features, labels


def _load_npz(fetched: FetchedFile, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    features_key = config.get("features_key", DEFAULT_FEATURES_KEY)
    labels_key = config.get("labels_key", DEFAULT_LABELS_KEY)
    try:
        # Never unpickle: a dataset file must not run code.
        loaded = np.load(fetched.path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise EvaluationError(f"{fetched.filename} is not a readable .npz file: {error}") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise EvaluationError(f"{fetched.filename} holds a single array, not a .npz archive.")
    with loaded as archive:
        missing = [key for key in (features_key, labels_key) if key not in archive.files]
        if missing:
            raise EvaluationError(
                f"{fetched.filename} has no array {' or '.join(map(repr, missing))} (it has "
                f"{', '.join(map(repr, sorted(archive.files))) or 'none'}): set features_key "
                "and labels_key in the benchmark config."
            )
        try:
            return archive[features_key], archive[labels_key]
        except ValueError as error:
            raise EvaluationError(
                f"{fetched.filename}: {error} (arrays of Python objects are not read)."
            ) from error


def _load_parquet(fetched: FetchedFile, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    try:
        import pyarrow.parquet as parquet
    except ImportError as error:
        raise EvaluationError(
            "Reading .parquet needs pyarrow, which this worker does not have: install it on "
            "the worker, or store the dataset as .npz."
        ) from error
    try:
        table = parquet.read_table(fetched.path)
    except Exception as error:
        raise EvaluationError(
            f"{fetched.filename} is not a readable parquet file: {error}"
        ) from error
    columns = table.column_names
    labels_key = config.get("labels_key", DEFAULT_LABELS_KEY)
    features_key = config.get("features_key", DEFAULT_FEATURES_KEY)
    wanted = [labels_key]
    if "features_key" in config or features_key in columns:
        wanted.append(features_key)
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise EvaluationError(
            f"{fetched.filename} has no column {' or '.join(map(repr, missing))} (it has "
            f"{', '.join(map(repr, columns))}): set features_key and labels_key in the "
            "benchmark config."
        )
    # A plain table, without a features column: every other column is a feature, in order.
    feature_columns = [features_key] if features_key in columns else columns
    feature_columns = [name for name in feature_columns if name != labels_key]
    if not feature_columns:
        raise EvaluationError(f"{fetched.filename} has no column besides the labels.")
    try:
        labels = _column_array(table.column(labels_key))
        parts = [_column_array(table.column(name)) for name in feature_columns]
    except ValueError as error:
        raise EvaluationError(
            f"{fetched.filename}: a column cannot be read as an array ({error}); list columns "
            "must hold lists of one length."
        ) from error
    features = parts[0] if features_key in columns else np.column_stack(parts)
    return features, labels


def _column_array(column: Any) -> np.ndarray:
    """A parquet column as an array; a column of equal-length lists becomes one row per item."""
    values = np.asarray(column.to_pylist()) if _is_list(column) else column.to_numpy()
    if values.dtype == object:
        values = values.astype(str)
    return values


def _is_list(column: Any) -> bool:
    import pyarrow

    kind = column.type
    return bool(
        pyarrow.types.is_list(kind)
        or pyarrow.types.is_large_list(kind)
        or pyarrow.types.is_fixed_size_list(kind)
    )


def _fit_to_input(session: ort.InferenceSession, features: np.ndarray) -> np.ndarray:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(f"{node.name} {node.shape}" for node in inputs)
        raise EvaluationError(
            f"The model takes {len(inputs)} inputs ({names}); the onnx evaluator feeds it one "
            "array, the dataset's features."
        )
    node = inputs[0]
    declared = node.shape
    if declared is not None:
        fits = len(declared) == features.ndim and all(
            not isinstance(size, int) or size == actual
            for size, actual in zip(declared[1:], features.shape[1:], strict=True)
        )
        if not fits:
            shape = ", ".join(str(size) if isinstance(size, int) else "N" for size in declared)
            raise EvaluationError(
                f"The model's input {node.name!r} takes shape [{shape}] but the features "
                f"have shape {list(features.shape)}."
            )
    dtype = tensor_dtype(node)
    try:
        return features.astype(dtype, copy=False)
    except (TypeError, ValueError) as error:
        raise EvaluationError(
            f"The features ({features.dtype}) cannot be cast to the {node.type} the model's "
            f"input {node.name!r} takes: {error}"
        ) from error


def _batch_size(context: EvaluationContext, session: ort.InferenceSession) -> int:
    batch_size = batch_size_of(context, DEFAULT_BATCH_SIZE)
    declared = session.get_inputs()[0].shape
    fixed = declared[0] if declared else None
    if isinstance(fixed, int) and fixed != batch_size:
        # A model exported with a fixed batch dimension takes batches of exactly that size.
        context.log(f"the model takes batches of exactly {fixed} rows")
        rows = context.provenance.get("rows", 0)
        batch_size = fixed
        context.provenance["batch_size"] = batch_size
        if rows % fixed:
            raise EvaluationError(
                f"The model takes batches of exactly {fixed} rows; {rows} rows do not divide "
                "into them."
            )
    return batch_size


@dataclass
class _Outputs:
    label: Any
    scores: Any


def _classifier_outputs(session: ort.InferenceSession) -> _Outputs:
    label = scores = None
    for node in session.get_outputs():
        rank = len(node.shape) if node.shape is not None else None
        if label is None and node.type in LABEL_TYPES and rank in (1, 2):
            label = node
        elif scores is None and (
            node.type.startswith("seq(map(") or (node.type in FLOAT_TYPES and rank == 2)
        ):
            scores = node
    if label is None and scores is None:
        described = ", ".join(f"{node.name} {node.type}" for node in session.get_outputs())
        raise EvaluationError(
            f"The model's outputs ({described}) give neither class labels nor class scores."
        )
    return _Outputs(label=label, scores=scores)


def _classification(
    context: EvaluationContext,
    session: ort.InferenceSession,
    features: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
) -> dict[str, float]:
    truth = _one_label_per_row(labels)
    top_k = sorted(context.config.get("top_k", []))
    outputs = _classifier_outputs(session)
    if top_k and outputs.scores is None:
        raise EvaluationError(
            "top_k needs class scores, but the model outputs only labels: export it with "
            "its probabilities."
        )
    wanted = [node.name for node in (outputs.label, outputs.scores) if node is not None]
    predicted_parts: list[np.ndarray] = []
    score_parts: list[np.ndarray] = []
    map_classes: list[Any] | None = None
    for rows in batches(context, total=len(truth), batch_size=batch_size, what="rows"):
        values = session.run(wanted, {_input_name(session): features[rows]})
        results = dict(zip(wanted, values, strict=True))
        if outputs.label is not None:
            predicted_parts.append(np.asarray(results[outputs.label.name]).reshape(-1))
        if outputs.scores is not None:
            raw = results[outputs.scores.name]
            if isinstance(raw, list):
                map_classes, matrix = _zipmap_matrix(raw, map_classes)
            else:
                matrix = np.asarray(raw)
            score_parts.append(matrix)
    scores = np.concatenate(score_parts) if score_parts else None
    class_of_column: np.ndarray | None = None
    if predicted_parts:
        predicted = np.concatenate(predicted_parts)
    elif scores is not None:
        class_of_column = _column_classes(context, scores, map_classes, None, truth)
        predicted = class_of_column[np.argmax(scores, axis=1)]
    else:
        raise EvaluationError("The model gave neither labels nor scores for the rows.")
    _check_comparable(truth, predicted)
    metrics = {
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": macro_f1(truth, predicted),
    }
    if top_k and scores is not None:
        if class_of_column is None:
            class_of_column = _column_classes(context, scores, map_classes, predicted, truth)
        for k in top_k:
            metrics[f"top_{k}_accuracy"] = top_k_accuracy(truth, scores, class_of_column, k=k)
    context.log(", ".join(f"{name} {value:.4f}" for name, value in metrics.items()))
    return metrics


def _input_name(session: ort.InferenceSession) -> str:
    return str(session.get_inputs()[0].name)


def _one_label_per_row(labels: np.ndarray) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        return labels.reshape(-1)
    if labels.ndim != 1:
        raise EvaluationError(
            f"Classification takes one label per row; the labels have shape {list(labels.shape)}."
        )
    return labels


def _zipmap_matrix(
    rows: list[dict[Any, float]], classes: list[Any] | None
) -> tuple[list[Any], np.ndarray]:
    """A batch of {class: probability} maps as a matrix with one column per class."""
    if classes is None:
        classes = list(rows[0]) if rows else []
    try:
        matrix = np.array([[row[name] for name in classes] for row in rows], dtype=np.float64)
    except KeyError as error:
        raise EvaluationError(
            f"The model's probability maps do not all name the same classes ({error})."
        ) from error
    return classes, matrix.reshape(len(rows), len(classes))


def _column_classes(
    context: EvaluationContext,
    scores: np.ndarray,
    map_classes: list[Any] | None,
    predicted: np.ndarray | None,
    truth: np.ndarray,
) -> np.ndarray:
    """Which class each column of the scores stands for: the map keys, config class_labels, or
    the class order that reproduces the model's own labels (0..C-1, then the sorted labels, as
    scikit-learn orders them); without labels from the model, 0..C-1 for numbered classes."""
    columns = scores.shape[1]
    if map_classes is not None:
        return np.asarray(map_classes)
    configured = context.config.get("class_labels")
    if configured is not None:
        if len(configured) != columns:
            raise EvaluationError(
                f"class_labels names {len(configured)} classes but the model scores {columns}."
            )
        return np.asarray(configured)
    if predicted is None:
        # A network's scores: column i is class i; names need class_labels to say their order.
        if truth.dtype.kind in "biuf":
            return np.arange(columns)
    else:
        seen = np.unique(_joined(truth, predicted))
        candidates = [np.arange(columns)] if predicted.dtype.kind in "biuf" else []
        if len(seen) == columns:
            candidates.append(seen)
        best = np.argmax(scores, axis=1)
        for candidate in candidates:
            if np.mean(candidate[best] == predicted) >= CLASS_ORDER_AGREEMENT:
                return candidate
    raise EvaluationError(
        f"Cannot tell which class each of the model's {columns} score columns stands for: set "
        "class_labels in the benchmark config (the classes in column order)."
    )


def _joined(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return np.concatenate([truth, predicted])


def _check_comparable(truth: np.ndarray, predicted: np.ndarray) -> None:
    numeric = "biuf"
    if (truth.dtype.kind in numeric) != (predicted.dtype.kind in numeric):
        raise EvaluationError(
            f"The model predicts {predicted.dtype} labels (e.g. {predicted[0]!r}) but the "
            f"dataset's labels are {truth.dtype} (e.g. {truth[0]!r})."
        )


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """The unweighted mean of each class's F1, over the classes in the labels or predictions."""
    classes = np.unique(_joined(truth, predicted))
    scores = []
    for label in classes:
        is_true, is_predicted = truth == label, predicted == label
        hits = np.sum(is_true & is_predicted)
        scores.append(2 * hits / (np.sum(is_true) + np.sum(is_predicted)))
    return float(np.mean(scores))


def top_k_accuracy(
    truth: np.ndarray, scores: np.ndarray, class_of_column: np.ndarray, *, k: int
) -> float:
    """The share of rows whose true class is among the k best-scored. Ties go to the earlier
    column, as argmax breaks them, so that top-1 accuracy is the accuracy of the argmax."""
    if k > scores.shape[1]:
        raise EvaluationError(f"top_k {k} is more than the model's {scores.shape[1]} classes.")
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(class_of_column[best] == truth[:, None], axis=1)))


def _regression(
    context: EvaluationContext,
    session: ort.InferenceSession,
    features: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
) -> dict[str, float]:
    if labels.dtype.kind not in "biuf":
        raise EvaluationError(f"Regression needs numeric targets; the labels are {labels.dtype}.")
    output = next((node for node in session.get_outputs() if node.type in FLOAT_TYPES), None)
    if output is None:
        described = ", ".join(f"{node.name} {node.type}" for node in session.get_outputs())
        raise EvaluationError(f"The model has no numeric output to score ({described}).")
    parts = []
    for rows in batches(context, total=len(labels), batch_size=batch_size, what="rows"):
        (values,) = session.run([output.name], {_input_name(session): features[rows]})
        parts.append(np.asarray(values, dtype=np.float64))
    predicted = np.concatenate(parts)
    truth = labels.astype(np.float64)
    predicted, truth = _as_columns(predicted), _as_columns(truth)
    if predicted.shape != truth.shape:
        raise EvaluationError(
            f"The model predicts shape {list(predicted.shape)} but the targets have "
            f"shape {list(truth.shape)}."
        )
    if not np.all(np.isfinite(predicted)):
        bad = int(np.sum(~np.all(np.isfinite(predicted), axis=1)))
        raise EvaluationError(f"The model predicted NaN or infinity for {bad} rows.")
    metrics = regression_metrics(truth, predicted)
    context.log(", ".join(f"{name} {value:.6g}" for name, value in metrics.items()))
    return metrics


def _as_columns(values: np.ndarray) -> np.ndarray:
    return values.reshape(len(values), -1)


def regression_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MSE, MAE and RMSE over every target; R2 per target column, averaged (as scikit-learn
    does, a constant target scores 1 when predicted exactly, else 0)."""
    errors = predicted - truth
    mse = float(np.mean(errors**2))
    residual = np.sum(errors**2, axis=0)
    spread = np.sum((truth - truth.mean(axis=0)) ** 2, axis=0)
    constant = spread == 0
    r2 = np.where(constant, (residual == 0).astype(np.float64), 0.0)
    r2[~constant] = 1 - residual[~constant] / spread[~constant]
    return {
        "mse": mse,
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(mse)),
        "r2": float(np.mean(r2)),
    }
