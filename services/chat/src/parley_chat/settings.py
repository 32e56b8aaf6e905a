"""Chat service settings (`PARLEY_*` environment variables)."""

from __future__ import annotations

import msgspec
from parley_common.config import CommonSettings, env_float, env_int

from parley_chat.domain import MAX_GROUP_MEMBERS


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    common: CommonSettings
    # Most members of a group (the capabilities' maxGroupMembers).
    max_group_members: int
    # How long a command's answer waits for its events to be out (they are carried out later otherwise).
    effects_wait_seconds: float
    # Threads rendering previews (CPU work off the event loop).
    preview_workers: int = 2
    # How long after sending a message its sender may still edit / delete it (the capabilities' limits).
    edit_message_seconds: float = 600.0
    delete_message_seconds: float = 600.0

    @classmethod
    def from_env(cls) -> Settings:
        """Raises ValueError, naming the variable, for a setting the service cannot run with."""
        max_members = env_int("PARLEY_CHAT_MAX_GROUP_MEMBERS", MAX_GROUP_MEMBERS)
        if max_members < 2:
            raise ValueError(f"PARLEY_CHAT_MAX_GROUP_MEMBERS must be at least 2, got {max_members}")
        wait = env_float("PARLEY_CHAT_EFFECTS_WAIT_SECONDS", 2.0)
        if wait < 0:
            raise ValueError(f"PARLEY_CHAT_EFFECTS_WAIT_SECONDS must not be negative, got {wait:g}")
        workers = env_int("PARLEY_CHAT_PREVIEW_WORKERS", 2)
        if workers < 1:
            raise ValueError(f"PARLEY_CHAT_PREVIEW_WORKERS must be at least 1, got {workers}")
        # Spelled out: the deploy checks find every setting the code reads by its full name.
        limits = {
            "edit_message_seconds": ("PARLEY_CHAT_EDIT_MESSAGE_SECONDS", 600.0),
            "delete_message_seconds": ("PARLEY_CHAT_DELETE_MESSAGE_SECONDS", 600.0),
        }
        values = {field: env_float(name, default) for field, (name, default) in limits.items()}
        for field, value in values.items():
            if value <= 0:
                raise ValueError(f"{limits[field][0]} must be positive, got {value:g}")
        return cls(
            common=CommonSettings.from_env(),
            max_group_members=max_members,
            effects_wait_seconds=wait,
            preview_workers=workers,
            **values,
        )
