"""DRF's throttles read their rates once, when the class is defined; these read them on every
request, so a node operator's settings (and a test's override) take effect."""

from rest_framework import throttling
from rest_framework.settings import api_settings


class _CurrentRateMixin:
    scope: str

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonymousRateThrottle(_CurrentRateMixin, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_CurrentRateMixin, throttling.UserRateThrottle):
    pass
