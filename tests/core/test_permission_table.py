"""Who may do what, for every API route: one table, checked against the URL configuration.

Every (method, route) under /api/v1/ has an entry giving the status each of the five actors
gets: anonymous, outsider (an admin of another institution), member, institution_admin and
staff. A route without an entry fails `test_every_api_route_has_a_table_entry`, so a new
endpoint cannot ship untested. Each case makes the real request against real records of the
`institution` fixture: most are visible to the institution only, some are private, and some
are created by a colleague, so that a member sees them but may not edit them.
"""

import io
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import services as account_services
from apps.accounts.models import ApiToken, Institution, Membership, User
from apps.catalog import services as catalog_services
from apps.catalog.models import (
    Artifact,
    Benchmark,
    Comment,
    Dataset,
    ModelVersion,
    Paper,
    ResearchModel,
    Visibility,
)
from apps.compute import selectors as compute_selectors
from apps.compute import services as compute_services
from apps.compute.models import Allocation, ComputeNode, ComputeRequest, Job
from apps.evaluations.models import Result
from apps.events import services as event_services
from apps.events import webhooks
from apps.events.models import (
    BenchmarkWatch,
    EventType,
    Notification,
    NotificationPreference,
    WebhookDelivery,
    WebhookEndpoint,
)
from apps.federation.models import Peer, RemoteJob
from tests.catalog.conftest import store
from tests.catalog.samples import safetensors_bytes
from tests.factories import MembershipFactory, UserFactory, api_token_for, isolated

pytestmark = pytest.mark.django_db

ACTORS = ("anonymous", "outsider", "member", "institution_admin", "staff")
API_PREFIX = "api/v1/"
IGNORED_METHODS = {"head", "options"}

Status = int | frozenset[int]


def api_routes() -> set[tuple[str, str]]:
    """Every (method, route) the URL configuration serves under /api/v1/, with path
    converters written as {name}: ("GET", "/api/v1/papers/{paper_id}/")."""

    def walk(patterns, prefix: str) -> Iterator[tuple[str, URLPattern]]:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            else:
                yield route, pattern

    routes = set()
    for route, pattern in walk(get_resolver().url_patterns, ""):
        if not route.startswith(API_PREFIX):
            continue
        template = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        view = getattr(pattern.callback, "view_class", None)
        if view is None:  # a plain function answers every method
            routes.add(("ANY", template))
            continue
        for method in view.http_method_names:
            if method not in IGNORED_METHODS and hasattr(view, method):
                routes.add((method.upper(), template))
    return routes


