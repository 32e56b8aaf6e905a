"""Identity: real JWTs through PyJWT, the OAuth token endpoint, and the `parley-token` CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from parley_common.config import DEV_JWT_SECRET
from parley_gateway import token_cli
from parley_gateway.identity import (
    DEV_OAUTH_CLIENT_ID,
    DEV_OAUTH_CLIENTS,
    IdentitySettings,
    OAuthClients,
    OAuthError,
    TokenIssuer,
    TokenResponse,
    TokenVerifier,
    Unauthorized,
    bearer_token,
    handle_token_request,
    process_token_request,
)

SECRET = "test-secret-that-is-long-enough-for-hs256!"
CLIENT_SECRET = "s3cr3t:with/odd+chars"
ENV_VARS = (
    "PARLEY_JWT_SECRET",
    "PARLEY_JWT_PUBLIC_KEY",
    "PARLEY_JWT_PUBLIC_KEY_FILE",
    "PARLEY_JWT_ISSUER",
    "PARLEY_JWT_AUDIENCE",
    "PARLEY_JWT_KEY_IDS",
    "PARLEY_OAUTH_CLIENTS",
    "PARLEY_TOKEN_TTL_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def public_pem(rsa_key: rsa.RSAPrivateKey) -> bytes:
    return rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(secret=SECRET)


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(secret=SECRET)


@pytest.fixture
def clients() -> OAuthClients:
    return OAuthClients.parse(f"svc:{CLIENT_SECRET}:acme, other:other-secret:globex")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: Mapping[str, Any], claims: Mapping[str, Any], hmac_key: bytes | None) -> str:
    """A JWT assembled by hand: for what PyJWT refuses to produce (alg none, HMAC with a PEM)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = (
        b"" if hmac_key is None else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "org": "acme", "exp": int(time.time()) + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def rejection(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as info:
        verifier.verify(token)
    return info.value.message


# --- verification ------------------------------------------------------------------------------


def test_hs256_round_trip(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    before = time.time()
    token = issuer.issue(
        user_id="alice", organization_id="acme", name="Alice", email="alice@acme.test", scopes="read write"
    )
    principal = verifier.verify_header(f"bearer {token}")
    assert (principal.user_id, principal.organization_id) == ("alice", "acme")
    assert (principal.name, principal.email, principal.scopes) == (
        "Alice",
        "alice@acme.test",
        ("read", "write"),
    )
    assert before + 3600 - 1 <= principal.expires_at.timestamp() <= time.time() + 3600
    assert msgspec.json.decode(msgspec.json.encode(principal))["organizationId"] == "acme"


def test_a_token_never_carries_the_services_scope(verifier: TokenVerifier) -> None:
    # parley:service lets a service end any conference of its organization: only the bus grants it.
    for scope in ("read parley:service", ["parley:service", "read"]):
        principal = verifier.verify(jwt.encode(claims(scope=scope), SECRET, algorithm="HS256"))
        assert principal.scopes == ("read",)


def test_the_token_endpoint_does_not_grant_the_services_scope(
    issuer: TokenIssuer, clients: OAuthClients
) -> None:
    result = request_token(
        issuer, clients, basic("svc", CLIENT_SECRET), grant_type="client_credentials", scope="parley:service"
    )
    assert isinstance(result, OAuthError)
    assert (result.error, result.status) == ("invalid_scope", 400)


def test_optional_claims_absent(verifier: TokenVerifier) -> None:
    principal = verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert (principal.name, principal.email, principal.scopes) == (None, None, ())


def test_expired_token_rejected(verifier: TokenVerifier) -> None:
    stale = TokenIssuer(secret=SECRET, clock=lambda: time.time() - 120)
    assert (
        rejection(verifier, stale.issue(user_id="a", organization_id="o", ttl_seconds=60))
        == "token has expired"
    )


def test_clock_skew_leeway(verifier: TokenVerifier) -> None:
    just_expired = jwt.encode(claims(exp=int(time.time()) - 2), SECRET, algorithm="HS256")
    assert verifier.verify(just_expired).user_id == "alice"


def test_wrong_secret_rejected(verifier: TokenVerifier) -> None:
    token = TokenIssuer(secret="another-secret-that-is-long-enough!!").issue(user_id="a", organization_id="o")
    assert rejection(verifier, token) == "invalid token signature"


def test_a_token_naming_an_unknown_key_id_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    # Signed with the right secret, but naming a key this gateway does not hold (issue 12's sweep).
    named = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "rotated-out"})
    assert rejection(TokenVerifier(secret=SECRET), named) == "token signing key id is not known"
    # The identity provider's key ids, when configured, are accepted; tokens without a kid still are.
    monkeypatch.setenv("PARLEY_JWT_SECRET", SECRET)
    monkeypatch.setenv("PARLEY_JWT_KEY_IDS", "idp-2026, rotated-out")
    configured = TokenVerifier.from_settings(IdentitySettings.from_env())
    assert configured.verify(named).user_id == "alice"
    assert configured.verify(jwt.encode(claims(), SECRET, algorithm="HS256")).user_id == "alice"
    other = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "someone-elses"})
    assert rejection(configured, other) == "token signing key id is not known"


