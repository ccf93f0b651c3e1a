"""Profile sync: normalise, diff, plan, changes feeds, push, reports, export (plain Python, no Airflow)."""
