from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_countries.fields import CountryField

from apps.accounts.validators import validate_orcid, validate_ror
from apps.core.models import MirrorOrigin


class User(AbstractUser):
    orcid = models.CharField(
        "ORCID iD",
        max_length=19,
        blank=True,
        validators=[validate_orcid],
        help_text="Canonical form, e.g. 0000-0002-1825-0097.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["orcid"],
                condition=~Q(orcid=""),
                name="unique_user_orcid_when_set",
                violation_error_message="This ORCID iD is already linked to another account.",
            )
        ]

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username


class Institution(MirrorOrigin):
    """A university, lab or research group that publishes work and contributes GPUs. One
    mirrored from a peer node has that node as its origin and no members here."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    country = CountryField()
    website = models.URLField(blank=True)
    ror_id = models.CharField(
        "ROR id",
        max_length=9,
        blank=True,
        validators=[validate_ror],
        help_text="Research Organization Registry id, e.g. 05dxps055.",
    )
    description = models.TextField(blank=True)
    members: models.ManyToManyField = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="institutions"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # A peer's institution may be the same organisation as one here: only local
            # institutions must hold distinct ROR ids.
            models.UniqueConstraint(
                fields=["ror_id"],
                condition=~Q(ror_id="") & Q(origin_node=""),
                name="unique_institution_ror_when_set",
                violation_error_message="Another institution already has this ROR id.",
            ),
            models.UniqueConstraint(
                fields=["origin_node", "origin_id"],
                condition=~Q(origin_node=""),
                name="unique_institution_origin",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        ADMIN = "admin", "Institution admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    institution = models.ForeignKey(
        Institution, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["institution__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "institution"], name="unique_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.institution} ({self.role})"


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; the secret is shown once at creation."""

    class Scope(models.TextChoices):
        READ = "read", "Read only"
        READ_WRITE = "read_write", "Read and write"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The first characters of the secret, so a user can tell their tokens apart.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.READ)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