def test_tampered_payload_rejected(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header, _, signature = issuer.issue(user_id="alice", organization_id="acme").split(".")
    forged_claims = b64(json.dumps(claims(org="victim-org")).encode())
    assert rejection(verifier, f"{header}.{forged_claims}.{signature}") == "invalid token signature"


def test_alg_none_rejected(verifier: TokenVerifier) -> None:
    token = forge({"alg": "none", "typ": "JWT"}, claims(), None)
    assert rejection(verifier, token).startswith("token signing algorithm is not accepted")


@pytest.mark.parametrize("claim", ["sub", "org", "exp"])
def test_missing_required_claim(verifier: TokenVerifier, claim: str) -> None:
    token = jwt.encode(claims(**{claim: None}), SECRET, algorithm="HS256")
    assert rejection(verifier, token) == f"token lacks the {claim} claim"


@pytest.mark.parametrize(
    ("override", "message"),
    [({"org": 42}, "org"), ({"scope": 7}, "scope"), ({"sub": ""}, "sub"), ({"exp": 10**15}, "exp")],
)
def test_malformed_claims(verifier: TokenVerifier, override: dict[str, Any], message: str) -> None:
    token = jwt.encode(claims(**override), SECRET, algorithm="HS256")
    assert message in rejection(verifier, token)


@pytest.mark.parametrize(
    "override",
    [
        {"exp": str(int(time.time()) + 600)},
        {"nbf": True},
        {"nbf": str(int(time.time()) - 60)},
        {"iat": str(int(time.time()))},
        {"iat": [int(time.time())]},
    ],
)
def test_numeric_date_claims_must_be_json_numbers(verifier: TokenVerifier, override: dict[str, Any]) -> None:
    """RFC 7519 NumericDate is a JSON number: a numeric string (which PyJWT alone accepts) is refused."""
    (claim,) = override
    token = jwt.encode(claims(**override), SECRET, algorithm="HS256")
    assert rejection(verifier, token) == f"token has a malformed {claim} claim"


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_garbage_rejected(verifier: TokenVerifier, garbage: str) -> None:
    assert rejection(verifier, garbage) == "malformed token"


def test_rs256_accepted(rsa_key: rsa.RSAPrivateKey, public_pem: bytes) -> None:
    verifier = TokenVerifier(public_key=public_pem.decode())
    token = jwt.encode(claims(scope=["a", "b"]), rsa_key, algorithm="RS256")
    assert verifier.verify(token).scopes == ("a", "b")
    assert verifier.algorithms == ("RS256",)


def test_rs256_verifier_rejects_hs256_signed_with_public_key(public_pem: bytes) -> None:
    # Algorithm confusion: the attacker signs HS256 using the (public) PEM as the HMAC secret.
    confused = forge({"alg": "HS256", "typ": "JWT"}, claims(), public_pem)
    assert rejection(TokenVerifier(public_key=public_pem), confused).startswith(
        "token signing algorithm is not accepted"
    )
    # With a secret too, HS256 is checked against the secret only, never the key.
    both = TokenVerifier(secret=SECRET, public_key=public_pem)
    assert rejection(both, confused) == "invalid token signature"


def test_secret_and_key_each_accept_their_own_algorithm(
    rsa_key: rsa.RSAPrivateKey, public_pem: bytes
) -> None:
    both = TokenVerifier(secret=SECRET, public_key=public_pem)
    assert both.verify(jwt.encode(claims(sub="hs"), SECRET, algorithm="HS256")).user_id == "hs"
    assert both.verify(jwt.encode(claims(sub="rs"), rsa_key, algorithm="RS256")).user_id == "rs"
    assert rejection(both, jwt.encode(claims(), rsa_key, algorithm="RS512")).startswith(
        "token signing algorithm is not accepted (expected HS256 or RS256)"
    )


def test_issuer_and_audience_checked() -> None:
    verifier = TokenVerifier(secret=SECRET, issuer="https://idp.test", audience="parley")
    minted = TokenIssuer(secret=SECRET, issuer="https://idp.test", audience="parley")
    assert verifier.verify(minted.issue(user_id="a", organization_id="o")).user_id == "a"
    wrong_iss = jwt.encode(claims(iss="https://evil.test", aud="parley"), SECRET, algorithm="HS256")
    assert rejection(verifier, wrong_iss) == "token issuer is not accepted"
    wrong_aud = jwt.encode(claims(iss="https://idp.test", aud="other"), SECRET, algorithm="HS256")
    assert rejection(verifier, wrong_aud) == "token audience is not accepted"
    assert rejection(verifier, jwt.encode(claims(aud="parley"), SECRET, algorithm="HS256")) == (
        "token lacks the iss claim"
    )


def test_audience_ignored_when_not_configured(verifier: TokenVerifier) -> None:
    assert verifier.verify(jwt.encode(claims(aud="anything"), SECRET, algorithm="HS256")).user_id == "alice"


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError, match="secret, a public key"):
        TokenVerifier()
    with pytest.raises(ValueError, match="not a valid PEM"):
        TokenVerifier(public_key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="must be an RSA key"):
        TokenVerifier(public_key=ec_pem)


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer abc", "abc"), ("BEARER   abc  ", "abc")],
)
def test_bearer_token_parsing(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    ("header", "message", "presented"),
    [
        (None, "missing bearer token", False),
        ("", "missing bearer token", False),
        ("Bearer", "missing bearer token", False),
        ("Basic dXNlcjpwYXNz", "authorization scheme must be Bearer", False),
        ("Bearer a b", "malformed bearer token", True),
    ],
)
def test_bearer_token_rejections(header: str | None, message: str, presented: bool) -> None:
    with pytest.raises(Unauthorized) as info:
        bearer_token(header)
    assert info.value.message == message
    assert ('error="invalid_token"' in info.value.www_authenticate) is presented


