"""`parley-token`: mint a development bearer token. Only the token goes to stdout: `TOKEN=$(parley-token ..)`.

Signed HS256 with `PARLEY_JWT_SECRET` (or the public development secret), with `PARLEY_JWT_ISSUER` /
`PARLEY_JWT_AUDIENCE` when set, so the gateway configured from the same environment accepts it.

`parley-token verify-webhook --secret S --authorization JWT --body-file F [--webhook-id ID]` checks a
webhook's signature (`verify_webhook`, the reference for receivers): exit 0 and the claims when valid, 1
and the reason when not.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from parley_common.config import DEV_JWT_SECRET, env_int, env_opt, env_str

from parley_gateway.identity import DEFAULT_SCOPE, DEFAULT_TOKEN_TTL_SECONDS, TokenIssuer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley-token", description="Print a signed Parley bearer token (development use)."
    )
    parser.add_argument("--user", required=True, help="user id (the sub claim)")
    parser.add_argument("--org", required=True, help="organization id (the org claim)")
    parser.add_argument("--name", help="display name")
    parser.add_argument("--email", help="email address")
    parser.add_argument(
        "--scope", default=DEFAULT_SCOPE, help=f"space-separated scopes (default {DEFAULT_SCOPE!r})"
    )
    parser.add_argument(
        "--permission",
        action="append",
        default=[],
        help="a permission key for the permissions claim (repeatable), e.g. CreateMeetingSession",
    )
    parser.add_argument(
        "--ttl", type=int, help="lifetime in seconds (default PARLEY_TOKEN_TTL_SECONDS or 3600)"
    )
    return parser


class InvalidWebhook(Exception):
    """The request was not signed by Parley with this secret (or not for this endpoint, or too late)."""


def verify_webhook(
    body: bytes, authorization: str, secret: str, *, webhook_id: str | None = None, leeway: float = 10.0
) -> dict[str, Any]:
    """Check a webhook POST as LiveKit's WebhookReceiver checks its own, and return the JWT's claims.

    `authorization` is the `Authorization` header (a JWT: HS256 with the endpoint's secret, `iss` the
    endpoint id, `exp` a few minutes after sending); its claim `sha256` must be the base64 of the SHA-256
    of `body`, the exact bytes received (verify before parsing them). `webhook_id`: also require that
    `iss` (a secret shared by several endpoints still tells them apart).
    """
    token = authorization.removeprefix("Bearer ").strip()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=webhook_id,
            leeway=leeway,
            options={"require": ["exp", "iss", "sha256"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidWebhook(f"bad signature token: {exc}") from None
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if not hmac.compare_digest(str(claims["sha256"]), expected):
        raise InvalidWebhook("sha256 checksum of the body does not match")
    return claims


def _verify_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="parley-token verify-webhook", description="Check the signature of a received Parley webhook."
    )
    parser.add_argument("--secret", required=True, help="the endpoint's secret (from its registration)")
    parser.add_argument("--authorization", required=True, help="the Authorization header received")
    parser.add_argument("--body-file", required=True, help="the exact body received ('-': stdin)")
    parser.add_argument("--webhook-id", help="also require this endpoint id (the iss claim)")
    args = parser.parse_args(argv)
    body = sys.stdin.buffer.read() if args.body_file == "-" else Path(args.body_file).read_bytes()
    try:
        claims = verify_webhook(body, args.authorization, args.secret, webhook_id=args.webhook_id)
    except InvalidWebhook as exc:
        sys.stderr.write(f"invalid: {exc}\n")
        return 1
    sys.stdout.write(json.dumps(claims) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["verify-webhook"]:
        return _verify_main(arguments[1:])
    parser = _parser()
    args = parser.parse_args(arguments)
    try:
        ttl = (
            args.ttl
            if args.ttl is not None
            else env_int("PARLEY_TOKEN_TTL_SECONDS", DEFAULT_TOKEN_TTL_SECONDS)
        )
        issuer = TokenIssuer(
            secret=env_str("PARLEY_JWT_SECRET", DEV_JWT_SECRET),
            issuer=env_opt("PARLEY_JWT_ISSUER"),
            audience=env_opt("PARLEY_JWT_AUDIENCE"),
            ttl_seconds=ttl,
        )
        token = issuer.issue(
            user_id=args.user.strip(),
            organization_id=args.org.strip(),
            name=args.name,
            email=args.email,
            scopes=args.scope,
            permissions=[p.strip() for p in args.permission if p.strip()],
        )
    except ValueError as exc:
        parser.error(str(exc))  # exits 2 with usage on stderr
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
