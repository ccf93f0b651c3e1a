"""The test suite's name for moto's S3 server on a free loopback port (scripts/cluster_services.py, also the S3 of
`scripts/dev.py airflow --executor celery`): in memory, started and stopped by its PID.

    with MotoS3Server() as s3:
        s3.create_bucket("okta-runs")
        s3.connection  # {"conn_type": "aws", ..., "extra": {"endpoint_url": "http://127.0.0.1:<port>"}}

No real S3 installs on this machine; moto speaks S3's REST API (multipart uploads, listings, copies) well enough for
what s3fs asks of it.
"""

from scripts.cluster_services import MOTO_REGION as REGION, MotoS3Server  # noqa: F401
