"""RFC 9421 HTTP Message Signatures as the node-to-node protocol uses them, with no database:
signing a request or an answer, reading and checking a signature. signatures.py adds the keys
of peers, the nonces seen and the DRF authentication; tests and the benchmark use these directly.

A signature is labelled contract.SIGNATURE_LABEL, names its key `<node id>#<key id>` (the node id
is the signer's base URL), covers contract.REQUEST_COMPONENTS (an answer:
contract.RESPONSE_COMPONENTS) with `created`, `expires` (created + 5 min) and, on a request, a
`nonce`, and the body through its Content-Digest (RFC 9530, sha-256, also for an empty body).
"""

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.utils import timezone
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)
from http_sf.compat import Dictionary, InnerList

from apps.federation.contract import REQUEST_COMPONENTS, RESPONSE_COMPONENTS, SIGNATURE_LABEL

EXPIRES_AFTER = timedelta(minutes=5)
NONCE_HEADER = "X-Request-Nonce"
_NONCE_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]{8,128}")


class BadSignature(Exception):
    """A signature that is missing, malformed, forged, stale, replayed or made with a key this
    node does not accept. `code` is the API error code."""

    def __init__(self, code: str, message: str, *, node_id: str = "", key_id: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.node_id = node_id
        self.key_id = key_id


@dataclass(frozen=True)
class SignatureParams:
    """What a signature claims, before it is checked."""

    label: str
    keyid: str
    node_id: str
    key_id: str
    created: int
    expires: int | None
    nonce: str | None
    alg: str | None
    components: tuple[str, ...]


@dataclass
class RequestMessage:
    """A request as the signing library reads it: method, absolute URL, headers."""

    headers: Any
    method: str | None = None
    url: str | None = None


@dataclass
class AnswerMessage:
    """An answer as the signing library reads it: status, headers."""

    status_code: int
    headers: Any


def _timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def split_keyid(keyid: str) -> tuple[str, str]:
    """`<node id>#<key id>` → (node id, key id)."""
    node_id, hash_sign, key_id = keyid.rpartition("#")
    if not hash_sign or not node_id or not key_id:
        raise BadSignature(
            "unknown_key", f"The key id {keyid!r} is not of the form '<node URL>#<key id>'."
        )
    return node_id, key_id


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def sign_message(
    message: Any,
    *,
    private_key: Ed25519PrivateKey,
    keyid: str,
    body: bytes,
    components: tuple[str, ...] = REQUEST_COMPONENTS,
    created: datetime | None = None,
    nonce: str | None = None,
    label: str = SIGNATURE_LABEL,
) -> None:
    """Signs a message in place: anything with `headers` (a mutable, case-insensitive mapping)
    and either `method` + `url` (a request, e.g. requests.PreparedRequest) or `status_code`."""
    created = created or datetime.now(UTC)
    if "Content-Digest" in message.headers:
        del message.headers["Content-Digest"]
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={keyid: private_key}),
    )
    signer.sign(
        message,
        key_id=keyid,
        created=created,
        expires=created + EXPIRES_AFTER,
        nonce=nonce,
        label=label,
        covered_component_ids=components,
        body=body,
    )


def signed_request_headers(
    *,
    method: str,
    url: str,
    body: bytes = b"",
    private_key: Ed25519PrivateKey,
    keyid: str,
    created: datetime | None = None,
    nonce: str | None = None,
    components: tuple[str, ...] = REQUEST_COMPONENTS,
) -> dict[str, str]:
    """The headers that sign a request (Content-Digest, Signature-Input, Signature): for
    callers that build the request themselves (tests, the benchmark)."""
    headers: requests.structures.CaseInsensitiveDict = requests.structures.CaseInsensitiveDict()
    message = RequestMessage(headers=headers, method=method, url=url)
    sign_message(
        message,
        private_key=private_key,
        keyid=keyid,
        body=body,
        components=components,
        created=created,
        nonce=nonce or new_nonce(),
    )
    return dict(message.headers)


def read_signature(headers: Mapping[str, str], *, label: str = SIGNATURE_LABEL) -> SignatureParams:
    """The parameters of the signature labelled `label`, unchecked."""
    signature_input, signature = headers.get("Signature-Input"), headers.get("Signature")
    if not signature_input or not signature:
        raise BadSignature("signature_missing", "The message is not signed (no Signature header).")
    try:
        inputs, values = Dictionary(), Dictionary()
        inputs.parse(signature_input.encode())
        values.parse(signature.encode())
    except (ValueError, UnicodeError) as error:
        raise BadSignature("bad_signature", "Malformed Signature-Input or Signature.") from error
    if label not in inputs or label not in values:
        raise BadSignature(
            "signature_missing", f"The message carries no signature labelled {label!r}."
        )
    member = inputs[label]
    if not isinstance(member, InnerList):
        raise BadSignature("bad_signature", f"Signature-Input {label!r} is not a list.")
    params = dict(member.params)
    keyid, created = params.get("keyid"), params.get("created")
    if not isinstance(keyid, str):
        raise BadSignature("bad_signature", "The signature names no key (keyid).")
    node_id, key_id = split_keyid(keyid)
    expires, nonce, alg = params.get("expires"), params.get("nonce"), params.get("alg")
    if type(created) is not int or (expires is not None and type(expires) is not int):
        raise BadSignature(
            "bad_signature",
            "The signature's created and expires must be integers.",
            node_id=node_id,
            key_id=key_id,
        )
    return SignatureParams(
        label=label,
        keyid=keyid,
        node_id=node_id,
        key_id=key_id,
        created=created,
        expires=expires,
        nonce=nonce if isinstance(nonce, str) else None,
        alg=alg if isinstance(alg, str) else None,
        components=tuple(str(item.value) for item in member if not item.params),
    )


