"""Who is calling: bearer-token verification, token minting and OAuth2 client credentials.

Everything here is framework-free except `handle_token_request`, a thin aiohttp adapter around
`process_token_request`. Secrets and tokens are never logged nor put in error messages.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import unquote_plus

import jwt
import msgspec
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from parley_common.config import DEV_JWT_SECRET, env_int, env_opt
from parley_common.contracts.base import Payload
from parley_common.contracts.conference import SERVICE_SCOPE
from parley_common.contracts.meeting import GRANT_CLAIM, MeetingGrant
from parley_common.hs256 import HS256Key
from parley_common.log import get_logger

from parley_gateway.http import BadRequest, decode_json

__all__ = [
    "CLOCK_SKEW_LEEWAY_SECONDS",
    "DEFAULT_REFRESH_TTL_SECONDS",
    "DEFAULT_SCOPE",
    "DEFAULT_TOKEN_TTL_SECONDS",
    "DEV_OAUTH_CLIENTS",
    "DEV_OAUTH_CLIENT_ID",
    "DEV_OAUTH_CLIENT_SECRET",
    "DEV_OAUTH_ORGANIZATION",
    "IdentitySettings",
    "OAuthClient",
    "OAuthClients",
    "OAuthError",
    "Principal",
    "RefreshableTokenResponse",
    "ScopeText",
    "TokenForm",
    "TokenIssuer",
    "TokenRequestBody",
    "TokenResponse",
    "TokenVerifier",
    "Unauthorized",
    "bearer_token",
    "handle_token_request",
    "load_rsa_public_key",
    "process_token_request",
]

_log = get_logger(__name__)

# The well-known development client; only in effect while the development signing secret is.
DEV_OAUTH_CLIENT_ID: Final = "parley-dev"
DEV_OAUTH_CLIENT_SECRET: Final = "parley-dev-secret"
DEV_OAUTH_ORGANIZATION: Final = "parley-dev"
DEV_OAUTH_CLIENTS: Final = f"{DEV_OAUTH_CLIENT_ID}:{DEV_OAUTH_CLIENT_SECRET}:{DEV_OAUTH_ORGANIZATION}"

DEFAULT_TOKEN_TTL_SECONDS: Final = 3600
DEFAULT_REFRESH_TTL_SECONDS: Final = 30 * 24 * 3600
# The claim that marks a refresh token (`token_use: refresh`): it is redeemed only at a token endpoint and
# refused as a bearer, and a bearer (no such claim) is refused as a refresh token.
TOKEN_USE_CLAIM: Final = "token_use"
REFRESH_USE: Final = "refresh"
DEFAULT_SCOPE: Final = "any"
# Scopes services grant each other on the bus; never taken from, nor issued in, a token.
INTERNAL_SCOPES: Final = frozenset({SERVICE_SCOPE})
CLOCK_SKEW_LEEWAY_SECONDS: Final = 5.0
HS256: Final = "HS256"
RS256: Final = "RS256"
_REALM: Final = "parley"
_MIN_RSA_BITS: Final = 2048


class Unauthorized(Exception):
    """The caller is not (validly) authenticated; `message` is safe to show to the caller."""

    def __init__(self, message: str, *, token_presented: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.token_presented = token_presented

    @property
    def www_authenticate(self) -> str:
        """The RFC 6750 challenge for a 401: no error code when no token was sent at all."""
        if self.token_presented:
            return f'Bearer realm="{_REALM}", error="invalid_token"'
        return f'Bearer realm="{_REALM}"'


class Principal(Payload, frozen=True, kw_only=True):
    """The authenticated caller, from a verified token."""

    user_id: str
    organization_id: str
    name: str | None = None
    email: str | None = None
    scopes: tuple[str, ...] = ()
    expires_at: datetime
    # The token's `type` claim says "guest" for a guest user (Carbonio's user types); else internal.
    guest: bool = False
    # The token's `permissions` claim (a list of strings, as SourceFuse's loopback4-authorization reads
    # it): the permission keys the SourceFuse routes check. The gateway checks them; they never go on the bus.
    permissions: tuple[str, ...] = ()
    # A meeting token's grant (claim `meeting`): one conference, one role; only the conference API takes it.
    grant: MeetingGrant | None = None


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive)."""
    if authorization is None or not authorization.strip():
        raise Unauthorized("missing bearer token", token_presented=False)
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("authorization scheme must be Bearer", token_presented=False)
    token = credentials.strip()
    if not token:
        raise Unauthorized("missing bearer token", token_presented=False)
    if any(ch.isspace() for ch in token):
        raise Unauthorized("malformed bearer token")
    return token


