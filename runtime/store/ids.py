"""Ids carry their kind: `proj_…`, `key_…`, `usr_…`. Time-ordered so they sort by creation."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str) -> str:
    ms = int(time.time() * 1000)
    stamp = "".join(_ALPHABET[(ms >> shift) & 31] for shift in range(45, -5, -5))
    rand = "".join(_ALPHABET[b & 31] for b in secrets.token_bytes(12))  # 60 random bits
    return f"{prefix}_{stamp}{rand}"
