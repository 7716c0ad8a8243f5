# One image for the web server, the control-plane worker and beat; built with
# EXTRAS=[evaluators-gpu] (and lm-eval) it is the GPU worker's image.
FROM python:3.11-slim
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app:/app/platform \
    DJANGO_SETTINGS_MODULE=config.settings.production

# bubblewrap: the GPU worker runs every evaluation under it (libseccomp2, for its system-call
# filter, is part of the base image).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap libseccomp2 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY apps ./apps
COPY worker ./worker
RUN pip install --no-cache-dir ".${EXTRAS}"
COPY . .

# Static files are collected into the image and served by WhiteNoise.
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=localhost DATABASE_URL=sqlite:////tmp/build.db \
    CELERY_BROKER_URL=memory:// STATIC_ROOT=/app/static python manage.py collectstatic --noinput

RUN useradd --create-home --uid 10001 node && mkdir -p /data/media && chown node /data/media
USER node
ENV STATIC_ROOT=/app/static MEDIA_ROOT=/data/media

EXPOSE 8000
CMD ["gunicorn", "--pythonpath", "platform", "--bind", "0.0.0.0:8000", "--workers", "3", "config.wsgi:application"]
