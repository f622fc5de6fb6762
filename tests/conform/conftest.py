"""The integration fixtures (real Redis and Postgres; fail with CI=true when missing)."""

from integration.conftest import namespace, real_stack, server_factory, user  # noqa: F401
