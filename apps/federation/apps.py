from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _node_key_on_first_start(**kwargs) -> None:
    """The node's first key is made when its database is set up, so it is committed before any
    request signs with it (a key made inside a request's transaction would be invisible to the
    peer fetching the well-known document while that request waits)."""
    from apps.federation.keys import node_key_ensure

    node_key_ensure()


class FederationConfig(AppConfig):
    name = "apps.federation"
    verbose_name = "Federation"

    def ready(self) -> None:
        from apps.federation import (  # noqa: F401
            remote_signals,  # announces grants, delivers the outcomes of peers' jobs
            schema,  # the API schema's peerSignature security scheme
            signals,  # records what the change feed must say
        )

        post_migrate.connect(_node_key_on_first_start, sender=self)
