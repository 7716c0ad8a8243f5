from datetime import timedelta

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.accounts import selectors
from apps.accounts.models import ApiToken, Institution, Membership, User
from apps.accounts.validators import normalize_orcid, normalize_ror


class ProfileForm(forms.ModelForm):
    orcid = forms.CharField(
        label="ORCID iD",
        required=False,
        max_length=64,
        help_text="Optional. For example 0000-0002-1825-0097 or https://orcid.org/0000-0002-1825-0097.",
    )

    class Meta:
        model = User
        fields = ["first_name", "last_name", "email", "orcid"]

    def clean_orcid(self) -> str:
        value = self.cleaned_data["orcid"]
        return normalize_orcid(value) if value else ""


class TokenCreateForm(forms.Form):
    EXPIRY_CHOICES = [("30", "30 days"), ("90", "90 days"), ("365", "1 year"), ("", "Never")]

    name = forms.CharField(
        max_length=100, help_text="What the token is for, e.g. 'lab CI pipeline'."
    )
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ)
    expires_in_days = forms.ChoiceField(
        label="Expires after", choices=EXPIRY_CHOICES, initial="90", required=False
    )

    def clean_expires_in_days(self):
        days = self.cleaned_data["expires_in_days"]
        if not days:
            return None
        try:
            return timezone.now() + timedelta(days=int(days))
        except ValueError as error:
            raise ValidationError("Choose one of the offered expiry periods.") from error


class InstitutionForm(forms.ModelForm):
    website = forms.URLField(required=False, assume_scheme="https", max_length=200)
    ror_id = forms.CharField(
        label="ROR id",
        required=False,
        max_length=64,
        help_text="Optional. For example 05dxps055 or https://ror.org/05dxps055.",
    )

    class Meta:
        model = Institution
        fields = ["name", "country", "website", "ror_id", "description"]

    def clean_ror_id(self) -> str:
        value = self.cleaned_data["ror_id"]
        return normalize_ror(value) if value else ""


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="The researcher's username on this node.")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)

    def clean_username(self) -> User:
        return selectors.active_user_by_username(username=self.cleaned_data["username"])


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
