from django.db.models.signals import post_delete, post_save  # noqa: F401
