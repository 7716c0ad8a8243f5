"""The onnx evaluator on models trained with scikit-learn, converted with skl2onnx, and scored on
scikit-learn's bundled data, against the same figures computed directly in the test."""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, load_digits
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import (
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    top_k_accuracy_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from apps.evaluations.samples.digits import (
    RANDOM_STATE,
    TEST_SHARE,
    DigitsSample,
    build_digits,
)
from tests.worker.fetched_files import fetched_files
from worker.evaluation import EvaluationContext, EvaluationError, Stopped
from worker.evaluators.onnx import evaluate

CLASSIFICATION = {"task": "classification", "data_file": "digits-test.npz"}
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> DigitsSample:
    return build_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def test_split(digits) -> tuple[np.ndarray, np.ndarray]:
    with np.load(digits.data_path) as arrays:
        return arrays["X"], arrays["y"]


@pytest.fixture(scope="module")
def affine_weights() -> tuple[np.ndarray, np.ndarray]:
    """The digits logistic regression folded into one affine map: logits = X @ W + b."""
    features, labels = load_digits(return_X_y=True)
    train_x, _, train_y, _ = train_test_split(
        features, labels, test_size=TEST_SHARE, random_state=RANDOM_STATE, stratify=labels
    )
    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(max_iter=1000).fit(scaler.transform(train_x), train_y)
    weights = (model.coef_ / scaler.scale_).T
    bias = model.intercept_ - model.coef_ @ (scaler.mean_ / scaler.scale_)
    return weights.astype(np.float32), bias.astype(np.float32)


@pytest.fixture(scope="module")
def logits_model(affine_weights, tmp_path_factory) -> Path:
    """The logistic regression as a plain network: one output, the logits of the ten digits."""
    return _save(
        tmp_path_factory.mktemp("logits") / "digits-logits.onnx",
        _affine_graph(*affine_weights, outputs=["logits"]),
    )


def _affine_graph(weights, bias, *, outputs, inputs=("X",)):
    nodes = [helper.make_node("MatMul", [inputs[0], "W"], ["product"])]
    nodes.append(helper.make_node("Add", ["product", "b"], ["logits"]))
    graph_outputs = []
    if "logits" in outputs:
        graph_outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 10]))
    if "label" in outputs:
        nodes.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))
        graph_outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, [None]))
    if len(inputs) == 2:
        nodes[0] = helper.make_node("Add", list(inputs), ["sum"])
        nodes.insert(1, helper.make_node("MatMul", ["sum", "W"], ["product"]))
    graph = helper.make_graph(
        nodes,
        "digits",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 64]) for name in inputs],
        graph_outputs,
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    # IR version 8 goes with opset 17: newer onnx packages write versions onnxruntime refuses.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _save(path: Path, model) -> Path:
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _context(scratch: Path, model: list[Path], dataset: list[Path], config, *, log=None):
    return EvaluationContext(
        job=1,
        attempt=1,
        evaluator="onnx",
        config=config,
        model_files=fetched_files(model, scratch / "model"),
        dataset_files=fetched_files(dataset, scratch / "dataset"),
        scratch_dir=scratch,
        env={"CUDA_VISIBLE_DEVICES": ""},
        devices=[],
        gpu_indices=[],
        time_limit_seconds=60,
        log=log or (lambda line: None),
    )


def _direct_run(model_path: Path, features: np.ndarray) -> list:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: features})


def test_accuracy_equals_onnxruntime_and_scikit_learn(digits, test_split, tmp_path):
    features, labels = test_split
    context = _context(tmp_path, [digits.model_path], [digits.data_path], CLASSIFICATION)

    metrics = evaluate(context)

    predicted, _ = _direct_run(digits.model_path, features)
    direct_accuracy = float(np.mean(predicted == labels))
    assert metrics["accuracy"] == direct_accuracy
    assert metrics["accuracy"] == pytest.approx(digits.accuracy, abs=1e-9)
    assert metrics["accuracy"] > 0.95
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(labels, predicted, average="macro"), abs=1e-12
    )
    assert context.provenance == {
        "execution_provider": "CPUExecutionProvider",
        "device": "cpu",
        "onnx_model_file": "digits-logreg.onnx",
        "rows": len(labels),
        "batch_size": 256,
    }


