"""A small OAuth 2.0 authorization server for the end-to-end tests (issue 21:
the gateway's own credentials for upstream servers).

It is a real token endpoint, not a mock: clients authenticate, grants are
checked, refusals are the RFCs' errors. Everything lives in memory and is
forgotten when the process ends.

- `POST /token` (RFC 6749 §3.2), a form body; the client authenticates with
  HTTP Basic (`client_secret_basic`) or `client_id` and `client_secret` in the
  body (`client_secret_post`), never both. Grants:
  - `client_credentials` (RFC 6749 §4.4), with optional `scope`, `audience`
    and `resource` (RFC 8707): a token for the client itself (`sub` = its id);
  - `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693): the
    `subject_token` (a JWT of this issuer, HS256, unexpired) is exchanged for
    a token with its `sub`, the requested `aud` and `act: {"sub": client}`.
  Access tokens are JWTs signed HS256 with the signing secret: iss, sub, aud
  (`audience`, else `resource`, else none), exp, iat, jti, scope, client_id.
  Answers as RFC 6749 §5.1 and §5.2 (and RFC 8693 §2.2) say.
- `GET /.well-known/oauth-authorization-server`: the RFC 8414 metadata.
- `/admin/...`, for the tests alone (a loopback test server: no auth):
  `POST /admin/revoke {"client_id"}` forgets a client (its requests then get
  `invalid_client`), `POST /admin/clients {"client_id", "client_secret"}` adds
  or rotates one, `POST /admin/ttl {"seconds"}` sets the lifetime of the
  tokens issued from then on, `GET /admin/issued` lists every token request
  and its outcome, and `POST /admin/mint {"sub", "aud"?, "ttl"?, "scope"?}`
  returns `{"token", "claims"}`: a user's identity token signed by this
  issuer (a negative `ttl` gives an expired one).

Run: python oauth_server.py --port P --signing-secret S --client ID:SECRET
     [--client ...] [--token-ttl SECONDS]
The issuer is http://127.0.0.1:P. It prints `listening on http://127.0.0.1:P`
once its socket listens, and exits cleanly on SIGTERM or ctrl-c.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import signal
import socket
import sys
import time
import uuid
from urllib.parse import parse_qs, unquote_plus, urlsplit

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

CLIENT_CREDENTIALS = "client_credentials"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# RFC 8707 §2 and RFC 8693 §2.1 let these two repeat; no other parameter may (RFC 6749 §3.2).
REPEATABLE = {"resource", "audience"}


class OAuthError(Exception):
    """A refusal as RFC 6749 §5.2 words it."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error, self.description = error, description

    def response(self, issuer: str) -> JSONResponse:
        status, headers = 400, dict(NO_STORE)
        if self.error == "invalid_client":
            status, headers["WWW-Authenticate"] = 401, f'Basic realm="{issuer}"'
        return JSONResponse({"error": self.error, "error_description": self.description}, status, headers)


