from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "apps.catalog"
    verbose_name = "Catalogue"

    def ready(self) -> None:
        from apps.catalog import signals

        signals.connect()
