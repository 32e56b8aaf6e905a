"""Helpers of bench/media_fanout.py: pre-encoded clip, child-process channel, client peers, SFUs, Janus."""
