"""Federation in the admin: peers with their history and pinned keys, and this node's keys.
Everything is read-only here: peering changes go through the portal's peer pages or the API,
which tell the peer; a change made only here would leave the two nodes disagreeing."""

from django.contrib import admin

from apps.federation.models import NodeKey, Peer, PeerEvent, PeerKey


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class PeerEventInline(admin.TabularInline):
    model = PeerEvent
    fields = ("created_at", "from_state", "to_state", "actor", "by_peer", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class PeerKeyInline(admin.TabularInline):
    model = PeerKey
    fields = ("key_id", "public_key", "retiring_until", "pinned_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Peer)
class PeerAdmin(ReadOnlyAdmin):
    list_display = ("node_id", "name", "state", "suspended_by_peer", "last_synced_at")
    list_filter = ("state",)
    search_fields = ("node_id", "name")
    readonly_fields = [field.name for field in Peer._meta.fields]
    inlines = [PeerKeyInline, PeerEventInline]


@admin.register(NodeKey)
class NodeKeyAdmin(ReadOnlyAdmin):
    list_display = ("key_id", "created_at", "retiring_until")
    readonly_fields = ("key_id", "public_key", "created_at", "retiring_until")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
