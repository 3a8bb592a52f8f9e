# The ticket service: `tickets run` by default; `tickets migrate` and `tickets topics` are one-shot jobs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Contracts first: they change less often than the service, so this layer stays cached.
COPY contracts/ contracts/
RUN pip install "./contracts[client]"
COPY pyproject.toml ./
COPY service/ service/
COPY migrations/ migrations/
# No [embedded] extra: in containers PostgreSQL and Kafka are real servers.
RUN pip install . && rm -rf /src

RUN useradd --system --uid 10001 --no-create-home tickets
USER tickets
WORKDIR /home/tickets
EXPOSE 8080
CMD ["tickets", "run"]
