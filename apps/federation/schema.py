"""Describes node-to-node signatures in the OpenAPI schema (to be imported by
FederationConfig.ready, like apps/compute/schema.py)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PeerSignatureScheme(OpenApiAuthenticationExtension):
    target_class = "apps.federation.signatures.PeerSignatureAuthentication"
    name = "peerSignature"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "signature",
            "description": (
                "An HTTP Message Signature (RFC 9421, ed25519, label `rx`) made with a key of a "
                "peer node: keyid `<node URL>#<key id>`, covering @method, @target-uri, "
                "@authority and content-digest, with created, expires and a nonce. Answers are "
                "signed by this node (@status, content-digest, x-request-nonce)."
            ),
        }
