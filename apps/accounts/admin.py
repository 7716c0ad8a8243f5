from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import models

from apps.accounts import services
from apps.accounts.models import ApiToken, Institution, Membership, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    fieldsets = (*(DjangoUserAdmin.fieldsets or ()), ("Research identity", {"fields": ("orcid",)}))
    list_display = ("username", "email", "first_name", "last_name", "orcid", "is_staff")
    search_fields = ("username", "email", "first_name", "last_name", "orcid")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Institution)
class InstitutionAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "country", "ror_id")
    list_filter = ("country",)
    search_fields = ("name", "slug", "ror_id")
    prepopulated_fields = {"slug": ("name",)}
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    readonly_fields = ("origin_node", "origin_id", "origin_url", "origin_synced_at")
    inlines = [MembershipInline]

    def has_change_permission(self, request, obj=None) -> bool:
        # An institution mirrored from a peer node is managed on that node.
        if obj is not None and obj.origin_node:
            return False
        return super().has_change_permission(request, obj)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "scope", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("scope",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "key_hash", "last_used_at", "created_at")
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        # A token's secret is shown once to its owner; staff cannot create tokens for others.
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        for token in queryset:
            services.api_token_revoke(token=token)
        messages.success(request, f"Revoked {queryset.count()} token(s).")
