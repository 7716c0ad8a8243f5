"""The "embedding-similarity" evaluator: how well an ONNX sentence encoder's cosine similarities
rank sentence pairs the way people scored them (STS-style), as a Spearman correlation.

The pairs file has the columns sentence1, sentence2 and score, as a header row of a .tsv or .csv
file or as the keys of each line of a .jsonl file. The tokenizer is a Hugging Face
tokenizer.json shipped in the dataset. An encoder that outputs token embeddings is mean-pooled
over the attention mask (as sentence-transformers does); a 2-D output is taken as the sentence
embeddings themselves.
"""

import csv
import json
import math
from collections.abc import Iterable
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

DEFAULT_MAX_LENGTH = 128
DEFAULT_BATCH_SIZE = 32
PAIR_COLUMNS = ("sentence1", "sentence2", "score")
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SENTENCE_EMBEDDING_OUTPUT = "sentence_embedding"
DELIMITED_SUFFIXES = (".tsv", ".tab", ".csv", ".txt")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


def evaluate(context: EvaluationContext) -> dict[str, float]:
    config = context.config
    model_file = onnx_model_file(context)
    pairs_file = context.dataset_file(config["pairs_file"])
    tokenizer_file = context.dataset_file(config["tokenizer_file"])
    first, second, gold = read_pairs(pairs_file)
    max_length = int(config.get("max_length", DEFAULT_MAX_LENGTH))
    tokenizer = _load_tokenizer(tokenizer_file, max_length=max_length)
    session = open_session(context, model_file)
    batch_size = batch_size_of(context, DEFAULT_BATCH_SIZE)
    context.provenance["max_length"] = max_length
    context.provenance["pairs"] = len(gold)
    # Each distinct sentence is encoded once, in the order it first appears.
    sentences = list(dict.fromkeys([*first, *second]))
    context.log(
        f"{pairs_file.filename}: {len(gold)} pairs, {len(sentences)} distinct sentences; "
        f"{model_file.filename} on {context.provenance['execution_provider']}, "
        f"batches of {batch_size}"
    )
    embeddings = _encode(context, session, tokenizer, sentences, batch_size=batch_size)
    row_of = {sentence: row for row, sentence in enumerate(sentences)}
    left = embeddings[[row_of[sentence] for sentence in first]]
    right = embeddings[[row_of[sentence] for sentence in second]]
    similarity = np.sum(left * right, axis=1)
    if not np.all(np.isfinite(similarity)):
        raise EvaluationError(
            "The model's embeddings hold NaN or infinite values: no similarity to score."
        )
    if np.ptp(similarity) == 0:
        context.log("every pair has the same similarity: the correlations are 0")
    metrics = {
        "spearman": spearman(gold, similarity),
        "pearson": pearson(gold, similarity),
        "pairs": len(gold),
    }
    context.log(f"spearman {metrics['spearman']:.4f}, pearson {metrics['pearson']:.4f}")
    return metrics


def read_pairs(fetched: FetchedFile) -> tuple[list[str], list[str], np.ndarray]:
    """The two sentences and the gold score of each pair in a .tsv, .csv or .jsonl file."""
    suffix = fetched.path.suffix.lower()
    if fetched.format == "jsonl" or suffix in JSON_LINES_SUFFIXES:
        rows = _json_lines(fetched)
    elif fetched.format == "csv" or suffix in DELIMITED_SUFFIXES:
        rows = _delimited_rows(fetched)
    else:
        raise EvaluationError(
            f"{fetched.filename} is {fetched.format or 'of an unknown format'}: the pairs file "
            "must be .tsv, .csv or .jsonl."
        )
    first: list[str] = []
    second: list[str] = []
    scores: list[float] = []
    for line, row in rows:
        missing = [column for column in PAIR_COLUMNS if row.get(column) is None]
        if missing:
            raise EvaluationError(
                f"{fetched.filename} line {line}: no {', '.join(missing)} (each pair needs "
                f"{', '.join(PAIR_COLUMNS)})."
            )
        try:
            score = float(row["score"])
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise EvaluationError(
                f"{fetched.filename} line {line}: the score {row['score']!r} is not a number."
            )
        first.append(str(row["sentence1"]))
        second.append(str(row["sentence2"]))
        scores.append(score)
    gold = np.asarray(scores, dtype=np.float64)
    if len(gold) < 2 or np.ptp(gold) == 0:
        raise EvaluationError(
            f"{fetched.filename} has {len(gold)} pairs: a correlation needs at least two "
            "pairs with different gold scores."
        )
    return first, second, gold


