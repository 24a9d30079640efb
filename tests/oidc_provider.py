"""A small but real OpenID Connect provider for tests, built from authlib's server parts.

Why not a mock: single sign-on is only trustworthy if the relying party really fetches
discovery and JWKS over HTTP, exchanges a code with PKCE, and verifies an RS256-signed
ID token. This provider does all of that (authorization code flow, ``nonce``,
``client_secret_basic``/``post``), served by uvicorn on a loopback port in a thread.
Its login page is a plain HTML form, so a test drives it with httpx like a browser.

``sign_with_rogue_key = True`` makes it sign ID tokens with a key that is *not* in its
JWKS, to prove the relying party checks signatures.
"""

from __future__ import annotations

import hmac
import html
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import uvicorn
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

SCOPES = ["openid", "profile", "email"]


@dataclass(frozen=True)
class ProviderUser:
    username: str
    password: str
    sub: str
    name: str = ""
    email: str = ""


@dataclass
class Client:
    """A registered relying party (authlib ClientMixin protocol)."""

    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)  # empty: any loopback URI

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if self.redirect_uris:
            return redirect_uri in self.redirect_uris
        return redirect_uri.startswith("http://127.0.0.1:")

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(self.client_secret, client_secret or "")

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class AuthCode:
    """An issued authorization code (authlib AuthorizationCodeMixin protocol)."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: ProviderUser
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.server.provider.codes[code] = AuthCode(
            code, request.client.get_client_id(), data.get("redirect_uri", ""),
            request.client.get_allowed_scope(data.get("scope", "")), request.user,
            data.get("nonce"), data.get("code_challenge"), data.get("code_challenge_method"))

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        item = self.server.provider.codes.get(code)
        return item if item and item.client_id == client.get_client_id() else None

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        self.server.provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthCode) -> ProviderUser:
        return authorization_code.user


class _IdToken(OpenIDCode):
    def __init__(self, provider: OidcProvider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return any(c.nonce == nonce for c in self.provider.codes.values())

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.provider.rogue_key if self.provider.sign_with_rogue_key else self.provider.key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": self.provider.key.kid or ""}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.provider.issuer, "aud": [client.get_client_id()],
                "exp": int(time.time()) + 300}

    def generate_user_info(self, user: ProviderUser, scope: str) -> UserInfo:
        info = UserInfo(sub=user.sub, preferred_username=user.username)
        if "profile" in scope.split():
            info["name"] = user.name
        if "email" in scope.split() and user.email:
            info["email"] = user.email
        return info


class _Server(AuthorizationServer):
    """authlib's generic server bound to this provider's in-memory stores."""

    def __init__(self, provider: OidcProvider) -> None:
        super().__init__(scopes_supported=SCOPES)
        self.provider = provider
        self.register_token_generator("default", BearerTokenGenerator(
            lambda **_: secrets.token_urlsafe(32)))
        self.register_grant(_CodeGrant, [_IdToken(provider), CodeChallenge(required=True)])

    def query_client(self, client_id: str) -> Client | None:
        return self.provider.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.provider.access_tokens[token["access_token"]] = request.user

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # the Starlette handlers build them (authlib's API is synchronous)

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status, headers=dict(headers))
        return Response(body or b"", status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class _Request(OAuth2Request):
    """authlib's request over data the Starlette handler already read (query or form)."""

    def __init__(self, request: Request, data: dict[str, str]) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self.payload = BasicOAuth2Payload(data)
        self._data = data
        self._query = dict(request.query_params)

    @property
    def args(self) -> dict[str, str]:
        return self._query

    @property
    def form(self) -> dict[str, str]:
        return self._data


def _oauth_request(request: Request, data: dict[str, str]) -> OAuth2Request:
    return _Request(request, data)


class OidcProvider:
    """Start with ``start()``, stop with ``stop()``; ``issuer`` is its base URL."""

    def __init__(self, port: int, client_id: str = "cloudfilm",
                 client_secret: str | None = None) -> None:
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # loopback http only
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.clients = {client_id: Client(client_id, self.client_secret)}
        self.users: dict[str, ProviderUser] = {}
        self.codes: dict[str, AuthCode] = {}
        self.access_tokens: dict[str, ProviderUser] = {}
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig",
                                                         "alg": "RS256"}, private=True)
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"}, private=True)
        self.sign_with_rogue_key = False
        self.server = _Server(self)
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def add_user(self, username: str, password: str, sub: str, **extra: str) -> ProviderUser:
        user = ProviderUser(username, password, sub, **extra)
        self.users[username] = user
        return user

    # --- endpoints ----------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        return JSONResponse({
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": SCOPES,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "email",
                                 "preferred_username"],
        })

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    def _login_form(self, params: dict[str, str], message: str = "") -> HTMLResponse:
        hidden = "".join(f'<input type="hidden" name="{html.escape(k, quote=True)}" '
                         f'value="{html.escape(v, quote=True)}">' for k, v in params.items())
        error = f'<p role="alert">{html.escape(message)}</p>' if message else ""
        return HTMLResponse(
            "<!doctype html><html lang=en><title>Test IdP</title><h1>Test IdP sign-in</h1>"
            f'{error}<form method="post" action="/authorize">{hidden}'
            '<label for="u">Username</label><input id="u" name="username">'
            '<label for="p">Password</label><input id="p" name="password" type="password">'
            '<button>Sign in</button></form>', status_code=401 if message else 200)

    async def authorize_page(self, request: Request) -> Response:
        params = dict(request.query_params)
        try:
            self.server.get_consent_grant(_oauth_request(request, params), end_user=None)
        except OAuth2Error as exc:
            return JSONResponse({"error": exc.error, "description": exc.description}, 400)
        return self._login_form(params)

    async def authorize_submit(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        username, password = form.pop("username", ""), form.pop("password", "")
        user = self.users.get(username)
        if user is None or not hmac.compare_digest(user.password, password):
            return self._login_form(form, "wrong username or password")
        oauth = _oauth_request(request, form)
        try:
            grant = self.server.get_consent_grant(oauth, end_user=user)
        except OAuth2Error as exc:
            return JSONResponse({"error": exc.error, "description": exc.description}, 400)
        return self.server.create_authorization_response(oauth, grant_user=user, grant=grant)

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        return self.server.create_token_response(_oauth_request(request, form))

    # --- lifecycle ----------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/jwks", self.jwks),
            Route("/authorize", self.authorize_page, methods=["GET"]),
            Route("/authorize", self.authorize_submit, methods=["POST"]),
            Route("/token", self.token, methods=["POST"]),
        ])

    def start(self) -> OidcProvider:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="off")
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, name="oidc-provider", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test OIDC provider did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