class AuthorizationServer:
    """The clients, the signing key and the record of every token request."""

    def __init__(self, issuer: str, secret: str, clients: dict[str, str], ttl: int):
        self.issuer, self.secret, self.clients, self.ttl = issuer, secret, clients, ttl
        self.issued: list[dict] = []

    # --- POST /token ---

    async def token(self, request: Request) -> JSONResponse:
        record = {"time": time.time(), "grant": None, "client_id": None}
        try:
            form = await form_of(request)
            record["grant"] = one(form, "grant_type")
            record["client_id"], secret = client_credentials_of(request, form)
            self.authenticate(record["client_id"], secret)
            if record["grant"] is None:
                raise OAuthError("invalid_request", "grant_type is missing")
            if record["grant"] == CLIENT_CREDENTIALS:
                claims, extra = self.client_credentials(record["client_id"], form)
            elif record["grant"] == TOKEN_EXCHANGE:
                claims, extra = self.token_exchange(record["client_id"], form)
            else:
                raise OAuthError("unsupported_grant_type", f"this server does not issue tokens for grant_type {record['grant']!r}")
        except OAuthError as e:
            self.log(record | {"outcome": e.error, "error_description": e.description})
            return e.response(self.issuer)
        token = jwt.encode(claims, self.secret, algorithm="HS256", headers={"typ": "at+jwt"})
        self.log(record | {"outcome": "issued"} | {k: claims.get(k) for k in ("sub", "aud", "scope", "exp", "jti", "act")})
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": claims["exp"] - claims["iat"], **extra}
        if claims.get("scope"):
            answer["scope"] = claims["scope"]
        return JSONResponse(answer, headers=NO_STORE)

    def authenticate(self, client_id: str | None, secret: str | None) -> None:
        if client_id is None:
            raise OAuthError("invalid_client", "no client authentication (use HTTP Basic or client_id and client_secret in the body)")
        known = self.clients.get(client_id)
        if known is None or secret is None or not hmac.compare_digest(known.encode(), secret.encode()):
            raise OAuthError("invalid_client", "client authentication failed")

    def client_credentials(self, client_id: str, form: dict[str, list[str]]) -> tuple[dict, dict]:
        return self.claims(client_id, client_id, audience_of(form), scope_of(form)), {}

    def token_exchange(self, client_id: str, form: dict[str, list[str]]) -> tuple[dict, dict]:
        subject_token, subject_type = one(form, "subject_token"), one(form, "subject_token_type")
        if not subject_token or not subject_type:
            raise OAuthError("invalid_request", "token exchange needs subject_token and subject_token_type")
        if subject_type not in (JWT_TYPE, ACCESS_TOKEN_TYPE):
            raise OAuthError("invalid_request", f"unsupported subject_token_type {subject_type!r}")
        if one(form, "actor_token") is not None:
            raise OAuthError("invalid_request", "actor_token is not supported: the actor is the authenticated client")
        requested = one(form, "requested_token_type") or ACCESS_TOKEN_TYPE
        if requested not in (JWT_TYPE, ACCESS_TOKEN_TYPE):
            raise OAuthError("invalid_request", f"cannot issue requested_token_type {requested!r}")
        audience, scope = audience_of(form), scope_of(form)
        try:
            subject = jwt.decode(subject_token, self.secret, algorithms=["HS256"], issuer=self.issuer,
                                 options={"require": ["exp", "iss", "sub"], "verify_aud": False})
        except jwt.InvalidTokenError as e:
            raise OAuthError("invalid_grant", f"subject_token refused: {e}") from None
        # RFC 8693 §4.1: the acting party, and before it whoever acted for the subject already.
        act = {"sub": client_id} | ({"act": subject["act"]} if "act" in subject else {})
        claims = self.claims(subject["sub"], client_id, audience, scope or subject.get("scope"), act=act)
        return claims, {"issued_token_type": requested}

    def claims(self, sub: str, client_id: str, aud: str | list[str] | None, scope: str | None, **extra) -> dict:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": sub, "aud": aud, "exp": now + self.ttl, "iat": now, "jti": uuid.uuid4().hex,
                  "scope": scope, "client_id": client_id, **extra}
        return {k: v for k, v in claims.items() if v is not None}

    def log(self, record: dict) -> None:
        self.issued.append(record)
        detail = record.get("error_description") or f"sub={record.get('sub')} aud={record.get('aud')} scope={record.get('scope')}"
        print(f"token: {record['grant']} for {record['client_id']}: {record['outcome']} ({detail})", file=sys.stderr, flush=True)

    # --- metadata and the tests' controls ---

    async def metadata(self, request: Request) -> JSONResponse:
        return JSONResponse({
            "issuer": self.issuer,
            "token_endpoint": f"{self.issuer}/token",
            "grant_types_supported": [CLIENT_CREDENTIALS, TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": [],
            "token_endpoint_auth_signing_alg_values_supported": ["HS256"],
        })

    async def revoke(self, request: Request) -> JSONResponse:
        client_id = (await request.json())["client_id"]
        if self.clients.pop(client_id, None) is None:
            return JSONResponse({"error": f"no client {client_id!r}"}, 404)
        return JSONResponse({"revoked": client_id})

    async def add_client(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.clients[body["client_id"]] = body["client_secret"]
        return JSONResponse({"client_id": body["client_id"]})

    async def set_ttl(self, request: Request) -> JSONResponse:
        seconds = (await request.json())["seconds"]
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 1:
            return JSONResponse({"error": "seconds must be a positive integer"}, 400)
        self.ttl = seconds
        return JSONResponse({"seconds": seconds})

    async def list_issued(self, request: Request) -> JSONResponse:
        return JSONResponse(self.issued)

    async def mint(self, request: Request) -> JSONResponse:
        body = await request.json()
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": body["sub"], "aud": body.get("aud"), "iat": now, "exp": now + int(body.get("ttl", 3600)),
                  "jti": uuid.uuid4().hex, "scope": body.get("scope")}
        claims = {k: v for k, v in claims.items() if v is not None}
        return JSONResponse({"token": jwt.encode(claims, self.secret, algorithm="HS256"), "claims": claims})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/token", self.token, methods=["POST"]),
            Route("/.well-known/oauth-authorization-server", self.metadata, methods=["GET"]),
            Route("/admin/revoke", self.revoke, methods=["POST"]),
            Route("/admin/clients", self.add_client, methods=["POST"]),
            Route("/admin/ttl", self.set_ttl, methods=["POST"]),
            Route("/admin/issued", self.list_issued, methods=["GET"]),
            Route("/admin/mint", self.mint, methods=["POST"]),
        ])


