"""How isolated each result's evaluation was: recorded from the worker's provenance, refused
below what the benchmark and the node allow, shown on the result page and the leaderboard."""

import pytest
from django.core.exceptions import ValidationError

from apps.catalog.models import Visibility
from apps.compute import selectors as compute_selectors
from apps.compute import services as compute_services
from apps.compute.models import ComputeNode, Job
from tests.evaluations.test_portal import leaderboard_rows, page


@pytest.fixture
def version(member, institution, make_model_version):
    return make_model_version(member, institution, name="Isolated model")


def _provenance(level: str) -> dict:
    return {
        "evaluator": "smoke",
        "gpus": "cpu",
        "isolation": {"level": level, "sandbox": "bubblewrap 0.8.0", "namespaces": "user, PID"},
    }


def test_a_fully_isolated_result_records_its_level_and_shows_it(
    client, member, cpu_benchmark, version, post_result
):
    result = post_result(
        member, version, cpu_benchmark, {"accuracy": 0.9}, provenance=_provenance("full")
    )

    assert result.isolation == "full"
    client.force_login(member)
    html = page(client.get(f"/results/{result.pk}/"))
    assert "<dt>Isolation</dt><dd>full" in html
    assert "<dt>Sandbox</dt><dd>bubblewrap 0.8.0: user, PID</dd>" in html
    rows = leaderboard_rows(page(client.get(f"/benchmarks/{cpu_benchmark.pk}/leaderboard/")))
    assert rows[0][-2] == "full"


def test_a_public_benchmark_refuses_a_result_that_records_no_isolation(
    member, cpu_benchmark, version, gpu_node
):
    job = compute_services.job_submit(user=member, model_version=version, benchmark=cpu_benchmark)
    assert job.pk in compute_services.jobs_dispatch()
    job.refresh_from_db()
    compute_services.job_claim(node=gpu_node, job_id=job.pk, attempt=job.attempt)
    with pytest.raises(ValidationError, match="without recording its isolation"):
        compute_services.job_result_post(
            node=gpu_node, job_id=job.pk, attempt=job.attempt, metrics={"accuracy": 0.9},
            provenance={"evaluator": "smoke", "gpus": "cpu"},
        )  # fmt: skip
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING


def test_a_public_benchmark_refuses_a_partly_isolated_result(
    member, cpu_benchmark, version, post_result
):
    assert cpu_benchmark.visibility == Visibility.PUBLIC
    with pytest.raises(ValidationError, match="requires full isolation; the worker ran the "):
        post_result(
            member,
            version,
            cpu_benchmark,
            {"accuracy": 0.9},
            provenance=_provenance("partial"),
        )


def test_an_institution_benchmark_accepts_any_isolation_by_default(
    member, institution, make_cpu_benchmark
):
    benchmark = make_cpu_benchmark(member, institution, visibility=Visibility.INSTITUTION)
    assert not benchmark.full_isolation_required


@pytest.mark.parametrize("level", ["partial", "none"])
@pytest.mark.parametrize("trusted_only", [True, False])
def test_a_result_below_full_counts_only_from_a_trusted_only_node_of_the_benchmarks_institution(
    member, cpu_benchmark, version, post_result, gpu_node, trusted_only, level
):
    cpu_benchmark.requires_full_isolation = False
    cpu_benchmark.save(update_fields=["requires_full_isolation"])
    ComputeNode.objects.filter(pk=gpu_node.pk).update(trusted_only=trusted_only)
    gpu_node.refresh_from_db()
    provenance = _provenance(level)

    if not trusted_only:
        with pytest.raises(ValidationError, match="not trusted-only"):
            post_result(member, version, cpu_benchmark, {"accuracy": 0.9}, provenance=provenance)
    else:
        result = post_result(
            member, version, cpu_benchmark, {"accuracy": 0.9}, provenance=provenance
        )
        assert result.isolation == level


def test_the_node_records_what_its_worker_can_isolate_and_tells_it_the_terms_of_each_job(
    gpu_node, cpu_benchmark
):
    node = compute_services.node_register(
        node=gpu_node,
        gpus=gpu_node.gpus,
        cpu_slots=1,
        host_info={"isolation": {"level": "partial"}},
    )
    assert node.isolation == "partial"
    job = Job(benchmark=cpu_benchmark)
    assert compute_selectors.job_isolation_terms(job=job, node=node) == {
        "isolation_required": "full",
        "trusted": False,
    }
    # The benchmark is of the node's own institution.
    node.trusted_only = True
    assert compute_selectors.job_isolation_terms(job=job, node=node)["trusted"] is True


def test_the_demo_says_when_its_worker_cannot_isolate(monkeypatch):
    from apps.portal.management.commands import demo_seed

    monkeypatch.setattr(demo_seed.shutil, "which", lambda name: "/usr/bin/bwrap")
    assert demo_seed.Command._without_bubblewrap() == ""
    monkeypatch.setattr(demo_seed.shutil, "which", lambda name: None)
    assert "bubblewrap is not installed" in demo_seed.Command._without_bubblewrap()
