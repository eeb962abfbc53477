"""Sovereign Gateway: one OpenAI-compatible endpoint that enforces per-tenant data-residency,
operator and weights-origin policy, and writes a tamper-evident audit log."""

__version__ = "0.1.0"
__all__ = ["__version__"]
