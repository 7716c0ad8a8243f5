from typing import cast

from django import forms

from apps.accounts.models import Institution, User
from apps.events import webhooks
from apps.events.models import EventType


class WebhookEndpointForm(forms.Form):
    """Registers or changes an endpoint. The owner (personal or an institution the user
    administers) is chosen at creation only; the private-address allowance is for staff."""

    url = forms.CharField(
        label="URL",
        max_length=500,
        help_text="Where the events are POSTed: http:// or https:// on a public address.",
    )
    description = forms.CharField(max_length=200, required=False)
    owner = forms.ChoiceField(
        label="Owner",
        help_text="Yours: events that concern you. An institution's: all of its events.",
    )
    event_types = forms.MultipleChoiceField(
        label="Event types",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every type the endpoint may receive.",
    )
    allow_private_addresses = forms.BooleanField(
        required=False,
        label="Allow private addresses",
        help_text="Staff only: a receiver on a private network (a development setup).",
    )

    def __init__(self, *args, user: User, creating: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        administered = Institution.objects.filter(pk__in=webhooks.admin_institution_ids(user))
        owner = cast(forms.ChoiceField, self.fields["owner"])
        if creating:
            owner.choices = [("", f"You ({user.username})")] + [
                (institution.slug, institution.name) for institution in administered
            ]
            owner.required = False
        else:
            del self.fields["owner"]
        cast(forms.MultipleChoiceField, self.fields["event_types"]).choices = [
            (value, f"{value}: {label}") for value, label in EventType.choices
        ]
        if not user.is_staff:
            del self.fields["allow_private_addresses"]

    def owner_institution(self) -> Institution | None:
        slug = self.cleaned_data.get("owner") or ""
        return Institution.objects.filter(slug=slug).first() if slug else None
