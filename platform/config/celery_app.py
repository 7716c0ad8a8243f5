"""The control-plane Celery app: runs inside Django (dispatcher, reconciler, housekeeping).

Start it with `celery -A config worker` / `celery -A config beat` from the repository root with
`platform/` on PYTHONPATH. GPU hosts run the Django-free `worker/` package instead.
"""

import os
import sys
from pathlib import Path

PLATFORM_DIR = str(Path(__file__).resolve().parent.parent)
if PLATFORM_DIR not in sys.path:
    sys.path.insert(0, PLATFORM_DIR)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

from celery import Celery  # noqa: E402

app = Celery("research_exchange")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
