from django.apps import AppConfig


class FederationConfig(AppConfig):
    name = "apps.federation"
    verbose_name = "Federation"

    def ready(self) -> None:
        from apps.federation import signals  # noqa: F401  (records what the change feed must say)
