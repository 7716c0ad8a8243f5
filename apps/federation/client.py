"""The one HTTP client for calls to other nodes.

A call goes only to an approved peer's pinned base URL (Peer.node_id), never follows a redirect
to another origin, is signed with this node's key (signatures.py), has connect and read timeouts
and a size limit, is retried on network failures, 502/503/504 and 429 with exponential back-off
and full jitter (never on another 4xx), and its answer must be signed by one of the peer's
pinned keys for the nonce of the request. A circuit breaker on the Peer row stops calls to a
peer that keeps failing: after FEDERATION_FAILURE_THRESHOLD failed calls it is unreachable and
only probed again (one call, no retries) at `next_probe_at`, an interval that doubles with every
further failure up to an hour; a call that gets an answer closes it.

The breaker is written in the caller's transaction: from a Celery task (the sync) it persists;
inside a request that is then refused it is rolled back with the rest of the request.
"""

import json as jsonlib
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.core import addresses, outbound
from apps.federation import httpsig, keys, signatures
from apps.federation.contract import WELL_KNOWN_PATH
from apps.federation.models import Peer

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({502, 503, 504})
# A Retry-After beyond this is not waited for in full: the call is given up sooner.
RETRY_AFTER_CAP_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0
MAX_PROBE_INTERVAL_SECONDS = 3600
MAX_REDIRECTS = 3
IDENTITY_MAX_BYTES = 1024**2
_CHUNK = 64 * 1024


class FederationError(Exception):
    """A call to another node failed; the message says why, for an operator."""


class PeerUnreachable(FederationError):
    """The peer did not answer (network, timeouts, 502/503/504, 429), or its breaker is open."""


class PeerRefused(FederationError):
    """The peer answered with an error."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status = status
        self.code = code
        self.message = message


class InvalidPeerAnswer(FederationError):
    """The peer answered, but not acceptably: unsigned, forged, too large, malformed, or a
    redirect elsewhere."""


class NotAPeer(FederationError):
    """This node does not call that address: not an approved peer's base URL."""


