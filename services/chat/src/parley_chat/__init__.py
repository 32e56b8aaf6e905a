"""The chat service: Zextras-style rooms, members, users and room meetings (see README.md)."""