def test_top_k_from_a_probability_tensor(digits, test_split, tmp_path):
    features, labels = test_split
    config = {**CLASSIFICATION, "top_k": [1, 2, 5]}

    metrics = evaluate(_context(tmp_path, [digits.model_path], [digits.data_path], config))

    _, probabilities = _direct_run(digits.model_path, features)
    assert metrics["top_1_accuracy"] == metrics["accuracy"]
    for k in (2, 5):
        expected = top_k_accuracy_score(labels, probabilities, k=k, labels=range(10))
        assert metrics[f"top_{k}_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert metrics["accuracy"] < metrics["top_2_accuracy"] <= metrics["top_5_accuracy"]


def test_zipmap_probabilities_of_a_weaker_tree(digits, test_split, tmp_path):
    features, labels = test_split
    config = {**CLASSIFICATION, "top_k": [3], "batch_size": 64}

    metrics = evaluate(_context(tmp_path, [digits.weak_model_path], [digits.data_path], config))

    predicted, maps = _direct_run(digits.weak_model_path, features)
    assert isinstance(maps, list) and set(maps[0]) == set(range(10))
    assert metrics["accuracy"] == float(np.mean(predicted == labels)) == digits.weak_accuracy
    assert metrics["accuracy"] < digits.accuracy
    # A leaf scores several digits alike: a tie goes to the smaller digit, as the label does.
    scores = np.array([[row[digit] for digit in range(10)] for row in maps])
    true_scores = scores[np.arange(len(labels)), labels][:, None]
    better = np.sum(scores > true_scores, axis=1)
    tied_before = np.sum((scores == true_scores) & (np.arange(10) < labels[:, None]), axis=1)
    assert metrics["top_3_accuracy"] == pytest.approx(np.mean(better + tied_before < 3))


def test_batches_give_the_same_figures_and_log_a_few_progress_lines(digits, tmp_path):
    config = {**CLASSIFICATION, "top_k": [2]}
    lines: list[str] = []
    whole = evaluate(_context(tmp_path / "whole", [digits.model_path], [digits.data_path], config))
    context = _context(
        tmp_path / "small",
        [digits.model_path],
        [digits.data_path],
        {**config, "batch_size": 7},
        log=lines.append,
    )

    assert evaluate(context) == whole
    assert context.provenance["batch_size"] == 7
    progress = [line for line in lines if line.startswith("rows:")]
    assert len(progress) == 4 and progress[-1] == "rows: 540/540 (78/78 batches)"


def test_a_single_logits_output_is_argmaxed(digits, test_split, logits_model, tmp_path):
    features, labels = test_split
    config = {**CLASSIFICATION, "top_k": [3]}

    metrics = evaluate(_context(tmp_path, [logits_model], [digits.data_path], config))

    (logits,) = _direct_run(logits_model, features)
    assert metrics["accuracy"] == float(np.mean(np.argmax(logits, axis=1) == labels))
    assert metrics["accuracy"] == pytest.approx(digits.accuracy, abs=0.01)
    expected = top_k_accuracy_score(labels, logits, k=3, labels=range(10))
    assert metrics["top_3_accuracy"] == pytest.approx(expected, abs=1e-12)


def test_class_labels_name_the_columns_of_named_classes(digits, test_split, logits_model, tmp_path):
    features, labels = test_split
    named = tmp_path / "named-digits.npz"
    np.savez(named, X=features, y=np.array(DIGIT_NAMES)[labels])
    numbered = evaluate(
        _context(
            tmp_path / "n", [logits_model], [digits.data_path], {**CLASSIFICATION, "top_k": [2]}
        )
    )
    config = {"task": "classification", "data_file": named.name, "top_k": [2]}

    metrics = evaluate(
        _context(tmp_path / "s", [logits_model], [named], {**config, "class_labels": DIGIT_NAMES})
    )

    assert metrics == numbered
    with pytest.raises(EvaluationError, match="set class_labels in the benchmark config"):
        evaluate(_context(tmp_path / "u", [logits_model], [named], config))
    with pytest.raises(EvaluationError, match="class_labels names 3 classes but the model scores"):
        evaluate(
            _context(
                tmp_path / "t", [logits_model], [named], {**config, "class_labels": ["a", "b", "c"]}
            )
        )


def test_named_classes_of_a_converted_classifier_follow_its_labels(test_split, tmp_path):
    features, labels = test_split
    names = np.array(DIGIT_NAMES)[labels]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(features[:300], names[:300])
    model_path = tmp_path / "named.onnx"
    model_path.write_bytes(
        to_onnx(
            model, features[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3}
        ).SerializeToString()
    )
    data = tmp_path / "named.npz"
    np.savez(data, X=features[300:], y=names[300:])
    config = {"task": "classification", "data_file": data.name, "top_k": [1, 2]}

    metrics = evaluate(_context(tmp_path / "job", [model_path], [data], config))

    assert metrics["accuracy"] == pytest.approx(model.score(features[300:], names[300:]))
    assert metrics["top_1_accuracy"] == metrics["accuracy"]
    expected = top_k_accuracy_score(
        names[300:], model.predict_proba(features[300:]), k=2, labels=model.classes_
    )
    assert metrics["top_2_accuracy"] == pytest.approx(expected, abs=0.01)


def test_parquet_table_with_one_column_per_feature(digits, test_split, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    features, labels = test_split
    table = pa.table({**{f"pixel{i}": features[:, i] for i in range(64)}, "digit": labels})
    pq.write_table(table, tmp_path / "digits-test.parquet")
    config = {"task": "classification", "data_file": "digits-test.parquet", "labels_key": "digit"}

    metrics = evaluate(
        _context(tmp_path, [digits.model_path], [tmp_path / "digits-test.parquet"], config)
    )

    assert metrics["accuracy"] == pytest.approx(digits.accuracy, abs=1e-9)
    pq.write_table(pa.table({"X": list(features), "y": labels}), tmp_path / "rows.parquet")
    rows = evaluate(
        _context(
            tmp_path / "rows",
            [digits.model_path],
            [tmp_path / "rows.parquet"],
            {"task": "classification", "data_file": "rows.parquet"},
        )
    )
    assert rows == metrics


def test_parquet_without_pyarrow_says_what_to_install(digits, tmp_path, monkeypatch):
    parquet = tmp_path / "digits-test.parquet"
    parquet.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    config = {"task": "classification", "data_file": parquet.name}

    with pytest.raises(EvaluationError, match="needs pyarrow"):
        evaluate(_context(tmp_path, [digits.model_path], [parquet], config))


def test_regression_metrics_equal_direct_computation(tmp_path):
    features, targets = load_diabetes(return_X_y=True)
    features = features.astype(np.float32)
    train, test = slice(0, 300), slice(300, None)
    model = LinearRegression().fit(features[train], targets[train])
    model_path = tmp_path / "diabetes-linear.onnx"
    model_path.write_bytes(to_onnx(model, features[:1], target_opset={"": 17}).SerializeToString())
    data_path = tmp_path / "diabetes-test.npz"
    np.savez(data_path, features=features[test], target=targets[test])
    config = {
        "task": "regression",
        "data_file": data_path.name,
        "features_key": "features",
        "labels_key": "target",
        "batch_size": 50,
    }

    metrics = evaluate(_context(tmp_path / "job", [model_path], [data_path], config))

    (predicted,) = _direct_run(model_path, features[test])
    predicted = predicted.reshape(-1).astype(np.float64)
    truth = targets[test]
    assert metrics["mse"] == pytest.approx(mean_squared_error(truth, predicted), rel=1e-12)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, predicted), rel=1e-12)
    assert metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, predicted)))
    assert metrics["r2"] == pytest.approx(r2_score(truth, predicted), rel=1e-12)
    assert 0.3 < metrics["r2"] < 0.7


