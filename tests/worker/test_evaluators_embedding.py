"""The embedding-similarity evaluator on all-MiniLM-L6-v2 (int8 ONNX) and a hand-written
sentence-similarity set, against the correlation computed directly in the test."""

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from scipy.stats import pearsonr, rankdata, spearmanr
from tokenizers import Tokenizer

from apps.evaluations.samples.sentences import (
    STS_PAIRS,
    minilm_model_path,
    minilm_tokenizer_path,
    write_sts_pairs,
)
from tests.worker.fetched_files import fetched_files
from worker.evaluation import EvaluationContext, EvaluationError
from worker.evaluators.embedding import average_ranks, evaluate, spearman

CONFIG = {"pairs_file": "sts-pairs.tsv", "tokenizer_file": "tokenizer.json"}


@pytest.fixture(scope="module")
def pairs_path(tmp_path_factory) -> Path:
    return write_sts_pairs(tmp_path_factory.mktemp("sts"))


@pytest.fixture(scope="module")
def direct_similarity() -> np.ndarray:
    """Cosine similarity of each pair, computed here with onnxruntime and tokenizers alone."""
    session = ort.InferenceSession(str(minilm_model_path()), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(minilm_tokenizer_path()))
    tokenizer.enable_truncation(max_length=128)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def embed(sentences: list[str]) -> np.ndarray:
        encodings = tokenizer.encode_batch(sentences)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        (tokens,) = session.run(
            ["last_hidden_state"],
            {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": mask,
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            },
        )
        pooled = (tokens * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    first = embed([pair[0] for pair in STS_PAIRS])
    second = embed([pair[1] for pair in STS_PAIRS])
    return np.sum(first * second, axis=1)


def _context(scratch: Path, dataset: list[Path], config, *, log=None) -> EvaluationContext:
    return EvaluationContext(
        job=1,
        attempt=1,
        evaluator="embedding-similarity",
        config=config,
        model_files=fetched_files([minilm_model_path()], scratch / "model"),
        dataset_files=fetched_files(dataset, scratch / "dataset"),
        scratch_dir=scratch,
        env={"CUDA_VISIBLE_DEVICES": ""},
        devices=[],
        gpu_indices=[],
        time_limit_seconds=60,
        log=log or (lambda line: None),
    )


def test_minilm_spearman_equals_direct_computation(pairs_path, direct_similarity, tmp_path):
    gold = [pair[2] for pair in STS_PAIRS]
    lines: list[str] = []
    context = _context(tmp_path, [pairs_path, minilm_tokenizer_path()], CONFIG, log=lines.append)

    metrics = evaluate(context)

    assert metrics["pairs"] == len(STS_PAIRS) >= 40
    assert metrics["spearman"] == pytest.approx(
        spearmanr(gold, direct_similarity).statistic, abs=1e-6
    )
    assert metrics["pearson"] == pytest.approx(
        pearsonr(gold, direct_similarity).statistic, abs=1e-6
    )
    assert metrics["spearman"] > 0.8
    assert context.provenance == {
        "execution_provider": "CPUExecutionProvider",
        "device": "cpu",
        "onnx_model_file": "model.onnx",
        "batch_size": 32,
        "max_length": 128,
        "pairs": len(STS_PAIRS),
    }
    # Each distinct sentence is encoded once; progress is logged a few times, not per sentence.
    distinct = len({sentence for pair in STS_PAIRS for sentence in pair[:2]})
    progress = [line for line in lines if line.startswith("sentences:")]
    assert progress[-1] == f"sentences: {distinct}/{distinct} (3/3 batches)"
    assert len(progress) == 3


def test_shuffled_gold_scores_correlate_far_less(tmp_path):
    scores = np.random.default_rng(7).permutation([pair[2] for pair in STS_PAIRS])
    shuffled = tuple(
        (first, second, float(score))
        for (first, second, _), score in zip(STS_PAIRS, scores, strict=True)
    )
    pairs = write_sts_pairs(tmp_path / "shuffled", shuffled)

    metrics = evaluate(_context(tmp_path / "job", [pairs, minilm_tokenizer_path()], CONFIG))

    assert abs(metrics["spearman"]) < 0.3


def test_csv_and_json_lines_read_like_tab_separated(pairs_path, tmp_path):
    reference = evaluate(
        _context(tmp_path / "tsv", [pairs_path, minilm_tokenizer_path()], {**CONFIG})
    )
    comma = tmp_path / "sts-pairs.csv"
    with comma.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["score", "sentence1", "sentence2"])
        writer.writerows((score, first, second) for first, second, score in STS_PAIRS)
    lines = tmp_path / "sts-pairs.jsonl"
    lines.write_text(
        "".join(
            json.dumps({"sentence1": first, "sentence2": second, "score": score}) + "\n"
            for first, second, score in STS_PAIRS
        )
    )

    for path in (comma, lines):
        config = {**CONFIG, "pairs_file": path.name, "batch_size": 16}
        metrics = evaluate(
            _context(tmp_path / path.suffix[1:], [path, minilm_tokenizer_path()], config)
        )
        assert metrics == pytest.approx(reference, abs=1e-9)


