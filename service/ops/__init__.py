"""Operator tooling behind ``tickets dlq``, ``tickets outbox`` and ``tickets events``.

Each tool reads the broker and the database with the service's own settings (``TICKETS_*``) and
through :mod:`service.ops.kafka`, the one place that turns settings into Kafka client options.
"""