class World:
    """The records a case needs, made through the services when first used."""

    def __init__(self, *, actor: str, users: Mapping[str, User | None], institution):
        self.actor = actor
        self.users = users
        self.user = users[actor]
        self.institution = institution

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    @cached_property
    def slug(self) -> str:
        return self.institution.slug

    @cached_property
    def colleague(self) -> User:
        """A member of the institution, not one of the actors, who created some records."""
        return MembershipFactory(institution=self.institution, user__username="colleague").user

    @cached_property
    def target(self) -> Membership:
        return MembershipFactory(institution=self.institution, user__username="target")

    @cached_property
    def username(self) -> str:
        return self.target.user.username

    @cached_property
    def newcomer(self) -> User:
        return UserFactory(username="newcomer")

    @cached_property
    def token(self) -> ApiToken:
        """The actor's own API token (anonymous asks for the member's)."""
        owner = self.user or self.users["member"]
        token, _secret = account_services.api_token_create(
            user=owner, name="own token", scope=ApiToken.Scope.READ
        )
        return token

    @cached_property
    def token_id(self) -> int:
        return self.token.pk

    @cached_property
    def weights(self) -> Artifact:
        return store(self.colleague, safetensors_bytes(1), "model.safetensors")

    @cached_property
    def sha256(self) -> str:
        return self.weights.sha256

    @cached_property
    def model(self) -> ResearchModel:
        """Visible to the institution; created by the colleague, so the member only reads it."""
        model = catalog_services.model_create(
            user=self.colleague, institution=self.institution, name="Hidden Heron",
            slug="hidden-heron", license="MIT", visibility=Visibility.INSTITUTION,
        )  # fmt: skip
        catalog_services.version_create(
            user=self.colleague, model=model, label="1.0", publish=True,
            files=[("model.safetensors", self.sha256)],
        )  # fmt: skip
        return model

    @cached_property
    def model_id(self) -> int:
        return self.model.pk

    @cached_property
    def version(self) -> ModelVersion:
        return self.model.versions.get(label="1.0")

    label = "1.0"

    @cached_property
    def draft(self) -> ModelVersion:
        return catalog_services.version_create(
            user=self.colleague, model=self.model, label="2.0",
            files=[("model.safetensors", self.sha256)],
        )  # fmt: skip

    @cached_property
    def draft_label(self) -> str:
        return self.draft.label

    @cached_property
    def paper(self) -> Paper:
        """Visible to the institution; created by the colleague."""
        return catalog_services.paper_create(
            user=self.colleague, institution=self.institution, title="Hidden Heron Paper",
            visibility=Visibility.INSTITUTION,
        )  # fmt: skip

    @cached_property
    def paper_id(self) -> int:
        return self.paper.pk

    @cached_property
    def dataset(self):
        """Private: its creator (the member), the institution's admins and staff."""
        data = store(self.users["member"], safetensors_bytes(2), "data.safetensors")
        return catalog_services.dataset_create(
            user=self.users["member"], institution=self.institution, name="Private Plover",
            slug="private-plover", license="CC-BY-4.0", visibility=Visibility.PRIVATE,
            files=[("data.safetensors", data.sha256)],
        )  # fmt: skip

    @cached_property
    def dataset_id(self) -> int:
        return self.dataset.pk

    @cached_property
    def benchmark(self):
        """Visible to the institution; created by the colleague; runs on a CPU slot."""
        data = store(self.colleague, safetensors_bytes(3), "data.safetensors")
        dataset = catalog_services.dataset_create(
            user=self.colleague, institution=self.institution, name="Bench data",
            slug="bench-data", license="CC-BY-4.0", visibility=Visibility.INSTITUTION,
            files=[("data.safetensors", data.sha256)],
        )  # fmt: skip
        return catalog_services.benchmark_create(
            user=self.colleague, institution=self.institution, name="Hidden Heron Bench",
            slug="hidden-heron-bench", task_type="pool-check", dataset=dataset,
            metrics=[{"name": "files", "higher_is_better": True}], evaluator="smoke",
            evaluator_config={}, gpu_count=0, gpu_memory_gb=0, time_limit_minutes=30,
            visibility=Visibility.INSTITUTION,
        )  # fmt: skip

    @cached_property
    def benchmark_id(self) -> int:
        return self.benchmark.pk

    @cached_property
    def comment(self) -> Comment:
        """The member's comment on the model."""
        return catalog_services.comment_create(
            user=self.users["member"], target=self.model, body="A first comment."
        )

    @cached_property
    def comment_id(self) -> int:
        return self.comment.pk

    node_secret: str

    @cached_property
    def node(self) -> ComputeNode:
        node, self.node_secret = compute_services.node_create(
            user=self.users["institution_admin"], institution=self.institution, name="gpu-01"
        )
        return compute_services.node_register(
            node=node,
            gpus=[{"index": 0, "uuid": "GPU-0", "name": "NVIDIA A100", "memory_bytes": 8 * 10**10}],
            cpu_slots=2,
            host_info=isolated(),
        )

    @cached_property
    def node_id(self) -> int:
        return self.node.pk

    @cached_property
    def compute_request(self) -> ComputeRequest:
        """The member's request, waiting for review."""
        today = timezone.localdate()
        return compute_services.compute_request_submit(
            user=self.users["member"], institution=self.institution, purpose="Evaluations",
            gpu_hours=Decimal(10), gpu_count=1, starts_on=today, ends_on=today + timedelta(30),
        )  # fmt: skip

    @cached_property
    def request_id(self) -> int:
        return self.compute_request.pk

    @cached_property
    def allocation(self) -> Allocation:
        now = timezone.now()
        return compute_services.allocation_create(
            user=self.users["staff"], institution=self.institution, name="Spring",
            gpu_hours=Decimal(100), starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=30),
        )  # fmt: skip

    @cached_property
    def allocation_id(self) -> int:
        return self.allocation.pk

    def _submit(self) -> Job:
        assert self.node, "a job is refused unless a node can run it"
        return compute_services.job_submit(
            user=self.users["member"], model_version=self.version, benchmark=self.benchmark
        )

    @cached_property
    def job(self) -> Job:
        """The member's job, not yet finished."""
        return self._submit()

    @cached_property
    def job_id(self) -> int:
        return self.job.pk

    @cached_property
    def result(self):
        """A result of the member's job, run by the node."""
        job = self._submit()
        assert job.pk in compute_services.jobs_dispatch()
        job.refresh_from_db()
        compute_services.job_claim(node=self.node, job_id=job.pk, attempt=job.attempt)
        result, _created = compute_services.job_result_post(
            node=self.node, job_id=job.pk, attempt=job.attempt, metrics={"files": 1.0},
            provenance=isolated(evaluator="smoke", evaluator_version="0.1.0", seed=0),
        )  # fmt: skip
        return result

    @cached_property
    def result_id(self) -> int:
        return self.result.pk

    @cached_property
    def peer(self) -> Peer:
        """A node that asked to peer, unreachable (its breaker open): no case waits on it."""
        now = timezone.now()
        return Peer.objects.create(
            node_id="http://127.0.0.1:9",
            state=Peer.State.PENDING,
            consecutive_failures=5,
            unreachable_since=now,
            next_probe_at=now + timedelta(hours=1),
        )

    @cached_property
    def peer_id(self) -> int:
        return self.peer.pk

    @cached_property
    def remote_job(self) -> RemoteJob:
        """An evaluation the member ran on an approved peer's GPUs under the peer's grant to
        the institution; finished, so no case calls the peer."""
        now = timezone.now()
        peer = Peer.objects.create(node_id="http://127.0.0.1:7", state=Peer.State.APPROVED)
        grant = Allocation.objects.create(
            institution=self.institution, name="A peer's grant", budget_gpu_seconds=3600,
            starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=30),
            origin_node=peer.node_id, origin_id="7",
        )  # fmt: skip
        return RemoteJob.objects.create(
            request_id=uuid.uuid4(), peer=peer, allocation=grant, submitter=self.users["member"],
            institution=self.institution, model_version=self.version, benchmark=self.benchmark,
            state=RemoteJob.State.SUCCEEDED, finished_at=now,
        )  # fmt: skip

    @cached_property
    def remote_job_id(self) -> int:
        return self.remote_job.pk

    @cached_property
    def notification(self) -> Notification:
        """The member's notification: nobody else reads or marks it, staff included."""
        return _notify(self.users["member"])

    @cached_property
    def notification_id(self) -> int:
        return self.notification.pk

    @cached_property
    def own_notification(self) -> Notification:
        """An unread notification of the actor's own (the member's for anonymous)."""
        return _notify(self.user or self.users["member"])

    @cached_property
    def watch(self) -> BenchmarkWatch:
        """The actor's watch of the benchmark (the member's for anonymous), as if made while
        the actor could see it."""
        return BenchmarkWatch.objects.create(
            user=self.user or self.users["member"], benchmark=self.benchmark
        )

    endpoint_secret: str

    @cached_property
    def endpoint(self) -> WebhookEndpoint:
        """The member's personal webhook endpoint: only the member sees or manages it."""
        endpoint = webhooks.webhook_endpoint_create(
            user=self.users["member"], url="https://93.184.215.14/hooks/member"
        )
        self.endpoint_secret = endpoint.secret
        return endpoint

    @cached_property
    def endpoint_id(self) -> int:
        return self.endpoint.pk

    @cached_property
    def leaderboard_benchmark_id(self) -> int:
        """The benchmark, once it has a result to rank."""
        return self.result.job.benchmark_id


