from django import forms

from apps.events.selectors import PreferenceRow

CHANNELS = (("portal", "in the portal"), ("email", "by mail"))


class PreferencesForm(forms.Form):
    """One checkbox per event type and channel, named `<type>:<channel>`."""

    def __init__(self, *args, rows: list[PreferenceRow], **kwargs):
        super().__init__(*args, **kwargs)
        self.rows = rows
        for row in rows:
            for channel, how in CHANNELS:
                self.fields[f"{row.event_type}:{channel}"] = forms.BooleanField(
                    required=False,
                    initial=getattr(row, channel),
                    label=f"{row.description}: {how}",
                )

    def channels(self) -> dict[str, tuple[bool, bool]]:
        data = self.cleaned_data
        return {
            row.event_type: (data[f"{row.event_type}:portal"], data[f"{row.event_type}:email"])
            for row in self.rows
        }

    def table(self) -> list[tuple[PreferenceRow, forms.BoundField, forms.BoundField]]:
        return [
            (row, self[f"{row.event_type}:portal"], self[f"{row.event_type}:email"])
            for row in self.rows
        ]
