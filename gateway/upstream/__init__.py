"""Upstream adapters: one file per kind, each behind the small `Upstream` protocol."""