def test_missing_arrays_are_named_with_the_arrays_there_are(digits, tmp_path):
    config = {**CLASSIFICATION, "features_key": "pixels"}

    with pytest.raises(EvaluationError) as error:
        evaluate(_context(tmp_path, [digits.model_path], [digits.data_path], config))

    assert "no array 'pixels'" in str(error.value)
    assert "(it has 'X', 'y')" in str(error.value)


def test_row_counts_must_match(digits, test_split, tmp_path):
    features, labels = test_split
    data = tmp_path / "short.npz"
    np.savez(data, X=features[:10], y=labels[:9])
    config = {"task": "classification", "data_file": data.name}

    with pytest.raises(EvaluationError, match="features have 10 rows but the labels have 9"):
        evaluate(_context(tmp_path, [digits.model_path], [data], config))


def test_features_must_fit_the_model_input(digits, test_split, tmp_path):
    features, labels = test_split
    data = tmp_path / "narrow.npz"
    np.savez(data, X=features[:, :32], y=labels)
    config = {"task": "classification", "data_file": data.name}

    with pytest.raises(EvaluationError, match=r"takes shape \[N, 64\] but the features have"):
        evaluate(_context(tmp_path, [digits.model_path], [data], config))


def test_a_model_with_two_inputs_is_refused(digits, tmp_path):
    weights, bias = np.zeros((64, 10), np.float32), np.zeros(10, np.float32)
    model = _save(
        tmp_path / "two-inputs.onnx",
        _affine_graph(weights, bias, outputs=["logits"], inputs=("left", "right")),
    )

    with pytest.raises(EvaluationError, match="takes 2 inputs"):
        evaluate(_context(tmp_path / "job", [model], [digits.data_path], CLASSIFICATION))