async def form_of(request: Request) -> dict[str, list[str]]:
    """The form body, every value of each name, repeats refused where RFC 6749 §3.2 refuses them."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    try:
        form = parse_qs((await request.body()).decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the body is not UTF-8") from None
    repeated = sorted(name for name, values in form.items() if len(values) > 1 and name not in REPEATABLE)
    if repeated:
        raise OAuthError("invalid_request", f"parameters given more than once: {', '.join(repeated)}")
    return form


def one(form: dict[str, list[str]], name: str) -> str | None:
    return form.get(name, [None])[0]


def client_credentials_of(request: Request, form: dict[str, list[str]]) -> tuple[str | None, str | None]:
    """The client's id and secret, from HTTP Basic (RFC 6749 §2.3.1: each form-encoded) or the body."""
    header = request.headers.get("authorization")
    if header is None:
        return one(form, "client_id"), one(form, "client_secret")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", f"unsupported client authentication scheme {scheme!r}")
    if "client_secret" in form:
        raise OAuthError("invalid_request", "more than one client authentication method (HTTP Basic and client_secret)")
    try:
        client_id, colon, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        client_id, colon = "", ""
    if not colon:
        raise OAuthError("invalid_client", "malformed HTTP Basic credentials")
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if one(form, "client_id") not in (None, client_id):
        raise OAuthError("invalid_request", "client_id in the body differs from the HTTP Basic one")
    return client_id, secret


def audience_of(form: dict[str, list[str]]) -> str | list[str] | None:
    """`aud`: the `audience` values, else the `resource` ones (absolute URIs without a fragment, RFC 8707 §2)."""
    for resource in form.get("resource", []):
        parts = urlsplit(resource)
        if not parts.scheme or not parts.netloc or parts.fragment or "#" in resource:
            raise OAuthError("invalid_target", f"resource {resource!r} is not an absolute URI without a fragment")
    targets = form.get("audience") or form.get("resource") or []
    if "" in targets:
        raise OAuthError("invalid_target", "an empty audience or resource")
    return targets[0] if len(targets) == 1 else targets or None


def scope_of(form: dict[str, list[str]]) -> str | None:
    """The requested scope, checked against RFC 6749 §3.3's grammar; every scope asked for is granted."""
    scope = one(form, "scope")
    if scope is None:
        return None
    if not all(token and all(c == "!" or "#" <= c <= "[" or "]" <= c <= "~" for c in token) for token in scope.split(" ")):
        raise OAuthError("invalid_scope", f"malformed scope {scope!r}")
    return scope


def stop(signum, frame) -> None:
    raise SystemExit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--signing-secret", required=True, help="the HS256 key of every token, issued or verified")
    parser.add_argument("--client", action="append", default=[], metavar="ID:SECRET", help="a registered client (repeatable)")
    parser.add_argument("--token-ttl", type=int, default=3600, metavar="SECONDS", help="lifetime of issued tokens (default 3600)")
    args = parser.parse_args()
    clients = {}
    for client in args.client:
        client_id, colon, secret = client.partition(":")
        if not colon or not client_id:
            parser.error(f"--client {client!r}: expected ID:SECRET")
        clients[client_id] = secret
    if args.token_ttl < 1:
        parser.error("--token-ttl must be at least 1")

    # Bound here, before uvicorn starts, so that the issuer names the real
    # port even with --port 0; connections wait in the backlog until served.
    sock = socket.create_server(("127.0.0.1", args.port))
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = AuthorizationServer(issuer, args.signing_secret, clients, args.token_ttl)
    print(f"listening on {issuer}", flush=True)
    # uvicorn catches SIGTERM and SIGINT, stops accepting, finishes what is in
    # flight, then raises the signal again for the handler it found: this one
    # makes that an exit with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    uvicorn.Server(uvicorn.Config(server.app(), log_level="warning", access_log=False, lifespan="off")).run(sockets=[sock])


if __name__ == "__main__":
    main()
