"""The worker's side of the node's REST API: `/api/v1/worker/...` with the node token.

Every call the worker makes is safe to send twice (a heartbeat, a log piece at an offset, the
result of one attempt), so connection errors and 5xx answers are retried with backoff.
"""

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import requests
from requests.exceptions import ChunkedEncodingError

from worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

API = "/api/v1/worker"
CHUNK_BYTES = 1024 * 1024
# The node keeps this much of a failure reason.
REASON_MAX_CHARS = 4000


class NodeError(Exception):
    """The node refused a call (4xx): `message` is the node's own explanation."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(f"The node answered {status}: {message}")
        self.status = status
        self.code = code
        self.message = message


class StaleAttempt(NodeError):
    """409: the attempt is not (or no longer) this node's to run."""


class NodeUnavailable(Exception):
    """The node did not answer, or answered 5xx, after every retry."""


class DownloadError(Exception):
    """A file arrived with another size or sha256 than the node announced."""


def _error_message(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error", {})
        return str(error.get("message") or response.reason), str(error.get("code", ""))
    except (ValueError, AttributeError):
        return (response.text[:500] or str(response.reason)), ""


class NodeClient:
    def __init__(
        self,
        settings: WorkerSettings,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        retries: int = 5,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self.base_url = settings.node_url
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {settings.node_token}", "Accept": "application/json"}
        )

    def close(self) -> None:
        self.session.close()

    def _url(self, path_or_url: str) -> str:
        url = urljoin(self.base_url + "/", path_or_url)
        node, target = urlparse(self.base_url), urlparse(url)
        # The node token goes to the node only, whatever URL a claim carries.
        if (target.scheme, target.netloc) != (node.scheme, node.netloc):
            raise NodeError(0, f"Refusing to send the node token to {url}: not {self.base_url}.")
        return url

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """The response of the first try that got an answer below 500; raises NodeError for a
        4xx (StaleAttempt for 409) and NodeUnavailable once the retries are spent."""
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 500:
                    break
                problem = f"{response.status_code} {_error_message(response)[0]}"
                response.close()
            if attempt == self.retries:
                raise NodeUnavailable(f"{method} {url}: {problem}")
            delay = min(self.backoff_seconds * 2**attempt, self.max_backoff_seconds)
            logger.warning("%s %s failed (%s); retrying in %.1f s", method, url, problem, delay)
            time.sleep(delay)
        if response.status_code >= 400:
            message, code = _error_message(response)
            error_class = StaleAttempt if response.status_code == 409 else NodeError
            raise error_class(response.status_code, message, code)
        return response

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self._send("POST", self._url(f"{API}{path}"), json=body)
        return response.json() if response.content else {}

    def register(self, inventory: dict[str, Any]) -> dict[str, Any]:
        """inventory: {"gpus": [...], "cpu_slots": n, "host": {...}}. Returns the node, its
        queue, and the heartbeat and lease periods."""
        return self._post("/register", inventory)

    def heartbeat(self, running: list[dict[str, int]]) -> dict[str, Any]:
        return self._post("/heartbeat", {"running": running})

    def claim(self, job: int, attempt: int) -> dict[str, Any] | None:
        """The attempt's specification, or None when it is no longer this worker's to run."""
        try:
            return self._post(f"/jobs/{job}/claim", {"attempt": attempt})
        except StaleAttempt as stale:
            logger.info("job %s attempt %s not claimed: %s", job, attempt, stale.message)
            return None

    def append_log(self, job: int, attempt: int, offset: int, text: str) -> int:
        """Stores `text` at `offset` of the attempt's log; returns the log's length."""
        body = {"attempt": attempt, "offset": offset, "text": text}
        return int(self._post(f"/jobs/{job}/logs", body)["length"])

    def report_failure(self, job: int, attempt: int, state: str, reason: str) -> None:
        body = {"attempt": attempt, "state": state, "reason": reason[:REASON_MAX_CHARS]}
        self._post(f"/jobs/{job}/status", body)

    def post_result(
        self, job: int, attempt: int, metrics: dict[str, Any], provenance: dict[str, Any]
    ) -> dict[str, Any]:
        body = {"attempt": attempt, "metrics": metrics, "provenance": provenance}
        return self._post(f"/jobs/{job}/result", body)

    def download(self, url: str, dest_path: Path, sha256: str, size: int | None = None) -> Path:
        """Streams the file to a temporary file beside `dest_path` while hashing it, and moves
        it into place only when its size and sha256 are the announced ones."""
        dest_path = Path(dest_path)
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        full_url = self._url(url)
        handle, temporary = tempfile.mkstemp(prefix=".part-", dir=dest_path.parent)
        try:
            with os.fdopen(handle, "wb") as output:
                digest, received = self._stream_with_retries(output, full_url, size)
            if size is not None and received != size:
                raise DownloadError(f"{url}: received {received} bytes, the node announced {size}.")
            if digest != sha256.lower():
                raise DownloadError(
                    f"{url}: the file's sha256 is {digest}, the node announced {sha256}."
                )
            os.replace(temporary, dest_path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return dest_path

    def _stream_with_retries(self, output, url: str, size: int | None) -> tuple[str, int]:
        attempt = 0
        while True:
            try:
                return self._stream_into(output, url, size)
            except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as error:
                if attempt == self.retries:
                    raise NodeUnavailable(f"GET {url}: {type(error).__name__}: {error}") from error
                delay = min(self.backoff_seconds * 2**attempt, self.max_backoff_seconds)
                logger.warning("GET %s broke off (%s); retrying in %.1f s", url, error, delay)
                time.sleep(delay)
                attempt += 1
                output.seek(0)
                output.truncate()

    def _stream_into(self, output, url: str, size: int | None) -> tuple[str, int]:
        with self._send("GET", url, stream=True) as response:
            hasher = hashlib.sha256()
            received = 0
            for chunk in response.iter_content(CHUNK_BYTES):
                received += len(chunk)
                if size is not None and received > size:
                    raise DownloadError(f"{url}: more than the announced {size} bytes arrived.")
                hasher.update(chunk)
                output.write(chunk)
            return hasher.hexdigest(), received
