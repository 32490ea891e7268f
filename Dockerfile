# The CPMS image: one image for every process of the stack (web = daphne, worker, beat, migrate).
FROM python:3.11-slim

# The processes run from /app (PYTHONPATH), so the settings find templates/, static/ and var/ there.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=cpms.settings

WORKDIR /app

# WeasyPrint (invoice and statement PDFs) needs Pango and a font.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 cpms \
    && useradd --system --uid 10001 --gid cpms --home-dir /app --shell /usr/sbin/nologin cpms

COPY . /app
RUN pip install . \
    && python manage.py collectstatic --noinput \
    && chown -R cpms:cpms /app/var

USER cpms
EXPOSE 8000

# Overridden per service in docker-compose.yml (worker, beat, migrate).
CMD ["python", "-m", "cpms.serve", "--host", "0.0.0.0", "--port", "8000"]
