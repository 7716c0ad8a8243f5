"""Artifact downloads: streamed from storage, with the sha256 as ETag and Digest, conditional
requests, and single byte ranges (resumable downloads, partial reads of large files)."""

import base64
import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.utils.module_loading import import_string
from django.utils.text import get_valid_filename
from rest_framework.exceptions import APIException

from apps.catalog.models import Artifact
from apps.catalog.services import artifact_storage

CHUNK_BYTES = 1024 * 1024


class OriginUnavailable(APIException):
    """A mirrored file could not be fetched from its origin node, or did not match its sha256.
    The request failed because the one it depends on did (424)."""

    status_code = 424
    default_code = "origin_unavailable"
    default_detail = "The node this file is mirrored from could not provide it."


def ensure_stored(artifact: Artifact) -> Artifact:
    """A mirrored file is fetched from its origin node on its first download
    (settings.ARTIFACT_REMOTE_FETCH checks the sha256 and stores it)."""
    if artifact.is_stored:
        return artifact
    fetch = import_string(settings.ARTIFACT_REMOTE_FETCH)
    try:
        return fetch(artifact)
    except Exception as error:  # any failure of the origin is the origin's, never a 500 here
        raise OriginUnavailable(str(error)) from error


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) of a single satisfiable range; None when the header asks for the whole file
    (absent, several ranges, or not understood); raises ValueError when unsatisfiable."""
    match = _RANGE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None
    if not match[1]:  # the last N bytes
        length = int(match[2])
        if length == 0:
            raise ValueError
        return max(size - length, 0), size - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else size - 1
    if first >= size or last < first:
        raise ValueError
    return first, min(last, size - 1)


def _chunks(file, remaining: int):
    with file:
        while remaining > 0:
            data = file.read(min(CHUNK_BYTES, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data


def artifact_response(
    request: HttpRequest, artifact: Artifact, filename: str = ""
) -> HttpResponseBase:
    """`filename`: the name the record gives the file (saved under it); the sha256 otherwise."""
    artifact = ensure_stored(artifact)
    etag = f'"{artifact.sha256}"'
    digest = base64.b64encode(bytes.fromhex(artifact.sha256)).decode()
    headers = {
        "ETag": etag,
        "Digest": f"sha-256={digest}",
        "Repr-Digest": f"sha-256=:{digest}:",
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=0, must-revalidate",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("If-None-Match", ""):
        return HttpResponse(status=304, headers=headers)

    byte_range = None
    range_header = request.headers.get("Range", "")
    if_range = request.headers.get("If-Range")
    if range_header and (if_range is None or if_range == etag):
        try:
            byte_range = _byte_range(range_header, artifact.size)
        except ValueError:
            headers["Content-Range"] = f"bytes */{artifact.size}"
            return HttpResponse(status=416, headers=headers)

    first, last = byte_range or (0, artifact.size - 1)
    length = max(last - first + 1, 0)
    headers["Content-Length"] = str(length)
    disposition = content_disposition_header(
        as_attachment=True, filename=get_valid_filename(filename) if filename else artifact.sha256
    )
    headers["Content-Disposition"] = disposition or "attachment"
    if request.method == "HEAD":
        response: HttpResponseBase = HttpResponse(headers=headers)
    else:
        file = artifact_storage().open(artifact.storage_name, "rb")
        if first:
            file.seek(first)
        response = StreamingHttpResponse(_chunks(file, length), headers=headers)
    response["Content-Type"] = "application/octet-stream"
    if byte_range is not None:
        response.status_code = 206
        response["Content-Range"] = f"bytes {first}-{last}/{artifact.size}"
    return response
