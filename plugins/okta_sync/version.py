"""The package version and the User-Agent that names it."""

import platform

import requests

__version__ = "0.1.0"
USER_AGENT = f"okta-sync-airflow/{__version__} python-requests/{requests.__version__} python/{platform.python_version()}"
