"""Describes node tokens in the OpenAPI schema (imported by ComputeConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class NodeTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.compute.authentication.NodeTokenAuthentication"
    name = "nodeToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A compute node's token (rxn_...), shown once when an institution admin adds "
                "the node. It opens the /worker/ endpoints only."
            ),
        }
