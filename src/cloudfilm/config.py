"""One settings object: every ``CLOUDFILM_*`` environment variable, read and checked once.

Why once, here: a module that reads the environment when it first needs a value turns a
typo into a failure hours later, far from start-up, and each such module handled a bad
value its own way (some fell back silently). `Settings.load` reads every variable into a
typed field before anything runs; a value it cannot use raises `SettingError` naming the
variable, and every command prints that one line and exits 2. Modules take their values
from ``archive.settings``, never from ``os.environ``.

The README's "Settings" table documents each variable with its default
(tests/test_settings.py fails when a name used here is missing there). The standard
``AWS_*`` variables of an ``s3://`` blob store are boto3's own and are not read here.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_DATA_DIR = Path("var/cloudfilm")
KEY_BYTES = 32  # the least CLOUDFILM_SECRET_KEY may hold: 256 bits, as the generated key
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
DIMSE_POLICIES = ("loopback", "known", "any")


class SettingError(ValueError):
    """A setting's value cannot be used; the message names the variable and what it takes."""


@dataclass(frozen=True)
class HttpSettings:
    """Seconds: a request head must arrive whole, a body may stall, an idle connection stays."""

    header_timeout: float = 15.0
    body_timeout: float = 60.0
    keepalive: float = 30.0


@dataclass(frozen=True)
class DimseSettings:
    """Which calling AEs may associate, and how many connections one address may hold."""

    allow: str = "loopback"  # one of DIMSE_POLICIES
    max_per_address: int = 10


@dataclass(frozen=True)
class SmtpSettings:
    """E-mail notifications; present only when CLOUDFILM_SMTP_HOST is set."""

    host: str
    port: int = 25
    sender: str = "cloudfilm@localhost"
    starttls: bool = False
    user: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class OidcSettings:
    """OpenID Connect single sign-on; present only when issuer, client id and secret are set."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    link_by_username: bool = False
    scope: str = "openid profile email"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


@dataclass(frozen=True)
class NotifySettings:
    """How often the outbox is delivered and reminders enqueued (seconds), and their lead times."""

    interval: float = 30.0
    reminder_interval: float = 3600.0
    reminder_days: int = 14
    followup_days: int = 30


@dataclass(frozen=True)
class ImportSettings:
    """Bounds for zip/ISO imports and uploads (see services/exchange/importer.ImportLimits)."""

    max_member_bytes: int = 4 << 30
    max_total_bytes: int = 64 << 30
    max_files: int = 100_000


@dataclass(frozen=True)
class SyslogTarget:
    """Where audit records are forwarded (RFC 5426 UDP or RFC 6587 TCP)."""

    protocol: str  # "udp" or "tcp"
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """Everything a running archive needs to know about its deployment."""

    data_dir: Path
    database_url: str
    overwrite: bool = False
    public_url: str | None = None
    blob_url: str = ""  # "" = file://<data_dir>
    blob_cache_mb: int = 0  # local read cache of an s3:// blob store; 0 = off
    queue_url: str = ""  # "" = the embedded queue in the index database
    embedded_worker: bool = True  # `cloudfilm serve` runs jobs too
    secret_key: bytes | None = field(default=None, repr=False)  # None = <data_dir>/server.key
    # Load balancers whose X-Forwarded-For and X-Forwarded-Proto are believed: the client
    # address there is what lock-outs and the audit trail record.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1",)
    http: HttpSettings = field(default_factory=HttpSettings)
    dimse: DimseSettings = field(default_factory=DimseSettings)
    remote_timeout: float = 10.0
    stable_age: int = 60
    imports: ImportSettings = field(default_factory=ImportSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    smtp: SmtpSettings | None = None
    oidc: OidcSettings | None = None
    syslog: SyslogTarget | None = None
    # A file where staging logs each durability step in order (tests/test_group_commit.py
    # checks nothing is acknowledged before its fsync); "" = off.
    durability_log: str = ""

    @classmethod
    def load(cls, data_dir: str | Path | None = None, database_url: str | None = None, *,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Arguments win over environment variables, which win over defaults; a bad value
        is a `SettingError` naming its variable."""
        env = _Env(os.environ if environ is None else environ)
        resolved = Path(data_dir or env.text("CLOUDFILM_DATA") or DEFAULT_DATA_DIR).resolve()
        return cls(
            data_dir=resolved,
            database_url=database_url or env.database_url(resolved),
            overwrite=env.flag("CLOUDFILM_OVERWRITE"),
            public_url=env.web_url("CLOUDFILM_PUBLIC_URL"),
            blob_url=env.blob_url(resolved),
            blob_cache_mb=env.whole("CLOUDFILM_BLOB_CACHE_MB", cls.blob_cache_mb, minimum=0),
            queue_url=env.queue_url(),
            embedded_worker=env.flag("CLOUDFILM_EMBEDDED_WORKER", default=cls.embedded_worker),
            secret_key=env.secret_key(),
            trusted_proxies=env.networks("CLOUDFILM_TRUSTED_PROXIES", cls.trusted_proxies),
            http=_http(env),
            dimse=DimseSettings(
                allow=env.choice("CLOUDFILM_DIMSE_ALLOW", DIMSE_POLICIES),
                max_per_address=env.whole("CLOUDFILM_DIMSE_MAX_PER_ADDRESS",
                                          DimseSettings.max_per_address, minimum=1)),
            remote_timeout=env.number("CLOUDFILM_REMOTE_TIMEOUT", cls.remote_timeout, minimum=0.1),
            stable_age=env.whole("CLOUDFILM_STABLE_AGE", cls.stable_age, minimum=1),
            imports=_imports(env),
            notify=_notify(env),
            smtp=_smtp(env),
            oidc=_oidc(env),
            syslog=env.syslog(),
            durability_log=env.text("CLOUDFILM_DURABILITY_LOG") or "",
        )


