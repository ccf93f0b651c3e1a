"""The test suite's name for the throwaway PostgreSQL server (scripts/postgres_server.py, also the metadata DB of
`scripts/dev.py airflow --executor celery`)."""

from scripts.postgres_server import PostgresServer, find_bin_dir  # noqa: F401
