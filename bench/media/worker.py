"""Child-process entry point: ``python -m media.worker ROLE [ARG]``.

Roles: ``engine [keyframe_min_interval]``, ``relay``, ``publisher CLIP KEYFRAME_INTERVAL``, ``viewers``.

Run with ``bench/`` on PYTHONPATH (``channel.Child.start`` does that). Talks JSON lines on stdin/stdout.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from .channel import Handler, serve


def _handlers(role: Any) -> dict[str, Handler]:
    return {
        name: getattr(role, name)
        for name in dir(role)
        if not name.startswith("_") and name != "close" and asyncio.iscoroutinefunction(getattr(role, name))
    }


async def main(kind: str, args: list[str]) -> None:
    role: Any
    if kind == "engine":
        from .sfus import EngineSfu

        role = EngineSfu(float(args[0]) if args else None)
    elif kind == "relay":
        from .sfus import RelaySfu

        role = RelaySfu()
    elif kind == "publisher":
        from .peers import PublisherRole

        role = PublisherRole(Path(args[0]), float(args[1]))
    elif kind == "viewers":
        from .peers import ViewersRole

        role = ViewersRole()
    else:
        raise SystemExit(f"unknown role {kind}")
    await serve(_handlers(role), role.close)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
