# The ticket service: `tickets run` by default; `tickets migrate` and `tickets topics` are one-shot jobs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Every third-party package, pinned and checked against its hash (requirements.lock, made by
# scripts/lock from both pyproject.toml files); this layer changes only when the lock does.
COPY requirements.lock ./
RUN pip install --require-hashes --only-binary=:all: -r requirements.lock
# Our two packages on top, without resolving anything again: --no-deps, and the locked setuptools
# as build backend (--no-build-isolation) instead of whatever version an isolated build would fetch.
# No [embedded] extra: in containers PostgreSQL and Kafka are real servers.
COPY contracts/ contracts/
COPY pyproject.toml ./
COPY service/ service/
COPY migrations/ migrations/
RUN pip install --no-deps --no-build-isolation ./contracts . && pip check && rm -rf /src

RUN useradd --system --uid 10001 --no-create-home tickets
USER tickets
WORKDIR /home/tickets
EXPOSE 8080
CMD ["tickets", "run"]