def _http(env: _Env) -> HttpSettings:
    base = HttpSettings()
    return HttpSettings(
        header_timeout=env.number("CLOUDFILM_HTTP_HEADER_TIMEOUT", base.header_timeout, minimum=1),
        body_timeout=env.number("CLOUDFILM_HTTP_BODY_TIMEOUT", base.body_timeout, minimum=1),
        keepalive=env.number("CLOUDFILM_HTTP_KEEPALIVE", base.keepalive, minimum=1))


def _imports(env: _Env) -> ImportSettings:
    base = ImportSettings()
    return ImportSettings(
        max_member_bytes=env.whole("CLOUDFILM_IMPORT_MAX_MEMBER_BYTES", base.max_member_bytes,
                                   minimum=1),
        max_total_bytes=env.whole("CLOUDFILM_IMPORT_MAX_TOTAL_BYTES", base.max_total_bytes,
                                  minimum=1),
        max_files=env.whole("CLOUDFILM_IMPORT_MAX_FILES", base.max_files, minimum=1))


def _notify(env: _Env) -> NotifySettings:
    base = NotifySettings()
    return NotifySettings(
        interval=env.number("CLOUDFILM_NOTIFY_INTERVAL", base.interval, minimum=0.1),
        reminder_interval=env.number("CLOUDFILM_REMINDER_INTERVAL", base.reminder_interval,
                                     minimum=0.1),
        reminder_days=env.whole("CLOUDFILM_REMINDER_DAYS", base.reminder_days, minimum=1),
        followup_days=env.whole("CLOUDFILM_FOLLOWUP_DAYS", base.followup_days, minimum=1))


def _smtp(env: _Env) -> SmtpSettings | None:
    """Off without a host; the other values are checked all the same."""
    smtp = SmtpSettings(host=env.text("CLOUDFILM_SMTP_HOST"),
                        port=env.whole("CLOUDFILM_SMTP_PORT", SmtpSettings.port, minimum=1,
                                       maximum=65535),
                        sender=env.text("CLOUDFILM_SMTP_FROM") or SmtpSettings.sender,
                        starttls=env.flag("CLOUDFILM_SMTP_STARTTLS"),
                        user=env.text("CLOUDFILM_SMTP_USER"),
                        password=env.raw("CLOUDFILM_SMTP_PASSWORD"))
    return smtp if smtp.host else None


def _oidc(env: _Env) -> OidcSettings | None:
    """Off when none of the three is set; one or two set is a half-done configuration."""
    link = env.flag("CLOUDFILM_OIDC_LINK_BY_USERNAME")
    issuer = env.web_url("CLOUDFILM_OIDC_ISSUER")
    client_id = env.text("CLOUDFILM_OIDC_CLIENT_ID")
    secret = env.raw("CLOUDFILM_OIDC_CLIENT_SECRET")
    given = {"CLOUDFILM_OIDC_ISSUER": issuer, "CLOUDFILM_OIDC_CLIENT_ID": client_id,
             "CLOUDFILM_OIDC_CLIENT_SECRET": secret}
    if not any(given.values()):
        return None
    if missing := [name for name, value in given.items() if not value]:
        raise SettingError(f"{missing[0]} is not set: single sign-on needs CLOUDFILM_OIDC_ISSUER, "
                           f"CLOUDFILM_OIDC_CLIENT_ID and CLOUDFILM_OIDC_CLIENT_SECRET together")
    assert issuer is not None
    return OidcSettings(issuer.rstrip("/"), client_id, secret, link)


