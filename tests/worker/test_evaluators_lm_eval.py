"""The lm-eval evaluator on a tiny GPT-2 and two multiple-choice tasks built locally, offline."""

import hashlib
import os
import pickle
from pathlib import Path

import pytest

from apps.evaluations.samples.tiny_lm import build_tiny_lm, build_tiny_tasks
from tests.worker.fetched_files import fetched_files
from worker.evaluation import EvaluationContext, EvaluationError, FetchedFile
from worker.evaluators.lm_eval import evaluate

TASKS = ["tiny_choice", "tiny_cloze"]
CONFIG = {"tasks": TASKS, "num_fewshot": 1, "seed": 3, "limit": 16, "batch_size": 4}


class _WritesAMarker:
    """Unpickling this creates a folder: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory):
    # What the job's sandbox sets: no hub access, caches inside the job's folder.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf_home")))
        yield


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory) -> list[Path]:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="module")
def task_paths(tmp_path_factory) -> list[Path]:
    return build_tiny_tasks(tmp_path_factory.mktemp("tiny_tasks"))


def _context(
    scratch: Path, model: list[Path], dataset: list[Path], config, *, log=print
) -> EvaluationContext:
    return EvaluationContext(
        job=1,
        attempt=1,
        evaluator="lm-eval",
        config=config,
        model_files=fetched_files(model, scratch / "model"),
        dataset_files=fetched_files(dataset, scratch / "dataset"),
        scratch_dir=scratch,
        env={},
        devices=[],
        gpu_indices=[],
        time_limit_seconds=600,
        log=log,
    )


@pytest.fixture(scope="module")
def pickle_marker(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pickle") / "loaded"


@pytest.fixture(scope="module")
def evaluated(model_paths, task_paths, pickle_marker, tmp_path_factory):
    """One evaluation of the tiny model, with a pickle beside its safetensors weights."""
    pickled = tmp_path_factory.mktemp("pickled") / "pytorch_model.bin"
    pickled.write_bytes(pickle.dumps(_WritesAMarker(pickle_marker)))
    lines: list[str] = []
    context = _context(
        tmp_path_factory.mktemp("job"),
        [*model_paths, pickled],
        task_paths,
        dict(CONFIG),
        log=lines.append,
    )
    return context, lines, evaluate(context)


def _lm_eval_directly(model_folder: Path, task_folder: Path) -> dict[str, float]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_folder), "dtype": "float32"},
        tasks=TASKS,
        num_fewshot=CONFIG["num_fewshot"],
        limit=CONFIG["limit"],
        batch_size=CONFIG["batch_size"],
        device="cpu",
        log_samples=False,
        random_seed=CONFIG["seed"],
        numpy_random_seed=CONFIG["seed"],
        torch_random_seed=CONFIG["seed"],
        fewshot_random_seed=CONFIG["seed"],
        task_manager=TaskManager(include_path=str(task_folder), include_defaults=False),
    )
    assert results is not None
    return {
        f"{task}/{key.removesuffix(',none')}": value
        for task, values in results["results"].items()
        for key, value in values.items()
        if key.endswith(",none")
    }


def test_the_sample_model_is_small_and_stored_as_safetensors(model_paths):
    names = {path.name for path in model_paths}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= names
    assert not [name for name in names if name.endswith((".bin", ".pt", ".pkl"))]
    assert sum(path.stat().st_size for path in model_paths) < 1_000_000


def test_the_samples_are_the_same_bytes_each_time(model_paths, task_paths, tmp_path):
    again = build_tiny_lm(tmp_path / "model") + build_tiny_tasks(tmp_path / "tasks")
    assert [path.read_bytes() for path in again] == [
        path.read_bytes() for path in model_paths + task_paths
    ]


def test_every_task_reports_accuracy_and_its_standard_error(evaluated):
    metrics = evaluated[2]
    assert set(metrics) == {
        f"{task}/{metric}"
        for task in TASKS
        for metric in ("acc", "acc_norm", "acc_stderr", "acc_norm_stderr")
    }
    assert all(0 <= value <= 1 for value in metrics.values())


def test_the_figures_are_those_of_lm_eval_itself_for_the_same_seed(
    evaluated, model_paths, task_paths, monkeypatch
):
    metrics = evaluated[2]
    # lm-eval reads relative data_files from the working directory: run it in the task folder.
    task_folder = task_paths[0].parent
    monkeypatch.chdir(task_folder)
    assert _lm_eval_directly(model_paths[0].parent, task_folder) == metrics


def test_the_same_seed_gives_the_same_figures_again(evaluated, model_paths, task_paths, tmp_path):
    metrics = evaluated[2]
    assert evaluate(_context(tmp_path, model_paths, task_paths, dict(CONFIG))) == metrics


def test_provenance_records_what_shaped_the_figures(evaluated):
    context, lines, _metrics = evaluated
    assert context.provenance == {
        "tasks": TASKS,
        "seed": 3,
        "batch_size": 4,
        "num_fewshot": 1,
        "limit": 16,
        "device": "cpu",
        "dtype": "float32",
        "bootstrap_iters": 100000,
        "task_versions": {"tiny_choice": 1.0, "tiny_cloze": 1.0},
        # The limit caps the 20 questions; the 12 sentences all count.
        "samples": {"tiny_choice": 16, "tiny_cloze": 12},
    }
    assert any(line.startswith("lm-eval: tiny_choice, tiny_cloze on cpu") for line in lines)


def test_a_pickle_beside_the_safetensors_weights_is_never_loaded(evaluated, pickle_marker):
    context, lines, _metrics = evaluated
    assert not pickle_marker.exists()
    assert not (context.scratch_dir / "hf_model" / "pytorch_model.bin").exists()
    assert "leaving out pytorch_model.bin: pickle files are never loaded" in lines


def test_task_files_get_absolute_data_paths(evaluated):
    context = evaluated[0]
    rewritten = (context.scratch_dir / "lm_eval_tasks" / "tiny_choice.yaml").read_text()
    assert f"test: {context.scratch_dir / 'dataset' / 'tiny_choice.jsonl'}" in rewritten


def test_a_model_without_safetensors_weights_is_refused(model_paths, task_paths, tmp_path):
    pickled = tmp_path / "pytorch_model.bin"
    pickled.write_bytes(b"not loaded")
    model = [path for path in model_paths if path.suffix != ".safetensors"] + [pickled]
    context = _context(tmp_path / "job", model, task_paths, dict(CONFIG))
    with pytest.raises(EvaluationError, match=r"no \.safetensors weights \(it has config\.json"):
        evaluate(context)


def test_a_model_without_config_json_is_refused(model_paths, task_paths, tmp_path):
    model = [path for path in model_paths if path.name != "config.json"]
    context = _context(tmp_path, model, task_paths, dict(CONFIG))
    with pytest.raises(EvaluationError, match=r"no config\.json"):
        evaluate(context)


def test_an_unknown_task_is_refused_with_the_tasks_the_dataset_defines(
    model_paths, task_paths, tmp_path
):
    context = _context(tmp_path, model_paths, task_paths, {"tasks": ["tiny_choice", "hellaswag"]})
    with pytest.raises(EvaluationError) as refused:
        evaluate(context)
    assert str(refused.value) == (
        "Unknown task 'hellaswag': the dataset's task files define tiny_choice, tiny_cloze."
    )


def test_a_data_file_missing_from_the_dataset_is_refused(model_paths, tmp_path):
    task_paths = build_tiny_tasks(tmp_path / "tasks")
    [task_yaml] = [path for path in task_paths if path.name == "tiny_cloze.yaml"]
    task_yaml.write_text(task_yaml.read_text().replace("tiny_cloze.jsonl", "../secret.jsonl"))
    context = _context(tmp_path / "job", model_paths, task_paths, dict(CONFIG))
    with pytest.raises(EvaluationError, match=r"tiny_cloze\.yaml: data_files '\.\./secret\.jsonl'"):
        evaluate(context)


def test_a_dataset_without_task_files_is_refused(model_paths, task_paths, tmp_path):
    data = [path for path in task_paths if path.suffix == ".jsonl"]
    context = _context(tmp_path, model_paths, data, dict(CONFIG))
    with pytest.raises(EvaluationError, match=r"no lm-eval task file \(\.yaml\)"):
        evaluate(context)


def test_a_task_can_include_another_and_call_python_shipped_in_the_dataset(
    model_paths, task_paths, tmp_path
):
    # As the worker's cache stores it: under its sha256, without the .py suffix.
    helper = b"def first_five(dataset):\n    return dataset.select(range(5))\n"
    cached = tmp_path / "cache" / hashlib.sha256(helper).hexdigest()
    cached.parent.mkdir()
    cached.write_bytes(helper)
    short = tmp_path / "tasks" / "tiny_short.yaml"
    short.parent.mkdir()
    short.write_text(
        "include: tiny_choice.yaml\ntask: tiny_short\nprocess_docs: !function utils.first_five\n"
    )
    context = _context(
        tmp_path / "job", model_paths, [*task_paths, short], {"tasks": ["tiny_short"]}
    )
    link = context.scratch_dir / "dataset" / "utils.py"
    link.symlink_to(cached)
    context.dataset_files.append(FetchedFile("utils.py", cached.name, len(helper), "other", link))
    metrics = evaluate(context)
    assert set(metrics) >= {"tiny_short/acc", "tiny_short/acc_norm"}
    assert context.provenance["samples"] == {"tiny_short": 5}
