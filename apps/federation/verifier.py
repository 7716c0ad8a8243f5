"""Checks a signed evaluation result offline, with nothing but the public key of the node that
ran it.

A node signs each result it runs as an in-toto Statement v1 (subjects: the model version's and
the benchmark dataset's files by sha256; predicate: metrics and provenance) in a DSSE envelope
with its Ed25519 key. This module is the contract of that attestation (its names and version)
and its verifier. It imports only the standard library and securesystemslib, so anyone can run
it without the platform:

    rx-verify-result result-12.intoto.json node.json
    python -m apps.federation.verifier result-12.intoto.json node.json

where node.json is the node's well-known document (saved from /.well-known/research-exchange)
or its public key (raw Ed25519 in base64url, or one entry of the document's `keys`). It prints
what was verified and exits 0, or prints why not and exits 1.
"""

import argparse
import base64
import binascii
import copy
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import FormatError, VerificationError
from securesystemslib.signer import Key, SSlibKey

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
# The predicate of an evaluation result; a change of its fields' meaning is a new version.
PREDICATE_TYPE = "https://research-exchange.org/attestations/evaluation-result/v1"
MODEL_SUBJECT = "model/"
DATASET_SUBJECT = "dataset/"

KEY_TYPE = "ed25519"


class AttestationInvalid(ValueError):
    """An envelope that does not verify. `code`: malformed, wrong_payload_type, unknown_key,
    bad_signature, not_a_statement, wrong_predicate or wrong_node."""

    def __init__(self, reason: str, code: str = "malformed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id_for(public_key: str) -> str:
    """The key id a node gives its raw base64url public key (as in its well-known document)."""
    return "ed25519-" + hashlib.sha256(b64url_decode(public_key)).hexdigest()[:16]


def sslib_key(key_id: str, public_key: str) -> SSlibKey:
    """A securesystemslib key from a node's raw Ed25519 public key in base64url."""
    try:
        raw = b64url_decode(public_key.strip())
    except (binascii.Error, ValueError, AttributeError) as error:
        raise AttestationInvalid(f"The key {key_id} is not base64url.", "unknown_key") from error
    if len(raw) != 32:
        raise AttestationInvalid(f"The key {key_id} is not a 32-byte Ed25519 key.", "unknown_key")
    return SSlibKey.from_dict(
        key_id, {"keytype": KEY_TYPE, "scheme": KEY_TYPE, "keyval": {"public": raw.hex()}}
    )


def envelope_parse(envelope: Any) -> Envelope:
    """The DSSE envelope of a JSON object; AttestationInvalid when it has not that shape."""
    if not isinstance(envelope, Mapping):
        raise AttestationInvalid("An attestation is a JSON object (a DSSE envelope).")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise AttestationInvalid("The envelope carries no signatures.")
    if not all(
        isinstance(item, Mapping)
        and isinstance(item.get("keyid"), str)
        and isinstance(item.get("sig"), str)
        for item in signatures
    ):
        raise AttestationInvalid("Each signature is an object with a string keyid and sig.")
    if not isinstance(envelope.get("payload"), str) or not isinstance(
        envelope.get("payloadType"), str
    ):
        raise AttestationInvalid("The envelope's payload and payloadType are strings.")
    try:
        # securesystemslib rewrites the signatures it reads: it gets a copy.
        return Envelope.from_dict(copy.deepcopy(dict(envelope)))
    except (AttributeError, KeyError, TypeError, ValueError, binascii.Error, FormatError) as error:
        raise AttestationInvalid(f"The envelope is malformed: {error!s}.") from error


def envelope_key_ids(envelope: Any) -> list[str]:
    """The key ids the envelope's signatures name (nothing is verified)."""
    return sorted(envelope_parse(envelope).signatures)


def _statement_from(payload: bytes) -> dict[str, Any]:
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as error:
        raise AttestationInvalid("The payload is not JSON.", "not_a_statement") from error
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise AttestationInvalid(
            f"The payload is not an in-toto Statement ({STATEMENT_TYPE}).", "not_a_statement"
        )
    if not isinstance(statement.get("subject"), list) or not isinstance(
        statement.get("predicateType"), str
    ):
        raise AttestationInvalid(
            "The statement has no subject list or predicate type.", "not_a_statement"
        )
    return statement


def statement_unverified(envelope: Any) -> dict[str, Any]:
    """The statement an envelope carries, not verified: only to learn which keys to verify it
    with (who claims to have signed it, and when)."""
    return _statement_from(envelope_parse(envelope).payload)


def verify_envelope(envelope: Mapping[str, Any], public_keys: Mapping[str, str]) -> dict[str, Any]:
    """Verifies a DSSE envelope around an in-toto Statement and returns the statement.

    `public_keys` maps key ids to raw Ed25519 public keys in base64url (as a node's well-known
    document, NodeKey and PeerKey give them); one valid signature by one of them is enough.
    Raises AttestationInvalid on a malformed envelope, another payload type, a signature by a
    key not given, a signature that does not verify, or a payload that is not a Statement."""
    parsed = envelope_parse(envelope)
    if parsed.payload_type != PAYLOAD_TYPE:
        raise AttestationInvalid(
            f"The payload type is {parsed.payload_type!r}, not {PAYLOAD_TYPE}.",
            "wrong_payload_type",
        )
    signed_by = sorted(parsed.signatures)
    given = [key_id for key_id in signed_by if key_id in public_keys]
    if not given:
        raise AttestationInvalid(
            f"It is signed by {', '.join(signed_by)}: none of the keys given.", "unknown_key"
        )
    keys: list[Key] = [sslib_key(key_id, public_keys[key_id]) for key_id in given]
    try:
        parsed.verify(keys, 1)
    except (VerificationError, ValueError) as error:
        raise AttestationInvalid(
            f"The signature by {', '.join(given)} does not verify: the attestation was "
            "changed after it was signed, or not signed with that key.",
            "bad_signature",
        ) from error
    return _statement_from(parsed.payload)


def same_node(first: str, second: str) -> bool:
    """Node ids are base URLs: their scheme and host compare without case."""
    a, b = urlsplit(first.strip()), urlsplit(second.strip())
    return (a.scheme.lower(), a.netloc.lower(), a.path.rstrip("/")) == (
        b.scheme.lower(),
        b.netloc.lower(),
        b.path.rstrip("/"),
    )


def result_predicate(statement: Mapping[str, Any]) -> dict[str, Any]:
    """The predicate of an evaluation result's statement; AttestationInvalid for another one."""
    predicate = statement.get("predicate")
    if statement.get("predicateType") != PREDICATE_TYPE or not isinstance(predicate, dict):
        raise AttestationInvalid(
            f"The statement is not an evaluation result ({PREDICATE_TYPE}).", "wrong_predicate"
        )
    if not isinstance(predicate.get("metrics"), dict):
        raise AttestationInvalid("The statement holds no metrics.", "wrong_predicate")
    return predicate


def predicate_node_id(predicate: Mapping[str, Any]) -> str:
    node = predicate.get("node")
    return str(node.get("id", "")) if isinstance(node, Mapping) else ""


def result_verify(
    envelope: Mapping[str, Any], public_keys: Mapping[str, str], *, node_id: str = ""
) -> dict[str, Any]:
    """Verifies an evaluation result's attestation with a node's keys and returns its
    statement. With `node_id` (the node whose keys they are), the statement must say that
    node ran the evaluation."""
    statement = verify_envelope(envelope, public_keys)
    predicate = result_predicate(statement)
    claimed = predicate_node_id(predicate)
    if node_id and not same_node(claimed, node_id):
        raise AttestationInvalid(
            f"It is signed with a key of {node_id}, but says {claimed or 'no node'} ran it.",
            "wrong_node",
        )
    return statement


def subject_digests(statement: Mapping[str, Any], prefix: str) -> set[str]:
    """The sha256 digests of the statement's subjects named `prefix`…"""
    digests = set()
    for subject in statement.get("subject", []):
        if not isinstance(subject, Mapping) or not str(subject.get("name", "")).startswith(prefix):
            continue
        digest = subject.get("digest")
        if isinstance(digest, Mapping) and isinstance(digest.get("sha256"), str):
            digests.add(digest["sha256"].lower())
    return digests


def keys_from_document(document: Any) -> tuple[str, dict[str, str]]:
    """(node id or "", {key id: public key}) of a node's well-known document, one entry of its
    `keys`, or a raw base64url public key."""
    if isinstance(document, str):
        text = document.strip()
        return "", {key_id_for(text): text}
    if isinstance(document, Mapping) and isinstance(document.get("keys"), list):
        found = {}
        for entry in document["keys"]:
            if not isinstance(entry, Mapping) or entry.get("algorithm", KEY_TYPE) != KEY_TYPE:
                continue
            if isinstance(entry.get("key_id"), str) and isinstance(entry.get("public_key"), str):
                found[entry["key_id"]] = entry["public_key"]
        if not found:
            raise AttestationInvalid("The node's document lists no Ed25519 key.", "unknown_key")
        node_id = document.get("node_id")
        return (node_id if isinstance(node_id, str) else ""), found
    if isinstance(document, Mapping) and isinstance(document.get("public_key"), str):
        public_key = document["public_key"]
        key_id = document.get("key_id")
        return "", {key_id if isinstance(key_id, str) else key_id_for(public_key): public_key}
    raise AttestationInvalid(
        "Give the node's well-known document, one of its keys, or its base64url public key.",
        "unknown_key",
    )


def keys_from_text(text: str) -> tuple[str, dict[str, str]]:
    """The keys of a key file's text: JSON (a document or a key entry) or a raw key."""
    stripped = text.strip()
    if stripped.startswith(("{", '"')):
        try:
            document = json.loads(stripped)
        except ValueError as error:
            raise AttestationInvalid("The key file is not valid JSON.", "unknown_key") from error
        return keys_from_document(document)
    return keys_from_document(stripped)


def _part(predicate: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = predicate.get(key)
    return value if isinstance(value, Mapping) else {}


def _named(record: Any) -> str:
    if not isinstance(record, Mapping):
        return "?"
    name = str(record.get("name", "?"))
    version = record.get("version")
    origin = record.get("origin")
    text = f"{name} {version}" if version else name
    if isinstance(origin, Mapping) and origin.get("node"):
        text += f" (from {origin['node']}, id {origin.get('id')})"
    return text


def describe(statement: Mapping[str, Any]) -> list[str]:
    """What a verified statement says, line by line."""
    predicate = result_predicate(statement)
    node, result, evaluator = (_part(predicate, key) for key in ("node", "result", "evaluator"))
    lines = [
        f"Result:    {result.get('url') or result.get('id', '?')}",
        f"Node:      {node.get('name', '?')} ({node.get('id', '?')})",
        f"Model:     {_named(predicate.get('model'))}",
        f"Benchmark: {_named(predicate.get('benchmark'))}",
        f"Evaluator: {evaluator.get('name', '?')} {evaluator.get('version') or ''}".rstrip(),
        f"Ran:       {predicate.get('started_at')} to {predicate.get('finished_at')}",
        f"Files:     {len(subject_digests(statement, MODEL_SUBJECT))} model, "
        f"{len(subject_digests(statement, DATASET_SUBJECT))} dataset (sha256 in the statement)",
        "Metrics:",
    ]
    lines += [f"  {name}: {value}" for name, value in sorted(predicate["metrics"].items())]
    return lines


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rx-verify-result",
        description="Verify a signed evaluation result of a research-exchange node offline.",
    )
    parser.add_argument("attestation", help="the result's attestation (result-<id>.intoto.json)")
    parser.add_argument(
        "keys",
        help="the node's well-known document saved as JSON (/.well-known/research-exchange), "
        "or its public key: raw Ed25519 in base64url, or one entry of the document's keys",
    )
    arguments = parser.parse_args(argv)
    try:
        envelope = json.loads(_read(arguments.attestation))
        node_id, public_keys = keys_from_text(_read(arguments.keys))
        statement = result_verify(envelope, public_keys, node_id=node_id)
    except OSError as error:
        print(f"NOT VERIFIED: cannot read {error.filename}: {error.strerror}.", file=sys.stderr)
        return 1
    except AttestationInvalid as error:
        print(f"NOT VERIFIED: {error.reason}", file=sys.stderr)
        return 1
    except ValueError:
        print("NOT VERIFIED: the attestation is not valid JSON.", file=sys.stderr)
        return 1
    print("VERIFIED: signed by the node that ran the evaluation.")
    for line in describe(statement):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
