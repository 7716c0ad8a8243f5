"""An institution's own evaluator, installed as a package that declares an entry point: the node
validates benchmarks against its spec and the worker runs it in the sandbox like a built-in."""

import sys

import pytest

from tests.worker.recording_node import job_run
from worker import evaluators

PLUGIN = """
from worker.evaluation import EvaluationContext, EvaluationError
from worker.evaluators import EvaluatorSpec

SPEC = EvaluatorSpec(
    name="line-count",
    description="Counts the lines of the dataset's text files.",
    model_formats=("onnx",),
    config_schema={
        "type": "object",
        "properties": {"suffix": {"type": "string"}},
        "additionalProperties": False,
    },
    entry="rx_line_count:evaluate",
    packages=("rx-line-count",),
)


def evaluate(context: EvaluationContext) -> dict[str, float]:
    suffix = context.config.get("suffix", ".txt")
    files = [f for f in context.dataset_files if f.filename.endswith(suffix)]
    if not files:
        raise EvaluationError(f"No {suffix} file in the dataset.")
    context.provenance["suffix"] = suffix
    return {"lines": sum(len(f.path.read_text().splitlines()) for f in files)}
"""


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A distribution on sys.path (as `pip install` leaves one) declaring the entry point."""
    site = tmp_path / "site"
    (site / "rx_line_count-1.4.0.dist-info").mkdir(parents=True)
    (site / "rx_line_count.py").write_text(PLUGIN)
    (site / "rx_line_count-1.4.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rx-line-count\nVersion: 1.4.0\n"
    )
    (site / "rx_line_count-1.4.0.dist-info" / "entry_points.txt").write_text(
        "[research_exchange.evaluators]\nline-count = rx_line_count:SPEC\n"
    )
    monkeypatch.syspath_prepend(str(site))
    evaluators._installed_specs.cache_clear()
    yield
    evaluators._installed_specs.cache_clear()
    sys.modules.pop("rx_line_count", None)


def test_an_installed_evaluator_is_listed_with_its_distributions_version(installed_plugin):
    spec = evaluators.evaluator_specs()["line-count"]
    assert spec.version == "1.4.0"
    assert spec.model_formats == ("onnx",)
    assert evaluators.package_versions(spec) == {"rx-line-count": "1.4.0"}
    assert {"onnx", "lm-eval", "command"} <= set(evaluators.evaluator_specs())


def test_the_worker_runs_an_installed_evaluator_in_its_sandbox(installed_plugin, tmp_path):
    run, node = job_run(
        tmp_path,
        evaluator="line-count",
        model={"model.onnx": b"not read"},
        formats={"model.onnx": "onnx"},
        dataset={"a.txt": b"one\ntwo\n", "b.txt": b"three\n", "c.csv": b"x\ny\nz\n"},
    )
    assert run.execute() == "succeeded", node.outcomes
    assert node.outcomes == [("succeeded", {"lines": 3})]
    provenance = node.provenance
    assert provenance["evaluator"] == "line-count"
    assert provenance["evaluator_version"] == "1.4.0"
    assert provenance["packages"] == {"rx-line-count": "1.4.0"}
    assert provenance["suffix"] == ".txt"


def test_an_installed_evaluators_error_reaches_the_researcher(installed_plugin, tmp_path):
    run, node = job_run(
        tmp_path,
        evaluator="line-count",
        model={"model.onnx": b"not read"},
        formats={"model.onnx": "onnx"},
        dataset={"c.csv": b"x\n"},
        config={"suffix": ".md"},
    )
    assert run.execute() == "failed"
    assert "No .md file in the dataset." in str(node.outcomes[-1])
