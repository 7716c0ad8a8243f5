"""The "lm-eval" evaluator: EleutherAI's lm-evaluation-harness on a transformers model.

The model version's files form a Hugging Face model folder (config.json, safetensors weights,
tokenizer files); weights are only ever read from safetensors. The benchmark's dataset ships the
tasks: lm-eval YAML definitions whose `dataset_kwargs.data_files` name data files of the same
dataset, relative to it. Only those tasks are known (none of lm-eval's built-in ones, which would
need downloads). A task YAML may use lm-eval's `!function` to call Python shipped in the same
dataset: that is the benchmark's code. Everything that may run it (loading the tasks, rendering
their Jinja templates, the evaluation itself) happens in a child process
(`worker.evaluators.lm_eval_tasks`, through `worker.evaluators.child`) that cannot touch the
provenance or the result channel: it hands back only the raw scores, which this process checks.
The benchmark's own code still decides those scores, as it does for any benchmark.

Metrics are "<task>/<metric>" (e.g. "tiny_choice/acc"), with "<task>/<metric>_stderr" where
lm-eval computed a standard error, and "/<filter>" appended for a filter other than "none".
"""

import math
import time
from pathlib import Path
from typing import Any

import yaml

from worker.evaluation import EvaluationContext, EvaluationError, FetchedFile
from worker.evaluators import DEFAULT_SEED
from worker.evaluators.child import run_dataset_code

DEFAULT_BATCH_SIZE = 1
DEFAULT_DTYPE = "float32"
# lm-eval's own default, so the standard errors match those its command line reports.
DEFAULT_BOOTSTRAP_ITERS = 100000
YAML_SUFFIXES = (".yaml", ".yml")
# Files that may hold pickled tensors: never placed where transformers could load them.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _model_folder(context: EvaluationContext) -> Path:
    """A folder of links to the model's files, without any pickle file transformers could fall
    back to."""
    names = {fetched.filename for fetched in context.model_files}
    if not any(name.endswith(".safetensors") for name in names):
        have = ", ".join(sorted(names)) or "no files"
        raise EvaluationError(
            f"The model version has no .safetensors weights (it has {have}): lm-eval loads "
            "transformers models from safetensors only."
        )
    if "config.json" not in names:
        raise EvaluationError(
            "The model version has no config.json: lm-eval needs a Hugging Face model folder "
            "(config.json, .safetensors weights and tokenizer files)."
        )
    folder = context.scratch_dir / "hf_model"
    folder.mkdir()
    for fetched in context.model_files:
        if fetched.filename.lower().endswith(PICKLE_SUFFIXES):
            context.log(f"leaving out {fetched.filename}: pickle files are never loaded")
            continue
        (folder / fetched.filename).symlink_to(fetched.path.resolve())
    return folder


class _TaskLoader(yaml.SafeLoader):
    """Reads lm-eval's custom tags (`!function utils.process_docs`) as they are written."""


class _TaskDumper(yaml.SafeDumper):
    """Writes those tags back unchanged, for lm-eval to resolve."""


class _Tagged(str):
    tag = ""


def _construct_tagged(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> _Tagged:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"unsupported tag !{tag_suffix} on a non-scalar value", node.start_mark
        )
    tagged = _Tagged(loader.construct_scalar(node))
    tagged.tag = node.tag
    return tagged


_TaskLoader.add_multi_constructor("!", _construct_tagged)
_TaskDumper.add_representer(
    _Tagged, lambda dumper, value: dumper.represent_scalar(value.tag, str(value))
)


def _absolute_data_files(value: Any, *, context: EvaluationContext, source: str) -> Any:
    if isinstance(value, str):
        try:
            return str(context.dataset_file(value).path)
        except EvaluationError as error:
            raise EvaluationError(f"{source}: data_files {value!r}: {error}") from None
    if isinstance(value, list):
        return [_absolute_data_files(item, context=context, source=source) for item in value]
    if isinstance(value, dict):
        return {
            split: _absolute_data_files(item, context=context, source=source)
            for split, item in value.items()
        }
    raise EvaluationError(
        f"{source}: dataset_kwargs.data_files must be a file name, a list of them or a mapping "
        f"of split to file names, not {type(value).__name__}."
    )


