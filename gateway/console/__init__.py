"""The compliance console: server-rendered pages at `/console` for auditors and admins."""
