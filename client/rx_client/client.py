"""`Client`: the node's REST API (/api/v1) with a personal API token.

Every call goes through `Client.request`: timeouts, and retries with exponential back-off on
connection failures, 5xx and 429 (a Retry-After is honoured). Requests that create something
(a model, a job) are retried only where the node cannot have acted on them: a connection that
was never made, and a 429 (refused before the view ran). Not a 5xx: a node answers 500 also
when a step after its commit failed (enqueueing the dispatcher with the broker down), and a
proxy's 502/503/504 may come after the node acted. Errors the node answers with become
`ApiError`.
"""

import email.utils
import hashlib
import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
import requests.auth
import urllib3

from rx_client import __version__
from rx_client.errors import ApiError, NodeUnreachable, RxError

JSON = dict[str, Any]
# (connect, read) seconds; an upload's read waits for the node to check the whole file.
TIMEOUT = (10.0, 120.0)
UPLOAD_TIMEOUT = (10.0, 900.0)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses after which a request that creates something was certainly not acted on.
RETRY_STATUSES_UNSAFE = frozenset({429})
PAGE_SIZE = 100
CHUNK_BYTES = 1024 * 1024

# (what happened, seconds until the next try, try number, tries in all)
RetryHook = Callable[[str, float, int, int], None]


def file_sha256(path: Path, progress: Callable[[int], object] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _never_connected(error: requests.RequestException) -> bool:
    """The request never left this machine: the node cannot have acted on it."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _short_reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.Timeout):
        return "timed out"
    reason = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        text = str(reason)
        return "connection refused" if "refused" in text.lower() else text.split(": ", 1)[-1]
    return type(error).__name__


def api_error(response: requests.Response) -> ApiError:
    """The node's error body (`{"error": {...}}`), or the HTTP status where there is none."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return ApiError(
            status=int(error.get("status") or response.status_code),
            code=str(error.get("code") or "error"),
            message=str(error.get("message") or response.reason),
            fields=error.get("fields") or {},
            body=body,
        )
    message = f"HTTP {response.status_code} {response.reason}".strip()
    return ApiError(status=response.status_code, code="http_error", message=message, body=body)