def _task_folder(context: EvaluationContext) -> Path:
    """The dataset's task YAMLs, with their data files made absolute paths (lm-eval resolves
    relative ones against the working directory), beside links to its other files."""
    folder = context.scratch_dir / "lm_eval_tasks"
    folder.mkdir()
    task_files: list[FetchedFile] = []
    for fetched in context.dataset_files:
        if fetched.filename.lower().endswith(YAML_SUFFIXES):
            task_files.append(fetched)
        elif fetched.filename.endswith(".py"):
            # lm-eval imports a helper from the resolved path of the file the YAML names: a
            # copy keeps its .py suffix (a cached file has none).
            (folder / fetched.filename).write_bytes(fetched.path.read_bytes())
        else:
            # Python helpers (`!function utils.f`) and includes are looked up next to the YAML.
            (folder / fetched.filename).symlink_to(fetched.path.resolve())
    if not task_files:
        have = ", ".join(sorted(f.filename for f in context.dataset_files)) or "no files"
        raise EvaluationError(
            f"The dataset has no lm-eval task file (.yaml); it has {have}. Ship the task "
            "definitions with their data files in the benchmark's dataset."
        )
    for fetched in task_files:
        try:
            # _TaskLoader is a SafeLoader that also keeps custom tags as strings.
            text = fetched.path.read_text(encoding="utf-8")
            task = yaml.load(text, Loader=_TaskLoader)  # noqa: S506
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise EvaluationError(f"{fetched.filename} is not valid YAML: {error}") from None
        if not isinstance(task, dict):
            raise EvaluationError(f"{fetched.filename} is not an lm-eval task (not a mapping).")
        dataset_kwargs = task.get("dataset_kwargs")
        if isinstance(dataset_kwargs, dict) and "data_files" in dataset_kwargs:
            dataset_kwargs["data_files"] = _absolute_data_files(
                dataset_kwargs["data_files"], context=context, source=fetched.filename
            )
        rewritten = yaml.dump(task, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True)
        (folder / fetched.filename).write_text(rewritten, encoding="utf-8")
    return folder


def _metrics(results: dict[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for task, values in sorted(results.get("results", {}).items()):
        for key, value in values.items():
            # Metric entries are "<metric>,<filter>"; others ("alias", "sample_len") describe.
            metric, comma, filter_name = key.partition(",")
            if not comma or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                continue
            name = f"{task}/{metric}"
            if filter_name and filter_name != "none":
                name += f"/{filter_name}"
            metrics[name] = value
    return metrics


def evaluate(context: EvaluationContext) -> dict[str, float]:
    config = context.config
    seed = int(config.get("seed", DEFAULT_SEED))
    batch_size = int(config.get("batch_size", DEFAULT_BATCH_SIZE))
    dtype = str(config.get("dtype", DEFAULT_DTYPE))
    bootstrap_iters = int(config.get("bootstrap_iters", DEFAULT_BOOTSTRAP_ITERS))
    num_fewshot = config.get("num_fewshot")
    limit = config.get("limit")
    tasks = list(config["tasks"])
    device = "cuda" if context.gpu_indices else "cpu"

    model_folder = _model_folder(context)
    task_folder = _task_folder(context)
    context.check_stop()

    context.provenance.update(
        {
            "tasks": tasks,
            "seed": seed,
            "batch_size": batch_size,
            "num_fewshot": num_fewshot,
            "limit": limit,
            "device": device,
            "dtype": dtype,
            "bootstrap_iters": bootstrap_iters,
        }
    )
    context.log(
        f"lm-eval: {', '.join(tasks)} on {device} ({dtype}), batch size {batch_size}, seed {seed}"
        + (f", {num_fewshot}-shot" if num_fewshot is not None else "")
        + (f", first {limit} items per task" if limit is not None else "")
    )
    started = time.monotonic()
    outcome = run_dataset_code(
        context,
        "worker.evaluators.lm_eval_tasks",
        {
            "tasks": tasks,
            "task_folder": str(task_folder),
            "model_args": {
                "pretrained": str(model_folder),
                "dtype": dtype,
                "use_safetensors": True,
                "trust_remote_code": False,
            },
            "num_fewshot": num_fewshot,
            "limit": limit,
            "batch_size": batch_size,
            "device": device,
            "bootstrap_iters": bootstrap_iters,
            "seed": seed,
        },
    )
    if not isinstance(outcome, dict):
        raise EvaluationError("lm-eval's outcome is not a result.")
    if "error" in outcome:
        raise EvaluationError(str(outcome["error"]))
    results = outcome.get("results")
    if not isinstance(results, dict):
        raise EvaluationError("lm-eval returned no results.")
    context.log(f"lm-eval finished in {time.monotonic() - started:.1f} s")
    context.provenance["task_versions"] = results.get("versions", {})
    context.provenance["samples"] = {
        task: counts.get("effective") for task, counts in results.get("n-samples", {}).items()
    }
    metrics = _metrics(results)
    if not metrics:
        raise EvaluationError(f"lm-eval reported no numeric metric for {', '.join(tasks)}.")
    return metrics
