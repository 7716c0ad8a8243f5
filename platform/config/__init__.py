# Importing the Celery app here makes `.delay()` from Django code use the configured broker
# instead of Celery's built-in AMQP default.
from config.celery_app import app as celery_app

__all__ = ["celery_app"]
