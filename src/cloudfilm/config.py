"""One settings object, read from arguments and environment variables.

| setting | env var | default |
|---|---|---|
| data_dir | CLOUDFILM_DATA | ./var/cloudfilm |
| database_url | CLOUDFILM_DATABASE_URL | sqlite:///<data_dir>/index.sqlite3 |
| overwrite | CLOUDFILM_OVERWRITE | false: a SOP Instance UID resent with other bytes is refused (0xA900) |
| public_url | CLOUDFILM_PUBLIC_URL | derived from each request (scheme://host) |
| blob_url | CLOUDFILM_BLOB_URL | file://<data_dir> (or s3://bucket/prefix?endpoint_url=…) |
| queue_url | CLOUDFILM_QUEUE_URL | "" : jobs in the index database (or amqp://…, redis://…) |
| secret_key | CLOUDFILM_SECRET_KEY | none: a random key kept in <data_dir> (hex or base64 key) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = Path("var/cloudfilm")


class SettingError(ValueError):
    """A setting's value cannot be used; the message names the variable and what it takes."""


def env_number(name: str, default: float, *, whole: bool = False, minimum: float = 0) -> float:
    """A numeric environment variable, or ``default`` when unset; anything else is a
    `SettingError` naming it, so a typo stops start-up with one clear line."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or value != value:
        kind = "a whole number" if whole else "a number"
        raise SettingError(f"{name}={raw!r}: use {kind} of at least {minimum:g}")
    return value


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Everything a running archive needs to know about its deployment."""

    data_dir: Path
    database_url: str
    overwrite: bool = False
    public_url: str | None = None
    blob_url: str = ""  # "" = file://<data_dir>
    queue_url: str = ""  # "" = the embedded queue in the index database
    secret_key: str = field(default="", repr=False)  # "" = the key file in the data dir

    @classmethod
    def load(cls, data_dir: str | Path | None = None, database_url: str | None = None) -> "Settings":
        """Arguments win over environment variables, which win over defaults."""
        resolved = Path(data_dir or os.environ.get("CLOUDFILM_DATA") or DEFAULT_DATA_DIR).resolve()
        url = database_url or os.environ.get("CLOUDFILM_DATABASE_URL") or (
            f"sqlite:///{resolved / 'index.sqlite3'}"
        )
        return cls(
            data_dir=resolved,
            database_url=url,
            overwrite=_env_flag("CLOUDFILM_OVERWRITE"),
            public_url=os.environ.get("CLOUDFILM_PUBLIC_URL") or None,
            blob_url=os.environ.get("CLOUDFILM_BLOB_URL", "").strip() or f"file://{resolved}",
            queue_url=os.environ.get("CLOUDFILM_QUEUE_URL", "").strip(),
            secret_key=os.environ.get("CLOUDFILM_SECRET_KEY", "").strip(),
        )