def test_top_k_needs_scores_and_at_most_as_many_classes(digits, affine_weights, tmp_path):
    labels_only = _save(tmp_path / "labels.onnx", _affine_graph(*affine_weights, outputs=["label"]))

    plain = evaluate(_context(tmp_path / "a", [labels_only], [digits.data_path], CLASSIFICATION))
    assert plain["accuracy"] == pytest.approx(digits.accuracy, abs=0.01)
    with pytest.raises(EvaluationError, match="top_k needs class scores"):
        evaluate(
            _context(
                tmp_path / "b", [labels_only], [digits.data_path], {**CLASSIFICATION, "top_k": [2]}
            )
        )
    with pytest.raises(EvaluationError, match="top_k 11 is more than the model's 10 classes"):
        evaluate(
            _context(
                tmp_path / "c",
                [digits.model_path],
                [digits.data_path],
                {**CLASSIFICATION, "top_k": [11]},
            )
        )


def test_a_model_version_without_onnx_is_refused(digits, tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"{}")

    with pytest.raises(EvaluationError, match=r"no onnx file \(its formats: safetensors\)"):
        evaluate(_context(tmp_path / "job", [weights], [digits.data_path], CLASSIFICATION))


def test_several_onnx_files_need_model_file(digits, tmp_path):
    models = [digits.model_path, digits.weak_model_path]

    with pytest.raises(EvaluationError, match="several ONNX files"):
        evaluate(_context(tmp_path / "a", models, [digits.data_path], CLASSIFICATION))
    chosen = evaluate(
        _context(
            tmp_path / "b",
            models,
            [digits.data_path],
            {**CLASSIFICATION, "model_file": "digits-tree.onnx"},
        )
    )
    assert chosen["accuracy"] == digits.weak_accuracy


def test_a_dataset_that_is_not_npz_or_parquet_is_refused(digits, tmp_path):
    table = tmp_path / "digits.safetensors"
    table.write_bytes(b"{}")
    config = {"task": "classification", "data_file": table.name}

    with pytest.raises(EvaluationError, match=r"reads \.npz or \.parquet files"):
        evaluate(_context(tmp_path / "job", [digits.model_path], [table], config))


def test_a_pickled_array_is_not_loaded(digits, tmp_path):
    data = tmp_path / "objects.npz"
    np.savez(data, X=np.array([{"a": 1}], dtype=object), y=np.array([1]))
    config = {"task": "classification", "data_file": data.name}

    with pytest.raises(EvaluationError, match="arrays of Python objects are not read"):
        evaluate(_context(tmp_path / "job", [digits.model_path], [data], config))


def test_stop_ends_the_evaluation_between_batches(digits, tmp_path):
    context = _context(tmp_path, [digits.model_path], [digits.data_path], CLASSIFICATION)
    context.stop.set()

    with pytest.raises(Stopped):
        evaluate(context)