# --- OAuth clients -----------------------------------------------------------------------------


def test_oauth_clients_parse(clients: OAuthClients) -> None:
    assert clients.client_ids == ("svc", "other")
    svc = clients.authenticate("svc", CLIENT_SECRET)
    assert svc is not None
    assert svc.organization_id == "acme"
    assert CLIENT_SECRET not in repr(svc)
    assert clients.authenticate("svc", "wrong") is None
    assert clients.authenticate("nobody", CLIENT_SECRET) is None
    assert len(OAuthClients.parse("")) == 0


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("good:x:acme,bad:hunter2-secret", "entry #2 (client 'bad')"),
        ("hunter2-secret", "entry #1 is"),
        ("svc:hunter2-secret:", "entry #1 (client 'svc')"),
        ("svc::acme", "entry #1 (client 'svc')"),
    ],
)
def test_oauth_clients_malformed_entry(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match="expected id:secret:organization") as info:
        OAuthClients.parse(spec)
    assert named in str(info.value)
    assert "hunter2" not in str(info.value)


def test_oauth_clients_duplicate_id() -> None:
    with pytest.raises(ValueError, match="duplicate OAuth client id 'svc'"):
        OAuthClients.parse("svc:a:o1,svc:b:o2")


# --- token endpoint logic ----------------------------------------------------------------------


