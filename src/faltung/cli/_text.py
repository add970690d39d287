"""Wording shared by the commands' output."""

from __future__ import annotations


def plural(n: float, word: str) -> str:
    """'1 epoch', '0.5 warm-up epochs', '7 layers'."""
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"
