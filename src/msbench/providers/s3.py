"""The one S3 client every stack, the warp guard and the tests use to reach a store.

Path-style addressing (no store here has DNS names per bucket), retries for a store that is still
settling, and read timeouts long enough for a listing of a large bucket.
"""
from __future__ import annotations

import boto3
from botocore.config import Config as BotoConfig

from msbench.providers import S3Endpoint


def s3_client(store: S3Endpoint, region: str = "us-east-1", config: BotoConfig | None = None):
    """A boto3 S3 client for ``store``; ``config`` overrides the defaults (the conformance check
    asks for other checksum and payload-signing behaviour)."""
    base = BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                      connect_timeout=10, read_timeout=120)
    return boto3.client(
        "s3", endpoint_url=store.endpoint_url, aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key, region_name=region,
        config=base.merge(config) if config else base,
    )
