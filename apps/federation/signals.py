"""Every write to a local record the change feed may speak of marks its FeedEntry, in the
writer's transaction. Records mirrored from peers are never fed back out. A result this node
ran is signed once it commits."""

from typing import Any

from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save

from apps.accounts.models import Institution
from apps.catalog.models import (
    Benchmark,
    Dataset,
    DatasetFile,
    ModelFile,
    ModelVersion,
    Paper,
    PaperAuthor,
    ResearchModel,
)
from apps.evaluations.models import Result
from apps.federation.attestations import result_signed_on_create
from apps.federation.feed import feed_touch
from apps.federation.feed import records_depending_on as _dependents

RECORD_TYPE_OF: dict[type[Model], str] = {
    Institution: "institution",
    Dataset: "dataset",
    Benchmark: "benchmark",
    Paper: "paper",
    ResearchModel: "model",
    Result: "result",
}


def _record_changed(sender: type[Model], instance: Any, **kwargs: Any) -> None:
    if kwargs.get("raw") or instance.origin_node:
        return
    record_type = RECORD_TYPE_OF[sender]
    feed_touch(record_type=record_type, ids=[instance.pk])
    # A benchmark is fed only while its dataset is public, a result only while its model and
    # benchmark are: their entries change with them.
    for dependent_type, ids in _dependents(record_type=record_type, record_id=instance.pk):
        feed_touch(record_type=dependent_type, ids=ids)


def _part_changed(sender: type[Model], instance: Any, **kwargs: Any) -> None:
    """A version, file or author is part of its model's, dataset's or paper's feed record."""
    if kwargs.get("raw"):
        return
    owner_id: int | None
    if isinstance(instance, ModelVersion):
        owner_type, owner_id = "model", instance.model_id
    elif isinstance(instance, ModelFile):
        owner_type = "model"
        owner_id = (
            ModelVersion.objects.filter(pk=instance.version_id)
            .values_list("model_id", flat=True)
            .first()
        )
    elif isinstance(instance, DatasetFile):
        owner_type, owner_id = "dataset", instance.dataset_id
    else:
        owner_type, owner_id = "paper", instance.paper_id
    if owner_id is not None:
        feed_touch(record_type=owner_type, ids=[owner_id], local_only=True)


def _links_changed(sender: type[Model], instance: Any, action: str, **kwargs: Any) -> None:
    if not action.startswith("post_"):
        return
    if kwargs.get("reverse"):
        # Changed from the other side (paper.models.add(model)): the linking records changed.
        linking = kwargs.get("model")
        if linking in RECORD_TYPE_OF and kwargs.get("pk_set"):
            feed_touch(record_type=RECORD_TYPE_OF[linking], ids=kwargs["pk_set"], local_only=True)
        return
    if type(instance) in RECORD_TYPE_OF and not instance.origin_node:
        feed_touch(record_type=RECORD_TYPE_OF[type(instance)], ids=[instance.pk])


for _model in RECORD_TYPE_OF:
    post_save.connect(_record_changed, sender=_model, dispatch_uid=f"feed-save-{_model.__name__}")
    post_delete.connect(
        _record_changed, sender=_model, dispatch_uid=f"feed-delete-{_model.__name__}"
    )
for _model in (ModelVersion, ModelFile, DatasetFile, PaperAuthor):
    post_save.connect(_part_changed, sender=_model, dispatch_uid=f"feed-save-{_model.__name__}")
    post_delete.connect(_part_changed, sender=_model, dispatch_uid=f"feed-del-{_model.__name__}")
for _through in (
    ResearchModel.tags.through,
    ResearchModel.papers.through,
    ResearchModel.benchmarks.through,
    Paper.datasets.through,
    Paper.benchmarks.through,
    Dataset.tags.through,
    Benchmark.tags.through,
):
    m2m_changed.connect(_links_changed, sender=_through, dispatch_uid=f"feed-links-{_through}")
post_save.connect(result_signed_on_create, sender=Result, dispatch_uid="result-attestation")
