"""What comes in: pulling an approved peer's change feed into mirrored records.

A sync reads pages from the peer's last cursor. Each page is applied in one transaction that
also stores the next cursor, so a sync killed at any point resumes from the last applied page:
nothing lost, and re-applied records are upserts by origin, so nothing doubles. A record whose
references (its institution, dataset, model, benchmark) have not arrived yet waits in
SyncPending and is retried after every page. A record the peer sends that does not validate is
skipped and logged; the rest of the page still applies. A result's attestation is verified
against the peer's pinned keys on arrival: one that does not hold is refused, never mirrored.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.catalog import mirrors as catalog_mirrors
from apps.catalog.mirrors import (
    MirroredAuthor,
    MirroredFile,
    MirroredVersion,
    MissingReference,
    Origin,
)
from apps.evaluations import mirrors as evaluation_mirrors
from apps.federation.attestations import AttestationRefused, verify_peer_result
from apps.federation.contract import OP_DELETE, OP_UPSERT, RECORD_TYPES
from apps.federation.models import Peer, SyncPending

logger = logging.getLogger(__name__)


class InvalidRecord(ValueError):
    """A feed record that does not have the shape the protocol gives it."""


# What refuses one record and leaves the rest of the page to apply; a database error (a slug
# taken twice, a value PostgreSQL refuses, a mirror local records still depend on) included.
REFUSED = (InvalidRecord, ValidationError, DatabaseError, KeyError, TypeError, ValueError)


@dataclass
class SyncReport:
    pages: int = 0
    upserted: int = 0
    deleted: int = 0
    pending: int = 0
    rejected: int = 0
    # Of the rejected: results whose attestation did not hold.
    attestations_refused: int = 0
    refusals: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "upserted": self.upserted,
            "deleted": self.deleted,
            "pending": self.pending,
            "rejected": self.rejected,
            "attestations_refused": self.attestations_refused,
            "refusals": self.refusals[:20],
        }


def _text(data: dict, key: str, *, max_length: int = 100_000, blank: bool = True) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > max_length or "\x00" in value:
        raise InvalidRecord(f"`{key}` must be text of at most {max_length} characters.")
    if not blank and not value:
        raise InvalidRecord(f"`{key}` must not be empty.")
    return value


def _time(data: dict, key: str, *, required: bool = False) -> datetime | None:
    value = data.get(key)
    if value is None and not required:
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidRecord(f"`{key}` must be an ISO 8601 date and time.")
    return parsed


def _int(data: dict, key: str, *, default: int | None = None) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(f"`{key}` must be an integer.")
    return value


def _non_negative(data: dict, key: str, *, default: float = 0.0) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRecord(f"`{key}` must be a number.")
    if value < 0:
        raise InvalidRecord(f"`{key}` must not be negative.")
    return float(value)


def _list(data: dict, key: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InvalidRecord(f"`{key}` must be a list.")
    return value


def _ids(data: dict, key: str) -> list[str]:
    return [str(value) for value in _list(data, key) if isinstance(value, str | int)]


def _on_origin(peer: Peer, url: str, what: str) -> str:
    """Links and file addresses a peer sends must point at the peer itself."""
    if not isinstance(url, str) or not url:
        raise InvalidRecord(f"{what} has no address.")
    origin, given = urlsplit(peer.node_id), urlsplit(url)
    if (given.scheme, given.netloc) != (origin.scheme, origin.netloc):
        raise InvalidRecord(f"{what} points outside the peer ({url}).")
    return url


def _files(peer: Peer, data: dict, key: str = "files") -> list[MirroredFile]:
    return [_file(peer, item) for item in _list(data, key)]


def _file(peer: Peer, item: Any) -> MirroredFile:
    if not isinstance(item, dict):
        raise InvalidRecord("A file must be an object.")
    sha256 = _text(item, "sha256", max_length=64).lower()
    if len(sha256) != 64 or any(char not in "0123456789abcdef" for char in sha256):
        raise InvalidRecord("A file's sha256 must be 64 hex digits.")
    return MirroredFile(
        filename=_text(item, "filename", max_length=255, blank=False),
        sha256=sha256,
        size=_int(item, "size"),
        format=_text(item, "format", max_length=16),
        unsafe=bool(item.get("unsafe", False)),
        url=_on_origin(peer, item.get("url", ""), "A file"),
    )


def _apply_institution(origin: Origin, peer: Peer, data: dict) -> None:
    fields = {
        "name": _text(data, "name", max_length=200, blank=False),
        "slug": _text(data, "slug", max_length=80, blank=False),
        "country": _text(data, "country", max_length=2),
        "website": _text(data, "website", max_length=200),
        "ror_id": _text(data, "ror_id", max_length=9),
        "description": _text(data, "description"),
    }
    catalog_mirrors.institution_mirror(origin=origin, fields=fields)


def _record_fields(data: dict) -> dict[str, Any]:
    return {
        "name": _text(data, "name", max_length=200, blank=False),
        "slug": _text(data, "slug", max_length=80, blank=False),
        "description": _text(data, "description"),
    }


def _apply_dataset(origin: Origin, peer: Peer, data: dict) -> None:
    catalog_mirrors.dataset_mirror(
        origin=origin,
        institution=_text(data, "institution", max_length=64, blank=False),
        fields={**_record_fields(data), "license": _text(data, "license", max_length=200)},
        tags=_ids(data, "tags"),
        files=_files(peer, data),
    )


def _apply_benchmark(origin: Origin, peer: Peer, data: dict) -> None:
    metrics = _list(data, "metrics")
    config = data.get("evaluator_config", {})
    if not isinstance(config, dict):
        raise InvalidRecord("`evaluator_config` must be an object.")
    catalog_mirrors.benchmark_mirror(
        origin=origin,
        institution=_text(data, "institution", max_length=64, blank=False),
        dataset=_text(data, "dataset", max_length=64, blank=False),
        fields={
            **_record_fields(data),
            "task_type": _text(data, "task_type", max_length=64),
            "metrics": metrics,
            "evaluator": _text(data, "evaluator", max_length=64),
            "evaluator_config": config,
            "gpu_count": _int(data, "gpu_count", default=0),
            "gpu_memory_gb": _int(data, "gpu_memory_gb", default=0),
            "time_limit_minutes": _int(data, "time_limit_minutes", default=60),
            "memory_limit_mb": _int(data, "memory_limit_mb", default=8192),
            "reproduction_tolerance": _non_negative(data, "reproduction_tolerance"),
        },
        tags=_ids(data, "tags"),
    )


def _apply_paper(origin: Origin, peer: Peer, data: dict) -> None:
    authors = []
    for item in _list(data, "authors"):
        if not isinstance(item, dict):
            raise InvalidRecord("An author must be an object.")
        affiliation = item.get("institution")
        authors.append(
            MirroredAuthor(
                name=_text(item, "name", max_length=200, blank=False),
                orcid=_text(item, "orcid", max_length=19),
                institution=str(affiliation) if affiliation else None,
            )
        )
    year = data.get("year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
        raise InvalidRecord("`year` must be an integer.")
    pdf = data.get("pdf")
    catalog_mirrors.paper_mirror(
        origin=origin,
        institution=_text(data, "institution", max_length=64, blank=False),
        fields={
            "title": _text(data, "title", max_length=500, blank=False),
            "abstract": _text(data, "abstract"),
            "venue": _text(data, "venue", max_length=300),
            "year": year,
            "doi": _text(data, "doi", max_length=255),
            "arxiv_id": _text(data, "arxiv_id", max_length=40),
        },
        authors=authors,
        pdf=_file(peer, pdf) if pdf else None,
        datasets=_ids(data, "datasets"),
        benchmarks=_ids(data, "benchmarks"),
    )


def _apply_model(origin: Origin, peer: Peer, data: dict) -> None:
    versions = []
    for item in _list(data, "versions"):
        if not isinstance(item, dict):
            raise InvalidRecord("A version must be an object.")
        versions.append(
            MirroredVersion(
                label=_text(item, "label", max_length=64, blank=False),
                release_notes=_text(item, "release_notes"),
                published_at=_time(item, "published_at", required=True),  # type: ignore[arg-type]
                files=_files(peer, item),
            )
        )
    catalog_mirrors.model_mirror(
        origin=origin,
        institution=_text(data, "institution", max_length=64, blank=False),
        fields={
            "name": _text(data, "name", max_length=200, blank=False),
            "slug": _text(data, "slug", max_length=80, blank=False),
            "summary": _text(data, "summary", max_length=500),
            "card": _text(data, "card"),
            "license": _text(data, "license", max_length=200),
            "task": _text(data, "task", max_length=64),
        },
        tags=_ids(data, "tags"),
        versions=versions,
        papers=_ids(data, "papers"),
        benchmarks=_ids(data, "benchmarks"),
    )


def _apply_result(origin: Origin, peer: Peer, data: dict) -> None:
    metrics, provenance = data.get("metrics"), data.get("provenance", {})
    if not isinstance(metrics, dict) or not isinstance(provenance, dict):
        raise InvalidRecord("`metrics` and `provenance` must be objects.")
    gpu_seconds = data.get("gpu_seconds", 0)
    if isinstance(gpu_seconds, bool) or not isinstance(gpu_seconds, int | float):
        raise InvalidRecord("`gpu_seconds` must be a number.")
    attestation = data.get("attestation")
    if attestation is not None and not isinstance(attestation, dict):
        raise InvalidRecord("`attestation` must be an object (a DSSE envelope).")
    model = _text(data, "model", max_length=64, blank=False)
    version = _text(data, "version", max_length=64, blank=False)
    benchmark = _text(data, "benchmark", max_length=64, blank=False)
    # The files the attestation must name are those of the mirrors the result refers to.
    model_sha256s, dataset_sha256s = catalog_mirrors.mirrored_file_digests(
        node=peer.node_id, model=model, label=version, benchmark=benchmark
    )
    status = verify_peer_result(
        peer=peer,
        envelope=attestation,
        metrics=metrics,
        model_sha256s=model_sha256s,
        dataset_sha256s=dataset_sha256s,
        received_at=evaluation_mirrors.attestation_received_at(
            node=peer.node_id, origin_id=origin.id, attestation=attestation
        ),
    )
    evaluation_mirrors.result_mirror(
        origin=origin,
        model=model,
        version=version,
        benchmark=benchmark,
        institution=_text(data, "institution", max_length=64, blank=False),
        metrics=metrics,
        provenance=provenance,
        gpu_seconds=float(gpu_seconds),
        started_at=_time(data, "started_at"),
        finished_at=_time(data, "finished_at"),
        attestation=attestation,
        attestation_status=status,
    )


APPLY: dict[str, Callable[[Origin, Peer, dict], None]] = {
    "institution": _apply_institution,
    "dataset": _apply_dataset,
    "benchmark": _apply_benchmark,
    "paper": _apply_paper,
    "model": _apply_model,
    "result": _apply_result,
}


def _delete(peer: Peer, record_type: str, origin_id: str) -> bool:
    removed = evaluation_mirrors.mirrored_results_delete(
        record_type=record_type, node=peer.node_id, origin_id=origin_id
    )
    if record_type == "result":
        return bool(removed)
    return catalog_mirrors.mirror_delete(
        record_type=record_type, node=peer.node_id, origin_id=origin_id
    )


def _apply_record(
    peer: Peer,
    record: Any,
    report: SyncReport,
    synced_at: datetime,
    waiting: set[tuple[str, str]],
) -> None:
    """Applies one feed record in a savepoint: a record that fails leaves nothing behind."""
    if not isinstance(record, dict):
        report.rejected += 1
        return
    record_type, origin_id, op = record.get("type"), str(record.get("id", "")), record.get("op")
    if record_type not in APPLY or not origin_id or len(origin_id) > 64:
        report.rejected += 1
        report.refusals.append(f"A record of unknown type or id: {record_type!r} {origin_id!r}.")
        return
    try:
        with transaction.atomic():
            if (record_type, origin_id) in waiting:
                SyncPending.objects.filter(
                    peer=peer, record_type=record_type, origin_id=origin_id
                ).delete()
            if op == OP_DELETE:
                report.deleted += _delete(peer, record_type, origin_id)
                return
            if op != OP_UPSERT or not isinstance(record.get("data"), dict):
                raise InvalidRecord("`op` must be upsert (with data) or delete.")
            origin = Origin(
                node=peer.node_id,
                id=origin_id,
                url=_on_origin(peer, record.get("url", ""), "The record's page"),
                synced_at=synced_at,
            )
            APPLY[record_type](origin, peer, record["data"])
            report.upserted += 1
    except MissingReference:
        if (record_type, origin_id) not in waiting and len(
            waiting
        ) >= settings.FEDERATION_MAX_PENDING:
            # A peer cannot fill this node with records that never resolve.
            report.rejected += 1
            report.refusals.append(f"{record_type} {origin_id}: too many records wait already.")
            return
        SyncPending.objects.update_or_create(
            peer=peer, record_type=record_type, origin_id=origin_id, defaults={"payload": record}
        )
        waiting.add((record_type, origin_id))
        report.pending += 1
    except AttestationRefused as error:
        report.rejected += 1
        report.attestations_refused += 1
        message = f"{record_type} {origin_id}: its attestation is refused: {error.reason}"
        report.refusals.append(message)
        logger.warning("Refused a result from %s: %s", peer.node_id, message)
    except (
        InvalidRecord,
        ValidationError,
        DatabaseError,
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
    ) as error:
        report.rejected += 1
        message = f"{record_type} {origin_id}: {error}"
        report.refusals.append(message)
        logger.warning("Refused a record from %s: %s", peer.node_id, message)


def _type_order(record: Any) -> int:
    record_type = record.get("type") if isinstance(record, dict) else None
    return RECORD_TYPES.index(record_type) if record_type in RECORD_TYPES else len(RECORD_TYPES)


def page_apply(*, peer: Peer, records: list[Any], report: SyncReport) -> None:
    """Applies a page, referenced records first, then whatever was waiting on them."""
    synced_at = timezone.now()
    # What waits is looked up once a page, not once a record.
    waiting = set(SyncPending.objects.filter(peer=peer).values_list("record_type", "origin_id"))
    for record in sorted(records, key=_type_order):
        _apply_record(peer, record, report, synced_at, waiting)
    pending = list(SyncPending.objects.filter(peer=peer))
    waiting = {(item.record_type, item.origin_id) for item in pending}
    before = report.pending
    for record in sorted((item.payload for item in pending), key=_type_order):
        _apply_record(peer, record, report, synced_at, waiting)
    report.pending = before


FetchPage = Callable[[Peer, str, int], dict[str, Any]]


def peer_sync(*, peer: Peer, fetch_page: FetchPage, max_pages: int | None = None) -> SyncReport:
    """Pulls the peer's feed from its cursor until it has no more (or `max_pages`)."""
    report = SyncReport()
    page_size = settings.FEDERATION_FEED_PAGE_SIZE
    while max_pages is None or report.pages < max_pages:
        cursor = peer.feed_cursor
        page = fetch_page(peer, cursor, page_size)
        records, next_cursor = page.get("records"), page.get("next_cursor")
        if not isinstance(records, list) or not isinstance(next_cursor, str):
            raise InvalidRecord("The peer's feed page has no records list or next cursor.")
        with transaction.atomic():
            locked = Peer.objects.select_for_update().get(pk=peer.pk)
            if locked.feed_cursor != cursor or not locked.is_approved:
                # Another sync of this peer moved on, or the peering changed: stop here.
                break
            page_apply(peer=locked, records=records, report=report)
            locked.feed_cursor = next_cursor[:200]
            locked.last_synced_at = timezone.now()
            locked.save(update_fields=["feed_cursor", "last_synced_at", "updated_at"])
            peer = locked
        report.pages += 1
        if not page.get("has_more") or next_cursor == cursor:  # a cursor that does not move
            break
    report.pending = SyncPending.objects.filter(peer=peer).count()
    return report
