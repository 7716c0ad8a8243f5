"""Results' signed attestations as the API and the portal offer them. The signing itself is the
federation app's (the node's key): it is reached through settings.RESULT_ATTESTATION, so this
app holds no federation logic."""

import logging
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils.module_loading import import_string

from apps.evaluations.models import Result

logger = logging.getLogger(__name__)

VERIFIER_COMMAND = "rx-verify-result"


def result_attestable(result: Result) -> bool:
    """Whether the result has an attestation to offer: one received with it, or (a result this
    node ran) one this node makes when first asked."""
    return result.attestation is not None or not (result.origin_node or result.ran_on_node)


def result_attestation_get(*, result: Result) -> dict[str, Any] | None:
    """The result's attestation (a DSSE envelope), signed now if this node ran it and has not
    signed it yet; None for a peer's result that came without one."""
    attestation = import_string(settings.RESULT_ATTESTATION)
    return attestation(result)


def result_attestation_ensure(*, result: Result) -> None:
    """Signs a result of this node that has no attestation yet (made before attestations, or
    its signing failed after it was stored), so its page can say so. A node that cannot sign
    now still shows the result; it is signed on its first download."""
    if result.attestation is not None or not result_attestable(result):
        return
    try:
        result_attestation_get(result=result)
    except Exception:
        logger.exception("Could not sign result %s.", result.pk)


def attestation_filename(result: Result) -> str:
    return f"result-{result.pk}.intoto.json"


def signer_node(result: Result) -> str:
    """The node whose key signs the result's attestation: the one that ran it."""
    return result.ran_on_node or result.origin_node or settings.FEDERATION_NODE_URL


def verify_command(result: Result) -> str:
    """One line that fetches the signing node's public keys and verifies the downloaded
    attestation offline (the standalone verifier, apps/federation/verifier.py)."""
    well_known = signer_node(result).rstrip("/") + reverse("well-known")
    return (
        f"curl -sSf {well_known} -o node.json && "
        f"{VERIFIER_COMMAND} {attestation_filename(result)} node.json"
    )
