"""Request body parsers that refuse, as a 4xx, what would otherwise surface as a 500 further in:
numbers the database cannot store, NUL characters (PostgreSQL text and jsonb refuse them),
nesting deeper than any record of the platform, unknown charsets and oversized bodies."""

import json
import math
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType

# No record of the platform nests nearly this deep; the JSON decoder itself gives up at ~1,000.
MAX_JSON_DEPTH = 64


class PayloadTooLarge(APIException):
    status_code = 413
    default_code = "payload_too_large"

    def __init__(self) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        super().__init__(f"The request body is over the limit of {limit} bytes.")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range for a number")
    return number


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def json_defect(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Where in a decoded JSON value a NUL character or excess nesting is, as `$.a[0].b`
    followed by what is wrong there; None when the value is clean. Iterative, so that depth
    itself cannot exhaust the stack; a path is spelled out only for the defect."""
    # Each entry: the item, its depth, and its place as (parent's place, key or index).
    pending: list[tuple[Any, int, tuple | None]] = [(value, 1, None)]
    while pending:
        item, depth, place = pending.pop()
        if depth > max_depth:
            return f"{_path(place)}: nested more than {max_depth} levels deep"
        if isinstance(item, str):
            if "\x00" in item:
                return f"{_path(place)}: NUL characters (\\u0000) are not allowed"
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return f"{_path(place)}: NUL characters (\\u0000) are not allowed in keys"
                pending.append((child, depth + 1, (place, key)))
        elif isinstance(item, list):
            pending.extend((child, depth + 1, (place, index)) for index, child in enumerate(item))
    return None


def _path(place: tuple | None) -> str:
    steps = []
    while place is not None:
        place, step = place
        steps.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return "$" + "".join(reversed(steps))


def read_limited(stream) -> bytes:
    """The whole body, refused (413) past DATA_UPLOAD_MAX_MEMORY_SIZE as soon as it is crossed."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(body) > limit:
        raise PayloadTooLarge()
    return body


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing numbers that overflow to infinity (e.g. 1e400) as well as
    NaN and Infinity, NUL characters anywhere, nesting past MAX_JSON_DEPTH, unknown charsets
    (415) and bodies over the upload limit (413)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        if stream is None:
            raise ParseError("JSON parse error - the body is empty")
        try:
            text = read_limited(stream).decode(encoding)
        except LookupError as error:
            raise UnsupportedMediaType(
                media_type, detail=f"Unknown charset {encoding!r}: send JSON in UTF-8."
            ) from error
        except UnicodeDecodeError as error:
            raise ParseError(f"JSON parse error - the body is not valid {encoding}") from error
        try:
            data = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
        except RecursionError as error:
            raise ParseError(
                f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep"
            ) from error
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from error
        if problem := json_defect(data):
            raise ParseError(f"JSON parse error - {problem}")
        return data


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, refusing NUL characters in field values and file names."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        for name, values in parsed.data.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                raise ParseError(f"{name}: NUL characters (\\u0000) are not allowed")
        for name, uploads in parsed.files.lists():
            if any("\x00" in (upload.name or "") for upload in uploads):
                raise ParseError(f"{name}: NUL characters (\\u0000) are not allowed in file names")
        return parsed
