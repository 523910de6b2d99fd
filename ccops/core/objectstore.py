"""Object storage (s3://bucket/prefix and any other fsspec URL) for the archive mirror and off-site backups.

One place opens a store, so both engines get the same behaviour:

- credentials and endpoint come only from the standard AWS environment and
  config files (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
  AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, AWS_PROFILE, AWS_CONFIG_FILE,
  AWS_SHARED_CREDENTIALS_FILE), which botocore reads itself: ccops.toml never
  holds them, so no report or settings dump can show them;
- a new filesystem object per use, without fsspec's instance or listing
  caches: a cron job must see the bucket as it is now, not as a cached listing
  of an earlier call in the same process said (and a test's endpoint changes);
- bounded waits: an unreachable endpoint fails within the connect timeout
  times botocore's attempts (AWS_MAX_ATTEMPTS), so a run ends on time.

fsspec and s3fs are imported here, inside the functions, and only when a URL is
configured: `ccops health` must stay light (tests/test_health_imports.py).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any
from urllib.parse import urlsplit

from ccops.core.errors import CcopsError

# the AWS credentials a process may hold in its environment: never written anywhere ccops writes
CREDENTIAL_ENVS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60


class RemoteError(CcopsError):
    """The object store could not be reached or refused a request; one line naming the URL and why."""


def is_url(location: str) -> bool:
    """Whether a location names an object store (s3://...), not a local path (file:// counts as local)."""
    scheme = urlsplit(location).scheme
    return "://" in location and scheme not in ("", "file")


def credential_values() -> list[str]:
    """The AWS secrets this process holds, for a Scrubber's extra secrets (the settings do not name them)."""
    return [os.environ[name] for name in CREDENTIAL_ENVS if len(os.environ.get(name, "")) >= 4]


def open_store(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, root path inside it) for a URL; RemoteError when the scheme's package is missing."""
    try:
        import fsspec
    except ImportError:
        raise RemoteError(f"{url} is a URL and needs fsspec: pip install fsspec s3fs (the extra ccops[s3])") from None
    scheme = urlsplit(url).scheme
    options: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    if scheme in ("s3", "s3a"):
        options["config_kwargs"] = {"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError) as exc:
        raise RemoteError(f"{url}: {exc} (for s3:// URLs: pip install fsspec s3fs, the extra ccops[s3])") from None
    return fs, str(root).rstrip("/")


def describe(exc: BaseException) -> str:
    """One line for an error of the store: botocore's and s3fs' messages are already one line each."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = type(exc).__name__
    return text if name in text or isinstance(exc, CcopsError) else f"{name}: {text}"


def md5_hex(data: bytes) -> str:
    """MD5 of bytes: what S3 returns as the ETag of an object written in a single PUT."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def put_verified(fs: Any, key: str, data: bytes) -> None:
    """Write one object and prove the store holds these bytes: its size, and its MD5 through the ETag.

    A single PUT's ETag is the MD5 of the body; where the store gives no such
    ETag (a multipart upload, "...-N", or a store without ETags) the object is
    read back and hashed. RemoteError when what the store holds differs.
    """
    fs.pipe_file(key, data)
    info = fs.info(key)
    size = info.get("size", info.get("Size"))
    if size != len(data):
        raise RemoteError(f"{key}: the store holds {size} bytes after the upload, not {len(data)}")
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    expected = md5_hex(data)
    if etag and "-" not in etag and len(etag) == 32:
        if etag != expected:
            raise RemoteError(f"{key}: the store's ETag {etag} is not the MD5 {expected} of what was sent")
        return
    if md5_hex(fs.cat_file(key)) != expected:
        raise RemoteError(f"{key}: the object read back differs from what was sent")