def _delimited_rows(fetched: FetchedFile) -> Iterable[tuple[int, dict[str, Any]]]:
    with fetched.path.open(encoding="utf-8-sig", newline="") as file:
        header = file.readline()
        tab_separated = "\t" in header
        columns = next(csv.reader([header], delimiter="\t" if tab_separated else ","), [])
        columns = [column.strip() for column in columns]
        missing = [column for column in PAIR_COLUMNS if column not in columns]
        if missing:
            raise EvaluationError(
                f"{fetched.filename} has no column {', '.join(missing)} in its header (it has "
                f"{', '.join(columns) or 'none'})."
            )
        # Sentences in tab-separated files often hold stray quotes: read them as they are.
        reader = (
            csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
            if tab_separated
            else csv.reader(file)
        )
        for line, values in enumerate(reader, start=2):
            if values:
                yield line, dict(zip(columns, values, strict=False))


def _json_lines(fetched: FetchedFile) -> Iterable[tuple[int, dict[str, Any]]]:
    with fetched.path.open(encoding="utf-8-sig") as file:
        for line, text in enumerate(file, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise EvaluationError(f"{fetched.filename} line {line}: {error}") from error
            if not isinstance(row, dict):
                raise EvaluationError(f"{fetched.filename} line {line} is not a JSON object.")
            yield line, row


def _load_tokenizer(fetched: FetchedFile, *, max_length: int) -> Any:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(fetched.path))
    except Exception as error:
        raise EvaluationError(
            f"{fetched.filename} is not a tokenizer.json the tokenizers package can read: {error}"
        ) from error
    tokenizer.enable_truncation(max_length=max_length)
    # Pad each batch to its longest sentence, with the tokenizer's own padding token.
    padding = tokenizer.padding or {}
    pad_token = padding.get("pad_token", "[PAD]")
    pad_id = padding.get("pad_id", tokenizer.token_to_id(pad_token) or 0)
    tokenizer.enable_padding(
        pad_id=pad_id, pad_token=pad_token, pad_type_id=padding.get("pad_type_id", 0)
    )
    return tokenizer


def _encode(
    context: EvaluationContext,
    session: ort.InferenceSession,
    tokenizer: Any,
    sentences: list[str],
    *,
    batch_size: int,
) -> np.ndarray:
    """L2-normalised sentence embeddings, one row per sentence."""
    inputs = session.get_inputs()
    unknown = [node.name for node in inputs if node.name not in TOKEN_INPUTS]
    if unknown or "input_ids" not in {node.name for node in inputs}:
        raise EvaluationError(
            f"The model takes inputs {', '.join(node.name for node in inputs)}; the evaluator "
            f"feeds {', '.join(TOKEN_INPUTS)} and needs input_ids."
        )
    output = _embedding_output(session)
    parts = []
    for rows in batches(context, total=len(sentences), batch_size=batch_size, what="sentences"):
        encodings = tokenizer.encode_batch(sentences[rows])
        tokens = {
            "input_ids": np.array([e.ids for e in encodings]),
            "attention_mask": np.array([e.attention_mask for e in encodings]),
            "token_type_ids": np.array([e.type_ids for e in encodings]),
        }
        feed = {node.name: tokens[node.name].astype(tensor_dtype(node)) for node in inputs}
        (values,) = session.run([output], feed)
        parts.append(_sentence_embeddings(np.asarray(values), tokens["attention_mask"]))
    embeddings = np.concatenate(parts)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, np.finfo(np.float64).tiny)


def _embedding_output(session: ort.InferenceSession) -> str:
    """The sentence-embedding output if the model names or shapes one, else token embeddings."""
    numeric = [node for node in session.get_outputs() if node.type in FLOAT_TYPES]
    for node in numeric:
        if node.name == SENTENCE_EMBEDDING_OUTPUT:
            return str(node.name)
    for rank in (2, 3):
        for node in numeric:
            if node.shape is not None and len(node.shape) == rank:
                return str(node.name)
    if numeric:
        return str(numeric[0].name)
    described = ", ".join(f"{node.name} {node.type}" for node in session.get_outputs())
    raise EvaluationError(f"The model has no embedding output ({described}).")


def _sentence_embeddings(values: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    if values.ndim == 2:
        return values
    if values.ndim != 3:
        raise EvaluationError(
            f"The model's embeddings have shape {list(values.shape)}: expected "
            "[batch, dimensions] or [batch, tokens, dimensions]."
        )
    mask = attention_mask.astype(np.float64)[:, :, None]
    return np.sum(values * mask, axis=1) / np.maximum(np.sum(mask, axis=1), 1.0)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def pearson(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant (no correlation to measure)."""
    first = first - first.mean()
    second = second - second.mean()
    spread = math.sqrt(float(np.sum(first**2)) * float(np.sum(second**2)))
    return float(np.sum(first * second) / spread) if spread > 0 else 0.0


def spearman(first: np.ndarray, second: np.ndarray) -> float:
    return pearson(average_ranks(first), average_ranks(second))