def basic(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: form-urlencode each part, then Basic-encode.
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def request_token(
    issuer: TokenIssuer, clients: OAuthClients, authorization: str | None = None, **form: str
) -> TokenResponse | OAuthError:
    return process_token_request(authorization=authorization, form=form, issuer=issuer, clients=clients)


def test_basic_auth_grant(
    issuer: TokenIssuer, verifier: TokenVerifier, clients: OAuthClients, capsys: pytest.CaptureFixture[str]
) -> None:
    result = request_token(issuer, clients, basic("svc", CLIENT_SECRET), grant_type="client_credentials")
    assert isinstance(result, TokenResponse)
    assert (result.token_type, result.expires_in, result.scope, result.status) == ("bearer", 3600, "any", 200)
    principal = verifier.verify(result.access_token)
    assert (principal.user_id, principal.organization_id, principal.scopes) == ("svc", "acme", ("any",))
    body = msgspec.json.decode(msgspec.json.encode(result))
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    logged = capsys.readouterr()
    assert CLIENT_SECRET not in logged.out + logged.err
    assert result.access_token not in logged.out + logged.err


def test_form_credentials_grant_with_scope(
    issuer: TokenIssuer, verifier: TokenVerifier, clients: OAuthClients
) -> None:
    result = request_token(
        issuer,
        clients,
        grant_type="client_credentials",
        client_id="other",
        client_secret="other-secret",
        scope="read  write read",
    )
    assert isinstance(result, TokenResponse)
    assert result.scope == "read write"
    assert verifier.verify(result.access_token).organization_id == "globex"


@pytest.mark.parametrize(
    ("authorization", "form", "error", "status"),
    [
        (basic("svc", "wrong"), {"grant_type": "client_credentials"}, "invalid_client", 401),
        (basic("nobody", "x"), {"grant_type": "client_credentials"}, "invalid_client", 401),
        (
            None,
            {"grant_type": "client_credentials", "client_id": "svc", "client_secret": "no"},
            "invalid_client",
            401,
        ),
        (None, {"grant_type": "client_credentials"}, "invalid_client", 401),
        (None, {"grant_type": "client_credentials", "client_id": "svc"}, "invalid_client", 401),
        ("Basic !!!not-base64", {"grant_type": "client_credentials"}, "invalid_client", 401),
        ("Bearer abc", {"grant_type": "client_credentials"}, "invalid_client", 401),
        (basic("svc", CLIENT_SECRET), {"grant_type": "password"}, "unsupported_grant_type", 400),
        (basic("svc", CLIENT_SECRET), {}, "invalid_request", 400),
        (
            basic("svc", CLIENT_SECRET),
            {"grant_type": "client_credentials", "client_secret": CLIENT_SECRET},
            "invalid_request",
            400,
        ),
        (
            basic("svc", CLIENT_SECRET),
            {"grant_type": "client_credentials", "client_id": "other"},
            "invalid_request",
            400,
        ),
        (
            basic("svc", CLIENT_SECRET),
            {"grant_type": "client_credentials", "scope": 'a"b'},
            "invalid_scope",
            400,
        ),
    ],
)
def test_token_request_errors(
    issuer: TokenIssuer,
    clients: OAuthClients,
    authorization: str | None,
    form: dict[str, str],
    error: str,
    status: int,
) -> None:
    result = request_token(issuer, clients, authorization, **form)
    assert isinstance(result, OAuthError)
    assert (result.error, result.status) == (error, status)
    assert (result.www_authenticate == 'Basic realm="parley"') is (status == 401)


def test_unknown_client_and_wrong_secret_answer_alike(issuer: TokenIssuer, clients: OAuthClients) -> None:
    unknown = request_token(issuer, clients, basic("nobody", "x"), grant_type="client_credentials")
    wrong = request_token(issuer, clients, basic("svc", "x"), grant_type="client_credentials")
    assert unknown == wrong


# --- aiohttp adapter on a real loopback port ---------------------------------------------------


@pytest.fixture
async def http(issuer: TokenIssuer, clients: OAuthClients) -> Any:
    async def token(request: web.Request) -> web.Response:
        return await handle_token_request(request, issuer, clients)

    app = web.Application()
    app.router.add_post("/security/oauth/token", token)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_http_form_with_basic_auth(
    http: TestClient[web.Request, web.Application], verifier: TokenVerifier
) -> None:
    response = await http.post(
        "/security/oauth/token",
        data={"grant_type": "client_credentials", "scope": "rooms"},
        headers={"Authorization": basic("svc", CLIENT_SECRET)},
    )
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" not in response.headers
    body = await response.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 3600, "rooms")
    assert verifier.verify(body["access_token"]).user_id == "svc"


async def test_http_json_body(http: TestClient[web.Request, web.Application]) -> None:
    response = await http.post(
        "/security/oauth/token",
        json={"grant_type": "client_credentials", "client_id": "other", "client_secret": "other-secret"},
    )
    assert response.status == 200
    assert (await response.json())["scope"] == "any"


async def test_http_invalid_client(http: TestClient[web.Request, web.Application]) -> None:
    response = await http.post(
        "/security/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic("svc", "wrong")},
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="parley"'
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {
        "error": "invalid_client",
        "error_description": "client authentication failed",
    }


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"data": {"grant_type": "authorization_code"}}, "unsupported_grant_type"),
        ({"data": "grant_type=client_credentials&grant_type=client_credentials"}, "invalid_request"),
        (
            {"data": b"grant_type=client_credentials", "headers": {"Content-Type": "text/plain"}},
            "invalid_request",
        ),
        ({"json": {"grant_type": 1}}, "invalid_request"),
        ({}, "invalid_request"),
    ],
)
async def test_http_bad_requests(
    http: TestClient[web.Request, web.Application], kwargs: dict[str, Any], error: str
) -> None:
    headers = {"Authorization": basic("svc", CLIENT_SECRET), **kwargs.pop("headers", {})}
    if isinstance(kwargs.get("data"), str):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = await http.post("/security/oauth/token", headers=headers, **kwargs)
    assert response.status == 400
    assert "WWW-Authenticate" not in response.headers
    assert (await response.json())["error"] == error


