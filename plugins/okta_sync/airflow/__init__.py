"""The Airflow layer, and the only place that imports Airflow: hook, operators, connection, provider, journals."""
