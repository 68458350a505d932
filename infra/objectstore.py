"""The object store (MinIO SDK, any S3 server) behind one small wrapper that owns the client.

Every call retries transport errors with backoff (a store that is briefly away); an answer from
the server (access denied, no such bucket) is final. Keys come from schemas.layout, never built
by hand. Every object is tagged with its retention class (`booth-retention`, schemas.layout), which
the bucket's lifecycle rules select on (infra.retention).
"""

from __future__ import annotations

import builtins
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from infra.settings import MissingSecretError, Settings
from schemas import layout

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_LINK_S = 7 * 24 * 3600  # what S3 allows a presigned link
RETENTION_TAG = "booth-retention"


@dataclass(frozen=True)
class StoredObject:
    key: str
    written_at: float  # seconds since the Unix epoch (the store's last-modified time)
    size: int


class TransientStoreError(RuntimeError):
    """The object store stayed unreachable through every retry."""


def retrying(what: str, fn: Callable[[], T], attempts: int = 8, first_delay: float = 0.5) -> T:
    """Run fn, retrying transport errors with exponential backoff; the last error propagates."""
    from minio.error import S3Error

    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (S3Error, MissingSecretError):
            raise  # the server answered, or there is nothing to sign with: retrying changes neither
        except Exception as exc:
            if attempt == attempts:
                raise TransientStoreError(f"object store: {what} failed {attempts} times: {exc}") from exc
            log.warning("object store: %s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, attempts - 1, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


def _client(settings: Settings, endpoint: str | None = None, secure: bool | None = None) -> Any:
    from minio import Minio

    return Minio(
        endpoint or settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret(),
        secure=settings.s3_secure if secure is None else secure,
        region=settings.s3_region,  # known, so presigning asks the server nothing
    )


class ObjectStore:
    """The project's bucket: put, get, list, delete and presigned links, all retried."""

    def __init__(self, settings: Settings, attempts: int | None = None):
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.attempts = attempts or settings.s3_attempts
        self._client: Any = None
        self._link_client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _client(self.settings)
        return self._client

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        return retrying(what, fn, attempts=self.attempts)

    def ensure_bucket(self) -> None:
        if not self._retry("bucket check", lambda: self.client.bucket_exists(self.bucket)):
            self._retry("make bucket", lambda: self.client.make_bucket(self.bucket))

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        from minio.commonconfig import Tags

        tags = None
        kind = layout.retention_class(key)
        if kind is not None:
            tags = Tags.new_object_tags()
            tags[RETENTION_TAG] = kind
        self._retry(
            f"put {key}",
            lambda: self.client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type, tags=tags
            ),
        )

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is no such object."""
        from minio.error import S3Error

        def fetch() -> bytes:
            response = self.client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        try:
            return self._retry(f"get {key}", fetch)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                return None
            raise

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self._retry(f"stat {key}", lambda: self.client.stat_object(self.bucket, key))
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> builtins.list[str]:
        """Every key under prefix (recursive), sorted."""
        return sorted(
            self._retry(
                f"list {prefix}",
                lambda: [o.object_name for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)],
            )
        )

    def list_info(self, prefix: str) -> builtins.list[StoredObject]:
        """Every object under prefix (recursive) with when it was written, sorted by key."""

        def fetch() -> builtins.list[StoredObject]:
            return [
                StoredObject(o.object_name, o.last_modified.timestamp() if o.last_modified else 0.0, o.size or 0)
                for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
            ]

        return sorted(self._retry(f"list {prefix}", fetch), key=lambda o: o.key)

    def set_lifecycle(self, config: Any) -> None:
        """Set the bucket's lifecycle rules (a minio LifecycleConfig); the server's refusal propagates."""
        self._retry("set lifecycle", lambda: self.client.set_bucket_lifecycle(self.bucket, config))

    def get_lifecycle(self) -> Any:
        """The bucket's lifecycle rules (a minio LifecycleConfig), or None when it has none."""
        return self._retry("get lifecycle", lambda: self.client.get_bucket_lifecycle(self.bucket))

    def delete(self, key: str) -> None:
        self._retry(f"delete {key}", lambda: self.client.remove_object(self.bucket, key))

    def delete_prefix(self, prefix: str) -> builtins.list[str]:
        """Delete every object under prefix; returns the keys deleted."""
        if not prefix:
            raise ValueError("refusing to delete the whole bucket (empty prefix)")
        doomed = self.list(prefix)
        for key in doomed:
            self.delete(key)
        return doomed

    def presign(self, key: str, expires_s: float) -> str:
        """A GET link to key valid for expires_s seconds (at most 7 days, S3's limit), on the public
        store address when there is one (infra.links.public_store_address): links leave the
        deployment. The signature covers the host, so a proxy in front must pass Host unchanged."""
        from infra.links import public_store_address

        if self._link_client is None:
            public = public_store_address(self.settings)
            self._link_client = _client(self.settings, *public) if public else self.client
        seconds = int(min(max(1.0, expires_s), MAX_LINK_S))
        return self._link_client.presigned_get_object(self.bucket, key, expires=timedelta(seconds=seconds))
