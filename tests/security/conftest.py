"""The attacks of issue 8 against the running service: the e2e session's service, broker and database."""

from tests.e2e.conftest import client, e2e_settings, output, service, spans  # noqa: F401