def test_a_missing_column_is_named(tmp_path):
    pairs = tmp_path / "sts-pairs.tsv"
    pairs.write_text("sentence1\tsentence2\tlabel\nA cat.\tA dog.\t2\nA car.\tA car.\t5\n")

    with pytest.raises(EvaluationError) as error:
        evaluate(_context(tmp_path / "job", [pairs, minilm_tokenizer_path()], CONFIG))

    assert str(error.value) == (
        "sts-pairs.tsv has no column score in its header (it has sentence1, sentence2, label)."
    )


def test_a_score_that_is_not_a_number_is_located(tmp_path):
    pairs = tmp_path / "sts-pairs.jsonl"
    pairs.write_text(
        '{"sentence1": "A cat.", "sentence2": "A dog.", "score": 2}\n'
        '{"sentence1": "A car.", "sentence2": "A car.", "score": "high"}\n'
    )
    config = {**CONFIG, "pairs_file": pairs.name}

    with pytest.raises(EvaluationError, match="line 2: the score 'high' is not a number"):
        evaluate(_context(tmp_path / "job", [pairs, minilm_tokenizer_path()], config))


def test_a_missing_or_unreadable_tokenizer_is_refused(pairs_path, tmp_path):
    with pytest.raises(EvaluationError, match=r"no file 'tokenizer.json' \(it has sts-pairs.tsv\)"):
        evaluate(_context(tmp_path / "a", [pairs_path], CONFIG))

    broken = tmp_path / "broken" / "tokenizer.json"
    broken.parent.mkdir()
    broken.write_text('{"version": "1.0"}')
    with pytest.raises(EvaluationError, match=r"not a tokenizer\.json the tokenizers package"):
        evaluate(_context(tmp_path / "b", [pairs_path, broken], CONFIG))


def test_constant_gold_scores_have_no_correlation_to_measure(tmp_path):
    pairs = write_sts_pairs(
        tmp_path / "flat", (("A cat.", "A dog.", 3.0), ("A car.", "A bus.", 3.0))
    )

    with pytest.raises(EvaluationError, match="at least two pairs with different gold scores"):
        evaluate(_context(tmp_path / "job", [pairs, minilm_tokenizer_path()], CONFIG))


def test_ranks_share_ties_like_scipy():
    rng = np.random.default_rng(3)
    first = rng.integers(0, 5, size=200).astype(np.float64)
    second = first + rng.normal(0, 2, size=200).round()

    assert np.array_equal(average_ranks(first), rankdata(first))
    assert spearman(first, second) == pytest.approx(spearmanr(first, second).statistic, abs=1e-12)