class MultipartFile:
    """A multipart/form-data body of one file and a few text fields, read from disk as it is
    sent (never held in memory); `progress` hears of each block of the file's bytes."""

    def __init__(
        self,
        path: Path,
        fields: dict[str, str],
        progress: Callable[[int], object] | None = None,
    ) -> None:
        self.boundary = f"rx-{os.urandom(12).hex()}"
        parts = [
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        ]
        filename = path.name.replace('"', "%22")
        parts.append(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        self._head = "".join(parts).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._size = path.stat().st_size
        self._path = path
        self._file: BinaryIO | None = None
        self._stage = 0  # 0: head, 1: file, 2: tail, 3: done
        self._progress = progress

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def read(self, size: int = -1) -> bytes:
        if self._stage == 0:
            self._stage = 1
            self._file = self._path.open("rb")
            return self._head
        if self._stage == 1 and self._file is not None:
            block = self._file.read(max(size, CHUNK_BYTES))
            if block:
                if self._progress:
                    self._progress(len(block))
                return block
            self._file.close()
            self._stage = 2
        if self._stage == 2:
            self._stage = 3
            return self._tail
        return b""


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class Client:
    """The REST API of one node. `token`: a personal API token (read-write to publish or
    submit). `retries`: further tries after a failure that may pass (back-off doubles from
    `backoff` seconds); `on_retry` hears of each."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        on_retry: RetryHook | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.on_retry = on_retry
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"research-exchange-client/{__version__}"
        self.session.headers["Accept"] = "application/json"
        if token:
            # As the session's auth, not a header: requests would put a ~/.netrc entry for the
            # node's host in its place. A redirect to another host still leaves it behind.
            self.session.auth = _Bearer(token)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        body: Callable[[], MultipartFile] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        idempotent: bool | None = None,
        timeout: tuple[float, float] = TIMEOUT,
        ok: tuple[int, ...] = (),
    ) -> requests.Response:
        """Sends `method path` and returns a 2xx answer (or one of `ok`); raises `ApiError` for
        the rest and `NodeUnreachable` when no answer came. `body` makes a fresh request body
        for each try. `idempotent`: whether any failure may be retried (GET and PUT-like calls;
        by default every method but POST). `path` may be a whole address on this node (a page's
        `next`), never one elsewhere."""
        if idempotent is None:
            idempotent = method.upper() != "POST"
        url = f"{self.url}{path}"
        if path.startswith(("http://", "https://")):
            if path != self.url and not path.startswith(f"{self.url}/"):
                raise RxError(f"{path} is not on {self.url}: the token goes to its node only")
            url = path
        tries = self.retries + 1
        for number in range(1, tries + 1):
            send_headers = dict(headers or {})
            data = None
            if body is not None:
                data = body()
                send_headers["Content-Type"] = data.content_type
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    data=data,
                    headers=send_headers,
                    stream=stream,
                    timeout=timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                retryable = idempotent or _never_connected(error)
                if not retryable or number == tries:
                    raise NodeUnreachable(self.url, _short_reason(error)) from error
                self._wait(f"{_short_reason(error)} ({self.url})", None, number, tries)
                continue
            if response.ok or response.status_code in ok:
                return response
            statuses = RETRY_STATUSES if idempotent else RETRY_STATUSES_UNSAFE
            if response.status_code in statuses and number < tries:
                wait = _retry_after(response)
                response.close()
                self._wait(f"HTTP {response.status_code} from {self.url}", wait, number, tries)
                continue
            refusal = api_error(response)
            if not idempotent and response.status_code >= 500:
                refusal.message += (
                    f"; {method.upper()} {path} may have been carried out before the failure: "
                    "check before sending it again"
                )
            raise refusal
        raise AssertionError("unreachable")  # the loop returns or raises

    def _wait(self, what: str, retry_after: float | None, number: int, tries: int) -> None:
        delay = self.backoff * 2 ** (number - 1) * (1 + random.random() / 4)  # noqa: S311
        if retry_after is not None:
            delay = max(delay, retry_after)
        delay = min(delay, self.max_backoff)
        if self.on_retry:
            self.on_retry(what, delay, number + 1, tries)
        time.sleep(delay)

    def get(self, path: str, **params: Any) -> Any:
        query = {key: value for key, value in params.items() if value is not None}
        return self.request("GET", path, params=query).json()

    def post(self, path: str, payload: JSON | None = None, *, idempotent: bool = False) -> Any:
        response = self.request("POST", path, json=payload or {}, idempotent=idempotent)
        return response.json() if response.content else None

    def pages(self, path: str, *, limit: int | None = None, **params: Any) -> Iterator[JSON]:
        """Every row of a paginated list (up to `limit`), page by page."""
        page, seen = 1, 0
        while True:
            body = self.get(path, page=page, page_size=PAGE_SIZE, **params)
            for row in body["results"]:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield row
            if not body.get("next"):
                return
            page += 1

    # Accounts

    def me(self) -> JSON:
        """The token's user and their memberships; refused (401) for a bad token."""
        return self.get("/api/v1/me/")

    # Models, versions, artifacts

    def model_get(self, model_id: int) -> JSON:
        return self.get(f"/api/v1/models/{model_id}/")

    def model_find(self, institution: str, slug: str) -> JSON | None:
        """The model `institution/slug` with its versions, or None when there is none you can
        see."""
        rows = self.pages("/api/v1/models/", institution=institution, slug=slug)
        for row in rows:
            if row["slug"] == slug and row["institution"] == institution:
                return self.model_get(row["id"])
        return None

    def model_create(
        self,
        *,
        institution: str,
        slug: str,
        name: str,
        license: str,
        visibility: str | None = None,
        summary: str = "",
    ) -> JSON:
        payload: JSON = {
            "institution": institution,
            "slug": slug,
            "name": name,
            "license": license,
            "summary": summary,
        }
        if visibility:
            payload["visibility"] = visibility
        return self.post("/api/v1/models/", payload)

    def version_get(self, model_id: int, label: str) -> JSON:
        return self.get(f"/api/v1/models/{model_id}/versions/{quote(label, safe='')}/")

    def version_create(
        self,
        model_id: int,
        *,
        label: str,
        files: list[JSON],
        release_notes: str = "",
        publish: bool = False,
    ) -> JSON:
        payload = {
            "label": label,
            "files": files,
            "release_notes": release_notes,
            "publish": publish,
        }
        return self.post(f"/api/v1/models/{model_id}/versions/", payload)

    def version_add_file(self, model_id: int, label: str, *, filename: str, sha256: str) -> JSON:
        path = f"/api/v1/models/{model_id}/versions/{quote(label, safe='')}/files/"
        return self.post(path, {"filename": filename, "sha256": sha256})

    def version_publish(self, model_id: int, label: str) -> JSON:
        return self.post(f"/api/v1/models/{model_id}/versions/{quote(label, safe='')}/publish/")

    def artifact_get(self, sha256: str) -> JSON | None:
        """The artifact's metadata, or None when the node has no such file that you may read."""
        response = self.request("GET", f"/api/v1/artifacts/{sha256}/", ok=(404,))
        return None if response.status_code == 404 else response.json()

    def artifact_upload(
        self, path: Path, *, sha256: str, progress: Callable[[int], object] | None = None
    ) -> JSON:
        """Uploads `path`, streamed from disk; the node refuses it when its sha256 differs.
        Retried whole: the node stores each sha256 once, so a repeat does no harm."""
        response = self.request(
            "POST",
            "/api/v1/artifacts/",
            body=lambda: MultipartFile(path, {"sha256": sha256}, progress),
            idempotent=True,
            timeout=UPLOAD_TIMEOUT,
        )
        return response.json()

    # Papers

    def papers_import_bibtex(
        self, *, institution: str, bibtex: str, visibility: str | None = None
    ) -> JSON:
        """`{"created": [{id, name}], "errors": [{key, line, message}]}`. When every entry was
        refused the node answers 400 with that report: it is returned, not raised."""
        payload = {"institution": institution, "bibtex": bibtex}
        if visibility:
            payload["visibility"] = visibility
        response = self.request("POST", "/api/v1/papers/import-bibtex/", json=payload, ok=(400,))
        body = response.json()
        if response.status_code == 400 and "error" in body:
            raise api_error(response)
        return body

    # Jobs

    def job_submit(
        self,
        *,
        model_version: int,
        benchmark: int,
        institution: str | None = None,
        allocation: int | None = None,
    ) -> JSON:
        payload: JSON = {"model_version": model_version, "benchmark": benchmark}
        if institution:
            payload["institution"] = institution
        if allocation is not None:
            payload["allocation"] = allocation
        return self.post("/api/v1/jobs/", payload)

    def job_get(self, job_id: int) -> JSON:
        return self.get(f"/api/v1/jobs/{job_id}/")

    def job_cancel(self, job_id: int, *, reason: str = "") -> JSON:
        # Cancelling twice is refused, not repeated: safe to retry.
        return self.post(f"/api/v1/jobs/{job_id}/cancel/", {"reason": reason}, idempotent=True)

    def job_log(self, job_id: int, *, offset: int = 0, attempt: int | None = None) -> JSON:
        """`{attempt, offset, next_offset, text, finished}`: the attempt's output from `offset`
        (characters)."""
        return self.get(f"/api/v1/jobs/{job_id}/logs/", offset=offset, attempt=attempt)

    # Results and leaderboards

    def results(
        self,
        *,
        benchmark: int | None = None,
        model: int | None = None,
        model_version: int | None = None,
        limit: int | None = None,
    ) -> list[JSON]:
        rows = self.pages(
            "/api/v1/results/",
            limit=limit,
            benchmark=benchmark,
            model=model,
            model_version=model_version,
            ordering="-created_at",
        )
        return list(rows)

    def leaderboard(
        self, benchmark: int, *, metric: str | None = None, institution: str | None = None
    ) -> JSON:
        return self.get(
            f"/api/v1/benchmarks/{benchmark}/leaderboard/", metric=metric, institution=institution
        )
