"""`parley-token`: mint a development bearer token. Only the token goes to stdout: `TOKEN=$(parley-token ..)`.

Signed HS256 with `PARLEY_JWT_SECRET` (or the public development secret), with `PARLEY_JWT_ISSUER` /
`PARLEY_JWT_AUDIENCE` when set, so the gateway configured from the same environment accepts it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
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