def decode_key(text: str) -> bytes | None:
    """A key written as hex (``openssl rand -hex 32``) or base64, standard or URL-safe
    (``openssl rand -base64 32``); None unless it decodes to at least `KEY_BYTES` bytes.
    Text of hex digits only is hex (an odd count is a typo, not base64)."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]+", text):
        key = bytes.fromhex(text) if len(text) % 2 == 0 else b""
    else:
        padded = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
        try:
            key = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            return None
    return key if len(key) >= KEY_BYTES else None


class _Env:
    """Typed reads of one environment mapping; each bad value names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def raw(self, name: str) -> str:
        return self.environ.get(name, "")

    def text(self, name: str) -> str:
        return self.raw(name).strip()

    def flag(self, name: str, *, default: bool = False) -> bool:
        value = self.text(name).lower()
        if value and value not in TRUE | FALSE:
            raise SettingError(f"{name}={self.raw(name)!r}: use true or false")
        return value in TRUE if value else default

    def number(self, name: str, default: float, *, minimum: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not value >= minimum or value == float("inf"):  # NaN compares False
            raise SettingError(f"{name}={raw!r}: use a number of at least {minimum:g}")
        return value

    def whole(self, name: str, default: int, *, minimum: int,
              maximum: int | None = None) -> int:
        raw = self.text(name)
        if not raw:
            return default
        value = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            span = (f"from {minimum} to {maximum}" if maximum is not None
                    else f"of at least {minimum}")
            raise SettingError(f"{name}={raw!r}: use a whole number {span}")
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.text(name).lower() or choices[0]
        if value not in choices:
            raise SettingError(f"{name}={self.raw(name)!r}: use {', '.join(choices[:-1])} "
                               f"or {choices[-1]}")
        return value

    def web_url(self, name: str) -> str | None:
        raw = self.text(name)
        if not raw:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingError(f"{name}={raw!r}: use an http:// or https:// URL with a host")
        return raw

    def database_url(self, data_dir: Path) -> str:
        raw = self.text("CLOUDFILM_DATABASE_URL")
        if not raw:
            return f"sqlite:///{data_dir / 'index.sqlite3'}"
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", raw):
            raise SettingError("CLOUDFILM_DATABASE_URL: use sqlite:///path or "
                               "postgresql://[user@]host[:port]/database")
        return raw

    def blob_url(self, data_dir: Path) -> str:
        raw = self.text("CLOUDFILM_BLOB_URL")
        if not raw:
            return f"file://{data_dir}"
        parts = urlsplit(raw)
        if not ((parts.scheme == "file" and parts.path) or (parts.scheme == "s3" and parts.netloc)):
            raise SettingError(f"CLOUDFILM_BLOB_URL={raw!r}: use file:///path or "
                               f"s3://bucket/prefix[?endpoint_url=…]")
        return raw

    def queue_url(self) -> str:
        raw = self.text("CLOUDFILM_QUEUE_URL")
        if raw and not re.match(r"^[a-z][a-z0-9+.-]*://", raw):
            raise SettingError("CLOUDFILM_QUEUE_URL: use a URL such as amqp://host or "
                               "redis://host, or leave it unset for the queue in the index database")
        return raw

    def secret_key(self) -> bytes | None:
        """Never echoed in an error: the value is the secret."""
        raw = self.text("CLOUDFILM_SECRET_KEY")
        if not raw:
            return None
        if (key := decode_key(raw)) is None:
            raise SettingError(f"CLOUDFILM_SECRET_KEY: use a key of at least {KEY_BYTES} bytes "
                               f"written as hex or base64 (e.g. openssl rand -hex {KEY_BYTES})")
        return key

    def networks(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated IP addresses or networks (10.0.0.0/24, fd00::/64)."""
        raw = self.text(name)
        if not raw:
            return default
        items = tuple(item.strip() for item in raw.split(",") if item.strip())
        try:
            for item in items:
                ipaddress.ip_network(item, strict=False)
        except ValueError:
            items = ()
        if not items:
            raise SettingError(f"{name}={raw!r}: use IP addresses or networks separated by "
                               "commas, e.g. 127.0.0.1,10.0.0.0/24")
        return items

    def syslog(self) -> SyslogTarget | None:
        raw = self.text("CLOUDFILM_SYSLOG")
        if not raw:
            return None
        parts = urlsplit(raw)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("udp", "tcp") or not parts.hostname or not port:
            raise SettingError(f"CLOUDFILM_SYSLOG={raw!r}: use udp://host:port or tcp://host:port")
        return SyslogTarget(parts.scheme, parts.hostname, port)