# --- settings ----------------------------------------------------------------------------------


def test_settings_development_defaults() -> None:
    settings = IdentitySettings.from_env()
    assert settings.development
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.oauth_clients.client_ids == (DEV_OAUTH_CLIENT_ID,)
    assert DEV_OAUTH_CLIENTS == "parley-dev:parley-dev-secret:parley-dev"
    assert any("parley-dev-secret" in line for line in settings.dev_credentials())
    assert DEV_JWT_SECRET not in repr(settings)
    # Issuer and verifier built from the same settings agree.
    token = TokenIssuer.from_settings(settings).issue(user_id="u", organization_id="parley-dev")
    assert TokenVerifier.from_settings(settings).verify(token).organization_id == "parley-dev"


def test_settings_configured(monkeypatch: pytest.MonkeyPatch, public_pem: bytes, tmp_path: Path) -> None:
    key_file = tmp_path / "idp.pem"
    key_file.write_bytes(public_pem)
    monkeypatch.setenv("PARLEY_JWT_SECRET", SECRET)
    monkeypatch.setenv("PARLEY_JWT_PUBLIC_KEY_FILE", str(key_file))
    monkeypatch.setenv("PARLEY_JWT_ISSUER", "https://idp.test")
    monkeypatch.setenv("PARLEY_TOKEN_TTL_SECONDS", "120")
    settings = IdentitySettings.from_env()
    assert not settings.development
    assert settings.dev_credentials() == ()
    # A real secret means no well-known development client.
    assert len(OAuthClients.from_settings(settings)) == 0
    assert TokenVerifier.from_settings(settings).algorithms == ("HS256", "RS256")
    assert TokenIssuer.from_settings(settings).ttl_seconds == 120


def test_settings_public_key_only(monkeypatch: pytest.MonkeyPatch, public_pem: bytes) -> None:
    monkeypatch.setenv("PARLEY_JWT_PUBLIC_KEY", public_pem.decode().replace("\n", "\\n"))
    settings = IdentitySettings.from_env()
    assert settings.jwt_secret is None
    assert TokenVerifier.from_settings(settings).algorithms == ("RS256",)
    assert not TokenIssuer.from_settings(settings).can_issue
    monkeypatch.setenv("PARLEY_OAUTH_CLIENTS", "svc:s:acme")
    with pytest.raises(ValueError, match="needs PARLEY_JWT_SECRET"):
        IdentitySettings.from_env()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PARLEY_OAUTH_CLIENTS", "svc:leaky-secret", "entry #1 (client 'svc') is malformed"),
        ("PARLEY_TOKEN_TTL_SECONDS", "0", "must be positive"),
        ("PARLEY_JWT_PUBLIC_KEY", "not a pem", "not a valid PEM"),
        ("PARLEY_JWT_PUBLIC_KEY_FILE", "/nonexistent/key.pem", "cannot be read"),
    ],
)
def test_settings_rejects_bad_values(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="PARLEY_") as info:
        IdentitySettings.from_env()
    assert message in str(info.value)
    assert "leaky" not in str(info.value)


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_prints_only_a_verifiable_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert token_cli.main(["--user", "alice", "--org", "acme", "--scope", "a b", "--ttl", "60"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    principal = TokenVerifier(secret=DEV_JWT_SECRET).verify(out.strip())
    assert (principal.user_id, principal.organization_id, principal.scopes) == ("alice", "acme", ("a", "b"))
    assert principal.expires_at.timestamp() <= time.time() + 60


def test_cli_uses_configured_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARLEY_JWT_SECRET", SECRET)
    token_cli.main(["--user", "bob", "--org", "acme", "--name", "Bob", "--email", "bob@acme.test"])
    principal = TokenVerifier(secret=SECRET).verify(capsys.readouterr().out.strip())
    assert (principal.name, principal.email, principal.scopes) == ("Bob", "bob@acme.test", ("any",))


def test_cli_rejects_bad_ttl(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        token_cli.main(["--user", "alice", "--org", "acme", "--ttl", "0"])
    assert info.value.code == 2
    assert capsys.readouterr().out == ""


def test_installed_script(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Path(sys.executable).parent / "parley-token"
    monkeypatch.setenv("PARLEY_JWT_SECRET", SECRET)
    done = subprocess.run(
        [str(script), "--user", "carol", "--org", "acme"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert TokenVerifier(secret=SECRET).verify(done.stdout.strip()).user_id == "carol"
    assert done.stderr == ""
