"""Signed results: each evaluation this node runs is attested as an in-toto Statement in a DSSE
envelope signed with the node's key; a peer's results are checked against its pinned keys.

The statement's shape and the offline verifier live in verifier.py (standard library and
securesystemslib only), so a third party checks an attestation with the node's published key
and nothing of this platform. `sign_statement` and `verify_envelope` are generic: any
in-toto Statement (a usage record, say) is signed and checked the same way.
"""

import copy
import json
import logging
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner

from apps.evaluations import selectors as evaluation_selectors
from apps.evaluations.models import AttestationStatus, Result
from apps.federation import keys
from apps.federation.models import NodeKey, Peer, PeerKey
from apps.federation.verifier import (
    DATASET_SUBJECT,
    MODEL_SUBJECT,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    AttestationInvalid,
    envelope_key_ids,
    predicate_node_id,
    result_predicate,
    same_node,
    sslib_key,
    statement_unverified,
    subject_digests,
    verify_envelope,
)

logger = logging.getLogger(__name__)


class AttestationRefused(ValueError):
    """A peer's attestation that is there but false: its signature fails, or it speaks of other
    files or other metrics than the result it came with."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _canonical(statement: Mapping[str, Any]) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def sign_statement(statement: dict[str, Any]) -> dict[str, Any]:
    """A DSSE envelope (as a JSON-ready dict) around an in-toto Statement, signed with this
    node's current key. The signature's keyid is the key id the well-known document publishes,
    so anyone verifies it with `verify_envelope` (or verifier.py) and that document."""
    key = keys.signing_key()
    public = sslib_key(key.key_id, keys.public_key_text(key.private_key))
    envelope = Envelope(payload=_canonical(statement), payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(CryptoSigner(key.private_key, public))
    return envelope.to_dict()


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _origin(record: Any) -> dict[str, str] | None:
    """Where a mirrored record comes from; None for this node's own."""
    return {"node": record.origin_node, "id": record.origin_id} if record.origin_node else None


def _institution(institution: Any) -> dict[str, Any] | None:
    if institution is None:
        return None
    return {"slug": institution.slug, "name": institution.name, "origin": _origin(institution)}


def _hardware(provenance: Mapping[str, Any]) -> dict[str, Any]:
    gpus = provenance.get("gpus")
    if isinstance(gpus, list):
        gpus = [gpu.get("name") for gpu in gpus if isinstance(gpu, dict)]
    return {
        "gpus": gpus,
        "devices": provenance.get("devices"),
        "driver_version": provenance.get("driver_version"),
        "cuda_version": provenance.get("cuda_version"),
        "execution_provider": provenance.get("execution_provider"),
    }