def check_params(
    params: SignatureParams,
    *,
    required: tuple[str, ...],
    needs_nonce: bool = True,
    now: datetime | None = None,
) -> None:
    """Coverage, algorithm and freshness of a signature, before any key is looked up. (An
    answer needs no nonce of its own: it covers its request's.)"""
    who = {"node_id": params.node_id, "key_id": params.key_id}
    if params.alg is not None and params.alg != algorithms.ED25519.algorithm_id:
        raise BadSignature("bad_signature", f"Unsupported algorithm {params.alg!r}.", **who)
    missing = [name for name in required if name not in params.components]
    if missing:
        raise BadSignature(
            "bad_signature", f"The signature does not cover {', '.join(missing)}.", **who
        )
    if params.expires is None:
        raise BadSignature("bad_signature", "The signature carries no expires.", **who)
    if needs_nonce and params.nonce is None:
        raise BadSignature("bad_signature", "The signature carries no nonce.", **who)
    if params.nonce is not None and not _NONCE_PATTERN.fullmatch(params.nonce):
        raise BadSignature("bad_signature", "The nonce must be 8 to 128 token characters.", **who)
    current = _timestamp(now or timezone.now())
    window = settings.FEDERATION_SIGNATURE_WINDOW_SECONDS
    if params.created < current - window:
        raise BadSignature(
            "signature_expired",
            f"The signature was made {current - params.created} s ago (at most {window} s).",
            **who,
        )
    if params.created > current + window:
        raise BadSignature(
            "signature_from_future",
            f"The signature was made {params.created - current} s in the future; check the "
            "signer's clock.",
            **who,
        )
    if params.expires < current:
        raise BadSignature(
            "signature_expired", f"The signature expired {current - params.expires} s ago.", **who
        )


def _only_label(headers: Mapping[str, str], label: str) -> dict[str, str]:
    """The headers with only the chosen signature left: the library verifies every signature
    it finds, and another party's signature beside ours is none of our business."""
    kept = {name: value for name, value in headers.items()}
    for name in ("Signature-Input", "Signature"):
        original = next(key for key in kept if key.lower() == name.lower())
        parsed = Dictionary()
        parsed.parse(kept.pop(original).encode())
        kept[name] = str(Dictionary({label: parsed[label]}))
    return kept


def verify_message(
    message: Any,
    *,
    params: SignatureParams,
    public_key: Ed25519PublicKey,
    body: bytes,
    required: tuple[str, ...],
) -> None:
    """Checks the signature `params` describes (read_signature, check_params) with the key, then
    the body against the signed Content-Digest."""
    who = {"node_id": params.node_id, "key_id": params.key_id}
    message.headers = _only_label(message.headers, params.label)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={params.keyid: public_key}, private_keys={}),
    )
    # Freshness was checked by check_params, with this node's window.
    verifier.max_clock_skew = timedelta(seconds=settings.FEDERATION_SIGNATURE_WINDOW_SECONDS)
    try:
        results = verifier.verify(
            message, max_age=None, expect_tag=None, require_components=required
        )
    except (InvalidSignature, HTTPMessageSignaturesException) as error:
        raise BadSignature(
            "bad_signature",
            f"The signature does not verify ({error or 'not made by this key over this request'}).",
            **who,
        ) from error
    digest = results[0].covered_components.get('"content-digest"')
    if digest is None:
        raise BadSignature("bad_signature", "The signature does not cover content-digest.", **who)
    try:
        ContentDigest.verify(digest, body)
    except (InvalidSignature, HTTPMessageSignaturesException) as error:
        raise BadSignature(
            "digest_mismatch", f"The body is not the one that was signed ({error}).", **who
        ) from error


def verify_response(
    *,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    node_id: str,
    public_keys: Mapping[str, Ed25519PublicKey],
    request_nonce: str,
) -> str:
    """Checks a peer's signed answer to our request (nonce `request_nonce`) with its keys (by
    key id); returns the key id that signed it. Raises BadSignature."""
    params = read_signature(headers)
    if params.node_id != node_id:
        raise BadSignature(
            "unknown_key", f"The answer is signed by {params.node_id}, not {node_id}."
        )
    check_params(params, required=RESPONSE_COMPONENTS, needs_nonce=False)
    public_key = public_keys.get(params.key_id)
    if public_key is None:
        raise BadSignature(
            "unknown_key",
            f"{node_id} signed with {params.key_id}, a key not pinned for it.",
            node_id=node_id,
            key_id=params.key_id,
        )
    answer = AnswerMessage(status_code=status, headers=dict(headers.items()))
    verify_message(
        answer, params=params, public_key=public_key, body=body, required=RESPONSE_COMPONENTS
    )
    echoed = next((v for k, v in headers.items() if k.lower() == NONCE_HEADER.lower()), None)
    if echoed != request_nonce:
        raise BadSignature(
            "nonce_mismatch",
            "The answer is signed for another request (X-Request-Nonce).",
            node_id=node_id,
            key_id=params.key_id,
        )
    return params.key_id
