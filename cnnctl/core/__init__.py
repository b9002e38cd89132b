"""Errors, the one atomic write, the cache dir and the model catalog: no torch, no config."""
