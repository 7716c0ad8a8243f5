"""The one way a webhook leaves the node: a signed POST (Standard Webhooks) to an address
checked once and then connected to, with timeouts, no redirects and a bounded read.

The whole attempt, from connecting to the last byte of the answer, takes at most the connect
and read time-outs together: a receiver that dribbles its answer a byte at a time has its
connection shut at that deadline, so it never holds a worker (or outlives the delivery's
claim, which would let the sweep send it again).

The host is resolved once and every address it has must be public (unless the endpoint allows
private ones); the connection goes to the first of those addresses (apps.core.outbound), with
the URL's host in the Host header and, for https, in the TLS server name and certificate check.
A name that resolves elsewhere between the check and the connection is never reached.
"""

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from django.conf import settings

from apps.core import addresses, outbound

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
USER_AGENT = "ResearchExchange-Webhooks/1"
# What the log keeps of a receiver's answer.
RESPONSE_KEPT_BYTES = 1024


def signature(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over "{id}.{timestamp}.{body}" with the decoded secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    body: str
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook's target, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "The URL must start with http:// or https://."
    if not parts.hostname:
        return "The URL names no host."
    if parts.username or parts.password:
        return "The URL must not hold a user name or password."
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        return "The URL's port is not a number from 1 to 65535."
    return None


def target_addresses(url: str, *, allow_private: bool) -> list[addresses.IPAddress]:
    """The addresses a POST to `url` may connect to; raises AddressRefused with the reason."""
    problem = url_problem(url)
    if problem:
        raise addresses.AddressRefused(problem)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return addresses.public_addresses(parts.hostname or "", port, allow_private=allow_private)


def post(*, url: str, body: bytes, headers: dict[str, str], allow_private: bool) -> Answer:
    started = time.monotonic()

    def answer(status_code: int | None = None, text: str = "", error: str = "") -> Answer:
        elapsed = int((time.monotonic() - started) * 1000)
        return Answer(status_code=status_code, body=text, error=error[:1000], duration_ms=elapsed)

    try:
        ip = target_addresses(url, allow_private=allow_private)[0]
    except addresses.AddressRefused as error:
        return answer(error=f"Not sent: {error}")
    target, host_header = outbound.pinned_target(url, ip)
    deadline = outbound.Deadline(
        settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS + settings.WEBHOOK_READ_TIMEOUT_SECONDS
    )
    session = outbound.pinned_session(url, deadline)
    late = "The receiver did not finish answering in time."
    try:
        response = session.post(
            target,
            data=body,
            headers={**headers, "Host": host_header},
            timeout=(
                settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS,
                settings.WEBHOOK_READ_TIMEOUT_SECONDS,
            ),
            allow_redirects=False,
            stream=True,
            verify=settings.WEBHOOK_CA_BUNDLE or True,
        )
    except requests.Timeout:
        deadline.cancel()
        session.close()
        return answer(error="The receiver did not answer in time.")
    except requests.RequestException as error:
        deadline.cancel()
        session.close()
        if deadline.expired:
            return answer(error=late)
        if isinstance(error, requests.ConnectionError):
            return answer(error=f"Could not connect: {_reason(error)}")
        return answer(error=f"The request failed: {_reason(error)}")
    try:
        received = bytearray()
        for chunk in response.iter_content(8192):
            received += chunk
            if len(received) >= settings.WEBHOOK_MAX_RESPONSE_BYTES:
                break
    except requests.RequestException as error:
        if deadline.expired:
            return answer(error=late)
        return answer(response.status_code, error=f"The answer was cut off: {_reason(error)}")
    finally:
        deadline.cancel()
        response.close()
        session.close()
    if deadline.expired:
        # A connection shut mid-answer may read as an early end rather than an error; an
        # unfinished answer is no answer, whatever its status line said.
        return answer(error=late)
    text = bytes(received[:RESPONSE_KEPT_BYTES]).decode("utf-8", errors="replace")
    problem = ""
    if 300 <= response.status_code < 400:
        problem = "The receiver redirects; webhooks do not follow redirects."
    elif not 200 <= response.status_code < 300:
        problem = f"The receiver answered {response.status_code}."
    return answer(response.status_code, text, problem)


def _reason(error: Exception) -> str:
    # requests nests urllib3's reason inside its own; the innermost says what happened.
    reason = error.args[0] if error.args else error
    return str(getattr(reason, "reason", reason))[:500]
