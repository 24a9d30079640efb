"""Optional OpenID Connect single sign-on (authorization code flow with PKCE), via authlib.

Configured by environment (``Settings.oidc``), off unless all three of these are set
(one or two of them stop start-up with an error):

- CLOUDFILM_OIDC_ISSUER: the provider's issuer URL (discovery at
  ``<issuer>/.well-known/openid-configuration``)
- CLOUDFILM_OIDC_CLIENT_ID, CLOUDFILM_OIDC_CLIENT_SECRET: our registration there
- CLOUDFILM_OIDC_LINK_BY_USERNAME=true: a first sign-on whose ``preferred_username``
  names an existing account not yet linked binds it (off by default: trust the
  provider's usernames only when it is the organisation's own directory)

Why a signed cookie for the flow state: authlib keeps ``state``, ``nonce`` and the PKCE
verifier in ``request.session``; instead of a server-side store we give it a dict that
travels in an HttpOnly cookie, HMAC-signed with the server key and valid 10 minutes.
The ID token is verified by authlib (signature against the provider's JWKS, ``iss``,
``aud``, ``exp``, ``nonce``, ``at_hash``). Accounts are never created by sign-on: the
subject must map to an existing user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cloudfilm.config import OidcSettings
from cloudfilm.services.access.accounts import AccountError, AccountService, User

__all__ = ["OidcError", "OidcLogin", "open_state", "seal_state"]

STATE_TTL_SECONDS = 600
_DOMAIN = b"cloudfilm-oidc-state:"


def _authlib_client() -> tuple[Any, type[Exception]]:
    """authlib's Starlette client, imported only when sign-on is configured.

    Its httpx integration warns that it will move to httpx2; that is authlib's
    business, not something an operator reading the server log can act on.
    """
    import authlib.deprecate  # noqa: F401 - its import installs an "always" filter; ours goes after

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx module is deprecated.*")
        from authlib.integrations.starlette_client import OAuth, OAuthError
    return OAuth, OAuthError


class OidcError(Exception):
    """Single sign-on did not produce a verified identity (message safe to show)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal_state(key: bytes, data: dict[str, Any]) -> str:
    """JSON + expiry, HMAC-SHA256 signed (integrity, not secrecy: the browser holds it)."""
    body = _b64(json.dumps({"exp": int(time.time()) + STATE_TTL_SECONDS, "data": data}).encode())
    mac = hmac.new(key, _DOMAIN + body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def open_state(key: bytes, sealed: str | None) -> dict[str, Any] | None:
    """The sealed dict, or None when missing, forged or expired."""
    if not sealed or "." not in sealed:
        return None
    body, _, mac = sealed.partition(".")
    expected = hmac.new(key, _DOMAIN + body.encode("ascii"), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(_unb64(mac), expected):
            return None
        payload = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or payload.get("exp", 0) < time.time():
        return None
    data = payload.get("data")
    return data if isinstance(data, dict) else None


class OidcLogin:
    """One configured provider: start the flow, finish it, map the subject to a user."""

    def __init__(self, config: OidcSettings, server_key: bytes) -> None:
        self.config = config
        self._key = server_key
        oauth_cls, self._oauth_error = _authlib_client()
        self._oauth = oauth_cls()
        self.client = self._oauth.register(
            name="sso", client_id=config.client_id, client_secret=config.client_secret,
            server_metadata_url=config.metadata_url,
            client_kwargs={"scope": config.scope, "code_challenge_method": "S256"})

    async def start(self, request: Request, redirect_uri: str,
                    next_path: str) -> tuple[Response, str]:
        """The redirect to the provider, and the sealed flow state to set as a cookie."""
        request.scope["session"] = {}
        try:
            response = await self.client.authorize_redirect(request, redirect_uri)
        except Exception as exc:  # discovery failures come as many types
            raise OidcError(f"the sign-on provider is unreachable or misconfigured "
                            f"({type(exc).__name__})") from exc
        state = dict(request.scope["session"]) | {"next": next_path}
        return response, seal_state(self._key, state)

    async def finish(self, request: Request, sealed: str | None) -> tuple[dict[str, Any], str]:
        """Exchange the code, verify the ID token; returns (claims, where to go next)."""
        state = open_state(self._key, sealed)
        if state is None:
            raise OidcError("the sign-on attempt expired or did not start here; please try again")
        next_path = str(state.pop("next", "/"))
        request.scope["session"] = state
        try:
            token = await self.client.authorize_access_token(request)
        except Exception as exc:  # OAuthError, joserfc and httpx errors
            if isinstance(exc, self._oauth_error):
                raise OidcError("the sign-on provider's answer was refused: "
                                f"{getattr(exc, 'error', type(exc).__name__)}") from exc
            raise OidcError(f"the sign-on answer could not be verified ({type(exc).__name__})") \
                from exc
        claims = token.get("userinfo")
        if not claims or not claims.get("sub"):
            raise OidcError("the sign-on provider returned no verified ID token")
        return dict(claims), next_path

    def match_user(self, accounts: AccountService, claims: Mapping[str, Any]) -> User | None:
        """The user bound to ``sub``; else, if configured, bind by ``preferred_username``."""
        subject = str(claims["sub"])
        user = accounts.user_by_oidc_subject(subject)
        if user is not None:
            return None if user.disabled else user
        name = str(claims.get("preferred_username") or "")
        if not (self.config.link_by_username and name):
            return None
        candidate = accounts.get_user(name)
        if candidate is None or candidate.disabled or candidate.oidc_subject is not None:
            return None
        try:
            return accounts.link_oidc_subject(candidate.username, subject)
        except AccountError:
            return None
