"""Deterministic made-up text, so that tests can compare answers."""

from __future__ import annotations

import hashlib

WORDS = [
    "sovereign",
    "data",
    "stays",
    "within",
    "its",
    "borders",
    "while",
    "the",
    "model",
    "answers",
    "every",
    "question",
    "with",
    "care",
    "and",
    "the",
    "audit",
    "log",
    "records",
    "where",
    "each",
    "request",
    "ran",
    "and",
    "why",
    "it",
    "was",
    "allowed",
]


def words_for(prompt: str, count: int, seed: int = 0) -> list[str]:
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    start = digest[0] % len(WORDS)
    return [WORDS[(start + i) % len(WORDS)] for i in range(count)]


def token_count(text: str) -> int:
    return max(1, len(text.split()))


def prompt_of_messages(messages: object) -> str:
    if not isinstance(messages, list):
        return ""
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "\n".join(parts)


def embedding_for(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dimensions)]
