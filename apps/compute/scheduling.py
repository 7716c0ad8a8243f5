"""Where and in which order pending jobs run: pure functions, no database.

The dispatcher (services.jobs_dispatch) feeds them the queue and the free devices; the
scheduling simulation in bench/ feeds them a synthetic trace. The priority follows Slurm's
multifactor plugin: an admin priority, the institution's fair share and the job's age, each
weighted. Placement is best-fit with one reservation (EASY backfill): when the job at the head
of the queue does not fit, the node where it can start first keeps its free devices for it, and
lower jobs may use them only if their time limit ends before that start.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

GB = 10**9


@dataclass(frozen=True)
class PriorityWeights:
    admin: float = 10.0  # per unit of admin priority (-100..100)
    fair_share: float = 1000.0  # times the fair-share factor (0..1)
    age: float = 100.0  # times the age factor (0..1, saturates at max_age)
    max_age: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class QueuedJob:
    id: int
    institution_id: int
    priority: int
    submitted_at: datetime
    gpu_count: int
    gpu_memory_gb: int
    gpu_class: str
    time_limit: timedelta
    # The benchmark's isolation terms: only fully isolating workers, and whose institution it is.
    full_isolation: bool = False
    benchmark_institution_id: int = 0


@dataclass(frozen=True)
class Device:
    key: str  # "gpu:<index>" or "cpu:<slot>"
    name: str = ""
    memory_bytes: int = 0

    @property
    def is_gpu(self) -> bool:
        return self.key.startswith("gpu:")


@dataclass
class NodeCapacity:
    id: int
    devices: list[Device]
    # Devices held by running or dispatched jobs, with the time their time limit ends.
    busy_until: dict[str, datetime] = field(default_factory=dict)
    # What its worker reported it can isolate ("" when it reported nothing), and the
    # institution whose benchmarks it may run unisolated (a trusted-only node's own).
    isolation: str = ""
    trusted_institution_id: int | None = None

    def free(self) -> list[Device]:
        return [device for device in self.devices if device.key not in self.busy_until]

    def accepts(self, job: QueuedJob) -> bool:
        """Whether the node's worker may run the job. A trusted-only node runs only its own
        institution's benchmarks. A benchmark that requires full isolation needs a fully
        isolating worker; a worker below full (partial isolation still leaves the host's files
        readable) runs only its trusted-only node's own institution's benchmarks."""
        own = self.trusted_institution_id == job.benchmark_institution_id
        if self.trusted_institution_id is not None and not own:
            return False
        # A worker that reported nothing ("") is not taken for a fully isolating one.
        if job.full_isolation and self.isolation != "full":
            return False
        return self.isolation in ("full", "") or own


@dataclass(frozen=True)
class Placement:
    job_id: int
    node_id: int
    devices: tuple[str, ...]


def fair_share_factor(*, usage_share: float, allocation_share: float) -> float:
    """Slurm's classic formula 2^(-usage/shares): 1 for an institution that used nothing,
    0.5 for one that used exactly its share, towards 0 beyond. An institution with no
    allocation gets the factor of one that used twice its (non-existent) share: 0.25."""
    if allocation_share <= 0:
        return 0.25
    return float(2 ** (-usage_share / allocation_share))


def fair_share_factors(
    *, decayed_usage: dict[int, float], allocations: dict[int, float]
) -> dict[int, float]:
    """Per institution: usage and allocation, each as a share of the total."""
    total_usage = sum(decayed_usage.values())
    total_allocated = sum(allocations.values())
    institutions = set(decayed_usage) | set(allocations)
    return {
        institution: fair_share_factor(
            usage_share=decayed_usage.get(institution, 0.0) / total_usage if total_usage else 0.0,
            allocation_share=(
                allocations.get(institution, 0.0) / total_allocated if total_allocated else 0.0
            ),
        )
        for institution in institutions
    }


def job_priority(
    job: QueuedJob, *, now: datetime, fair_share: float, weights: PriorityWeights
) -> float:
    age = min(max((now - job.submitted_at) / weights.max_age, 0.0), 1.0)
    return weights.admin * job.priority + weights.fair_share * fair_share + weights.age * age


def queue_order(
    jobs: Iterable[QueuedJob],
    *,
    now: datetime,
    fair_shares: dict[int, float],
    weights: PriorityWeights,
) -> list[QueuedJob]:
    """Highest priority first; ties go to the job submitted first."""
    return sorted(
        jobs,
        key=lambda job: (
            -job_priority(
                job, now=now, fair_share=fair_shares.get(job.institution_id, 0.25), weights=weights
            ),
            job.submitted_at,
            job.id,
        ),
    )


def device_matches(job: QueuedJob, device: Device) -> bool:
    if job.gpu_count == 0:
        return not device.is_gpu
    if not device.is_gpu or device.memory_bytes < job.gpu_memory_gb * GB:
        return False
    return not job.gpu_class or job.gpu_class.lower() in device.name.lower()


def _needed(job: QueuedJob) -> int:
    return max(job.gpu_count, 1)


@dataclass
class _Reservation:
    node_id: int
    starts_at: datetime
    held: set[str]


def _start_time(
    job: QueuedJob,
    node: NodeCapacity,
    free: list[Device],
    busy_until: dict[str, datetime],
    now: datetime,
) -> datetime | None:
    """When `job` could start on `node` once running jobs end at their time limits; None when
    the node can never hold it."""
    matching = [device for device in node.devices if device_matches(job, device)]
    if len(matching) < _needed(job):
        return None
    if len(free) >= _needed(job):
        return now
    ends = sorted(busy_until[d.key] for d in matching if d.key in busy_until)
    return max(now, ends[_needed(job) - len(free) - 1])


def plan(
    ordered_jobs: Sequence[QueuedJob], nodes: Sequence[NodeCapacity], *, now: datetime
) -> list[Placement]:
    """Places jobs, in the given order, on nodes' free devices. Mutates nothing it is given."""
    free = {node.id: node.free() for node in nodes}
    # A GPU job skips a node with too few free GPUs without looking at each device: in a busy
    # pool that is most nodes, for most of a long queue.
    free_gpus = {
        node_id: sum(device.is_gpu for device in devices) for node_id, devices in free.items()
    }
    busy_until = {node.id: dict(node.busy_until) for node in nodes}
    reservation: _Reservation | None = None
    placements = []
    for job in ordered_jobs:
        if not any(free.values()):
            break
        candidates = []
        for node in nodes:
            if job.gpu_count > free_gpus[node.id] or not node.accepts(job):
                continue
            usable = [device for device in free[node.id] if device_matches(job, device)]
            if (
                reservation
                and reservation.node_id == node.id
                and now + job.time_limit > (reservation.starts_at)
            ):
                usable = [device for device in usable if device.key not in reservation.held]
            if len(usable) >= _needed(job):
                candidates.append((len(usable), node.id, usable))
        if candidates:
            # Best fit: the node with the fewest matching free devices left keeps big holes
            # open elsewhere for jobs that need many GPUs.
            _count, node_id, usable = min(candidates, key=lambda candidate: candidate[:2])
            chosen = usable[: _needed(job)]
            taken = {device.key for device in chosen}
            free[node_id] = [device for device in free[node_id] if device.key not in taken]
            free_gpus[node_id] -= job.gpu_count
            busy_until[node_id].update(dict.fromkeys(taken, now + job.time_limit))
            placements.append(Placement(job.id, node_id, tuple(device.key for device in chosen)))
        elif reservation is None:
            starts = []
            for node in nodes:
                if not node.accepts(job):
                    continue
                matching_free = [d for d in free[node.id] if device_matches(job, d)]
                start = _start_time(job, node, matching_free, busy_until[node.id], now)
                if start is not None:
                    starts.append((start, node.id, matching_free))
            if starts:
                start, node_id, matching_free = min(starts, key=lambda item: item[:2])
                reservation = _Reservation(node_id, start, {d.key for d in matching_free})
    return placements
