"""Job artifacts: files in the data dir behind presigned URLs that carry their own authorization (seed 003's
"URL-is-auth"): an expiry and an HMAC over method, job, artifact and expiry. A changed or expired URL is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from runtime.errors import NotFound, PayloadTooLarge, TarxError
from runtime.store import Database
from runtime.store.db import utcnow
from runtime.store.ids import new_id


class BadSignature(TarxError):
    status, type, code = 403, "permission_error", "invalid_signature"


async def list_for_job(db: Database, job_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT id, name, size, sha256, created_at, uploaded_at FROM artifacts "
                             "WHERE job_id = ? ORDER BY created_at", (job_id,))
    return [{"id": r["id"], "name": r["name"], "size": r["size"], "sha256": r["sha256"], "createdAt": r["created_at"],
             "uploadedAt": r["uploaded_at"]} for r in rows]


class ArtifactStore:
    def __init__(self, db: Database, root: Path, secret: str, max_bytes: int, ttl_seconds: int) -> None:
        self.db = db
        self.root = root
        self._key = hashlib.sha256(b"tarx-artifacts:" + secret.encode()).digest()
        self.max_bytes = max_bytes
        self.ttl = ttl_seconds

    def _sign(self, method: str, job_id: str, artifact_id: str, expires: int) -> str:
        msg = f"{method}\n{job_id}\n{artifact_id}\n{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def _url(self, method: str, job_id: str, artifact_id: str) -> dict[str, Any]:
        expires = int(time.time()) + self.ttl
        action = "upload" if method == "PUT" else "download"
        sig = self._sign(method, job_id, artifact_id, expires)
        return {"url": f"/api/compute/artifacts/{action}/{job_id}/{artifact_id}?expires={expires}&sig={sig}",
                "method": method, "artifactId": artifact_id, "expiresAt": expires}

    def verify(self, method: str, job_id: str, artifact_id: str, expires: str | None, sig: str | None) -> None:
        if not expires or not sig or not expires.isdigit():
            raise BadSignature("This artifact URL is missing its signature.")
        good = self._sign(method, job_id, artifact_id, int(expires))
        if not hmac.compare_digest(good, sig):
            raise BadSignature("This artifact URL's signature does not match.")
        if int(expires) < time.time():
            raise BadSignature("This artifact URL has expired; ask for a new one.")

    async def presign_upload(self, job_id: str, name: str) -> dict[str, Any]:
        artifact_id = new_id("art")
        await self.db.execute("INSERT INTO artifacts (id, job_id, name, created_at) VALUES (?, ?, ?, ?)",
                              (artifact_id, job_id, name, utcnow()))
        return self._url("PUT", job_id, artifact_id)

    async def presign_download(self, job_id: str, artifact_id: str) -> dict[str, Any]:
        row = await self.db.fetchone("SELECT uploaded_at FROM artifacts WHERE id = ? AND job_id = ?",
                                     (artifact_id, job_id))
        if row is None or row["uploaded_at"] is None:
            raise NotFound(f"Artifact '{artifact_id}' of job '{job_id}' was not found.")
        return self._url("GET", job_id, artifact_id)

    def path(self, job_id: str, artifact_id: str) -> Path:
        return self.root / job_id / artifact_id

    async def receive(self, job_id: str, artifact_id: str, chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        row = await self.db.fetchone("SELECT uploaded_at FROM artifacts WHERE id = ? AND job_id = ?",
                                     (artifact_id, job_id))
        if row is None:
            raise NotFound(f"Artifact '{artifact_id}' of job '{job_id}' was not found.")
        if row["uploaded_at"] is not None:
            raise TarxError("This artifact was already uploaded.", status=409, code="conflict")
        target = self.path(job_id, artifact_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".part-{os.getpid()}")
        digest, size = hashlib.sha256(), 0
        try:
            with partial.open("wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PayloadTooLarge(f"Artifacts are limited to {self.max_bytes} bytes.")
                    digest.update(chunk)
                    fh.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        sha = digest.hexdigest()
        await self.db.execute("UPDATE artifacts SET size = ?, sha256 = ?, uploaded_at = ? WHERE id = ?",
                              (size, sha, utcnow(), artifact_id))
        return {"id": artifact_id, "jobId": job_id, "size": size, "sha256": sha}

    async def sha256_of(self, job_id: str, artifact_id: str) -> str | None:
        row = await self.db.fetchone("SELECT sha256 FROM artifacts WHERE id = ? AND job_id = ?", (artifact_id, job_id))
        return row["sha256"] if row else None
