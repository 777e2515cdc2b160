"""One-time sign-in codes: stored as a hash, one live code per user, with a failed-attempt count."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import aiosqlite

from runtime.store.db import Database, utcnow


@dataclass
class OtpCode:
    id: str
    user_id: str
    code_hash: str
    expires_at: str
    attempts: int
    used_at: str | None


async def replace(tx: aiosqlite.Connection, user_id: str, code_hash: str, expires_at: str) -> str:
    """A new live code for the user; any code still live is used up first."""
    await tx.execute("UPDATE otp_codes SET used_at = ? WHERE user_id = ? AND used_at IS NULL", (utcnow(), user_id))
    code_id = secrets.token_hex(8)
    await tx.execute("INSERT INTO otp_codes (id, user_id, code_hash, expires_at) VALUES (?, ?, ?, ?)",
                     (code_id, user_id, code_hash, expires_at))
    return code_id


async def live(db: Database, user_id: str) -> OtpCode | None:
    """The user's newest unused code (expired or not: the caller decides)."""
    row = await db.fetchone(
        "SELECT * FROM otp_codes WHERE user_id = ? AND used_at IS NULL ORDER BY expires_at DESC LIMIT 1", (user_id,))
    if row is None:
        return None
    return OtpCode(row["id"], row["user_id"], row["code_hash"], row["expires_at"], row["attempts"], row["used_at"])


async def count_attempt(db: Database, code_id: str) -> None:
    await db.execute("UPDATE otp_codes SET attempts = attempts + 1 WHERE id = ?", (code_id,))


async def use(tx: aiosqlite.Connection, code_id: str) -> None:
    await tx.execute("UPDATE otp_codes SET used_at = ? WHERE id = ?", (utcnow(), code_id))
