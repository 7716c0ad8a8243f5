import json
import math

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range for a number")
    return number


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing numbers that overflow to infinity (e.g. 1e400) as well as
    NaN and Infinity: the database cannot store them, and no caller means them."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.loads(
                stream.read().decode(encoding),
                parse_float=_finite_float,
                parse_constant=_no_constant,
            )
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from error
