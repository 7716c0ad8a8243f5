"""Keeps the cached list counts (catalog.pagination) honest: any write that can change which
rows a list holds, including edits in the Django admin and membership changes, invalidates them."""

from django.db.models.signals import m2m_changed, post_delete, post_save

from apps.accounts.models import Membership
from apps.catalog.models import Benchmark, Dataset, Paper, ResearchModel
from apps.catalog.pagination import table_changed

LISTED = (ResearchModel, Paper, Dataset, Benchmark)


def _record_changed(sender, **kwargs) -> None:
    table_changed(sender)


def _tags_changed(sender, instance, **kwargs) -> None:
    table_changed(type(instance))


def _membership_changed(sender, **kwargs) -> None:
    # Who sees institution and private records depends on memberships.
    for model in LISTED:
        table_changed(model)


def connect() -> None:
    for model in LISTED:
        post_save.connect(_record_changed, sender=model, dispatch_uid=f"count-{model.__name__}")
        post_delete.connect(
            _record_changed, sender=model, dispatch_uid=f"count-del-{model.__name__}"
        )
    for model in (ResearchModel, Dataset, Benchmark):
        m2m_changed.connect(
            _tags_changed, sender=model.tags.through, dispatch_uid=f"count-tags-{model.__name__}"
        )
    for signal in (post_save, post_delete):
        signal.connect(_membership_changed, sender=Membership, dispatch_uid="count-memberships")
