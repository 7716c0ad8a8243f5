"""DRF's throttles read their rates once, when the class is defined; these read them on every
request, so a node operator's settings (and a test's override) take effect."""

from typing import cast

from rest_framework import throttling
from rest_framework.settings import api_settings


def _current_rate(scope: str | None) -> str | None:
    if scope is None:
        return None
    # Rates are "number/period" strings, e.g. "120/minute".
    return cast("str | None", api_settings.DEFAULT_THROTTLE_RATES.get(scope))


class AnonymousRateThrottle(throttling.AnonRateThrottle):
    def get_rate(self) -> str | None:
        return _current_rate(self.scope)


class UserRateThrottle(throttling.UserRateThrottle):
    def get_rate(self) -> str | None:
        return _current_rate(self.scope)
