# The app image: `scheduler` installed with pip from this repository, run as a non-root user.
# The organizer's folder (campaigns.yaml, statements/, templates/, lists/) is not baked in:
# mount it read-only at /app/project (docker-compose.yml does).
#
#   docker build -t campaign-scheduler .
#   docker run --rm -v "$PWD:/app/project:ro" campaign-scheduler scheduler validate
#   docker run -d -v "$PWD:/app/project:ro" -v scheduler-data:/app/data campaign-scheduler
#
# The default command is the embedded daemon (`scheduler run`: SQLite in /app/data/state, no
# Redis). docker-compose.yml runs the same image as `scheduler migrate`, `scheduler clock`,
# `scheduler worker` and `scheduler web`.
#
# No HEALTHCHECK here: one image plays several roles (a one-shot migration, the clock, Celery
# workers, the embedded daemon), and a check written for one would mark the others unhealthy.
# docker-compose.yml gives each role its own (the worker answers a Celery ping).

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, from pyproject.toml alone (with an empty package standing in), so that a
# change to the code does not reinstall them; then the package itself.
COPY pyproject.toml README.md /tmp/src/
RUN mkdir /tmp/src/scheduler \
 && touch /tmp/src/scheduler/__init__.py \
 && pip install /tmp/src \
 && pip uninstall -y campaign-scheduler
COPY scheduler /tmp/src/scheduler
RUN pip install --no-deps /tmp/src \
 && rm -rf /tmp/src \
 && scheduler --help > /dev/null

RUN groupadd --system --gid 10001 scheduler \
 && useradd --system --uid 10001 --gid scheduler --home-dir /app/data --no-create-home \
      --shell /usr/sbin/nologin scheduler \
 && mkdir -p /app/project /app/data \
 && chown scheduler:scheduler /app/data

# Relative paths the tool writes to (state/ for SQLite, outbox/ for `file:` SMTP URLs,
# preview/) land in /app/data, which is writable; the project folder stays read-only.
WORKDIR /app/data
ENV SCHEDULER_CONFIG=/app/project/campaigns.yaml

USER 10001:10001

CMD ["scheduler", "run"]