def _notify(user: User) -> Notification:
    event = event_services.event_emit(
        type=EventType.JOB_SUCCEEDED, summary="An evaluation succeeded", data={}, users=[user]
    )
    return event.notifications.get()


def everyone(status: Status) -> dict[str, Status]:
    return dict.fromkeys(ACTORS, status)


def signed_in(status: Status) -> dict[str, Status]:
    return {**everyone(status), "anonymous": 401}


def outcomes(
    anonymous: Status, outsider: Status, member: Status, institution_admin: Status, staff: Status
) -> dict[str, Status]:
    return {
        "anonymous": anonymous,
        "outsider": outsider,
        "member": member,
        "institution_admin": institution_admin,
        "staff": staff,
    }


# An actor who may not perform a write gets the same refusal with this body: permission is
# checked before the input is validated.
INVALID = {"not_a_field": "\u2603"}

# A staff-only action may refuse before it looks the record up: the refusal is the same for
# every record, so it tells an outsider nothing.
STAFF_ONLY = frozenset({403, 404})

# Readers of an institution-visible or private record of the institution.
READERS = frozenset({"member", "institution_admin", "staff"})


@dataclass(frozen=True)
class Entry:
    expect: Mapping[str, Status]
    body: Callable[[World], Any] | None = None
    took_effect: Callable[[World], bool] | None = None
    path: Mapping[str, str] = field(default_factory=dict)
    query: str = ""
    multipart: bool = False
    # The write's refusal depends on what the body names (the institution to publish for, the
    # record to comment on): an empty body cannot be refused for permission. None: no check.
    invalid: Any = field(default_factory=lambda: dict(INVALID))
    # Records to make before the request, where neither the path nor the body names them.
    needs: tuple[str, ...] = ()
    # For lists: the record that must show for READERS and nobody else.
    lists: Callable[[World], int] | None = None
    list_key: str = "id"


def _refreshed(record):
    record.refresh_from_db()
    return record


def _upload_body(world: World) -> dict:
    file = io.BytesIO(safetensors_bytes(77))
    file.name = "upload.safetensors"
    return {"file": file}


def _worker(body: dict | None, query: str = "") -> Entry:
    """The worker endpoints take node tokens only: any user, signed in or not, is refused."""
    return Entry(
        {**everyone(403), "anonymous": 401}, body=lambda w: body, query=query, invalid=None
    )


