"""Federation: this node's public keys, its peers (their pinned keys, state and history), the
nonces seen on signed requests, the change feed of public records and what a sync left pending.

Private keys never enter the database: they live in files under the node's var dir (or come
from the environment); see keys.py.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class NodeKey(models.Model):
    """One of this node's Ed25519 signing keys (public half). The newest key that is not retiring
    signs; a retiring key is still accepted and published until `retiring_until`."""

    key_id = models.CharField(max_length=64, unique=True)
    public_key = models.CharField(max_length=64, help_text="Raw Ed25519 key, base64url.")
    created_at = models.DateTimeField(auto_now_add=True)
    retiring_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.key_id


class Peer(models.Model):
    """Another node, known by its id (its base URL)."""

    class State(models.TextChoices):
        REQUESTED = "requested", "Requested: waiting for the peer's approval"
        PENDING = "pending", "Pending: waiting for our staff's approval"
        APPROVED = "approved", "Approved"
        REFUSED = "refused", "Refused"
        SUSPENDED = "suspended", "Suspended"
        REVOKED = "revoked", "Revoked"

    node_id = models.URLField(max_length=255, unique=True)
    name = models.CharField(max_length=200, blank=True)
    institutions = models.JSONField(default=list, blank=True)
    protocol_version = models.CharField(max_length=16, blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=16, choices=State.choices)
    # Which side suspended the peering: only that side may lift the suspension.
    suspended_by_peer = models.BooleanField(default=False)
    # When the well-known document was last fetched (a key id we do not know is looked up once
    # per FEDERATION_KEY_REFETCH_SECONDS, never on every request).
    identity_fetched_at = models.DateTimeField(null=True, blank=True)
    # Circuit breaker: consecutive failed calls; a peer past the threshold is unreachable and
    # only probed again at `next_probe_at`.
    consecutive_failures = models.PositiveIntegerField(default=0)
    unreachable_since = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Catalogue sync: where the next pull starts in the peer's change feed.
    feed_cursor = models.CharField(max_length=200, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["node_id"]

    def __str__(self) -> str:
        return self.name or self.node_id

    @property
    def is_approved(self) -> bool:
        return self.state == self.State.APPROVED


class PeerKey(models.Model):
    """A public key pinned for a peer, from its well-known document."""

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="keys")
    key_id = models.CharField(max_length=64)
    public_key = models.CharField(max_length=64)
    retiring_until = models.DateTimeField(null=True, blank=True)
    pinned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["peer", "-pinned_at"]
        constraints = [
            models.UniqueConstraint(fields=["peer", "key_id"], name="unique_peer_key_id")
        ]

    def __str__(self) -> str:
        return f"{self.peer} {self.key_id}"


class PeerEvent(models.Model):
    """Every change of a peering, with who made it: a user here, or the peer itself."""

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    by_peer = models.BooleanField(default=False)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.peer}: {self.from_state or '-'} → {self.to_state}"


class SeenNonce(models.Model):
    """A nonce of a signed request, kept while a request carrying it could still be accepted."""

    node_id = models.CharField(max_length=255)
    nonce = models.CharField(max_length=128)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node_id", "nonce"], name="unique_seen_nonce")
        ]

    def __str__(self) -> str:
        return f"{self.node_id} {self.nonce}"


class FeedEntry(models.Model):
    """One row per local record the change feed may speak of. A change sets `seq` to NULL; the
    sequencer numbers committed rows in one serialised step, so a change committed late always
    gets a number above everything a reader has already seen. The feed renders each record's
    current state: a record that is gone or no longer public is a tombstone, but only if it
    was ever public (`ever_public`): the feed never names a record that never left the node."""

    record_type = models.CharField(max_length=16)
    record_id = models.BigIntegerField()
    seq = models.BigIntegerField(null=True, blank=True, unique=True)
    ever_public = models.BooleanField(default=False)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["record_type", "record_id"], name="unique_feed_record")
        ]
        indexes = [
            models.Index(fields=["seq"], name="feed_unsequenced_idx", condition=Q(seq=None)),
            # OAI-PMH's deleted records, by type and time.
            models.Index(fields=["record_type", "changed_at"], name="feed_type_changed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.record_type} {self.record_id} @ {self.seq}"


class FeedSequencer(models.Model):
    """A single row: the last sequence number given out. Locking it serialises numbering."""

    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"feed sequence at {self.last_seq}"


class SyncPending(models.Model):
    """A mirrored record whose references (its institution, model, benchmark) have not arrived
    yet; retried after every page until they have."""

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="pending")
    record_type = models.CharField(max_length=16)
    origin_id = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["peer", "record_type", "origin_id"], name="unique_pending_record"
            )
        ]

    def __str__(self) -> str:
        return f"{self.peer}: {self.record_type} {self.origin_id}"
