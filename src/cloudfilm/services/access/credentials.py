"""Secrets, tokens, passwords and PINs: random, and stored only as hashes.

- Tokens and session ids: 256 random bits (``secrets.token_urlsafe(32)``); the index
  keeps their SHA-256, looked up by hash and compared in constant time.
- Passwords and PINs: argon2id (argon2-cffi's defaults, RFC 9106 second recommendation).
- Share-link secrets must be shown again (renewal keeps the same link and QR code)
  without storing them: each is HMAC-SHA256(server key, 128-bit random nonce). The
  index holds the nonce and SHA-256(secret); the server key lives outside the index
  (CLOUDFILM_SECRET_KEY, the same on every node of a cluster, else ``<data>/server.key``,
  mode 0600), so a copy of the database alone reveals no link.
- Device cookies (a browser that signed in to an account before): a random id, the
  issue time and HMAC-SHA256(server key, account, id, time); nothing is stored. They
  exempt that browser from an account's shared back-off (OWASP "Slow Down Online
  Guessing Attacks with Device Cookies"); see services/access/accounts.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
KEY_FILE = "server.key"


def new_token() -> str:
    """A bearer token, session id or claim secret: 256 random bits, URL-safe.

    Never starting with "-", so ``cloudfilm token revoke TOKEN`` cannot read it as an option.
    """
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_hash(stored: str, token: str) -> bool:
    """Constant-time comparison of a stored hash with a presented token's hash."""
    return hmac.compare_digest(stored.encode("ascii"), token_hash(token).encode("ascii"))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """argon2id verification; a missing hash still costs one hash (no timing oracle)."""
    if not stored:
        _HASHER.hash(password)
        return False
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def load_server_key(data_dir: Path, configured: bytes | None = None) -> bytes:
    """The deployment's HMAC key: ``configured`` (CLOUDFILM_SECRET_KEY, decoded by
    `Settings.load`) as it is, else a random 0600 file in ``data_dir`` made once.

    Why the key itself and not a file: every node of a cluster must hold the same key for
    sessions, share links, film codes and the audit chain to agree, and nodes share no disk.
    """
    if configured:
        return configured
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
            fh.flush()
            os.fsync(fh.fileno())
    return path.read_bytes()


def new_nonce() -> str:
    return secrets.token_hex(16)


def share_secret(server_key: bytes, nonce: str) -> str:
    """The link secret for a grant: reproducible by the server, never stored."""
    digest = hmac.new(server_key, f"share-link:{nonce}".encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def device_cookie(server_key: bytes, username: str, now: float | None = None) -> str:
    """``<id>.<issued>.<mac>``: proof that this browser signed in to ``username``."""
    device_id, issued = secrets.token_hex(16), int(time.time() if now is None else now)
    return f"{device_id}.{issued}.{_device_mac(server_key, username, device_id, issued)}"


def device_id(server_key: bytes, username: str, cookie: str, max_age: int) -> str | None:
    """The device id of a genuine, unexpired cookie for ``username``; else None."""
    parts = cookie.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[0]) != 32:
        return None
    device, issued, mac = parts[0], int(parts[1]), parts[2]
    if not 0 <= time.time() - issued <= max_age:
        return None
    expected = _device_mac(server_key, username, device, issued)
    return device if hmac.compare_digest(expected.encode(), mac.encode()) else None


def _device_mac(server_key: bytes, username: str, device: str, issued: int) -> str:
    message = f"login-device:{username}:{device}:{issued}".encode()
    digest = hmac.new(server_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