TABLE: dict[tuple[str, str], Entry] = {
    ("GET", "/api/v1/me/"): Entry(signed_in(200)),
    ("PATCH", "/api/v1/me/"): Entry(
        signed_in(200),
        body=lambda w: {"first_name": "Edited"},
        took_effect=lambda w: w.user is not None and _refreshed(w.user).first_name == "Edited",
    ),
    ("GET", "/api/v1/institutions/"): Entry(everyone(200)),
    ("POST", "/api/v1/institutions/"): Entry(
        outcomes(401, 403, 403, 403, 201),
        body=lambda w: {"name": "New Lab", "slug": "new-lab", "country": "FR"},
        took_effect=lambda w: Institution.objects.filter(slug="new-lab").exists(),
    ),
    ("GET", "/api/v1/institutions/{slug}/"): Entry(everyone(200)),
    ("PATCH", "/api/v1/institutions/{slug}/"): Entry(
        outcomes(401, 403, 403, 200, 200),
        body=lambda w: {"description": "Edited"},
        took_effect=lambda w: _refreshed(w.institution).description == "Edited",
    ),
    ("GET", "/api/v1/institutions/{slug}/members/"): Entry(everyone(200)),
    ("POST", "/api/v1/institutions/{slug}/members/"): Entry(
        outcomes(401, 403, 403, 201, 201),
        body=lambda w: {"username": w.newcomer.username},
        took_effect=lambda w: Membership.objects.filter(user=w.newcomer).exists(),
    ),
    ("GET", "/api/v1/institutions/{slug}/members/{username}/"): Entry(everyone(200)),
    ("PATCH", "/api/v1/institutions/{slug}/members/{username}/"): Entry(
        outcomes(401, 403, 403, 200, 200),
        body=lambda w: {"role": "admin"},
        took_effect=lambda w: _refreshed(w.target).role == Membership.Role.ADMIN,
    ),
    ("DELETE", "/api/v1/institutions/{slug}/members/{username}/"): Entry(
        outcomes(401, 403, 403, 204, 204),
        took_effect=lambda w: not Membership.objects.filter(pk=w.target.pk).exists(),
    ),
    ("GET", "/api/v1/tokens/"): Entry(signed_in(200)),
    ("POST", "/api/v1/tokens/"): Entry(
        signed_in(201),
        body=lambda w: {"name": "ci"},
        took_effect=lambda w: ApiToken.objects.filter(name="ci").exists(),
    ),
    ("GET", "/api/v1/tokens/{token_id}/"): Entry(signed_in(200)),
    ("DELETE", "/api/v1/tokens/{token_id}/"): Entry(
        signed_in(204),
        took_effect=lambda w: _refreshed(w.token).revoked_at is not None,
    ),
    ("GET", "/api/v1/models/"): Entry(everyone(200), lists=lambda w: w.model_id),
    ("POST", "/api/v1/models/"): Entry(
        outcomes(401, 403, 201, 201, 201),
        body=lambda w: {"institution": w.slug, "name": "New", "slug": "new", "license": "MIT"},
        took_effect=lambda w: ResearchModel.objects.filter(slug="new").exists(),
        invalid=None,
    ),
    ("GET", "/api/v1/models/{model_id}/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("PATCH", "/api/v1/models/{model_id}/"): Entry(
        outcomes(401, 404, 403, 200, 200),
        body=lambda w: {"summary": "Edited"},
        took_effect=lambda w: _refreshed(w.model).summary == "Edited",
    ),
    ("GET", "/api/v1/models/{model_id}/datacite/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("GET", "/api/v1/models/{model_id}/versions/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("POST", "/api/v1/models/{model_id}/versions/"): Entry(
        outcomes(401, 404, 403, 201, 201),
        body=lambda w: {
            "label": "3.0",
            "files": [{"filename": "w.safetensors", "sha256": w.sha256}],
        },
        took_effect=lambda w: w.model.versions.filter(label="3.0").exists(),
    ),
    ("GET", "/api/v1/models/{model_id}/versions/{label}/"): Entry(
        outcomes(404, 404, 200, 200, 200)
    ),
    # A draft is hidden from those who may not edit the model.
    ("POST", "/api/v1/models/{model_id}/versions/{label}/files/"): Entry(
        outcomes(401, 404, 404, 201, 201),
        path={"label": "draft_label"},
        body=lambda w: {"filename": "extra.safetensors", "sha256": w.sha256},
        took_effect=lambda w: w.draft.files.filter(filename="extra.safetensors").exists(),
    ),
    ("POST", "/api/v1/models/{model_id}/versions/{label}/publish/"): Entry(
        outcomes(401, 404, 404, 200, 200),
        path={"label": "draft_label"},
        took_effect=lambda w: _refreshed(w.draft).is_published,
    ),
    ("GET", "/api/v1/artifacts/"): Entry(everyone(200)),
    ("POST", "/api/v1/artifacts/"): Entry(
        signed_in(201),
        body=_upload_body,
        multipart=True,
        took_effect=lambda w: Artifact.objects.filter(size=len(safetensors_bytes(77))).exists(),
    ),
    # The model's file, uploaded by the colleague: readers of the model read it.
    ("GET", "/api/v1/artifacts/{sha256}/"): Entry(
        outcomes(404, 404, 200, 200, 200), needs=("model",)
    ),
    ("GET", "/api/v1/artifacts/{sha256}/download"): Entry(
        outcomes(404, 404, 200, 200, 200), needs=("model",)
    ),
    ("GET", "/api/v1/papers/"): Entry(everyone(200), lists=lambda w: w.paper_id),
    ("POST", "/api/v1/papers/"): Entry(
        outcomes(401, 403, 201, 201, 201),
        body=lambda w: {"institution": w.slug, "title": "A new paper"},
        took_effect=lambda w: Paper.objects.filter(title="A new paper").exists(),
        invalid=None,
    ),
    ("GET", "/api/v1/papers/bibtex"): Entry(everyone(200)),
    ("POST", "/api/v1/papers/import-bibtex/"): Entry(
        outcomes(401, 403, 201, 201, 201),
        body=lambda w: {
            "institution": w.slug,
            "bibtex": "@article{k1, title={Imported Paper}, author={Ada Lovelace}, year={2020}}",
        },
        took_effect=lambda w: Paper.objects.filter(title="Imported Paper").exists(),
        invalid=None,
    ),
    ("GET", "/api/v1/papers/{paper_id}/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("PATCH", "/api/v1/papers/{paper_id}/"): Entry(
        outcomes(401, 404, 403, 200, 200),
        body=lambda w: {"title": "Edited"},
        took_effect=lambda w: _refreshed(w.paper).title == "Edited",
    ),
    ("GET", "/api/v1/papers/{paper_id}/bibtex"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("GET", "/api/v1/papers/{paper_id}/datacite/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("GET", "/api/v1/datasets/"): Entry(everyone(200), lists=lambda w: w.dataset_id),
    ("POST", "/api/v1/datasets/"): Entry(
        outcomes(401, 403, 201, 201, 201),
        body=lambda w: {"institution": w.slug, "name": "New", "slug": "new", "license": "MIT"},
        took_effect=lambda w: Dataset.objects.filter(slug="new").exists(),
        invalid=None,
    ),
    ("GET", "/api/v1/datasets/{dataset_id}/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("PATCH", "/api/v1/datasets/{dataset_id}/"): Entry(
        outcomes(401, 404, 200, 200, 200),
        body=lambda w: {"description": "Edited"},
        took_effect=lambda w: _refreshed(w.dataset).description == "Edited",
    ),
    ("GET", "/api/v1/datasets/{dataset_id}/datacite/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("GET", "/api/v1/datasets/{dataset_id}/croissant/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("GET", "/api/v1/federation/peers/"): Entry(outcomes(401, 403, 403, 403, 200)),
    ("POST", "/api/v1/federation/peers/"): Entry(
        outcomes(401, 403, 403, 403, 400), body=lambda w: {"base_url": "http://127.0.0.1:9"}
    ),
    ("GET", "/api/v1/federation/peers/{peer_id}/"): Entry(outcomes(401, 403, 403, 403, 200)),
    ("POST", "/api/v1/federation/peers/{peer_id}/approve/"): Entry(
        outcomes(401, 403, 403, 403, 200),
        body=lambda w: {},
        took_effect=lambda w: _refreshed(w.peer).state == Peer.State.APPROVED,
    ),
    ("POST", "/api/v1/federation/peers/{peer_id}/refuse/"): Entry(
        outcomes(401, 403, 403, 403, 200),
        body=lambda w: {"note": "Not now."},
        took_effect=lambda w: _refreshed(w.peer).state == Peer.State.REFUSED,
    ),
    ("POST", "/api/v1/federation/peers/{peer_id}/suspend/"): Entry(
        outcomes(401, 403, 403, 403, 400), body=lambda w: {}
    ),
    ("POST", "/api/v1/federation/peers/{peer_id}/reinstate/"): Entry(
        outcomes(401, 403, 403, 403, 400), body=lambda w: {}
    ),
    ("POST", "/api/v1/federation/peers/{peer_id}/revoke/"): Entry(
        outcomes(401, 403, 403, 403, 200),
        body=lambda w: {},
        took_effect=lambda w: _refreshed(w.peer).state == Peer.State.REVOKED,
    ),
    ("POST", "/api/v1/federation/peers/{peer_id}/sync/"): Entry(
        outcomes(401, 403, 403, 403, 400), invalid=None
    ),
    ("GET", "/api/v1/federation/remote-jobs/"): Entry(
        signed_in(200), lists=lambda w: w.remote_job_id
    ),
    # The benchmark is not public: no peer could run it, and nothing is sent.
    ("POST", "/api/v1/federation/remote-jobs/"): Entry(
        outcomes(401, 400, 400, 400, 400),
        body=lambda w: {
            "model_version": w.version.pk,
            "benchmark": w.benchmark_id,
            "allocation": w.remote_job.allocation_id,
        },
        invalid=None,
    ),
    ("GET", "/api/v1/federation/remote-jobs/{remote_job_id}/"): Entry(
        outcomes(401, 404, 200, 200, 200)
    ),
    # Finished: those who may cancel it hear that it is already over.
    ("POST", "/api/v1/federation/remote-jobs/{remote_job_id}/cancel/"): Entry(
        outcomes(401, 404, 400, 400, 400), body=lambda w: {}, invalid=None
    ),
    ("GET", "/api/v1/federation/keys/"): Entry(outcomes(401, 403, 403, 403, 200)),
    ("POST", "/api/v1/federation/keys/"): Entry(outcomes(401, 403, 403, 403, 201), invalid=None),
    ("GET", "/api/v1/benchmarks/"): Entry(everyone(200), lists=lambda w: w.benchmark_id),
    ("POST", "/api/v1/benchmarks/"): Entry(
        outcomes(401, frozenset({400, 403}), 201, 201, 201),
        body=lambda w: {
            "institution": w.slug,
            "name": "New",
            "slug": "new",
            "task_type": "pool-check",
            "dataset": w.benchmark.dataset_id,
            "evaluator": "smoke",
            "evaluator_config": {},
            "metrics": [{"name": "files", "higher_is_better": True}],
        },
        took_effect=lambda w: Benchmark.objects.filter(slug="new").exists(),
        invalid=None,
    ),
    ("GET", "/api/v1/benchmarks/{benchmark_id}/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("PATCH", "/api/v1/benchmarks/{benchmark_id}/"): Entry(
        outcomes(401, 404, 403, 200, 200),
        body=lambda w: {"description": "Edited"},
        took_effect=lambda w: _refreshed(w.benchmark).description == "Edited",
    ),
    ("GET", "/api/v1/benchmarks/{benchmark_id}/leaderboard/"): Entry(
        outcomes(404, 404, 200, 200, 200), path={"benchmark_id": "leaderboard_benchmark_id"}
    ),
    ("GET", "/api/v1/benchmarks/{benchmark_id}/watch/"): Entry(outcomes(401, 404, 200, 200, 200)),
    ("POST", "/api/v1/benchmarks/{benchmark_id}/watch/"): Entry(
        outcomes(401, 404, 200, 200, 200),
        took_effect=lambda w: BenchmarkWatch.objects.filter(benchmark=w.benchmark).exists(),
    ),
    ("DELETE", "/api/v1/benchmarks/{benchmark_id}/watch/"): Entry(
        outcomes(401, 404, 200, 200, 200),
        took_effect=lambda w: not BenchmarkWatch.objects.filter(pk=w.watch.pk).exists(),
        needs=("watch",),
    ),
    ("GET", "/api/v1/notifications/"): Entry(signed_in(200)),
    ("GET", "/api/v1/notifications/unread-count/"): Entry(signed_in(200)),
    ("POST", "/api/v1/notifications/read-all/"): Entry(
        signed_in(200),
        took_effect=lambda w: _refreshed(w.own_notification).read_at is not None,
        needs=("own_notification",),
    ),
    ("POST", "/api/v1/notifications/{notification_id}/read/"): Entry(
        outcomes(401, 404, 200, 404, 404),
        took_effect=lambda w: _refreshed(w.notification).read_at is not None,
    ),
    ("GET", "/api/v1/notifications/preferences/"): Entry(signed_in(200)),
    ("PUT", "/api/v1/notifications/preferences/"): Entry(
        signed_in(200),
        body=lambda w: {
            "preferences": [{"event_type": "comment.created", "portal": True, "email": True}]
        },
        took_effect=lambda w: NotificationPreference.objects.filter(
            event_type="comment.created", email=True
        ).exists(),
    ),
    ("GET", "/api/v1/webhooks/"): Entry(signed_in(200)),
    ("POST", "/api/v1/webhooks/"): Entry(
        signed_in(201),
        body=lambda w: {"url": "https://93.184.215.14/hooks/new"},
        took_effect=lambda w: WebhookEndpoint.objects.filter(url__endswith="/new").exists(),
    ),
    ("GET", "/api/v1/webhooks/{endpoint_id}/"): Entry(outcomes(401, 404, 200, 404, 404)),
    ("PATCH", "/api/v1/webhooks/{endpoint_id}/"): Entry(
        outcomes(401, 404, 200, 404, 404),
        body=lambda w: {"description": "Edited"},
        took_effect=lambda w: _refreshed(w.endpoint).description == "Edited",
    ),
    ("DELETE", "/api/v1/webhooks/{endpoint_id}/"): Entry(
        outcomes(401, 404, 204, 404, 404),
        took_effect=lambda w: not WebhookEndpoint.objects.filter(pk=w.endpoint_id).exists(),
    ),
    ("POST", "/api/v1/webhooks/{endpoint_id}/rotate-secret/"): Entry(
        outcomes(401, 404, 200, 404, 404),
        took_effect=lambda w: _refreshed(w.endpoint).secret != w.endpoint_secret,
    ),
    ("POST", "/api/v1/webhooks/{endpoint_id}/test/"): Entry(
        outcomes(401, 404, 202, 404, 404),
        took_effect=lambda w: WebhookDelivery.objects.filter(endpoint=w.endpoint).exists(),
    ),
    ("GET", "/api/v1/webhooks/{endpoint_id}/deliveries/"): Entry(outcomes(401, 404, 200, 404, 404)),
    ("GET", "/api/v1/evaluators/"): Entry(everyone(200)),
    ("GET", "/api/v1/discussions/"): Entry(everyone(200), lists=lambda w: w.comment_id),
    ("POST", "/api/v1/discussions/"): Entry(
        # A record the caller cannot see is named in the body: a 400 on that field, as missing.
        outcomes(401, 400, 201, 201, 201),
        body=lambda w: {"model": w.model_id, "body": "Nice model."},
        took_effect=lambda w: Comment.objects.filter(body__contains="Nice model.").exists(),
        invalid=None,
    ),
    ("GET", "/api/v1/discussions/{comment_id}/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("PATCH", "/api/v1/discussions/{comment_id}/"): Entry(
        outcomes(401, 404, 200, 403, 403),
        body=lambda w: {"body": "Edited."},
        took_effect=lambda w: "Edited." in _refreshed(w.comment).body,
    ),
    ("DELETE", "/api/v1/discussions/{comment_id}/"): Entry(
        outcomes(401, 404, 204, 204, 204),
        took_effect=lambda w: _refreshed(w.comment).removed_at is not None,
    ),
    ("GET", "/api/v1/search/"): Entry(
        everyone(200), query="q=heron&type=model", lists=lambda w: w.model_id
    ),
    ("GET", "/api/v1/nodes/"): Entry(signed_in(200)),
    ("POST", "/api/v1/nodes/"): Entry(
        outcomes(401, 403, 403, 201, 201),
        body=lambda w: {"institution": w.slug, "name": "gpu-02"},
        took_effect=lambda w: ComputeNode.objects.filter(name="gpu-02").exists(),
        invalid=None,
    ),
    ("GET", "/api/v1/nodes/{node_id}/"): Entry(signed_in(200)),
    ("PATCH", "/api/v1/nodes/{node_id}/"): Entry(
        outcomes(401, 403, 403, 200, 200),
        body=lambda w: {"draining": True},
        took_effect=lambda w: _refreshed(w.node).draining,
    ),
    ("POST", "/api/v1/nodes/{node_id}/rotate-token/"): Entry(
        outcomes(401, 403, 403, 200, 200),
        took_effect=lambda w: (
            ComputeNode.objects.get(pk=w.node_id).token_prefix != w.node.token_prefix
        ),
    ),
    ("GET", "/api/v1/compute-requests/"): Entry(signed_in(200), lists=lambda w: w.request_id),
    ("POST", "/api/v1/compute-requests/"): Entry(
        outcomes(401, frozenset({400, 403}), 201, 201, frozenset({400, 403})),
        body=lambda w: {
            "institution": w.slug,
            "purpose": "More evaluations",
            "gpu_hours": "10",
            "starts_on": str(timezone.localdate()),
            "ends_on": str(timezone.localdate() + timedelta(days=30)),
        },
        took_effect=lambda w: ComputeRequest.objects.filter(purpose="More evaluations").exists(),
        invalid=None,
    ),
    ("GET", "/api/v1/compute-requests/{request_id}/"): Entry(outcomes(401, 404, 200, 200, 200)),
    ("POST", "/api/v1/compute-requests/{request_id}/approve/"): Entry(
        outcomes(401, STAFF_ONLY, 403, 403, 201),
        body=lambda w: {"comment": "Granted."},
        took_effect=lambda w: _refreshed(w.compute_request).state == ComputeRequest.State.APPROVED,
    ),
    ("POST", "/api/v1/compute-requests/{request_id}/reject/"): Entry(
        outcomes(401, STAFF_ONLY, 403, 403, 200),
        body=lambda w: {"comment": "Not this quarter."},
        took_effect=lambda w: _refreshed(w.compute_request).state == ComputeRequest.State.REJECTED,
    ),
    ("POST", "/api/v1/compute-requests/{request_id}/withdraw/"): Entry(
        outcomes(401, 404, 200, 403, 403),
        took_effect=lambda w: _refreshed(w.compute_request).state == ComputeRequest.State.WITHDRAWN,
    ),
    ("GET", "/api/v1/allocations/"): Entry(signed_in(200), lists=lambda w: w.allocation_id),
    ("POST", "/api/v1/allocations/"): Entry(
        outcomes(401, 403, 403, 403, 201),
        body=lambda w: {
            "institution": w.slug,
            "name": "Direct grant",
            "gpu_hours": "5",
            "starts_at": timezone.now().isoformat(),
            "ends_at": (timezone.now() + timedelta(days=10)).isoformat(),
        },
        took_effect=lambda w: Allocation.objects.filter(name="Direct grant").exists(),
    ),
    ("GET", "/api/v1/allocations/{allocation_id}/"): Entry(outcomes(401, 404, 200, 200, 200)),
    ("GET", "/api/v1/jobs/"): Entry(everyone(200), lists=lambda w: w.job_id),
    ("POST", "/api/v1/jobs/"): Entry(
        outcomes(401, frozenset({400, 403, 404}), 201, 201, frozenset({400, 403})),
        body=lambda w: {"model_version": w.version.pk, "benchmark": w.benchmark_id},
        took_effect=lambda w: Job.objects.filter(submitter=w.user).exists(),
        needs=("node",),
        invalid=None,
    ),
    ("GET", "/api/v1/jobs/queue/"): Entry(signed_in(200)),
    ("GET", "/api/v1/jobs/{job_id}/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("POST", "/api/v1/jobs/{job_id}/cancel/"): Entry(
        outcomes(401, 404, 200, 200, 200),
        body=lambda w: {"reason": "Wrong version."},
        took_effect=lambda w: _refreshed(w.job).state == Job.State.CANCELLED,
    ),
    ("POST", "/api/v1/jobs/{job_id}/priority/"): Entry(
        outcomes(401, STAFF_ONLY, 403, 403, 200),
        body=lambda w: {"priority": 7},
        took_effect=lambda w: _refreshed(w.job).priority == 7,
    ),
    ("GET", "/api/v1/jobs/{job_id}/logs/"): Entry(outcomes(401, 404, 200, 200, 200)),
    ("GET", "/api/v1/results/"): Entry(everyone(200), lists=lambda w: w.result_id),
    ("GET", "/api/v1/results/{result_id}/"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("GET", "/api/v1/results/{result_id}/attestation"): Entry(outcomes(404, 404, 200, 200, 200)),
    ("POST", "/api/v1/worker/register"): _worker({"gpus": [], "cpu_slots": 1}),
    ("POST", "/api/v1/worker/heartbeat"): _worker({"running": []}),
    ("POST", "/api/v1/worker/jobs/{job_id}/claim"): _worker({"attempt": 1}),
    ("GET", "/api/v1/worker/jobs/{job_id}/files/{sha256}"): _worker(None, query="attempt=1"),
    ("POST", "/api/v1/worker/jobs/{job_id}/logs"): _worker(
        {"attempt": 1, "offset": 0, "text": "x"}
    ),
    ("POST", "/api/v1/worker/jobs/{job_id}/status"): _worker(
        {"attempt": 1, "state": "failed", "reason": "x"}
    ),
    ("POST", "/api/v1/worker/jobs/{job_id}/result"): _worker(
        {"attempt": 1, "metrics": {"files": 1}}
    ),
}


def _codes(status: Status) -> frozenset[int]:
    return status if isinstance(status, frozenset) else frozenset({status})


def _client(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def _path(route: str, entry: Entry, world: World) -> str:
    names = re.findall(r"{(\w+)}", route)
    path = route.format(**{name: world[entry.path.get(name, name)] for name in names})
    return f"{path}?{entry.query}" if entry.query else path


def _send(client: APIClient, method: str, path: str, entry: Entry, body: Any, **headers):
    call = getattr(client, method.lower())
    if method in {"GET", "DELETE"} or body is None:
        return call(path, **headers)
    return call(path, body, format="multipart" if entry.multipart else "json", **headers)


def _describe(response) -> str:
    return f"{response.status_code}: {response.content[:300]!r}"


def _assert_error_format(response) -> None:
    if 400 <= response.status_code < 500:
        assert response.json()["error"]["status"] == response.status_code, _describe(response)


def test_every_api_route_has_a_table_entry():
    routes = api_routes()
    missing = sorted(routes - TABLE.keys())
    stale = sorted(TABLE.keys() - routes)
    assert not missing, f"API routes without a permission table entry: {missing}"
    assert not stale, f"Permission table entries for routes that no longer exist: {stale}"


def _cases():
    for method, route in TABLE:
        for actor in ACTORS:
            yield pytest.param(method, route, actor, id=f"{method} {route} {actor}")


@pytest.fixture
def make_world(actors, institution, artifact_dir):
    return lambda actor: World(actor=actor, users=actors, institution=institution)


@pytest.mark.parametrize(("method", "route", "actor"), list(_cases()))
def test_actor_gets_the_tables_outcome(make_world, method, route, actor):
    entry = TABLE[(method, route)]
    world = make_world(actor)
    for name in entry.needs:
        world[name]
    listed_record = entry.lists(world) if entry.lists else None
    path = _path(route, entry, world)
    body = entry.body(world) if entry.body else None

    response = _send(_client(world.user), method, path, entry, body)

    assert response.status_code in _codes(entry.expect[actor]), _describe(response)
    _assert_error_format(response)
    if entry.took_effect is not None:
        assert entry.took_effect(world) == (200 <= response.status_code < 300)
    if listed_record is not None and response.status_code == 200:
        listed = [item[entry.list_key] for item in response.json()["results"]]
        assert (listed_record in listed) == (actor in READERS), listed
    if route.startswith("/api/v1/worker/") and world.user is not None:
        secret = api_token_for(world.user)
        body = entry.body(world) if entry.body else None
        response = _send(
            APIClient(), method, path, entry, body, HTTP_AUTHORIZATION=f"Bearer {secret}"
        )
        assert response.status_code == 401, _describe(response)


def _refusals():
    for (method, route), entry in TABLE.items():
        if method == "GET" or entry.invalid is None:
            continue
        for actor in ACTORS:
            if _codes(entry.expect[actor]) <= {401, 403, 404}:
                yield pytest.param(method, route, actor, id=f"{method} {route} {actor}")


@pytest.mark.parametrize(("method", "route", "actor"), list(_refusals()))
def test_refused_actor_with_an_invalid_body_gets_the_same_refusal(make_world, method, route, actor):
    entry = TABLE[(method, route)]
    world = make_world(actor)
    for name in entry.needs:
        world[name]
    path = _path(route, entry, world)

    response = _send(_client(world.user), method, path, entry, entry.invalid)

    assert response.status_code in _codes(entry.expect[actor]), _describe(response)
    _assert_error_format(response)
    if entry.took_effect is not None:
        assert not entry.took_effect(world)


@pytest.mark.parametrize("field", ["model_version", "benchmark"])
def test_a_job_naming_a_hidden_record_is_refused_as_one_naming_a_missing_record(
    make_world, other_institution, field
):
    world = make_world("outsider")
    own_model = catalog_services.model_create(
        user=world.user, institution=other_institution, name="Theirs", slug="theirs", license="MIT"
    )
    weights = store(world.user, safetensors_bytes(5), "model.safetensors")
    own_version = catalog_services.version_create(
        user=world.user, model=own_model, label="1.0", publish=True,
        files=[("model.safetensors", weights.sha256)],
    )  # fmt: skip
    hidden = {"model_version": world.version.pk, "benchmark": world.benchmark_id}
    if field == "benchmark":
        hidden["model_version"] = own_version.pk
    missing = {**hidden, field: 10**9}
    client = _client(world.user)

    refused_hidden = client.post("/api/v1/jobs/", hidden, format="json")
    refused_missing = client.post("/api/v1/jobs/", missing, format="json")

    assert refused_hidden.status_code == refused_missing.status_code == 400
    assert refused_hidden.json() == refused_missing.json()


@pytest.fixture
def foreign_node_secret(outsider, other_institution):
    """The token of a node of another institution, registered and idle."""
    node, secret = compute_services.node_create(
        user=outsider, institution=other_institution, name="their-gpu"
    )
    compute_services.node_register(node=node, gpus=[], cpu_slots=2, host_info=isolated())
    return secret


@pytest.fixture
def running_job(make_world):
    """A job of the member that this institution's node has claimed and runs."""
    world = make_world("member")
    job = world.job
    assert job.pk in compute_services.jobs_dispatch()
    job.refresh_from_db()
    compute_services.job_claim(node=world.node, job_id=job.pk, attempt=job.attempt)
    job.refresh_from_db()
    return world, job


JOB_WORKER_CALLS = [
    pytest.param("POST", "claim", {}, id="claim"),
    pytest.param("GET", "files/{sha256}", None, id="files"),
    pytest.param("POST", "logs", {"offset": 0, "text": "output"}, id="logs"),
    pytest.param("POST", "status", {"state": "failed", "reason": "Out of memory."}, id="status"),
    pytest.param("POST", "result", {"metrics": {"files": 1.0}}, id="result"),
]


def _worker_call(secret: str, world: World, job: Job, method: str, call: str, body):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    path = f"/api/v1/worker/jobs/{job.pk}/" + call.format(sha256=world.sha256)
    if method == "GET":
        return client.get(f"{path}?attempt={job.attempt}")
    return client.post(path, {**body, "attempt": job.attempt}, format="json")


@pytest.mark.parametrize(("method", "call", "body"), JOB_WORKER_CALLS)
def test_another_institutions_node_cannot_touch_this_nodes_job(
    running_job, foreign_node_secret, method, call, body
):
    world, job = running_job

    response = _worker_call(foreign_node_secret, world, job, method, call, body)

    assert response.status_code in {404, 409}, _describe(response)
    assert not response.streaming
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING
    assert not Result.objects.filter(job=job).exists()
    assert compute_selectors.job_log(job=job, attempt=job.attempt) == ""


@pytest.mark.parametrize(("method", "call", "body"), JOB_WORKER_CALLS)
def test_this_nodes_token_makes_the_same_call(running_job, method, call, body):
    """The refusals above are the other node's: this node's own token is answered."""
    world, job = running_job

    response = _worker_call(world.node_secret, world, job, method, call, body)

    assert 200 <= response.status_code < 300, _describe(response)
    if call.startswith("files/"):
        assert b"".join(response.streaming_content) == safetensors_bytes(1)
