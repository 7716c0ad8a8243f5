"""Fields more than one app's records share."""

from django.db import models


class MirrorOrigin(models.Model):
    """Where a record came from. Empty for records published on this node; for a record
    mirrored from a peer node: that node's id (its base URL), the record's id there, its page
    there and when it was last synced. Mirrored records are read-only here."""

    origin_node = models.CharField(max_length=255, blank=True, default="", db_index=True)
    origin_id = models.CharField(max_length=64, blank=True, default="")
    origin_url = models.URLField(max_length=500, blank=True, default="")
    origin_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
