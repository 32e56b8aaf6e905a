"""Parley HTTP gateway."""