class _Retryable(Exception):
    def __init__(self, reason: str, *, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        # No proxies or .netrc credentials from the environment: nodes talk directly.
        session.trust_env = False
        session.headers.update(
            {
                "User-Agent": f"research-exchange ({settings.FEDERATION_NODE_URL})",
                "Accept": "application/json",
                # The signed digest covers the body as the peer rendered it.
                "Accept-Encoding": "identity",
            }
        )
        _local.session = session
    return session


def _timeouts() -> tuple[float, float]:
    return settings.FEDERATION_CONNECT_TIMEOUT_SECONDS, settings.FEDERATION_READ_TIMEOUT_SECONDS


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _read_bounded(response: requests.Response, *, max_bytes: int, what: str) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InvalidPeerAnswer(f"{what} announces {declared} bytes, more than {max_bytes}.")
    connect, read = _timeouts()
    # A peer dripping bytes would otherwise hold the call as long as it likes.
    deadline = time.monotonic() + connect + read
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise InvalidPeerAnswer(f"{what} is larger than {max_bytes} bytes; refused.")
            if time.monotonic() > deadline:
                raise _Retryable(f"{what} took longer than {connect + read:g} s to arrive")
            chunks.append(chunk)
    except requests.RequestException as error:
        raise _Retryable(f"{what} was cut off ({type(error).__name__})") from error
    return b"".join(chunks)


def _open(prepared: requests.PreparedRequest) -> requests.Response:
    try:
        return _session().send(prepared, stream=True, allow_redirects=False, timeout=_timeouts())
    except requests.Timeout as error:
        raise _Retryable(f"timed out ({type(error).__name__})") from error
    except requests.ConnectionError as error:
        raise _Retryable(f"could not connect ({type(error).__name__})") from error


def parse_valid_until(entry: Mapping[str, Any]) -> datetime | None:
    """A published key's `valid_until` (None: no end)."""
    text = entry.get("valid_until")
    if text is None:
        return None
    moment = parse_datetime(text) if isinstance(text, str) else None
    if moment is None or moment.tzinfo is None:
        raise ValueError(f"valid_until {text!r} is not a date and time with a time zone.")
    return moment


def _identity_problem(document: Any, node_id: str) -> str | None:
    if not isinstance(document, dict):
        return "it is not a JSON object"
    if not isinstance(document.get("node_id"), str) or document["node_id"].rstrip("/") != node_id:
        return f"its node_id {document.get('node_id')!r} is not {node_id}"
    entries = document.get("keys")
    if not isinstance(entries, list) or not 1 <= len(entries) <= 20:
        return "it must list 1 to 20 keys"
    for entry in entries:
        if not isinstance(entry, dict):
            return "a key is not an object"
        key_id = entry.get("key_id")
        if not isinstance(key_id, str) or not 1 <= len(key_id) <= 64 or "#" in key_id:
            return f"key id {key_id!r} is not 1 to 64 characters without '#'"
        if entry.get("algorithm") != "ed25519":
            return f"key {key_id} is not ed25519"
        if entry.get("status") not in ("active", "retiring"):
            return f"key {key_id} has status {entry.get('status')!r}"
        try:
            keys.public_key_from_text(str(entry.get("public_key", "")))
            parse_valid_until(entry)
        except ValueError as error:
            return f"key {key_id}: {error}"
    return None


def _checked_address(node_id: str) -> addresses.IPAddress:
    """The address a call to a node that is not yet a peer goes to. Anyone may ask to peer,
    naming any address: unless this node is set to federate on a private network
    (FEDERATION_ALLOW_PRIVATE_ADDRESSES), a name that resolves to a loopback, private,
    link-local or reserved address is never called. The name is resolved once and the call
    goes to the address checked, so a name that resolves elsewhere a moment later (DNS
    rebinding) reaches nothing else."""
    allow_private = settings.FEDERATION_ALLOW_PRIVATE_ADDRESSES
    parts = urlsplit(node_id)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise NotAPeer(f"{node_id!r} names a port that is not a number from 1 to 65535.") from error
    try:
        return addresses.public_addresses(parts.hostname or "", port, allow_private=allow_private)[
            0
        ]
    except addresses.AddressRefused as error:
        if allow_private:
            raise PeerUnreachable(f"{node_id}: {error}") from error
        raise NotAPeer(str(error)) from error


def fetch_identity(base_url: str) -> dict[str, Any]:
    """A node's well-known document (unsigned GET, one attempt, no redirects, over by the
    connect and read time-outs together), checked: its node_id must be the base URL asked for
    and its keys well formed."""
    node_id = base_url.rstrip("/")
    if urlsplit(node_id).scheme not in ("http", "https") or not urlsplit(node_id).netloc:
        raise NotAPeer(f"{base_url!r} is not a node's base URL (http or https).")
    ip = _checked_address(node_id)
    url = node_id + WELL_KNOWN_PATH
    target, host = outbound.pinned_target(url, ip)
    connect, read = _timeouts()
    deadline = outbound.Deadline(connect + read)
    session = outbound.pinned_session(url, deadline)
    session.headers.update(_session().headers)
    what = f"The identity document of {node_id}"
    try:
        try:
            response = session.get(
                target,
                headers={"Host": host},
                stream=True,
                allow_redirects=False,
                timeout=(connect, read),
            )
        except requests.Timeout as error:
            raise _Retryable(f"timed out ({type(error).__name__})") from error
        except requests.ConnectionError as error:
            raise _Retryable(f"could not connect ({type(error).__name__})") from error
        try:
            if 300 <= response.status_code < 400:
                raise InvalidPeerAnswer(f"{url} redirects; a node's identity is at its base URL.")
            if response.status_code != 200:
                raise PeerRefused(
                    response.status_code, "identity_unavailable", f"{url} answered an error"
                )
            body = _read_bounded(
                response,
                max_bytes=min(IDENTITY_MAX_BYTES, settings.FEDERATION_MAX_RESPONSE_BYTES),
                what=what,
            )
        finally:
            response.close()
        if deadline.expired:
            raise _Retryable(f"{what} took longer than {connect + read:g} s to arrive")
    except _Retryable as error:
        raise PeerUnreachable(f"{url}: {error}") from error
    finally:
        deadline.cancel()
        session.close()
    try:
        document = jsonlib.loads(body)
    except ValueError as error:
        raise InvalidPeerAnswer(f"{what} is not JSON.") from error
    problem = _identity_problem(document, node_id)
    if problem:
        raise InvalidPeerAnswer(f"{what} is not valid: {problem}.")
    return document


def _backoff(attempt: int) -> float:
    ceiling = min(MAX_BACKOFF_SECONDS, settings.FEDERATION_BACKOFF_SECONDS * 2**attempt)
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security


def _retry_after(response: requests.Response, attempt: int) -> float:
    value = response.headers.get("Retry-After", "")
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP_SECONDS)
    return _backoff(attempt)


def _probe_interval(failures: int) -> timedelta:
    excess = max(0, failures - settings.FEDERATION_FAILURE_THRESHOLD)
    seconds = settings.FEDERATION_PROBE_INTERVAL_SECONDS * 2 ** min(excess, 20)
    return timedelta(seconds=min(seconds, MAX_PROBE_INTERVAL_SECONDS))


