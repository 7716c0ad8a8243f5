from django.apps import AppConfig


class ComputeConfig(AppConfig):
    name = "apps.compute"
    verbose_name = "Compute pool"

    def ready(self) -> None:
        from apps.compute import schema  # noqa: F401 - registers the OpenAPI auth scheme
