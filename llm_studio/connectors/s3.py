"""AWS S3 (or an S3-compatible store): one object, fetched with boto3.

With an access key and secret the request is signed; with neither it is sent unsigned, which
works for public buckets/objects. The endpoint comes from the `endpoint_url` param, else the
`AWS_ENDPOINT_URL` environment variable, else AWS itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_studio.connectors.base import (
    Connector,
    ConnectorError,
    Param,
    human_size,
    safe_file_name,
    text_param,
    unique_path,
    write_stream,
)

# AWS bucket names; dots and underscores are accepted for older buckets and other stores.
BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


def parse_location(bucket: str, key: str) -> tuple[str, str]:
    """`bucket` may carry a folder ("name/some/dir", "s3://name/dir"); `key` is the file
    inside it. Returns (bucket, full object key)."""
    text = bucket.strip()
    if text.lower().startswith("s3://"):
        text = text[5:]
    text = text.strip("/")
    name, _, prefix = text.partition("/")
    if not BUCKET_RE.match(name):
        raise ConnectorError(f"S3: {bucket!r} is not a valid bucket name")
    key = key.strip().lstrip("/")
    if not key:
        raise ConnectorError("S3: the file name is required")
    if key.endswith("/"):
        raise ConnectorError(f"S3: {key!r} names a folder; give the file inside it")
    full = f"{prefix}/{key}" if prefix else key
    if any(ord(c) < 32 for c in full):
        raise ConnectorError("S3: the file name holds control characters")
    return name, full


@dataclass(frozen=True)
class _ObjectRequest:
    """One object to fetch, with the checked connection params."""

    bucket: str
    key: str
    file_name: str  # what the download is saved as
    access_key: str  # empty (with the secret): unsigned, for public buckets
    secret_key: str
    endpoint: str | None
    region: str

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def _object_request(params: Mapping[str, Any]) -> _ObjectRequest:
    """The connector's params, checked; raises ConnectorError naming the one that is wrong."""
    bucket, key = parse_location(
        text_param(params, "bucket", "S3: the bucket name"),
        text_param(params, "key", "S3: the file name"),
    )
    file_name = safe_file_name(key, f"S3 s3://{bucket}/{key}")
    access_key = text_param(params, "access_key", "S3: the access key", required=False)
    secret_key = params.get("secret_key") or ""
    if not isinstance(secret_key, str):
        raise ConnectorError("S3: the access secret must be text")
    if bool(access_key) != bool(secret_key):
        raise ConnectorError(
            "S3: give both the access key and the access secret, or neither for anonymous "
            "access to a public bucket"
        )
    endpoint = (
        text_param(params, "endpoint_url", "S3: the endpoint URL", required=False)
        or os.environ.get("AWS_ENDPOINT_URL", "").strip()
        or None
    )
    if endpoint and not re.match(r"^https?://", endpoint):
        raise ConnectorError(f"S3: endpoint {endpoint!r} must start with http:// or https://")
    region = (
        text_param(params, "region", "S3: the region", required=False)
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    return _ObjectRequest(bucket, key, file_name, access_key, secret_key, endpoint, region)


def _get_object(request: _ObjectRequest) -> dict[str, Any]:
    """boto3's `get_object` response (the body not read yet); ConnectorError saying why not."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    options: dict[str, Any] = {
        "connect_timeout": 15,
        "read_timeout": 60,
        "retries": {"max_attempts": 3, "mode": "standard"},
    }
    if request.endpoint:
        options["s3"] = {"addressing_style": "path"}  # stores other than AWS
    if not request.access_key:
        options["signature_version"] = UNSIGNED
    try:
        # A session of its own: no profile, environment or file credentials are mixed in.
        session = boto3.session.Session(
            aws_access_key_id=request.access_key or None,
            aws_secret_access_key=request.secret_key or None,
            region_name=request.region,
        )
        client = session.client("s3", endpoint_url=request.endpoint, config=Config(**options))
        return client.get_object(Bucket=request.bucket, Key=request.key)
    except ClientError as exc:
        raise ConnectorError(_client_error(exc, request.where, bool(request.access_key))) from None
    except BotoCoreError as exc:
        raise ConnectorError(
            f"S3 {request.where}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None


class S3Connector(Connector):
    """params: `bucket`, `key` (file name), `access_key`, `secret_key` (both empty:
    anonymous), optional `endpoint_url` and `region`."""

    name = "s3"
    label = "AWS S3"
    params = (
        Param("bucket", "S3 bucket name", tip="The bucket, with the folder if any."),
        Param("access_key", "AWS access key", required=False, tip="Empty for a public bucket."),
        Param("secret_key", "AWS access secret", required=False, secret=True),
        Param("key", "File name", tip="The .csv, .pq/.parquet, .json/.jsonl or .zip to import."),
    )

    def fetch(self, params: Mapping[str, Any], staging_dir: Path) -> list[Path]:
        from botocore.exceptions import BotoCoreError

        request = _object_request(params)
        response = _get_object(request)
        where = request.where
        size = response.get("ContentLength")
        budget = self._budget()
        if size is not None and size > budget.max_bytes:
            response["Body"].close()
            raise ConnectorError(
                f"S3 {where}: {human_size(size)} is larger than the limit of "
                f"{human_size(budget.max_bytes)}"
            )
        staging_dir.mkdir(parents=True, exist_ok=True)
        body = response["Body"]
        try:
            dest = write_stream(
                body, unique_path(staging_dir, request.file_name), budget, f"S3 {where}"
            )
        except (BotoCoreError, OSError) as exc:
            raise ConnectorError(f"S3 {where}: download failed: {_first_line(exc)}") from None
        finally:
            body.close()
        return [dest]


def _first_line(exc: Exception) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _client_error(exc: Any, where: str, signed: bool) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("NoSuchKey", "404", "NotFound"):
        return f"S3 {where}: no such file"
    if code == "NoSuchBucket":
        return f"S3 {where}: no such bucket"
    if code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
        if signed:
            return f"S3 {where}: access denied for this access key"
        return (
            f"S3 {where}: access denied; anonymous access needs a public bucket or file, "
            "otherwise give an access key and secret"
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"S3 {where}: the access key or secret is not valid ({code})"
    return f"S3 {where}: {code or status}: {error.get('Message', '')}".rstrip(": ")
