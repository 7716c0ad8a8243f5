"""The change feed: what leaves the node, in which order, and what a peer makes of it.

The sync half runs here against this node's own feed (the peer is this node's own id), so the
mirrors and the originals share one database; tests/federation/test_nodes.py does the same
between separate node processes."""

import threading

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction

from apps.catalog import services
from apps.catalog.models import Benchmark, Dataset, ModelVersion, Paper, ResearchModel, Visibility
from apps.evaluations import selectors as evaluation_selectors
from apps.evaluations.models import Result
from apps.federation.contract import OP_DELETE, OP_UPSERT
from apps.federation.feed import BadCursor, cursor_decode, feed_page, feed_sequence
from apps.federation.models import FeedEntry, Peer
from apps.federation.sync import SyncReport, page_apply
from tests.catalog.conftest import store
from tests.catalog.samples import safetensors_bytes


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(artifact_dir):
    """Artifacts stored in a folder of the test's own."""


def read_all(cursor: str = "", limit: int = 1000) -> tuple[list[dict], str]:
    records: list[dict] = []
    while True:
        page = feed_page(cursor=cursor, limit=limit)
        records += page["records"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return records, cursor


def ids_of(records: list[dict], record_type: str, op: str = OP_UPSERT) -> set[str]:
    return {r["id"] for r in records if r["type"] == record_type and r["op"] == op}


def make_dataset(user, institution, visibility=Visibility.PUBLIC, number=0):
    data = store(user, safetensors_bytes(number + 1), "data.safetensors")
    return services.dataset_create(
        user=user, institution=institution, name=f"Data {number}", slug=f"data-{number}",
        license="CC-BY-4.0", visibility=visibility, files=[("data.safetensors", data.sha256)],
    )  # fmt: skip


def test_public_records_are_fed_and_others_never_named(member, institution, catalog_rows):
    catalog_rows(2)
    hidden = make_dataset(member, institution, Visibility.PRIVATE, number=50)
    inner = services.paper_create(
        user=member, institution=institution, title="Internal draft",
        visibility=Visibility.INSTITUTION,
    )  # fmt: skip

    records, _ = read_all()

    assert len(ids_of(records, "dataset")) == 2
    assert len(ids_of(records, "benchmark")) == 2
    assert len(ids_of(records, "paper")) == 2
    assert len(ids_of(records, "model")) == 2
    assert str(institution.pk) in ids_of(records, "institution")
    everything = repr(records)
    assert str(hidden.pk) not in {r["id"] for r in records if r["type"] == "dataset"}
    assert "Internal draft" not in everything
    assert str(inner.pk) not in {r["id"] for r in records if r["type"] == "paper"}
    model = next(r for r in records if r["type"] == "model")
    version = model["data"]["versions"][0]
    assert version["label"] == "1.0"
    assert len(version["files"][0]["sha256"]) == 64
    assert version["files"][0]["url"].startswith(settings.FEDERATION_NODE_URL)


def test_a_downgrade_or_a_delete_is_a_tombstone_and_a_never_public_record_stays_unnamed(
    member, institution
):
    public = services.paper_create(user=member, institution=institution, title="Open paper")
    private = services.paper_create(
        user=member, institution=institution, title="Closed", visibility=Visibility.PRIVATE
    )
    records, cursor = read_all()
    assert ids_of(records, "paper") == {str(public.pk)}

    services.paper_update(user=member, paper=public, visibility=Visibility.INSTITUTION)
    private.delete()
    records, cursor = read_all(cursor)

    assert [(r["type"], r["id"], r["op"]) for r in records] == [
        ("paper", str(public.pk), OP_DELETE)
    ]
    assert "data" not in records[0]


def test_a_hidden_dataset_takes_its_benchmarks_and_their_results_out_of_the_feed(
    member, institution, catalog_rows
):
    catalog_rows(1)
    records, cursor = read_all()
    dataset = Dataset.objects.get()
    benchmark = Benchmark.objects.get()

    services.dataset_update(user=member, dataset=dataset, visibility=Visibility.PRIVATE)
    records, _ = read_all(cursor)

    assert ids_of(records, "dataset", OP_DELETE) == {str(dataset.pk)}
    assert ids_of(records, "benchmark", OP_DELETE) == {str(benchmark.pk)}


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_after_a_later_numbered_one_is_still_delivered(member, institution):
    """Two writers: the first marks its change, the second marks and commits; a reader reads;
    then the first commits. The reader's next page must hold the first writer's change."""
    first = services.paper_create(user=member, institution=institution, title="First")
    second = services.paper_create(user=member, institution=institution, title="Second")
    _, cursor = read_all()

    first_marked, release_first = threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                Paper.objects.get(pk=first.pk).save()  # marks its feed entry, not committed
                first_marked.set()
                release_first.wait(10)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert first_marked.wait(10)
    Paper.objects.get(pk=second.pk).save()  # commits at once (autocommit)

    seen, cursor = read_all(cursor)
    assert ids_of(seen, "paper") == {str(second.pk)}

    release_first.set()
    writer.join(10)
    seen, cursor = read_all(cursor)

    assert ids_of(seen, "paper") == {str(first.pk)}
    numbers = list(FeedEntry.objects.order_by("seq").values_list("seq", flat=True))
    assert numbers == sorted(set(numbers))


def test_a_cursor_from_elsewhere_is_refused(db):
    with pytest.raises(BadCursor):
        cursor_decode("bm90LWEtY3Vyc29y")
    assert cursor_decode("") == 0


def test_sequencing_numbers_only_what_changed(member, institution):
    services.paper_create(user=member, institution=institution, title="A paper")
    feed_sequence()
    assert feed_sequence() == 0


@pytest.fixture
def loopback_peer(db):
    """This node as its own peer: its feed applied as another node's mirrors would be."""
    return Peer.objects.create(node_id=settings.FEDERATION_NODE_URL, state=Peer.State.APPROVED)


def apply_feed(peer: Peer, cursor: str = "") -> tuple[SyncReport, str]:
    records, cursor = read_all(cursor)
    report = SyncReport()
    page_apply(peer=peer, records=records, report=report)
    return report, cursor


def mirrors(model):
    return model.objects.exclude(origin_node="")


def test_a_peer_mirrors_every_record_once_however_often_it_applies_them(
    member, institution, catalog_rows, loopback_peer
):
    catalog_rows(3)

    report, _ = apply_feed(loopback_peer)
    again, _ = apply_feed(loopback_peer)

    assert report.rejected == 0 and report.pending == 0
    assert again.rejected == 0
    for model in (Dataset, Benchmark, Paper, ResearchModel):
        assert mirrors(model).count() == 3
    model = mirrors(ResearchModel).get(
        origin_id=str(ResearchModel.objects.filter(origin_node="").first().pk)
    )
    assert model.institution.origin_node == settings.FEDERATION_NODE_URL
    assert model.origin_url.startswith(settings.FEDERATION_NODE_URL + "/models/")
    version = ModelVersion.objects.get(model=model)
    artifact = version.files.get().artifact
    assert artifact.is_stored  # the same bytes exist here: the local copy is used


def test_tombstones_remove_mirrors_and_what_depends_on_them(
    member, institution, catalog_rows, loopback_peer
):
    catalog_rows(1)
    _, cursor = apply_feed(loopback_peer)
    dataset = Dataset.objects.get(origin_node="")

    services.dataset_update(user=member, dataset=dataset, visibility=Visibility.PRIVATE)
    report, _ = apply_feed(loopback_peer, cursor)

    assert report.deleted >= 1 and report.rejected == 0
    assert not mirrors(Dataset).exists()
    assert not mirrors(Benchmark).exists()
    assert mirrors(Paper).count() == 1
    assert not mirrors(Result).exists()


def test_a_record_that_lies_is_refused_and_the_rest_applies(member, institution, loopback_peer):
    paper = services.paper_create(user=member, institution=institution, title="Fine")
    records, _ = read_all()
    forged = [
        {"type": "paper", "id": "999", "op": "upsert", "url": "http://evil.example/x",
         "data": {"institution": str(institution.pk), "title": "Phishing"}},
        {"type": "paper", "id": "998", "op": "upsert",
         "url": settings.FEDERATION_NODE_URL + "/papers/998/",
         "data": {"institution": str(institution.pk), "title": "x" * 501}},
        {"type": "paper", "id": "997", "op": "upsert",
         "url": settings.FEDERATION_NODE_URL + "/papers/997/",
         "data": {"institution": str(institution.pk), "title": "Bad year", "year": "soon"}},
    ]  # fmt: skip
    report = SyncReport()

    page_apply(peer=loopback_peer, records=records + forged, report=report)

    assert report.rejected == 3
    assert list(mirrors(Paper).values_list("origin_id", flat=True)) == [str(paper.pk)]


def test_results_are_mirrored_on_the_mirrored_benchmark_without_host_details(
    member, institution, allocation, cpu_benchmark, make_model_version, post_result, loopback_peer
):
    version = make_model_version(member, institution)
    post_result(
        member, version, cpu_benchmark, {"accuracy": 0.91, "loss": 0.2},
        provenance={"evaluator": "smoke", "host": {"name": "gpu-host-7"}, "seed": 3},
    )  # fmt: skip

    report, _ = apply_feed(loopback_peer)

    assert report.pending == 0 and report.rejected == 0
    mirrored = Result.objects.exclude(origin_node="").get()
    assert mirrored.job is None
    assert mirrored.metrics == {"accuracy": 0.91, "loss": 0.2}
    assert mirrored.provenance["seed"] == 3
    assert "host" not in mirrored.provenance
    benchmark = mirrors(Benchmark).get(origin_id=str(cpu_benchmark.pk))
    assert mirrored.benchmark == benchmark
    assert mirrored.model_version.model.origin_id == str(version.model_id)
    board = evaluation_selectors.leaderboard(
        user=AnonymousUser(),
        benchmark=benchmark,
        metric=evaluation_selectors.leaderboard_metric(benchmark, "accuracy"),
    )
    assert [entry.result.pk for entry in board] == [mirrored.pk]


def test_a_record_that_arrives_before_what_it_refers_to_waits_then_applies(
    member, institution, loopback_peer
):
    paper = services.paper_create(user=member, institution=institution, title="Early bird")
    records, _ = read_all()
    institutions = [r for r in records if r["type"] == "institution"]
    papers = [r for r in records if r["type"] == "paper"]

    first = SyncReport()
    page_apply(peer=loopback_peer, records=papers, report=first)
    assert first.pending == 1 and not mirrors(Paper).exists()

    second = SyncReport()
    page_apply(peer=loopback_peer, records=institutions, report=second)

    assert list(mirrors(Paper).values_list("origin_id", flat=True)) == [str(paper.pk)]
    assert not loopback_peer.pending.exists()
