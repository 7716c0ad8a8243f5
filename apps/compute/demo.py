"""The demo node's compute pool: a CPU node run by the local worker that `make run` starts, a
pool-check benchmark it can run, allocations and a request waiting for review."""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from apps.accounts.models import Institution, User
from apps.catalog import services as catalog_services
from apps.catalog.models import Benchmark, Dataset
from apps.compute import services
from apps.compute.models import Allocation, ComputeNode, ComputeRequest

DEMO_NODE = "local-cpu"
DEMO_CPU_SLOTS = 2


def worker_env_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-worker.env"


def _broker_url_for_worker() -> str:
    """The broker as the worker must name it: the embedded node's filesystem broker needs the
    folder spelled out, since the worker has no Django settings to read it from."""
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return f"filesystem://{Path(settings.VAR_DIR).resolve() / 'broker'}"
    return settings.CELERY_BROKER_URL


def compute_demo_load(
    *, institutions: dict[str, Institution], users: dict[str, User], admin: User, web_url: str
) -> Path:
    """Loads what is missing, gives the demo node a new token, and writes the local worker's
    settings (broker, node URL, token) to a file only this user can read. Returns its path."""
    lakeshore, rheinau, northbridge = (
        institutions["lakeshore-nlp"],
        institutions["rheinau-ai"],
        institutions["northbridge"],
    )
    node = ComputeNode.objects.filter(institution=lakeshore, name=DEMO_NODE).first()
    if node is None:
        node, token = services.node_create(
            user=users["maria"], institution=lakeshore, name=DEMO_NODE, labels=["cpu", "demo"]
        )
    else:
        token = services.node_token_rotate(user=users["maria"], node=node)
    if node.registered_at is None:
        # What the Procfile's worker (--cpu-slots 2) registers when it starts, so the demo can
        # queue its first evaluations before the worker is up; the worker's own report replaces it.
        node = services.node_register(
            node=node, gpus=[], cpu_slots=DEMO_CPU_SLOTS, host_info={"cpu_count": DEMO_CPU_SLOTS}
        )

    if not Benchmark.objects.filter(institution=rheinau, slug="pool-check").exists():
        catalog_services.benchmark_create(
            user=users["lena"],
            institution=rheinau,
            name="Pool check: files arrive intact",
            slug="pool-check",
            task_type="pool-check",
            dataset=Dataset.objects.get(institution=rheinau, slug="everyday-sts"),
            metrics=[
                {"name": "files", "higher_is_better": True},
                {"name": "bytes", "higher_is_better": True},
            ],
            evaluator="smoke",
            evaluator_config={"hold_seconds": 5},
            description=(
                "Fetches every file of the model and of the dataset on a pool node, checks each "
                "sha256, and holds the node for five seconds. Runs on CPU."
            ),
            time_limit_minutes=5,
        )

    now = timezone.now()
    for institution, hours in ((northbridge, 200), (rheinau, 120)):
        if not Allocation.objects.filter(institution=institution).exists():
            services.allocation_create(
                user=admin,
                institution=institution,
                name=f"{institution.name}: evaluation grant",
                gpu_hours=Decimal(hours),
                starts_at=now - timedelta(days=1),
                ends_at=now + timedelta(days=180),
            )
    if not ComputeRequest.objects.exists():
        services.compute_request_submit(
            user=users["ravi"],
            institution=rheinau,
            purpose="Evaluate multilingual sentence encoders on the STS benchmarks.",
            gpu_hours=Decimal(80),
            gpu_count=2,
            gpu_class="A100",
            starts_on=timezone.localdate(),
            ends_on=timezone.localdate() + timedelta(days=60),
        )

    path = worker_env_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(
        f"WORKER_BROKER_URL={_broker_url_for_worker()}\n"
        f"WORKER_NODE_URL={web_url}\n"
        f"WORKER_NODE_TOKEN={token}\n"
    )
    return path