def _breaker_admit(peer: Peer) -> bool:
    """Raises PeerUnreachable while the peer's breaker is open; True when this call is the one
    probe allowed once next_probe_at has passed (it claims the probe for itself)."""
    now = timezone.now()
    row = Peer.objects.filter(pk=peer.pk).values("unreachable_since", "next_probe_at").first()
    if row is None or row["unreachable_since"] is None:
        return False
    due = row["next_probe_at"]
    if due is not None and due > now:
        raise PeerUnreachable(
            f"{peer.node_id} is unreachable since {row['unreachable_since']:%Y-%m-%d %H:%M} UTC; "
            f"next try at {due:%H:%M:%S} UTC."
        )
    # Concurrent callers race for the probe: only the one whose update matches wins.
    claimed = Peer.objects.filter(pk=peer.pk, next_probe_at=due).update(
        next_probe_at=now + timedelta(seconds=settings.FEDERATION_PROBE_INTERVAL_SECONDS)
    )
    if not claimed:
        raise PeerUnreachable(f"{peer.node_id} is unreachable; another call is probing it.")
    return True


def _breaker_failure(peer: Peer, error: Exception) -> None:
    with transaction.atomic():
        row = Peer.objects.select_for_update().filter(pk=peer.pk).first()
        if row is None:
            return
        row.consecutive_failures += 1
        if row.consecutive_failures >= settings.FEDERATION_FAILURE_THRESHOLD:
            now = timezone.now()
            if row.unreachable_since is None:
                logger.warning("%s is now unreachable: %s", peer.node_id, error)
                row.unreachable_since = now
            row.next_probe_at = now + _probe_interval(row.consecutive_failures)
        row.save(update_fields=["consecutive_failures", "unreachable_since", "next_probe_at"])
    peer.consecutive_failures = row.consecutive_failures
    peer.unreachable_since, peer.next_probe_at = row.unreachable_since, row.next_probe_at


def _breaker_success(peer: Peer) -> None:
    closed = Peer.objects.filter(pk=peer.pk).exclude(
        consecutive_failures=0, unreachable_since=None, next_probe_at=None
    )
    if closed.update(consecutive_failures=0, unreachable_since=None, next_probe_at=None):
        logger.info("%s answers again.", peer.node_id)
    peer.consecutive_failures, peer.unreachable_since, peer.next_probe_at = 0, None, None


def _peer_url(peer: Peer, target: str, *, allow_unapproved: bool) -> str:
    if not allow_unapproved and peer.state != Peer.State.APPROVED:
        raise NotAPeer(f"{peer.node_id} is not an approved peer ({peer.state}); not called.")
    url = peer.node_id + target if target.startswith("/") else target
    base_path = urlsplit(peer.node_id).path.rstrip("/")
    if _origin(url) != _origin(peer.node_id) or not urlsplit(url).path.startswith(base_path):
        raise NotAPeer(f"{url} is not under the base URL of {peer.node_id}; not called.")
    return url


@dataclass
class _Exchange:
    response: requests.Response
    nonce: str
    url: str


def _exchange(
    peer: Peer, method: str, url: str, *, json: Any, params: Mapping[str, Any] | None, probe: bool
) -> _Exchange:
    """Sends a signed request, retrying what may be retried; the answer is open (unread)."""
    attempts = 1 if probe else 1 + settings.FEDERATION_RETRIES
    redirects = 0
    attempt = 0
    last_problem = ""
    while attempt < attempts:
        request = requests.Request(method, url, json=json, params=params)
        prepared = _session().prepare_request(request)
        nonce = signatures.sign_outbound(prepared)
        wait: float
        try:
            response = _open(prepared)
        except _Retryable as problem:
            last_problem, wait = str(problem), _backoff(attempt)
        else:
            status = response.status_code
            if status in (301, 302, 303, 307, 308):
                response.close()
                location = urljoin(prepared.url or url, response.headers.get("Location", ""))
                if _origin(location) != _origin(peer.node_id):
                    raise InvalidPeerAnswer(
                        f"{peer.node_id} redirected {method} {url} to another origin "
                        f"({location}); not followed."
                    )
                if method != "GET" or redirects >= MAX_REDIRECTS:
                    raise InvalidPeerAnswer(f"{peer.node_id} redirected {method} {url}; refused.")
                redirects += 1
                url, params = location, None
                continue
            if status not in RETRYABLE_STATUSES and status != 429:
                return _Exchange(response=response, nonce=nonce, url=url)
            response.close()
            last_problem = f"answered {status}"
            wait = _retry_after(response, attempt) if status == 429 else _backoff(attempt)
        attempt += 1
        if attempt < attempts:
            time.sleep(wait)
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    raise PeerUnreachable(f"{peer.node_id}: {method} {url} failed after {tries}: {last_problem}.")


