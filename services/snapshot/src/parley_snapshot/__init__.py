"""Parley snapshot service: snapshot requests, images in the object store, server-side capture."""
