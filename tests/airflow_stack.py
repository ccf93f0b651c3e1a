"""The test suite's name for the shared Airflow deployment helper (scripts/airflow_stack.py, also used by
`scripts/dev.py airflow`)."""

from scripts.airflow_stack import (  # noqa: F401
    AIRFLOW_BIN,
    COMPONENTS,
    AirflowStack,
    AirflowStackError,
    DagRunResult,
    marked_processes,
)
