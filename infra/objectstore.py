"""The S3 client (MinIO SDK) built from Settings, with retries for a store that is briefly away."""

from __future__ import annotations

import io
import logging
import time

from infra.settings import Settings

log = logging.getLogger(__name__)


def client(settings: Settings):
    from minio import Minio

    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
    )


def ensure_bucket(settings: Settings) -> None:
    c = client(settings)
    if not c.bucket_exists(settings.s3_bucket):
        c.make_bucket(settings.s3_bucket)


def retrying(what: str, fn, attempts: int = 8, first_delay: float = 0.5):
    """Run fn, retrying transport errors with exponential backoff; the last error propagates."""
    from minio.error import S3Error

    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except S3Error:
            raise  # the server answered: retrying will not change its mind
        except Exception as exc:  # noqa: BLE001 - urllib3 raises many transport error types
            if attempt == attempts:
                raise
            log.warning("object store: %s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, attempts - 1, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def put_bytes(settings: Settings, key: str, data: bytes, content_type: str = "application/octet-stream", c=None) -> None:
    c = c or client(settings)
    retrying(f"put {key}", lambda: c.put_object(settings.s3_bucket, key, io.BytesIO(data), len(data), content_type=content_type))


def get_bytes(settings: Settings, key: str, c=None) -> bytes | None:
    from minio.error import S3Error

    c = c or client(settings)

    def fetch():
        response = c.get_object(settings.s3_bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    try:
        return retrying(f"get {key}", fetch)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchObject"):
            return None
        raise


def list_keys(settings: Settings, prefix: str, c=None) -> list[str]:
    c = c or client(settings)
    return retrying(f"list {prefix}", lambda: [o.object_name for o in c.list_objects(settings.s3_bucket, prefix=prefix, recursive=True)])
