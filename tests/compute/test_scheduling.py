from datetime import UTC, datetime, timedelta

import pytest

from apps.compute.scheduling import (
    Device,
    NodeCapacity,
    PriorityWeights,
    QueuedJob,
    fair_share_factor,
    fair_share_factors,
    plan,
    queue_order,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WEIGHTS = PriorityWeights()


def job(id, *, gpus=1, institution=1, priority=0, age_minutes=0, memory=0, gpu_class="", hours=1):
    return QueuedJob(
        id=id,
        institution_id=institution,
        priority=priority,
        submitted_at=NOW - timedelta(minutes=age_minutes),
        gpu_count=gpus,
        gpu_memory_gb=memory,
        gpu_class=gpu_class,
        time_limit=timedelta(hours=hours),
    )


def gpus(count, name="NVIDIA A100 80GB", memory=85_000_000_000):
    return [Device(f"gpu:{index}", name, memory) for index in range(count)]


def test_fair_share_is_one_unused_half_at_share_and_falls_beyond():
    assert fair_share_factor(usage_share=0.0, allocation_share=0.5) == 1.0
    assert fair_share_factor(usage_share=0.5, allocation_share=0.5) == 0.5
    assert fair_share_factor(usage_share=1.0, allocation_share=0.5) == 0.25


def test_fair_share_factors_favour_the_institution_below_its_share():
    factors = fair_share_factors(
        decayed_usage={1: 900.0, 2: 100.0}, allocations={1: 500.0, 2: 500.0}
    )
    assert factors[2] > factors[1]
    assert factors[1] == pytest.approx(2 ** (-0.9 / 0.5))


def test_queue_order_puts_admin_priority_then_fair_share_then_age():
    shares = {1: 0.25, 2: 0.9}
    ordered = queue_order(
        [
            job(1, institution=1, age_minutes=600),
            job(2, institution=2),
            job(3, institution=1, priority=100),
        ],
        now=NOW,
        fair_shares=shares,
        weights=WEIGHTS,
    )
    assert [queued.id for queued in ordered] == [3, 2, 1]


def test_queue_order_breaks_ties_by_submission_time():
    ordered = queue_order(
        [job(1, age_minutes=5), job(2, age_minutes=10)],
        now=NOW,
        fair_shares={1: 0.5},
        weights=PriorityWeights(age=0),
    )
    assert [queued.id for queued in ordered] == [2, 1]


def test_plan_places_jobs_only_on_matching_free_devices():
    node = NodeCapacity(1, gpus(2, name="NVIDIA A40", memory=48_000_000_000))
    placements = plan(
        [job(1, memory=80), job(2, gpu_class="a100"), job(3, memory=40), job(4, gpus=2)],
        [node],
        now=NOW,
    )
    assert [(p.job_id, p.devices) for p in placements] == [(3, ("gpu:0",))]


def test_plan_never_places_two_jobs_on_one_device():
    node = NodeCapacity(1, gpus(4), busy_until={"gpu:0": NOW + timedelta(hours=1)})
    placements = plan([job(i, gpus=2) for i in range(1, 5)], [node], now=NOW)
    # gpu:0 is busy; three free GPUs hold one two-GPU job.
    assert len(placements) == 1
    assert "gpu:0" not in placements[0].devices


def test_plan_runs_cpu_jobs_on_cpu_slots_only():
    node = NodeCapacity(1, [*gpus(1), Device("cpu:0"), Device("cpu:1")])
    placements = plan([job(i, gpus=0) for i in range(1, 4)], [node], now=NOW)
    assert sorted(p.devices for p in placements) == [("cpu:0",), ("cpu:1",)]


def test_plan_best_fit_keeps_the_big_node_for_big_jobs():
    small, big = NodeCapacity(1, gpus(2)), NodeCapacity(2, gpus(8))
    placements = plan([job(1, gpus=1), job(2, gpus=8)], [big, small], now=NOW)
    assert {p.job_id: p.node_id for p in placements} == {1: 1, 2: 2}


def test_blocked_head_job_reserves_devices_against_long_jobs_behind_it():
    # Two of four GPUs are busy for one more hour; the head job needs all four.
    node = NodeCapacity(
        1,
        gpus(4),
        busy_until={"gpu:0": NOW + timedelta(hours=1), "gpu:1": NOW + timedelta(hours=1)},
    )
    ordered = [job(1, gpus=4), job(2, gpus=1, hours=3), job(3, gpus=1, hours=0.5)]
    placements = plan(ordered, [node], now=NOW)
    # The three-hour job would delay the head job; the half-hour one ends before it starts.
    assert [p.job_id for p in placements] == [3]


def test_plan_does_not_change_what_it_is_given():
    node = NodeCapacity(1, gpus(2))
    plan([job(1)], [node], now=NOW)
    assert node.busy_until == {}
    assert len(node.free()) == 2


def test_a_job_goes_only_to_a_node_whose_worker_isolates_as_its_benchmark_requires():
    job = QueuedJob(
        1, 10, 0, NOW, 1, 0, "", timedelta(hours=1), full_isolation=True,
        benchmark_institution_id=10,
    )  # fmt: skip
    partial = NodeCapacity(1, gpus(1), isolation="partial")
    unisolated = NodeCapacity(2, gpus(1), isolation="none", trusted_institution_id=10)
    full = NodeCapacity(3, gpus(8), isolation="full")
    unreported = NodeCapacity(4, gpus(1), isolation="")

    assert [p.node_id for p in plan([job], [partial, unisolated, full], now=NOW)] == [3]
    assert plan([job], [partial, unisolated, unreported], now=NOW) == []


def test_a_node_that_cannot_isolate_runs_only_its_own_institutions_benchmarks():
    def job(job_id: int, benchmark_institution: int) -> QueuedJob:
        return QueuedJob(
            job_id, 10, 0, NOW, 1, 0, "", timedelta(hours=1),
            benchmark_institution_id=benchmark_institution,
        )  # fmt: skip

    trusted = NodeCapacity(1, gpus(2), isolation="none", trusted_institution_id=10)
    untrusted = NodeCapacity(2, gpus(2), isolation="none")

    assert [p.job_id for p in plan([job(1, 10), job(2, 20)], [trusted], now=NOW)] == [1]
    assert plan([job(1, 10)], [untrusted], now=NOW) == []


def test_a_partly_isolating_or_trusted_only_node_runs_only_its_own_institutions_benchmarks():
    def job(job_id: int, benchmark_institution: int) -> QueuedJob:
        return QueuedJob(
            job_id, 10, 0, NOW, 1, 0, "", timedelta(hours=1),
            benchmark_institution_id=benchmark_institution,
        )  # fmt: skip

    partial = NodeCapacity(1, gpus(2), isolation="partial")
    partial_trusted = NodeCapacity(2, gpus(2), isolation="partial", trusted_institution_id=10)
    full_trusted = NodeCapacity(3, gpus(2), isolation="full", trusted_institution_id=10)

    assert plan([job(1, 20)], [partial], now=NOW) == []
    assert [p.job_id for p in plan([job(1, 10), job(2, 20)], [partial_trusted], now=NOW)] == [1]
    assert [p.job_id for p in plan([job(1, 10), job(2, 20)], [full_trusted], now=NOW)] == [1]
