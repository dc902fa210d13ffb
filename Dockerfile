# flexmit: one image for every role (api, worker, beat, flower, migrate, sandbox);
# docker-compose.yml picks the role by its command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLEXMIT_LOG_FORMAT=json

# Install from a build folder, not the working directory: the service runs from site-packages
# and /app stays a small writable folder (beat's schedule file) owned by the service user.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY tasks ./tasks
# Runtime dependencies only: no [dev] extras in the image.
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin flexmit \
    && mkdir /app && chown flexmit:flexmit /app \
    && rm -rf /src

WORKDIR /app
USER flexmit
EXPOSE 8000 8099 5555
CMD ["flexmit", "api", "--host", "0.0.0.0", "--port", "8000"]
