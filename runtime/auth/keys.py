"""Key format: kind prefix + 32 random base62 characters + 6-character CRC32 checksum (as GitHub tokens do).

The checksum lets a malformed or mistyped key be rejected without a database lookup. Keys are stored only as a
SHA-256 hash plus a short display prefix; the plaintext is shown once.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib
from dataclasses import dataclass
from enum import StrEnum

ALPHABET = string.digits + string.ascii_letters
BODY_LEN = 32  # 32 base62 characters: ~190 bits
CHECK_LEN = 6


class KeyKind(StrEnum):
    tarx = "tarx"  # /api/keys, scopes developer_runtime | supercomputer
    platform = "platform"  # /api/v1/platform-keys
    compute = "compute"  # /api/compute/api-keys, with quotas
    node = "node"  # worker nodes, rotatable


PREFIXES = {
    KeyKind.tarx: "tarx_",
    KeyKind.platform: "sk-tarx-",
    KeyKind.compute: "tnv_",
    KeyKind.node: "tnn_",
}


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECK_LEN)


def generate(kind: KeyKind) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LEN))
    return PREFIXES[kind] + body + _checksum(body)


@dataclass(frozen=True)
class ParsedKey:
    kind: KeyKind
    hash: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def parse(plaintext: str) -> ParsedKey | None:
    """The key's kind and hash if it is well-formed with a valid checksum, else None (no lookup needed)."""
    for kind, prefix in PREFIXES.items():
        if plaintext.startswith(prefix):
            rest = plaintext[len(prefix):]
            if len(rest) != BODY_LEN + CHECK_LEN or any(c not in ALPHABET for c in rest):
                return None
            body, check = rest[:BODY_LEN], rest[BODY_LEN:]
            if not secrets.compare_digest(_checksum(body), check):
                return None
            return ParsedKey(kind, hash_key(plaintext))
    return None


def looks_like_key(value: str) -> bool:
    """Carries a TARX key prefix (well-formed or not)."""
    return any(value.startswith(prefix) for prefix in PREFIXES.values())


def display_prefix(plaintext: str) -> str:
    """Enough to recognise a key in a list, far too little to use it."""
    for prefix in PREFIXES.values():
        if plaintext.startswith(prefix):
            return plaintext[: len(prefix) + 4] + "…"
    return plaintext[:6] + "…"
