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

from runtime.auth.access import WRITE, require
from runtime.auth.principal import Principal
from runtime.compute.access import ProjectSource, node_of, project_job
from runtime.errors import NotFound, PayloadTooLarge, TarxError
from runtime.store import Database
from runtime.store import artifacts as artifact_store
from runtime.store import jobs as job_store
from runtime.store.artifacts import Artifact
from runtime.store.ids import new_id


class BadSignature(TarxError):
    status, type, code = 403, "permission_error", "invalid_signature"


def artifact_view(a: Artifact) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "size": a.size, "sha256": a.sha256, "createdAt": a.created_at,
            "uploadedAt": a.uploaded_at}


async def list_for_job(db: Database, job_id: str) -> list[dict[str, Any]]:
    return [artifact_view(a) for a in await artifact_store.list_for_job(db, job_id)]


class ArtifactStore:
    def __init__(self, db: Database, root: Path, secret: str, max_bytes: int, ttl_seconds: int) -> None:
        self.db = db
        self.root = root
        self._key = hashlib.sha256(b"tarx-artifacts:" + secret.encode()).digest()
        self.max_bytes = max_bytes
        self.ttl = ttl_seconds

    # ---- presigned URLs -------------------------------------------------------------------------------------------

    def _sign(self, method: str, job_id: str, artifact_id: str, expires: int) -> str:
        msg = f"{method}\n{job_id}\n{artifact_id}\n{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def _url(self, method: str, job_id: str, artifact_id: str) -> dict[str, Any]:
        expires = int(time.time()) + self.ttl
        action = "upload" if method == "PUT" else "download"
        sig = self._sign(method, job_id, artifact_id, expires)
        return {"url": f"/api/compute/artifacts/{action}/{job_id}/{artifact_id}?expires={expires}&sig={sig}",
                "method": method, "artifactId": artifact_id, "expiresAt": expires}

    def _verify(self, method: str, job_id: str, artifact_id: str, expires: str | None, sig: str | None) -> None:
        if not expires or not sig:
            raise BadSignature("This artifact URL is missing its signature.")
        # Only what _url writes can match: ASCII digits of a sane length (str.isdigit alone accepts "²", which
        # int() refuses) and an ASCII signature (compare_digest raises on other text).
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12 and sig.isascii()):
            raise BadSignature("This artifact URL's signature does not match.")
        good = self._sign(method, job_id, artifact_id, int(expires))
        if not hmac.compare_digest(good, sig):
            raise BadSignature("This artifact URL's signature does not match.")
        if int(expires) < time.time():
            raise BadSignature("This artifact URL has expired; ask for a new one.")

    async def _access(self, caller: Principal, job_id: str, project: ProjectSource, write: bool) -> None:
        """Users of the job's workspace, or the node that holds the job."""
        if caller.via == "node":
            node = await node_of(self.db, caller)
            job = await job_store.get(self.db, job_id)
            if job is None or job.node_id != node.id:
                raise NotFound(f"Job '{job_id}' was not found.")
            return
        ctx = await project()
        await project_job(self.db, ctx, job_id)
        if write:
            await require(self.db, ctx, WRITE, "artifact.upload")

    async def presign_upload(self, caller: Principal, job_id: str, name: str, project: ProjectSource
                             ) -> dict[str, Any]:
        await self._access(caller, job_id, project, write=True)
        artifact_id = new_id("art")
        await artifact_store.insert(self.db, artifact_id, job_id, name)
        return self._url("PUT", job_id, artifact_id)

    async def presign_download(self, caller: Principal, job_id: str, artifact_id: str, project: ProjectSource
                               ) -> dict[str, Any]:
        await self._access(caller, job_id, project, write=False)
        found = await artifact_store.get(self.db, job_id, artifact_id)
        if found is None or found.uploaded_at is None:
            raise NotFound(f"Artifact '{artifact_id}' of job '{job_id}' was not found.")
        return self._url("GET", job_id, artifact_id)

    # ---- the files (the URL is the authorization) -----------------------------------------------------------------

    def _path(self, job_id: str, artifact_id: str) -> Path:
        return self.root / job_id / artifact_id

    async def receive(self, job_id: str, artifact_id: str, expires: str | None, sig: str | None,
                      chunks: AsyncIterator[bytes]) -> dict[str, Any]:
        self._verify("PUT", job_id, artifact_id, expires, sig)
        found = await artifact_store.get(self.db, job_id, artifact_id)
        if found is None:
            raise NotFound(f"Artifact '{artifact_id}' of job '{job_id}' was not found.")
        if found.uploaded_at is not None:
            raise TarxError("This artifact was already uploaded.", status=409, code="conflict")
        target = self._path(job_id, artifact_id)
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
        await artifact_store.mark_uploaded(self.db, artifact_id, size, sha)
        return {"id": artifact_id, "jobId": job_id, "size": size, "sha256": sha}

    async def download(self, job_id: str, artifact_id: str, expires: str | None, sig: str | None
                       ) -> tuple[Path, str | None]:
        """The stored file and its SHA-256."""
        self._verify("GET", job_id, artifact_id, expires, sig)
        path = self._path(job_id, artifact_id)
        if not path.is_file():
            raise NotFound("This artifact has not been uploaded.")
        found = await artifact_store.get(self.db, job_id, artifact_id)
        return path, found.sha256 if found else None
