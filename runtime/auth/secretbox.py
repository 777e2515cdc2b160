"""Encryption at rest for credentials and BYOK keys, with a key file beside the database (mode 0600).

The same file holds the signing secret for short-lived JWT sessions.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


def _write_private(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)


class SecretBox:
    def __init__(self, key_file: Path) -> None:
        if not key_file.exists():
            _write_private(key_file, json.dumps({
                "fernet_key": Fernet.generate_key().decode(),
                "jwt_secret": secrets.token_urlsafe(48),
            }))
        key_file.chmod(0o600)
        data = json.loads(key_file.read_text())
        self._fernet = Fernet(data["fernet_key"].encode())
        self.jwt_secret: str = data["jwt_secret"]

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, token: bytes) -> str:
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