def result_statement(result: Result) -> dict[str, Any]:
    """The in-toto Statement of a result this node ran: the files evaluated as subjects, the
    metrics and provenance as predicate (see the README's "Verifiable results")."""
    version = result.model_version
    model = version.model
    benchmark = result.benchmark
    node = result.node
    model_files = version.files.select_related("artifact")
    dataset_files = benchmark.dataset.files.select_related("artifact")
    subjects = [
        {"name": MODEL_SUBJECT + file.filename, "digest": {"sha256": file.artifact.sha256}}
        for file in model_files
    ] + [
        {"name": DATASET_SUBJECT + file.filename, "digest": {"sha256": file.artifact.sha256}}
        for file in dataset_files
    ]
    # What an anonymous reader may see of the worker's record: no host, GPU serials or mounts.
    public = copy.copy(result)
    public.sees_job_details = False  # type: ignore[attr-defined]
    public.sees_dataset = True  # type: ignore[attr-defined]
    provenance = evaluation_selectors.result_provenance(public)
    isolation = provenance.get("isolation")
    isolation = dict(isolation) if isinstance(isolation, dict) else {}
    isolation["level"] = result.isolation or None
    base = settings.FEDERATION_NODE_URL
    predicate = {
        "result": {
            "id": str(result.pk),
            "url": base + reverse("evaluations:result-detail", args=[result.pk]),
        },
        "node": {"id": base, "name": settings.NODE_NAME},
        "ran_by": {
            "institution": _institution(node.institution if node else None),
            "compute_node": node.name if node else None,
        },
        "paid_by": _institution(result.institution),
        "model": {
            "id": str(model.pk),
            "name": model.name,
            "version": version.label,
            "version_id": str(version.pk),
            "origin": _origin(model),
        },
        "benchmark": {
            "id": str(benchmark.pk),
            "name": benchmark.name,
            "origin": _origin(benchmark),
        },
        "metrics": result.metrics,
        "evaluator": {
            "name": provenance.get("evaluator") or benchmark.evaluator,
            "version": provenance.get("evaluator_version"),
        },
        "packages": provenance.get("packages"),
        "environment": {
            "worker_version": provenance.get("worker_version"),
            "python": provenance.get("python"),
        },
        "hardware": _hardware(provenance),
        "seed": provenance.get("seed"),
        "batch_size": provenance.get("batch_size"),
        "isolation": isolation,
        "gpu_seconds": result.gpu_seconds,
        "started_at": _time(result.started_at),
        "finished_at": _time(result.finished_at),
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": sorted(subjects, key=lambda subject: subject["name"]),
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def _signs_here(result: Result) -> bool:
    """Only results this node ran are signed here: not a peer's mirrored result, nor one a
    peer ran for us (that one carries the peer's attestation)."""
    return not result.origin_node and not result.ran_on_node


def result_attestation(result: Result) -> dict[str, Any] | None:
    """The result's attestation (a DSSE envelope dict) as stored. A result of this node that has
    none yet (made before attestations, or signing failed after its commit) is signed now and
    stored with the status "signed". None for a peer's result that came without one."""
    if result.attestation is not None or not _signs_here(result):
        return result.attestation
    envelope = sign_statement(result_statement(result))
    # A queryset update: the change feed is not marked again (the envelope only describes it).
    stored = Result.objects.filter(pk=result.pk, attestation__isnull=True).update(
        attestation=envelope, attestation_status=AttestationStatus.SIGNED
    )
    if not stored:  # signed meanwhile by another process: that one is kept
        result.refresh_from_db(fields=["attestation", "attestation_status"])
        return result.attestation
    result.attestation = envelope
    result.attestation_status = AttestationStatus.SIGNED
    return envelope


def _sign_after_commit(result_id: int) -> None:
    result = Result.objects.filter(pk=result_id).first()
    if result is None:
        return
    try:
        result_attestation(result)
    except Exception:
        # The result stands; it is signed when its attestation is first asked for.
        logger.exception("Could not sign result %s now.", result_id)


def result_signed_on_create(
    sender: type[Result], instance: Result, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    """post_save of Result: a result this node ran is signed once its transaction commits."""
    if raw or not created or instance.attestation is not None or not _signs_here(instance):
        return
    result_id = instance.pk
    transaction.on_commit(lambda: _sign_after_commit(result_id))


def _finished_at(statement: Mapping[str, Any]) -> datetime | None:
    predicate = statement.get("predicate")
    value = predicate.get("finished_at") if isinstance(predicate, Mapping) else None
    try:
        return parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well formed, but no such time
        return None


def _valid_for(
    rows: Iterable[NodeKey | PeerKey],
    statement: Mapping[str, Any],
    *,
    live: bool = False,
    received_at: datetime | None = None,
) -> dict[str, str]:
    """The keys that may have signed the statement: valid now, or retiring after the evaluation
    finished (a result signed during a key's grace period stays verifiable). `live`: a
    statement the peer has just made (a job's outcome), which only a key valid now signs.
    `received_at`, for a peer's statement: when this node first had it. A key past its grace
    then counts only for a statement received while it was valid, so a key leaked after it
    retired cannot sign "old" results that arrive now."""
    now = timezone.now()
    finished = None if live else _finished_at(statement)
    return {
        key.key_id: key.public_key
        for key in rows
        if key.retiring_until is None
        or key.retiring_until > now
        or (
            finished is not None
            and finished < key.retiring_until
            and (received_at is None or received_at < key.retiring_until)
        )
    }


def _usable_keys(
    peer: Peer,
    key_ids: list[str],
    statement: Mapping[str, Any],
    *,
    live: bool,
    received_at: datetime,
) -> dict[str, str]:
    """The peer's pinned keys among `key_ids` that may have signed the statement. Raises
    AttestationRefused when the only pinned ones had expired by then."""
    pinned = list(PeerKey.objects.filter(peer=peer, key_id__in=key_ids))
    usable = _valid_for(pinned, statement, live=live, received_at=received_at)
    if pinned and not usable:
        ended = ", ".join(f"{key.key_id} until {_time(key.retiring_until)}" for key in pinned)
        raise AttestationRefused(
            f"It is signed by a key of {peer.node_id} that was no longer valid ({ended})."
        )
    return usable


def verification_keys(*, node_id: str, statement: Mapping[str, Any]) -> dict[str, str] | None:
    """The keys this node holds for checking a statement signed by `node_id`: its own, or those
    pinned for that peer, each while it may have signed the statement. None for a node that is
    neither this one nor a peer."""
    if same_node(node_id, settings.FEDERATION_NODE_URL):
        return _valid_for(NodeKey.objects.all(), statement)
    peer = next((p for p in Peer.objects.all() if same_node(p.node_id, node_id)), None)
    if peer is None:
        return None
    return _valid_for(peer.keys.all(), statement)


def verify_peer_result(
    *,
    peer: Peer,
    envelope: Any,
    metrics: Mapping[str, Any],
    model_sha256s: Collection[str],
    dataset_sha256s: Collection[str],
    live: bool = False,
    received_at: datetime | None = None,
) -> str:
    """Checks a peer's attestation of a result against the keys pinned for the peer and
    against the result it came with: the model's and the dataset's files (sha256) and the
    metrics. Returns AttestationStatus.VERIFIED, or UNVERIFIABLE when there is no envelope or
    it is signed by a key id never pinned for the peer. Raises AttestationRefused when the
    envelope is malformed, its signature fails, or it speaks of other files or metrics.
    `live`: the outcome of a job the peer just ran, which only a key valid now may sign.
    `received_at`: when this node first had this very envelope (now, for a new one)."""
    if envelope is None:
        return AttestationStatus.UNVERIFIABLE
    try:
        key_ids = envelope_key_ids(envelope)
        claimed = statement_unverified(envelope)
    except AttestationInvalid as error:
        raise AttestationRefused(error.reason) from error
    usable = _usable_keys(
        peer, key_ids, claimed, live=live, received_at=received_at or timezone.now()
    )
    if not usable:
        return AttestationStatus.UNVERIFIABLE
    try:
        statement = verify_envelope(envelope, usable)
        predicate = result_predicate(statement)
    except AttestationInvalid as error:
        raise AttestationRefused(error.reason) from error
    if not same_node(predicate_node_id(predicate), peer.node_id):
        raise AttestationRefused(
            f"It is signed by {peer.node_id} but says {predicate_node_id(predicate)} ran it."
        )
    for prefix, expected in ((MODEL_SUBJECT, model_sha256s), (DATASET_SUBJECT, dataset_sha256s)):
        if subject_digests(statement, prefix) != {sha256.lower() for sha256 in expected}:
            what = prefix.rstrip("/")
            raise AttestationRefused(f"It attests other {what} files than the result names.")
    if predicate["metrics"] != dict(metrics):
        raise AttestationRefused("It attests other metrics than the result carries.")
    return AttestationStatus.VERIFIED