def load_rsa_public_key(pem: str | bytes) -> RSAPublicKey:
    """An RSA public key from PEM (`PUBLIC KEY`, `RSA PUBLIC KEY` or an X.509 `CERTIFICATE`)."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError("the JWT public key is not a valid PEM public key or certificate") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the JWT public key must be an RSA key (tokens are verified with RS256)")
    if key.key_size < _MIN_RSA_BITS:
        raise ValueError(f"the JWT public key must have at least {_MIN_RSA_BITS} bits")
    return key


@contextmanager
def _quiet_if_dev_key(key: object) -> Iterator[None]:
    # The public development secret is shorter than RFC 7518 wants; PyJWT would warn on every use.
    # Operator-configured short secrets still get PyJWT's warning.
    if key != DEV_JWT_SECRET:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        yield


VERIFIED_CACHE_SIZE = 10_000


class TokenVerifier:
    """Verifies bearer JWTs: HS256 with the shared secret and/or RS256 with an IdP's public key.

    Each algorithm is bound to its own key, so an RS256 public key is never used as an HMAC secret
    (algorithm confusion) and `none` is never accepted.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: RSAPublicKey | str | bytes | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = CLOCK_SKEW_LEEWAY_SECONDS,
        key_ids: Iterable[str] = (),
    ) -> None:
        self._keys: dict[str, str | RSAPublicKey] = {}
        # The key ids (`kid`) the configured keys go by. A token naming any other key was signed with a key
        # this gateway does not hold (a rotated-out or foreign one), whatever its signature checks against.
        self._key_ids = frozenset(key_ids)
        if secret is not None:
            if not secret:
                raise ValueError("the JWT secret must not be empty")
            self._keys[HS256] = secret
        if public_key is not None:
            key = public_key if isinstance(public_key, RSAPublicKey) else load_rsa_public_key(public_key)
            self._keys[RS256] = key
        if not self._keys:
            raise ValueError("a TokenVerifier needs a secret, a public key, or both")
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._required = ["exp", "sub", "org"] + (["iss"] if issuer else []) + (["aud"] if audience else [])
        # Clients send the same token with every request; verifying its signature each time costs more
        # than the rest of the gateway's work on a command. A token's verdict only changes at expiry.
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> TokenVerifier:
        return cls(
            secret=settings.jwt_secret,
            public_key=settings.jwt_public_key_pem,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            key_ids=settings.jwt_key_ids,
        )

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def verify_header(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization` header value; raises `Unauthorized`."""
        return self.verify(bearer_token(authorization))

    def verify(self, token: str) -> Principal:
        """The principal of a raw JWT; raises `Unauthorized` with a human-readable reason."""
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at.timestamp() + self._leeway > time.time():
                return known
            del self._verified[token]
            if known.grant is not None:
                raise Unauthorized(_session_closed(known.expires_at.timestamp()))
            raise Unauthorized("token has expired")
        principal = self._verify(token)
        self._verified[token] = principal
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if kid is not None and kid not in self._key_ids:
            raise Unauthorized("token signing key id is not known")
        # The header only selects among the configured (algorithm, key) pairs; it never picks a key.
        if not isinstance(alg, str) or alg not in self._keys:
            expected = " or ".join(self._keys)
            raise Unauthorized(f"token signing algorithm is not accepted (expected {expected})")
        key = self._keys[alg]
        try:
            with _quiet_if_dev_key(key):
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    issuer=self._issuer,
                    audience=self._audience,
                    leeway=self._leeway,
                    options={"require": self._required, "verify_aud": self._audience is not None},
                )
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:
            raise Unauthorized(self._outside_window(token, alg, key) or _describe(exc)) from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(_describe(exc)) from None
        return _principal(claims)

    def _outside_window(self, token: str, alg: str, key: str | RSAPublicKey) -> str | None:
        """For a genuine meeting token used outside its window (`nbf`..`exp`, the session's schedule): when
        the session opens, or that it has closed. None for any other token (PyJWT's verdict stands)."""
        try:
            with _quiet_if_dev_key(key):
                # Everything but the time window is still verified (signature first): only a token we would
                # otherwise accept learns when its session opens.
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    issuer=self._issuer,
                    audience=self._audience,
                    options={
                        "require": self._required,
                        "verify_aud": self._audience is not None,
                        "verify_exp": False,
                        "verify_nbf": False,
                    },
                )
        except jwt.PyJWTError:
            return None
        if not isinstance(claims.get(GRANT_CLAIM), dict):
            return None
        now = time.time()
        nbf, exp = _numeric(claims.get("nbf")), _numeric(claims.get("exp"))
        if nbf is not None and now + self._leeway < nbf:
            return f"the session opens at {_rfc3339(nbf)}"
        if exp is not None and now - self._leeway >= exp:
            return _session_closed(exp)
        return None


def _numeric(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _rfc3339(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(seconds)


def _session_closed(exp: float) -> str:
    return f"the session closed at {_rfc3339(exp)}"


def _describe(exc: jwt.PyJWTError) -> str:
    # Our own wording: PyJWT messages can echo token content.
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token has expired"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "invalid token signature"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim} claim"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer is not accepted"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience is not accepted"
    if isinstance(exc, jwt.InvalidIssuedAtError):
        return "token has a malformed iat claim"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token is not yet valid"
    if isinstance(exc, jwt.exceptions.InvalidSubjectError):
        return "token has a malformed sub claim"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "token signing algorithm is not accepted"
    if isinstance(exc, jwt.DecodeError):
        return "malformed token"
    return "invalid token"


NUMERIC_DATE_CLAIMS: Final = ("exp", "nbf", "iat")


def _principal(claims: Mapping[str, Any]) -> Principal:
    if claims.get(TOKEN_USE_CLAIM) == REFRESH_USE:
        raise Unauthorized("a refresh token is not an access token")

    def text(claim: str, *, required: bool) -> str | None:
        value = claims.get(claim)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value):
            raise Unauthorized(f"token has a malformed {claim} claim")
        return value

    raw_scope = claims.get("scope", "")
    # `scope` is space-separated (RFC 8693); some IdPs send a JSON list instead.
    if isinstance(raw_scope, str):
        scopes = tuple(raw_scope.split())
    elif isinstance(raw_scope, list) and all(isinstance(s, str) for s in raw_scope):
        scopes = tuple(raw_scope)
    else:
        raise Unauthorized("token has a malformed scope claim")
    # Grants only services give each other on the bus (ending a room's conference...): a token from
    # outside never carries them, whoever signed it.
    scopes = tuple(s for s in scopes if s not in INTERNAL_SCOPES)
    raw_permissions = claims.get("permissions", [])
    if not isinstance(raw_permissions, list) or not all(isinstance(p, str) for p in raw_permissions):
        raise Unauthorized("token has a malformed permissions claim")
    for claim in NUMERIC_DATE_CLAIMS:
        value = claims.get(claim)
        # RFC 7519 NumericDate is a JSON number; PyJWT also takes "1700000000" (it calls int() on it), and a
        # JSON true is a Python int. Either is a malformed token, refused like any other.
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            raise Unauthorized(f"token has a malformed {claim} claim")
    try:
        expires_at = datetime.fromtimestamp(float(claims["exp"]), UTC)
    except (OverflowError, OSError, ValueError):
        # PyJWT only checks exp is an integer in the future; year 10000 does not fit a datetime.
        raise Unauthorized("token has a malformed exp claim") from None
    grant: MeetingGrant | None = None
    if claims.get(GRANT_CLAIM) is not None:
        try:
            grant = msgspec.convert(claims[GRANT_CLAIM], MeetingGrant)
        except msgspec.ValidationError:
            raise Unauthorized(f"token has a malformed {GRANT_CLAIM} claim") from None
    return Principal(
        user_id=text("sub", required=True) or "",
        organization_id=text("org", required=True) or "",
        name=text("name", required=False),
        email=text("email", required=False),
        scopes=scopes,
        expires_at=expires_at,
        guest=isinstance(claims.get("type"), str) and claims["type"].lower() == "guest",
        permissions=tuple(raw_permissions),
        grant=grant,
    )


class TokenIssuer:
    """Mints HS256 tokens the gateway's `TokenVerifier` accepts (OAuth endpoint, `parley-token`).

    Without a secret (external IdP only) it exists but cannot mint: `can_issue` is False.
    """

    def __init__(
        self,
        *,
        secret: str | None,
        issuer: str | None = None,
        audience: str | None = None,
        ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
        refresh_ttl_seconds: int = DEFAULT_REFRESH_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is not None and not secret:
            raise ValueError("the JWT secret must not be empty")
        if ttl_seconds <= 0:
            raise ValueError("the token lifetime must be positive")
        self._secret = secret
        self._key = HS256Key(secret.encode() if secret is not None else b"")
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds
        self.refresh_ttl_seconds = refresh_ttl_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> TokenIssuer:
        return cls(
            secret=settings.jwt_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.token_ttl_seconds,
        )

    @property
    def can_issue(self) -> bool:
        return self._secret is not None

    def issue(
        self,
        *,
        user_id: str,
        organization_id: str,
        name: str | None = None,
        email: str | None = None,
        scopes: str | Iterable[str] = (),
        ttl_seconds: int | None = None,
        expires_at: datetime | None = None,
        not_before: datetime | None = None,
        permissions: Iterable[str] = (),
        grant: MeetingGrant | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token; `scopes` is a space-separated string or an iterable of scope names.

        A meeting token (the one way to mint one: SourceFuse's token route, Coviu's entry_url) carries
        `grant` (claim `meeting`) and its window: `not_before` (nbf) and `expires_at` (exp, instead of
        `ttl_seconds` or the issuer's lifetime). `permissions` becomes the SourceFuse `permissions` claim.
        `claims` adds other claims; it never overrides these nor the identity claims.
        """
        if self._secret is None:
            raise RuntimeError("no PARLEY_JWT_SECRET configured: this gateway does not mint tokens")
        if not user_id or not organization_id:
            raise ValueError("a token needs a user id and an organization id")
        now = int(self._clock())
        if expires_at is not None:
            # Minted as told, even if past (a window's end is the caller's rule, not the issuer's).
            exp = math.ceil(expires_at.timestamp())
        else:
            ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
            if ttl <= 0:
                raise ValueError("the token lifetime must be positive")
            exp = now + ttl
        scope = " ".join(scopes.split() if isinstance(scopes, str) else scopes)
        # A Struct, not a dict: a page of Coviu sessions mints a token per participant (800 for 200
        # sessions), and msgspec encodes a Struct about twice as fast. Empty optional claims are left out.
        payload = _Claims(
            sub=user_id,
            org=organization_id,
            iat=now,
            exp=exp,
            nbf=int(not_before.timestamp()) if not_before is not None else None,
            # `aud` too: a verifier configured with PARLEY_JWT_AUDIENCE requires it.
            iss=self._issuer or None,
            aud=self._audience or None,
            name=name or None,
            email=email or None,
            scope=scope or None,
            permissions=list(permissions) or None,
            meeting=grant,
        )
        encoded = _claims_encoder.encode(payload)
        if claims:
            reserved = _RESERVED_CLAIMS.intersection(claims)
            if reserved:
                raise ValueError(f"extra claims may not replace {sorted(reserved)}")
            merged = {**claims, **msgspec.json.decode(encoded)}
            encoded = msgspec.json.encode(merged)
        return self._key.sign(encoded)

    def issue_refresh(self, *, client_id: str, organization_id: str, scope: str) -> str:
        """A refresh token (RFC 6749 §1.5) bound to an OAuth client: a JWT of its own use, longer-lived."""
        return self.issue(
            user_id=client_id,
            organization_id=organization_id,
            scopes=scope,
            ttl_seconds=self.refresh_ttl_seconds,
            claims={TOKEN_USE_CLAIM: REFRESH_USE, "client_id": client_id},
        )

    def redeem_refresh(self, token: str, client_id: str) -> Mapping[str, Any] | None:
        """The claims of a valid refresh token issued to `client_id`, else None (`invalid_grant`)."""
        if self._secret is None:
            return None
        try:
            with _quiet_if_dev_key(self._secret):
                claims: dict[str, Any] = jwt.decode(
                    token,
                    self._secret,
                    algorithms=[HS256],
                    issuer=self._issuer,
                    audience=self._audience,
                    leeway=CLOCK_SKEW_LEEWAY_SECONDS,
                    options={"require": ["exp", "sub", "org"], "verify_aud": self._audience is not None},
                )
        except jwt.PyJWTError:
            return None
        if claims.get(TOKEN_USE_CLAIM) != REFRESH_USE or claims.get("client_id") != client_id:
            return None
        return claims


class _Claims(msgspec.Struct, frozen=True, omit_defaults=True):
    """The claims `TokenIssuer.issue` sets (`meeting`: a meeting token's grant, `GRANT_CLAIM`)."""

    sub: str
    org: str
    iat: int
    exp: int
    nbf: int | None = None
    iss: str | None = None
    aud: str | None = None
    name: str | None = None
    email: str | None = None
    scope: str | None = None
    permissions: list[str] | None = None
    meeting: MeetingGrant | None = None


_claims_encoder: Final = msgspec.json.Encoder()


# What `TokenIssuer.issue` sets itself: `claims` cannot smuggle another identity or lifetime in.
_RESERVED_CLAIMS: Final = frozenset(
    {"sub", "org", "iat", "exp", "nbf", "iss", "aud", "scope", "name", "email", "permissions", GRANT_CLAIM}
)


# --- OAuth2 client credentials (RFC 6749 §4.4) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class OAuthClient:
    client_id: str
    secret: str = field(repr=False)
    organization_id: str


class OAuthClients:
    """The configured confidential clients, from `id:secret:organization[,...]`."""

    # Compared against when the id is unknown, so timing does not reveal which ids exist.
    _DUMMY_SECRET: Final = b"parley-unknown-client-dummy-secret"

    def __init__(self, clients: Iterable[OAuthClient] = ()) -> None:
        self._by_id: dict[str, OAuthClient] = {}
        for client in clients:
            if client.client_id in self._by_id:
                raise ValueError(f"duplicate OAuth client id {client.client_id!r}")
            self._by_id[client.client_id] = client

    @classmethod
    def parse(cls, spec: str, *, source: str = "PARLEY_OAUTH_CLIENTS") -> OAuthClients:
        clients: list[OAuthClient] = []
        for position, raw in enumerate(spec.split(","), start=1):
            entry = raw.strip()
            if not entry:
                continue
            # The secret may itself contain ':'; the id is before the first, the org after the last.
            client_id, sep, rest = entry.partition(":")
            secret, sep2, organization = rest.rpartition(":")
            client_id, organization = client_id.strip(), organization.strip()
            if not (sep and sep2 and client_id and secret and organization):
                # Name the entry by position (and id when there is one), never by its text: it holds a secret.
                who = f" (client {client_id!r})" if sep and client_id else ""
                raise ValueError(
                    f"{source} entry #{position}{who} is malformed: expected id:secret:organization"
                )
            clients.append(OAuthClient(client_id=client_id, secret=secret, organization_id=organization))
        try:
            return cls(clients)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def from_settings(cls, settings: IdentitySettings) -> OAuthClients:
        return settings.oauth_clients

    @property
    def client_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"OAuthClients({list(self._by_id)!r})"

    def authenticate(self, client_id: str, client_secret: str) -> OAuthClient | None:
        client = self._by_id.get(client_id)
        expected = client.secret.encode() if client is not None else self._DUMMY_SECRET
        matches = hmac.compare_digest(client_secret.encode(), expected)
        return client if matches and client is not None else None


class TokenResponse(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 6749 §5.1 success body; field names are snake_case on the wire by the RFC."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    scope: str

    @property
    def status(self) -> int:
        return 200


class RefreshableTokenResponse(TokenResponse, frozen=True, kw_only=True):
    """Where refresh tokens are offered (Coviu's `/v1/auth/token`): the pair."""

    refresh_token: str


class OAuthError(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 6749 §5.2 error body. `status`/`www_authenticate` tell the HTTP layer what to send."""

    error: str
    error_description: str

    @property
    def status(self) -> int:
        return 401 if self.error == "invalid_client" else 400

    @property
    def www_authenticate(self) -> str | None:
        return f'Basic realm="{_REALM}"' if self.error == "invalid_client" else None


# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN_CHARS: Final = r"\x21\x23-\x5b\x5d-\x7e"  # RFC 6749 §3.3 scope-token
_SCOPE_TOKEN = re.compile(rf"[{_SCOPE_TOKEN_CHARS}]+")


# Scope tokens separated by spaces (any other character is refused as invalid_scope).
ScopeText = Annotated[str, msgspec.Meta(pattern=rf"^[ {_SCOPE_TOKEN_CHARS}]*$")]


class TokenForm(msgspec.Struct, frozen=True, kw_only=True):
    """The token request's fields (RFC 6749 §4.4.2), for the OpenAPI document: `_read_fields` reads them.

    The client authenticates with HTTP Basic or with client_id and client_secret here.
    """

    grant_type: Literal["client_credentials"]
    client_id: str = ""
    client_secret: str = ""
    scope: ScopeText = ""


# Every field is a string, known or not (a JSON body of other values is refused as invalid_request).
TokenRequestBody = Annotated[
    TokenForm, msgspec.Meta(extra_json_schema={"additionalProperties": {"type": "string"}})
]


def _basic_credentials(authorization: str) -> tuple[str, str] | OAuthError:
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return OAuthError(error="invalid_client", error_description="use HTTP Basic client authentication")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return OAuthError(error="invalid_client", error_description="malformed Basic credentials")
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return OAuthError(error="invalid_client", error_description="malformed Basic credentials")
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    return unquote_plus(client_id), unquote_plus(secret)


def process_token_request(
    *,
    authorization: str | None,
    form: Mapping[str, str],
    issuer: TokenIssuer,
    clients: OAuthClients,
    refresh: bool = False,
    token_type: str = "bearer",
) -> TokenResponse | OAuthError:
    """The token endpoint, minus HTTP: Authorization header value and body fields in, body out.

    With `refresh`, a client-credentials grant also answers a refresh token, and the `refresh_token`
    grant (RFC 6749 §6) trades one, from the client it was issued to, for a new pair.
    """
    grant_type = form.get("grant_type", "")
    if not grant_type:
        return OAuthError(error="invalid_request", error_description="grant_type is required")
    grants = ("client_credentials", "refresh_token") if refresh else ("client_credentials",)
    if grant_type not in grants:
        return OAuthError(
            error="unsupported_grant_type",
            error_description=f"only {' and '.join(grants)} {'are' if refresh else 'is'} supported",
        )

    form_id, form_secret = form.get("client_id", ""), form.get("client_secret", "")
    if authorization and authorization.strip():
        credentials = _basic_credentials(authorization)
        if isinstance(credentials, OAuthError):
            return credentials
        if form_secret:
            return OAuthError(
                error="invalid_request", error_description="use only one client authentication method"
            )
        if form_id and form_id != credentials[0]:
            return OAuthError(
                error="invalid_request", error_description="client_id does not match the Basic credentials"
            )
        client_id, secret = credentials
    elif form_id and form_secret:
        client_id, secret = form_id, form_secret
    elif form_id:
        return OAuthError(error="invalid_client", error_description="client_secret is required")
    else:
        return OAuthError(error="invalid_client", error_description="client authentication is required")

    requested = form.get("scope", "").split(" ")
    scopes = [s for s in requested if s]
    if not all(_SCOPE_TOKEN.fullmatch(s) for s in scopes):
        return OAuthError(error="invalid_scope", error_description="scope contains invalid characters")
    if any(s in INTERNAL_SCOPES for s in scopes):
        return OAuthError(error="invalid_scope", error_description="scope is not granted to clients")
    scope = " ".join(dict.fromkeys(scopes)) or DEFAULT_SCOPE

    client = clients.authenticate(client_id, secret)
    if client is None:
        # One answer for unknown ids and wrong secrets.
        _log.info("oauth_token_rejected", reason="invalid_client")
        return OAuthError(error="invalid_client", error_description="client authentication failed")

    if grant_type == "refresh_token":
        presented = form.get("refresh_token", "")
        if not presented:
            return OAuthError(error="invalid_request", error_description="refresh_token is required")
        claims = issuer.redeem_refresh(presented, client.client_id)
        if claims is None or claims.get("org") != client.organization_id:
            _log.info("oauth_token_rejected", reason="invalid_grant", client_id=client.client_id)
            return OAuthError(
                error="invalid_grant", error_description="the refresh token is invalid or expired"
            )
        granted = str(claims.get("scope", "")).split()
        # RFC 6749 §6: a refresh may narrow the scope, never widen it.
        if scopes and not set(scopes) <= set(granted):
            return OAuthError(error="invalid_scope", error_description="scope exceeds the refresh token's")
        scope = " ".join(dict.fromkeys(scopes or granted)) or DEFAULT_SCOPE

    token = issuer.issue(
        user_id=client.client_id, organization_id=client.organization_id, scopes=scope.split(" ")
    )
    _log.info("oauth_token_issued", client_id=client.client_id, organization=client.organization_id)
    if not refresh:
        return TokenResponse(access_token=token, expires_in=issuer.ttl_seconds, scope=scope)
    return RefreshableTokenResponse(
        access_token=token,
        token_type=token_type,
        expires_in=issuer.ttl_seconds,
        scope=scope,
        refresh_token=issuer.issue_refresh(
            client_id=client.client_id, organization_id=client.organization_id, scope=scope
        ),
    )


_JSON_TYPES: Final = ("application/json",)
_FORM_TYPE: Final = "application/x-www-form-urlencoded"


async def _read_fields(request: web.Request) -> dict[str, str] | OAuthError:
    def bad(description: str) -> OAuthError:
        return OAuthError(error="invalid_request", error_description=description)

    content_type = request.content_type
    if content_type in _JSON_TYPES or content_type.endswith("+json"):
        try:
            # The shared body reader: the same limits as every JSON body of the API.
            return decode_json(await request.read(), dict[str, str])
        except BadRequest:
            return bad("the JSON body must be an object of string fields")
    if content_type == _FORM_TYPE:
        try:
            posted = await request.post()
        except ValueError:
            return bad("malformed form body")
        fields: dict[str, str] = {}
        for name in posted:
            values = posted.getall(name)
            # RFC 6749 §3.2: parameters MUST NOT be repeated.
            if len(values) > 1:
                return bad(f"parameter {name} is repeated")
            if not isinstance(values[0], str):
                return bad("malformed form body")
            fields[name] = values[0]
        return fields
    if not request.body_exists:
        return {}
    return bad(f"unsupported content type; send {_FORM_TYPE}")


async def handle_token_request(
    request: web.Request,
    issuer: TokenIssuer,
    clients: OAuthClients,
    *,
    refresh: bool = False,
    token_type: str = "bearer",
) -> web.Response:
    """aiohttp adapter for `process_token_request` (form or JSON body, Basic or body credentials)."""
    fields = await _read_fields(request)
    result = (
        fields
        if isinstance(fields, OAuthError)
        else process_token_request(
            authorization=request.headers.get("Authorization"),
            form=fields,
            issuer=issuer,
            clients=clients,
            refresh=refresh,
            token_type=token_type,
        )
    )
    # RFC 6749 §5.1: token responses must not be cached.
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if isinstance(result, OAuthError) and result.www_authenticate:
        headers["WWW-Authenticate"] = result.www_authenticate
    return web.Response(
        body=msgspec.json.encode(result),
        status=result.status,
        content_type="application/json",
        headers=headers,
    )


# --- settings ----------------------------------------------------------------------------------


def _public_key_pem_from_env() -> str | None:
    text, path = env_opt("PARLEY_JWT_PUBLIC_KEY"), env_opt("PARLEY_JWT_PUBLIC_KEY_FILE")
    if text and path:
        raise ValueError("set only one of PARLEY_JWT_PUBLIC_KEY and PARLEY_JWT_PUBLIC_KEY_FILE")
    if path:
        try:
            return Path(path).read_text(errors="replace")  # PEM is ASCII; anything else fails to load
        except OSError as exc:
            raise ValueError(f"PARLEY_JWT_PUBLIC_KEY_FILE {path!r} cannot be read: {exc.strerror}") from None
    # Env files and container specs often carry a PEM on one line with literal "\n".
    return text.replace("\\n", "\n") if text else None


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentitySettings:
    """Identity configuration from `PARLEY_JWT_*`, `PARLEY_OAUTH_CLIENTS`, `PARLEY_TOKEN_TTL_SECONDS`."""

    # None when only an external IdP's key is configured: then no HS256 at all and nothing is minted
    # (there are no OAuth clients either; `from_env` refuses clients without a secret).
    jwt_secret: str | None = field(repr=False)
    jwt_public_key_pem: str | None = field(repr=False)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # `PARLEY_JWT_KEY_IDS` (comma-separated): the `kid`s an identity provider's tokens may name; a token
    # naming another is refused. Tokens without a `kid` (the gateway's own) are unaffected.
    jwt_key_ids: tuple[str, ...] = ()
    token_ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS
    oauth_clients: OAuthClients = field(default_factory=OAuthClients)
    # The public development secret is in use (nothing configured): `make run` territory.
    development: bool = False

    @classmethod
    def from_env(cls) -> IdentitySettings:
        """Read and validate everything up front, so a bad value fails start-up, not a request."""
        public_key_pem = _public_key_pem_from_env()
        if public_key_pem is not None:
            try:
                load_rsa_public_key(public_key_pem)
            except ValueError as exc:
                raise ValueError(f"PARLEY_JWT_PUBLIC_KEY(_FILE): {exc}") from None
        secret = env_opt("PARLEY_JWT_SECRET")
        if secret is None and public_key_pem is None:
            secret = DEV_JWT_SECRET
        development = secret == DEV_JWT_SECRET
        clients_spec = env_opt("PARLEY_OAUTH_CLIENTS")
        # The well-known dev client would mint tokens with a real secret; only default to it in dev.
        if clients_spec is None:
            clients_spec = DEV_OAUTH_CLIENTS if development else ""
        if clients_spec and secret is None:
            # Client-credentials tokens are HS256; without a secret nothing could verify them.
            raise ValueError("PARLEY_OAUTH_CLIENTS needs PARLEY_JWT_SECRET (client tokens are signed HS256)")
        ttl = env_int("PARLEY_TOKEN_TTL_SECONDS", DEFAULT_TOKEN_TTL_SECONDS)
        if ttl <= 0:
            raise ValueError(f"PARLEY_TOKEN_TTL_SECONDS must be positive, got {ttl}")
        return cls(
            jwt_secret=secret,
            jwt_public_key_pem=public_key_pem,
            jwt_issuer=env_opt("PARLEY_JWT_ISSUER"),
            jwt_audience=env_opt("PARLEY_JWT_AUDIENCE"),
            jwt_key_ids=tuple(
                part.strip() for part in (env_opt("PARLEY_JWT_KEY_IDS") or "").split(",") if part.strip()
            ),
            token_ttl_seconds=ttl,
            oauth_clients=OAuthClients.parse(clients_spec),
            development=development,
        )

    def dev_credentials(self) -> tuple[str, ...]:
        """Lines for `make run` to print. Only the public development values, never configured ones."""
        if not self.development:
            return ()
        lines = [f"JWT signing secret (development only, set PARLEY_JWT_SECRET): {DEV_JWT_SECRET}"]
        if self.oauth_clients.authenticate(DEV_OAUTH_CLIENT_ID, DEV_OAUTH_CLIENT_SECRET) is not None:
            lines.append(
                f"OAuth client (client_credentials): id={DEV_OAUTH_CLIENT_ID} "
                f"secret={DEV_OAUTH_CLIENT_SECRET} organization={DEV_OAUTH_ORGANIZATION}"
            )
        lines.append("User token: TOKEN=$(.venv/bin/parley-token --user alice --org parley-dev)")
        return tuple(lines)
