"""Where a pending job stands: its position in the dispatcher's order, its estimated start
(replaying the dispatcher with the running jobs' expected ends) and the reasons, in words, in
the selectors, the API and the portal."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.compute import queue_estimates, queue_selectors, scheduling, selectors, services
from apps.compute.models import ComputeNode, InstitutionUsage, Job
from apps.compute.queue_estimates import QueueSnapshot, RunningJob
from apps.compute.scheduling import GB, Device, NodeCapacity, PriorityWeights, QueuedJob
from tests.compute.conftest import A100
from tests.factories import isolated

NOW = datetime(2026, 3, 2, 14, 15, tzinfo=UTC)
WEIGHTS = PriorityWeights()


def gpu_node(node_id: int, gpus: int = 1, memory_gb: int = 80) -> NodeCapacity:
    devices = [Device(f"gpu:{i}", "NVIDIA A100", memory_gb * GB) for i in range(gpus)]
    return NodeCapacity(node_id, devices, isolation="full")


def queued(job_id: int, **fields) -> QueuedJob:
    values = {
        "institution_id": 1,
        "priority": 0,
        "submitted_at": NOW - timedelta(minutes=job_id),
        "gpu_count": 1,
        "gpu_memory_gb": 40,
        "gpu_class": "",
        "time_limit": timedelta(minutes=60),
        **fields,
    }
    return QueuedJob(id=job_id, **values)


def snapshot(
    jobs: list[QueuedJob],
    nodes: list[NodeCapacity],
    running: list[RunningJob] = (),  # type: ignore[assignment]
    *,
    shares: dict[int, float] | None = None,
    run_times: dict[int, timedelta] | None = None,
    registered: list[NodeCapacity] | None = None,
) -> QueueSnapshot:
    shares = shares or {}
    return QueueSnapshot(
        now=NOW,
        ordered=scheduling.queue_order(jobs, now=NOW, fair_shares=shares, weights=WEIGHTS),
        fair_shares=shares,
        weights=WEIGHTS,
        nodes=nodes,
        registered=nodes if registered is None else registered,
        running=list(running),
        run_times=run_times or {job.id: job.time_limit for job in jobs},
    )


def busy(node_id: int, devices: tuple[str, ...], *, ends_in: int, limit_in: int = 120):
    return RunningJob(
        node_id=node_id,
        devices=devices,
        limit_end=NOW + timedelta(minutes=limit_in),
        expected_end=NOW + timedelta(minutes=ends_in),
    )


class TestEstimator:
    def test_a_job_behind_a_running_job_on_a_full_node_starts_at_its_expected_end(self):
        state = snapshot([queued(1)], [gpu_node(1)], [busy(1, ("gpu:0",), ends_in=25)])
        wait = queue_estimates.estimate(state)[1]
        assert (wait.position, wait.pending) == (1, 1)
        assert wait.estimated_start == NOW + timedelta(minutes=25)
        assert wait.explanation.startswith("First in line. Waiting for a node with 1 free GPU")
        assert "the earliest frees up in ~25 min" in wait.explanation
        assert "Estimated start in ~25 min" in wait.explanation

    def test_jobs_ahead_take_their_turn_for_their_expected_run_time(self):
        jobs = [queued(1), queued(2)]
        state = snapshot(
            jobs,
            [gpu_node(1)],
            [busy(1, ("gpu:0",), ends_in=10)],
            run_times={1: timedelta(minutes=20), 2: timedelta(minutes=20)},
        )
        # Job 2 is older: it goes first, then job 1 once job 2's 20 minutes are over.
        estimates = queue_estimates.estimate(state)
        assert estimates[2].position == 1 and estimates[1].position == 2
        assert estimates[2].estimated_start == NOW + timedelta(minutes=10)
        assert estimates[1].estimated_start == NOW + timedelta(minutes=30)
        assert estimates[1].explanation.startswith("Behind 1 job submitted earlier.")

    def test_a_free_device_that_a_job_ahead_takes_is_said_to_go_to_it(self):
        estimates = queue_estimates.estimate(snapshot([queued(1), queued(2)], [gpu_node(1)]))
        assert estimates[2].estimated_start == NOW
        assert estimates[1].estimated_start == NOW + timedelta(minutes=60)
        assert "is free now, but it goes to jobs ahead first." in estimates[1].explanation

    def test_a_job_that_fits_now_is_estimated_to_start_now(self):
        wait = queue_estimates.estimate(snapshot([queued(1)], [gpu_node(1)]))[1]
        assert wait.estimated_start == NOW
        assert "Estimated to start now" in wait.explanation

    def test_a_short_job_fills_a_gap_before_a_wide_one_ahead_of_it(self):
        wide = queued(1, gpu_count=2, priority=5)
        short = queued(2, time_limit=timedelta(minutes=15))
        state = snapshot(
            [wide, short], [gpu_node(1, gpus=2)], [busy(1, ("gpu:0",), ends_in=40, limit_in=40)]
        )
        estimates = queue_estimates.estimate(state)
        assert estimates[1].estimated_start == NOW + timedelta(minutes=40)
        assert estimates[2].estimated_start == NOW
        assert "Behind 1 job with a higher admin priority." in estimates[2].explanation
        assert "start before 1 of the jobs ahead, in a gap they leave (backfill)" in (
            estimates[2].explanation
        )

    def test_no_registered_node_that_can_hold_it_means_no_estimate_and_says_so(self):
        big = queued(1, gpu_count=4)
        wait = queue_estimates.estimate(snapshot([big], [gpu_node(1, gpus=2)]))[1]
        assert wait.estimated_start is None
        assert "No registered compute node has 4 GPUs of 40 GB it may use" in wait.explanation
        assert "cannot start until such a node joins the pool" in wait.explanation

    def test_a_job_whose_nodes_are_all_offline_waits_for_one_to_come_back(self):
        state = snapshot([queued(1)], [], registered=[gpu_node(1)])
        wait = queue_estimates.estimate(state)[1]
        assert wait.estimated_start is None
        assert "Every node that can run it is offline or draining" in wait.explanation

    def test_a_run_past_its_typical_time_still_holds_its_device(self):
        # Expected to end now at the earliest, it may run on to its time limit: the job waiting
        # for its device is not told that a device is free or that the next pass places it.
        overdue = busy(1, ("gpu:0",), ends_in=0, limit_in=50)
        estimates = queue_estimates.estimate(
            snapshot([queued(1), queued(2)], [gpu_node(1)], [overdue])
        )
        first, second = estimates[2], estimates[1]
        assert first.estimated_start == NOW
        assert first.explanation == (
            "First in line. Waiting for a node with 1 free GPU of 40 GB: the earliest is held "
            "by a run that has gone past its benchmark's typical run time. Estimated to start "
            "as soon as that run ends."
        )
        assert "free now" not in second.explanation
        assert second.explanation.startswith(
            "Behind 1 job submitted earlier. Waiting for a node with 1 free GPU of 40 GB: the "
            "earliest is held by a run that has gone past its benchmark's typical run time. "
            "Estimated start in ~1 h"
        )

    def test_a_job_no_node_can_hold_does_not_hold_up_the_jobs_behind_it(self):
        jobs = [queued(1, gpu_count=4, priority=9), queued(2)]
        estimates = queue_estimates.estimate(snapshot(jobs, [gpu_node(1)]))
        assert estimates[1].estimated_start is None
        assert estimates[2].estimated_start == NOW

    def test_the_reason_ahead_is_the_priority_term_that_puts_a_job_first(self):
        shares = {1: 0.9, 2: 0.3}
        jobs = [
            queued(1, institution_id=2, priority=0),
            queued(2, institution_id=2, priority=20),  # admin priority: 200 points
            queued(3, institution_id=1, priority=0),  # fair share: 600 points more
            queued(4, institution_id=2, priority=0, submitted_at=NOW - timedelta(days=1)),
        ]
        wait = queue_estimates.estimate(snapshot(jobs, [gpu_node(1)], shares=shares))[1]
        assert wait.position == 4
        assert wait.explanation.startswith(
            "Behind 3 jobs: 1 with a higher admin priority, 1 of institutions with a higher "
            "fair share, 1 submitted earlier."
        )

    def test_only_the_head_of_the_queue_is_replayed(self):
        jobs = [queued(number) for number in range(1, 6)]
        state = snapshot(jobs, [gpu_node(1)], [busy(1, ("gpu:0",), ends_in=5)])
        estimates = queue_estimates.estimate(state, limit=3)
        assert len(estimates) == 3
        last = queue_estimates.estimate(state, job_ids=[1], limit=3)[1]
        assert last.position == 5 and last.estimated_start is None
        assert "Only the first 200 jobs" in last.explanation

    def test_expected_run_time_is_the_typical_one_capped_by_the_limit(self):
        hour = timedelta(hours=1)
        assert queue_estimates.expected_run_time(time_limit=hour, typical=None) == hour
        assert queue_estimates.expected_run_time(time_limit=hour, typical=2 * hour) == hour
        assert queue_estimates.expected_run_time(
            time_limit=hour, typical=timedelta(minutes=5)
        ) == timedelta(minutes=5)
        # A run already past its typical time is expected to end now at the earliest.
        late = queue_estimates.expected_end(
            started_at=NOW - hour, now=NOW, time_limit=2 * hour, typical=timedelta(minutes=10)
        )
        assert late == NOW

    def test_the_typical_run_time_is_the_median(self):
        runs = [timedelta(minutes=minutes) for minutes in (4, 10, 60)]
        assert queue_estimates.median_run_time(runs) == timedelta(minutes=10)
        assert queue_estimates.median_run_time([]) is None

    @pytest.mark.parametrize(
        ("minutes", "words"),
        [
            (0.5, "less than a minute"),
            (11.2, "~12 min"),
            (94, "~1 h 35 min"),
            (121, "~2 h"),
            (14 * 60 + 20, "~14 h"),
            (3 * 1440, "~3 days"),
        ],
    )
    def test_waits_are_rounded_in_words(self, minutes, words):
        assert queue_estimates.approximately(timedelta(minutes=minutes)) == words


@pytest.fixture
def second_node(institution_admin, institution):
    """A second one-A100 node: two jobs can run at once."""
    node, _secret = services.node_create(
        user=institution_admin, institution=institution, name="gpu-02"
    )
    gpu = {**A100, "uuid": "GPU-a100-1"}
    return services.node_register(node=node, gpus=[gpu], cpu_slots=1, host_info=isolated())


def run(job: Job, *, started_minutes_ago: float) -> Job:
    """Dispatches and starts the job as the worker would, `started_minutes_ago` minutes ago."""
    assert job.pk in services.jobs_dispatch()
    job.refresh_from_db()
    services.job_claim(node=job.node, job_id=job.pk, attempt=job.attempt)
    at = timezone.now() - timedelta(minutes=started_minutes_ago)
    Job.objects.filter(pk=job.pk).update(started_at=at, dispatched_at=at)
    job.refresh_from_db()
    return job


def succeeded(job: Job, *, minutes: float) -> None:
    """History: the job ran and succeeded in `minutes`, yesterday."""
    started = timezone.now() - timedelta(days=1)
    Job.objects.filter(pk=job.pk).update(
        state=Job.State.SUCCEEDED,
        started_at=started,
        finished_at=started + timedelta(minutes=minutes),
    )


@pytest.mark.django_db
class TestQueueSelectors:
    def test_positions_follow_the_dispatchers_order(
        self, member, staff, submit_job, gpu_node, second_node
    ):
        first = submit_job(member)
        second = submit_job(member)
        third = submit_job(member)
        services.job_set_priority(user=staff, job=second, priority=50)
        estimates = queue_selectors.job_queue_estimates()
        places = [estimates[job.pk].position for job in (second, first, third)]
        assert places == [1, 2, 3]
        assert {wait.pending for wait in estimates.values()} == {3}
        # The dispatcher places the first two of that order on the two free nodes.
        assert set(services.jobs_dispatch()) == {first.pk, second.pk}

    def test_typical_run_times_come_from_the_benchmarks_succeeded_jobs(
        self, member, submit_job, benchmark
    ):
        for minutes in (6, 8, 25):
            succeeded(submit_job(member), minutes=minutes)
        failed = submit_job(member)
        Job.objects.filter(pk=failed.pk).update(
            state=Job.State.FAILED,
            started_at=timezone.now() - timedelta(hours=2),
            finished_at=timezone.now(),
        )
        typical = queue_selectors.benchmark_run_times([benchmark.pk])
        assert typical == {benchmark.pk: timedelta(minutes=8)}

    def test_a_job_behind_a_running_one_starts_when_its_typical_run_ends(self, member, submit_job):
        for minutes in (10, 12, 14):
            succeeded(submit_job(member), minutes=minutes)
        running = run(submit_job(member), started_minutes_ago=5)
        waiting = submit_job(member)
        wait = queue_selectors.job_wait_estimate(job=waiting)
        assert wait is not None
        expected = running.started_at + timedelta(minutes=12)
        assert abs(wait.estimated_start - expected) < timedelta(seconds=5)
        assert "Waiting for a node with 1 free GPU of 40 GB: the earliest frees up in ~7 min" in (
            wait.explanation
        )

    def test_without_history_a_running_job_is_expected_to_use_its_time_limit(
        self, member, submit_job
    ):
        running = run(submit_job(member), started_minutes_ago=5)
        wait = queue_selectors.job_wait_estimate(job=submit_job(member))
        assert wait is not None
        expected = running.started_at + timedelta(minutes=running.time_limit_minutes)
        assert abs(wait.estimated_start - expected) < timedelta(seconds=5)

    def test_the_explanation_names_the_other_institutions_fair_share(
        self, member, outsider, other_institution, submit_job, gpu_node, staff
    ):
        services.allocation_create(
            user=staff,
            institution=other_institution,
            name="Rheinau share",
            gpu_hours=100,
            starts_at=timezone.now() - timedelta(days=1),
            ends_at=timezone.now() + timedelta(days=30),
        )
        institution = member.memberships.get().institution
        InstitutionUsage.objects.create(
            institution=institution, decayed_gpu_seconds=10**7, updated_at=timezone.now()
        )
        InstitutionUsage.objects.create(
            institution=other_institution, decayed_gpu_seconds=1, updated_at=timezone.now()
        )
        run(submit_job(member), started_minutes_ago=1)
        ours = submit_job(member)
        shares = selectors.fair_shares(now=timezone.now())
        assert shares[other_institution.pk] > shares[institution.pk]
        theirs = Job.objects.create(
            model_version=ours.model_version,
            benchmark=ours.benchmark,
            submitter=outsider,
            institution=other_institution,
            gpu_count=1,
            gpu_memory_gb=40,
            time_limit_minutes=30,
        )
        wait = queue_selectors.job_wait_estimate(job=ours)
        assert wait is not None and wait.position == 2
        assert wait.explanation.startswith("Behind 1 job of institutions with a higher fair share.")
        assert str(theirs.pk) not in wait.explanation
        assert "Rheinau" not in wait.explanation

    def test_a_job_no_node_can_run_says_so(self, member, submit_job, gpu_node):
        job = submit_job(member)
        # The only node that could run it left the pool's registry of devices.
        ComputeNode.objects.filter(pk=gpu_node.pk).update(gpus=[])
        wait = queue_selectors.job_wait_estimate(job=job)
        assert wait is not None and wait.estimated_start is None
        assert "No registered compute node" in wait.explanation
        ComputeNode.objects.filter(pk=gpu_node.pk).update(gpus=[A100], draining=True)
        wait = queue_selectors.job_wait_estimate(job=job)
        assert wait is not None and wait.estimated_start is None
        assert "offline or draining" in wait.explanation

    def test_a_job_that_is_not_pending_has_no_place(self, member, submit_job):
        job = run(submit_job(member), started_minutes_ago=1)
        assert queue_selectors.job_wait_estimate(job=job) is None

    def test_the_estimates_take_a_fixed_number_of_queries(
        self, member, submit_job, django_assert_num_queries
    ):
        jobs = [submit_job(member) for _ in range(3)]
        run(jobs[0], started_minutes_ago=1)
        with django_assert_num_queries(6):
            few = queue_selectors.job_queue_estimates()
        jobs += [submit_job(member) for _ in range(10)]
        with django_assert_num_queries(6):
            many = queue_selectors.job_queue_estimates()
        assert (len(few), len(many)) == (2, 12)
        with django_assert_num_queries(0):
            assert queue_selectors.job_queue_estimates(job_ids=[]) == {}


QUEUE_KEYS = {"position", "pending", "estimated_start", "explanation"}


@pytest.mark.django_db
class TestApiAndPortal:
    def test_the_job_detail_carries_its_place_in_the_queue(self, client_as, member, submit_job):
        running = run(submit_job(member), started_minutes_ago=5)
        job = submit_job(member)
        body = client_as("member").get(f"/api/v1/jobs/{job.pk}/").json()
        assert set(body["queue"]) == QUEUE_KEYS
        assert body["queue"]["position"] == 1 and body["queue"]["pending"] == 1
        start = datetime.fromisoformat(body["queue"]["estimated_start"])
        assert abs(start - (running.started_at + timedelta(minutes=30))) < timedelta(seconds=5)
        assert "Waiting for a node with 1 free GPU of 40 GB" in body["queue"]["explanation"]
        assert client_as("member").get(f"/api/v1/jobs/{running.pk}/").json()["queue"] is None

    def test_a_submitted_job_answers_with_its_place(
        self, client_as, model_version, benchmark, gpu_node, allocation
    ):
        response = client_as("member").post(
            "/api/v1/jobs/",
            {"model_version": model_version.pk, "benchmark": benchmark.pk},
            format="json",
        )
        assert response.json()["queue"]["position"] == 1

    def test_only_those_who_may_see_the_job_see_its_place(self, client_as, member, submit_job):
        job = submit_job(member)
        assert client_as("outsider").get(f"/api/v1/jobs/{job.pk}/").status_code == 404

    def test_the_list_shows_each_pending_jobs_place_at_the_same_cost(
        self, client_as, member, submit_job, django_assert_max_num_queries
    ):
        client = client_as("member")
        run(submit_job(member), started_minutes_ago=1)
        submit_job(member)
        with django_assert_max_num_queries(10) as one:
            rows = client.get("/api/v1/jobs/").json()["results"]
        assert [row["queue"] is None for row in rows] == [False, True]
        for _ in range(8):
            submit_job(member)
        with django_assert_max_num_queries(len(one.captured_queries)):
            rows = client.get("/api/v1/jobs/").json()["results"]
        places = sorted(row["queue"]["position"] for row in rows if row["queue"])
        assert places == list(range(1, 10))

    def test_the_queue_endpoint_gives_estimated_starts(
        self, client_as, member, outsider, submit_job, django_assert_max_num_queries
    ):
        run(submit_job(member), started_minutes_ago=1)
        submit_job(member)
        client = client_as("outsider")
        with django_assert_max_num_queries(9) as one:
            rows = client.get("/api/v1/jobs/queue/").json()["results"]
        assert rows[0]["job"] is None and rows[0]["estimated_start"] is not None
        for _ in range(5):
            submit_job(member)
        with django_assert_max_num_queries(len(one.captured_queries)):
            rows = client.get("/api/v1/jobs/queue/").json()["results"]
        starts = [datetime.fromisoformat(row["estimated_start"]) for row in rows]
        assert starts == sorted(starts) and len(starts) == 6

    def test_the_job_page_shows_position_estimate_and_reasons(self, client, member, submit_job):
        run(submit_job(member), started_minutes_ago=10)
        submit_job(member)
        job = submit_job(member)
        client.force_login(member)
        html = client.get(f"/compute/jobs/{job.pk}/").content.decode()
        assert "Position 2 of 2" in html
        assert re.search(r"estimated start ~\d\d:\d\d UTC", html) and "(in about " in html
        assert "Behind 1 job submitted earlier." in html

    def test_the_queue_page_has_an_estimated_start_column(self, client, member, submit_job):
        run(submit_job(member), started_minutes_ago=10)
        submit_job(member)
        client.force_login(member)
        html = client.get("/compute/").content.decode()
        assert '<th scope="col">Estimated start</th>' in html
        assert "(in 20" in html or "(in 19" in html
