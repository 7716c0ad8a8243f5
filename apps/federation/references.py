"""References to records across nodes: {"node": the node that holds the record (its origin),
"id": its id there}. A node reads a reference naming itself as its own record, and any other
as its mirror of that node's record."""

from typing import Any, TypeVar

from django.conf import settings
from django.db.models import Model

RecordT = TypeVar("RecordT", bound=Model)


def reference(record: Any) -> dict[str, str]:
    if record.origin_node:
        return {"node": record.origin_node, "id": record.origin_id}
    return {"node": settings.FEDERATION_NODE_URL, "id": str(record.pk)}


def resolve(model: type[RecordT], data: dict[str, Any]) -> RecordT | None:
    node, record_id = str(data["node"]).rstrip("/"), str(data["id"])
    manager = model._default_manager
    if node == settings.FEDERATION_NODE_URL:
        if not record_id.isdigit():
            return None
        return manager.filter(pk=int(record_id), origin_node="").first()
    return manager.filter(origin_node=node, origin_id=record_id).first()
