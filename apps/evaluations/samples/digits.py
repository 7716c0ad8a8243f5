"""Two digit classifiers trained on scikit-learn's bundled digits, converted to ONNX, and the
held-out test split they are scored on."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

RANDOM_STATE = 0
TEST_SHARE = 0.3
# Opsets every onnxruntime from 1.14 on runs, so the files do not depend on the converter's
# newest default.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
MODEL_FILENAME = "digits-logreg.onnx"
WEAK_MODEL_FILENAME = "digits-tree.onnx"
DATA_FILENAME = "digits-test.npz"


@dataclass(frozen=True)
class DigitsSample:
    # Standardised logistic regression; class probabilities as one tensor.
    model_path: Path
    # scikit-learn's own accuracy on the test split.
    accuracy: float
    # A shallow decision tree, the weaker entry; probabilities as {class: p} maps (ZipMap).
    weak_model_path: Path
    weak_accuracy: float
    # X (float32, 64 pixel intensities per row) and y (int64 digit) of the test split.
    data_path: Path
    test_rows: int


def build_digits(folder: Path) -> DigitsSample:
    folder.mkdir(parents=True, exist_ok=True)
    features, labels = load_digits(return_X_y=True)
    features, labels = features.astype(np.float32), labels.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=TEST_SHARE, random_state=RANDOM_STATE, stratify=labels
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(train_x, train_y)
    weak_model = DecisionTreeClassifier(max_depth=4, random_state=RANDOM_STATE)
    weak_model.fit(train_x, train_y)

    model_path = folder / MODEL_FILENAME
    onnx_model = to_onnx(model, train_x[:1], options={"zipmap": False}, target_opset=TARGET_OPSET)
    model_path.write_bytes(onnx_model.SerializeToString())
    weak_model_path = folder / WEAK_MODEL_FILENAME
    weak_onnx_model = to_onnx(weak_model, train_x[:1], target_opset=TARGET_OPSET)
    weak_model_path.write_bytes(weak_onnx_model.SerializeToString())
    data_path = folder / DATA_FILENAME
    np.savez(data_path, X=test_x, y=test_y)
    return DigitsSample(
        model_path=model_path,
        accuracy=float(model.score(test_x, test_y)),
        weak_model_path=weak_model_path,
        weak_accuracy=float(weak_model.score(test_x, test_y)),
        data_path=data_path,
        test_rows=len(test_y),
    )
