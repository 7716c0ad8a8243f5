"""The demo node's evaluations: digit classifiers trained with scikit-learn and exported to ONNX,
a tiny language model with two lm-evaluation-harness tasks, their benchmarks, and the first jobs,
which the local worker runs as soon as `make run` starts it, so the leaderboards fill with
results measured on this machine."""

import tempfile
from pathlib import Path

from apps.accounts.models import Institution, User
from apps.catalog import services as catalog_services
from apps.catalog.models import Benchmark, ModelVersion, ResearchModel
from apps.catalog.uploads import uploaded_file_from_bytes
from apps.compute import services as compute_services
from apps.compute.models import Job
from apps.evaluations.samples import digits, tiny_lm

DIGITS_CARD = """# {name}

{summary}

Trained with scikit-learn on 70% of its bundled 8x8 digits (random_state 0) and exported with
skl2onnx; input `X`: float32 rows of 64 pixel intensities (0-16).
"""


def _files(user: User, paths: list[Path]) -> list[tuple[str, str]]:
    stored = []
    for path in paths:
        upload = uploaded_file_from_bytes(path.read_bytes(), path.name)
        stored.append((path.name, catalog_services.artifact_store(user=user, upload=upload).sha256))
    return stored


def _model(
    user: User, institution: Institution, slug: str, name: str, summary: str, paths: list[Path],
    *, card: str, task: str, benchmark: Benchmark,
) -> ModelVersion:  # fmt: skip
    model = catalog_services.model_create(
        user=user,
        institution=institution,
        name=name,
        slug=slug,
        summary=summary,
        card=card,
        license="MIT",
        task=task,
        tags=["demo"],
        benchmark_ids=[benchmark.pk],
    )
    return catalog_services.version_create(
        user=user, model=model, label="1.0", files=_files(user, paths), publish=True
    )


def _benchmark(
    user: User, institution: Institution, slug: str, name: str, paths: list[Path], **fields
) -> Benchmark:
    dataset = catalog_services.dataset_create(
        user=user,
        institution=institution,
        name=f"{name}: data",
        slug=f"{slug}-data",
        license="CC-BY-4.0",
        files=_files(user, paths),
    )
    return catalog_services.benchmark_create(
        user=user, institution=institution, name=name, slug=slug, dataset=dataset, **fields
    )


def _digits(northbridge: Institution, ada: User, folder: Path) -> list[ModelVersion]:
    sample = digits.build_digits(folder)
    benchmark = _benchmark(
        ada,
        northbridge,
        "digits-held-out",
        "Handwritten digits: held-out accuracy",
        [sample.data_path],
        task_type="image-classification",
        metrics=[
            {"name": "accuracy", "higher_is_better": True},
            {"name": "macro_f1", "higher_is_better": True},
            {"name": "top_3_accuracy", "higher_is_better": True},
        ],
        evaluator="onnx",
        evaluator_config={
            "task": "classification",
            "data_file": sample.data_path.name,
            "top_k": [3],
        },
        description=(
            f"The {sample.test_rows} held-out images of scikit-learn's digits (30%, stratified, "
            "random_state 0) as a .npz of float32 pixels `X` and labels `y`."
        ),
        time_limit_minutes=5,
        memory_limit_mb=1024,
    )
    return [
        _model(
            ada, northbridge, "digits-logreg", "Digits logistic regression",
            "Standardised pixels into a multinomial logistic regression.",
            [sample.model_path], card=DIGITS_CARD, task="image-classification",
            benchmark=benchmark,
        ),
        _model(
            ada, northbridge, "digits-tree", "Digits decision tree (depth 4)",
            "A shallow decision tree: the baseline to beat.",
            [sample.weak_model_path], card=DIGITS_CARD, task="image-classification",
            benchmark=benchmark,
        ),
    ]  # fmt: skip


def _tiny_lm(lakeshore: Institution, maria: User, folder: Path) -> ModelVersion:
    task_files = tiny_lm.build_tiny_tasks(folder / "tasks")
    benchmark = _benchmark(
        maria,
        lakeshore,
        "tiny-commonsense",
        "Tiny commonsense (lm-eval)",
        task_files,
        task_type="language-modeling",
        metrics=[
            {"name": "tiny_choice/acc", "higher_is_better": True},
            {"name": "tiny_cloze/acc", "higher_is_better": True},
        ],
        evaluator="lm-eval",
        evaluator_config={"tasks": ["tiny_choice", "tiny_cloze"], "bootstrap_iters": 0},
        description=(
            "Two multiple-choice tasks for lm-evaluation-harness (20 questions with three "
            "answers, 12 sentences with two endings), shipped as task YAML plus jsonl."
        ),
        time_limit_minutes=10,
        memory_limit_mb=4096,
    )
    return _model(
        maria, lakeshore, "tiny-gpt2-random", "Tiny GPT-2 (random weights)",
        "A 2-layer GPT-2 with random weights: the chance-level reference for lm-eval tasks.",
        tiny_lm.build_tiny_lm(folder / "model"),
        card="# Tiny GPT-2 (random weights)\n\nA 2-layer, 64-wide GPT-2 with a 400-token BPE "
        "tokenizer; its weights are random (seed 0), so its scores are what chance gives.\n",
        task="language-modeling", benchmark=benchmark,
    )  # fmt: skip


def evaluations_demo_load(*, institutions: dict[str, Institution], users: dict[str, User]) -> None:
    """Publishes the demo's evaluable models and benchmarks when they are not there yet, and
    queues each model on its benchmark once."""
    northbridge, lakeshore = institutions["northbridge"], institutions["lakeshore-nlp"]
    if ResearchModel.objects.filter(institution=northbridge, slug="digits-logreg").exists():
        return
    with tempfile.TemporaryDirectory() as folder:
        evaluations = [
            *(
                (users["ada"], version)
                for version in _digits(northbridge, users["ada"], Path(folder) / "digits")
            ),
            (users["maria"], _tiny_lm(lakeshore, users["maria"], Path(folder) / "lm")),
        ]
    minilm = ModelVersion.objects.get(model__slug="all-minilm-l6-v2-int8")
    evaluations.append((users["lena"], minilm))
    for user, version in evaluations:
        benchmark = version.model.benchmarks.get()
        if not Job.objects.filter(model_version=version, benchmark=benchmark).exists():
            compute_services.job_submit(user=user, model_version=version, benchmark=benchmark)
