"""TarxClient: the only way the console and the CLI reach a runtime (over HTTP, or in-process over ASGI).

No textual imports here.
"""

from __future__ import annotations

from typing import Any

import httpx

KEY_KINDS = ("tarx", "platform", "compute")


class ClientError(Exception):
    """A runtime answered with an error; `message` is the envelope's human-readable text, whatever its family."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def _error_from(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        return ClientError(response.status_code, response.text[:200] or response.reason_phrase)
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):  # /v1 and /api/keys
            return ClientError(response.status_code, body["error"].get("message", ""), body["error"].get("code"))
        if "detail" in body:  # /api/v1
            return ClientError(response.status_code, str(body["detail"]), body.get("error_code"))
        if "message" in body:  # /api/compute, /v0
            return ClientError(response.status_code, str(body["message"]), body.get("status"))
    return ClientError(response.status_code, response.text[:200])


class TarxClient:
    def __init__(self, http: httpx.AsyncClient, key: str | None) -> None:
        self.http = http
        if key:
            self.http.headers["Authorization"] = f"Bearer {key}"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise _error_from(r)
        if r.status_code == 204 or not r.content:
            return None
        body = r.json()
        if path.startswith("/api/compute/") or path.startswith("/api/auth/"):
            return body["payload"]
        return body

    # ---- runtime -------------------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        r = await self.http.get("/v1/health")
        return r.json()

    async def version(self) -> dict[str, Any]:
        return await self._call("GET", "/api/version")

    async def me(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/auth/me")

    # ---- keys of every kind ------------------------------------------------------------------------------------

    async def create_key(self, kind: str, name: str, scope: str | None = None, *, workspace: str | None = None,
                         quotas: dict[str, Any] | None = None, expires_at: str | None = None) -> dict[str, Any]:
        if kind == "tarx":
            body: dict[str, Any] = {"name": name, "scope": scope or "developer_runtime"}
            if expires_at:
                body["expires_at"] = expires_at
            return {"kind": kind, **await self._call("POST", "/api/keys", json=body)}
        if kind == "platform":
            body = {"name": name, **({"expires_at": expires_at} if expires_at else {})}
            return {"kind": kind, **await self._call("POST", "/api/v1/platform-keys", json=body)}
        if kind == "compute":
            body = {"name": name, **(quotas or {})}
            if workspace:
                body["workspaceId"] = workspace
            if expires_at:
                body["expiresAt"] = expires_at
            return {"kind": kind, **await self._call("POST", "/api/compute/api-keys/create", json=body)}
        raise ValueError(f"kind must be one of {KEY_KINDS}")

    async def list_keys(self, kind: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if kind in (None, "tarx"):
            out += [{**k, "kind": "tarx"} for k in (await self._call("GET", "/api/keys"))["data"]]
        if kind in (None, "platform"):
            page = await self._call("GET", "/api/v1/platform-keys", params={"per_page": 200})
            out += [{**k, "kind": "platform"} for k in page["items"]]
        if kind in (None, "compute"):
            for k in await self._call("POST", "/api/compute/api-keys/list", json={}):
                out.append({"id": k["id"], "kind": "compute", "name": k["name"], "display_prefix": k["prefix"],
                            "project_id": k["workspaceId"], "quotas": {q: k[q] for q in (
                                "maxJobsPerHour", "maxConcurrentJobs", "allowedJobTypes") if k.get(q) is not None},
                            "created_at": k["createdAt"], "last_used_at": k["lastUsedAt"],
                            "expires_at": k["expiresAt"], "revoked_at": k["revokedAt"]})
        return sorted(out, key=lambda k: k["created_at"])

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        found = next((k for k in await self.list_keys() if k["id"] == key_id), None)
        if found is None:
            raise ClientError(404, f"Key '{key_id}' was not found.")
        if found["kind"] == "tarx":
            await self._call("DELETE", "/api/keys", params={"id": key_id})
        elif found["kind"] == "platform":
            await self._call("DELETE", f"/api/v1/platform-keys/{key_id}")
        else:
            await self._call("POST", "/api/compute/api-keys/revoke", json={"id": key_id})
        return found

    async def grant_entitlement(self, name: str, email: str | None = None, revoke: bool = False) -> list[str]:
        body = {"entitlement": name, **({"email": email} if email else {})}
        result = await self._call("DELETE" if revoke else "POST", "/api/account/entitlements", json=body)
        return result["entitlements"]

    # ---- projects ------------------------------------------------------------------------------------------------

    async def list_projects(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/v1/projects", params={"per_page": 200}))["items"]

    async def create_project(self, name: str, slug: str | None = None) -> dict[str, Any]:
        return await self._call("POST", "/api/v1/projects", json={"name": name, **({"slug": slug} if slug else {})})
