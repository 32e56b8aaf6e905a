"""Parley shared contracts, messaging, storage and logging."""