def _refusal(peer: Peer, response: requests.Response, body: bytes) -> PeerRefused:
    code, message = f"http_{response.status_code}", f"{peer.node_id} refused the call"
    try:
        error = jsonlib.loads(body).get("error", {})
        code = str(error.get("code") or code)[:100]
        message = f"{peer.node_id} refused the call: {str(error.get('message', ''))[:500]}"
    except (ValueError, AttributeError):
        pass
    return PeerRefused(response.status_code, code, message)


def _verify_answer(peer: Peer, exchange: _Exchange, body: bytes) -> None:
    response = exchange.response
    for retry in (False, True):
        try:
            httpsig.verify_response(
                status=response.status_code,
                headers=response.headers,
                body=body,
                node_id=peer.node_id,
                public_keys=signatures.pinned_keys(peer),
                request_nonce=exchange.nonce,
            )
            return
        except httpsig.BadSignature as refusal:
            # A key we have not pinned yet: the peer may have rotated; look once.
            if (
                refusal.code == "unknown_key"
                and not retry
                and refusal.key_id
                and signatures.peer_keys_refresh(peer=peer)
            ):
                continue
            raise InvalidPeerAnswer(
                f"{peer.node_id} sent an answer that is not acceptably signed "
                f"({refusal.code}: {refusal.message})"
            ) from refusal


def _guarded(peer: Peer, call: Any) -> Any:
    """Runs `call(probe)` behind the peer's circuit breaker."""
    probe = _breaker_admit(peer)
    try:
        result = call(probe)
    except PeerRefused as refusal:
        if refusal.status >= 500:
            _breaker_failure(peer, refusal)
        else:
            _breaker_success(peer)
        raise
    except (PeerUnreachable, InvalidPeerAnswer) as error:
        _breaker_failure(peer, error)
        raise
    _breaker_success(peer)
    return result


def _refuse_constant(name: str) -> float:
    """NaN and Infinity are not JSON, and PostgreSQL's jsonb refuses them."""
    raise ValueError(f"{name} is not a JSON number.")


def peer_call(
    peer: Peer,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
    allow_unapproved: bool = False,
) -> Any:
    """A signed call to a peer; returns its signed JSON answer (None for an empty body).
    `allow_unapproved` is for the peering messages themselves (asking, telling a state)."""
    url = _peer_url(peer, path, allow_unapproved=allow_unapproved)

    def call(probe: bool) -> Any:
        exchange = _exchange(peer, method.upper(), url, json=json, params=params, probe=probe)
        response = exchange.response
        try:
            try:
                body = _read_bounded(
                    response,
                    max_bytes=settings.FEDERATION_MAX_RESPONSE_BYTES,
                    what=f"The answer of {peer.node_id} to {method} {path}",
                )
            except _Retryable as error:
                raise PeerUnreachable(f"{peer.node_id}: {error}.") from error
        finally:
            response.close()
        if response.status_code >= 400:
            raise _refusal(peer, response, body)
        _verify_answer(peer, exchange, body)
        if not body:
            return None
        try:
            return jsonlib.loads(body, parse_constant=_refuse_constant)
        except ValueError as error:
            raise InvalidPeerAnswer(
                f"{peer.node_id} answered {path} with no JSON ({error})."
            ) from error

    return _guarded(peer, call)


def peer_ping(peer: Peer) -> dict[str, Any]:
    """Checks a peering end to end: a signed call, answered signed by the peer."""
    answer = peer_call(peer, "GET", "/federation/v1/ping")
    if not isinstance(answer, dict) or answer.get("peer") != settings.FEDERATION_NODE_URL:
        raise InvalidPeerAnswer(f"{peer.node_id} answered the ping with {answer!r}.")
    return answer


def peer_download(peer: Peer, url: str, *, max_bytes: int) -> Iterator[bytes]:
    """Streams a file from an approved peer (signed request, same timeouts, breaker, retries
    before the first byte). The answer is not signed: the caller checks the bytes against the
    sha256 it expects. More than `max_bytes` is refused."""
    target = _peer_url(peer, url, allow_unapproved=False)

    def call(probe: bool) -> requests.Response:
        exchange = _exchange(peer, "GET", target, json=None, params=None, probe=probe)
        if exchange.response.status_code >= 400:
            try:
                body = _read_bounded(exchange.response, max_bytes=64 * 1024, what="An error")
            except _Retryable:
                body = b""
            finally:
                exchange.response.close()
            raise _refusal(peer, exchange.response, body)
        return exchange.response

    response = _guarded(peer, call)
    size = 0
    try:
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise InvalidPeerAnswer(f"{url} is larger than {max_bytes} bytes; refused.")
            yield chunk
    except requests.RequestException as error:
        _breaker_failure(peer, error)
        raise PeerUnreachable(f"{url} was cut off ({type(error).__name__}).") from error
    finally:
        response.close()
