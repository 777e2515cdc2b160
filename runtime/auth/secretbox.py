"""Encryption at rest for credentials and BYOK keys, with a key file beside the database (mode 0600).

The same file holds the signing secret for short-lived JWT sessions.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


def _write_private(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)


class SecretBox:
    def __init__(self, key_file: Path) -> None:
        if not key_file.exists():
            _write_private(key_file, json.dumps({
                "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),  # Fernet's key format
                "jwt_secret": secrets.token_urlsafe(48),
            }))
        key_file.chmod(0o600)
        data = json.loads(key_file.read_text())
        self._key = data["fernet_key"].encode()
        self.jwt_secret: str = data["jwt_secret"]

    @functools.cached_property
    def _fernet(self) -> Fernet:
        # cryptography is imported on first use: its bindings take 6 MiB of resident memory, which a runtime that
        # seals nothing (no credentials, BYOK keys or webhooks) never needs.
        from cryptography.fernet import Fernet

        return Fernet(self._key)

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, token: bytes) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with this runtime's key file") from exc


def mask(value: str) -> str:
    """`sk-…abcd`: the last four characters, never more than a quarter of the value."""
    if len(value) < 12:
        return "****"
    return f"{value[:3]}…{value[-4:]}"


write_private = _write_private
