"""Helpers for identity tests: the owner's key from the data dir, and sign-in of other users by one-time code."""

from __future__ import annotations

import re
import time

import httpx

from conftest import Runtime


def owner_key(rt: Runtime) -> str:
    return (rt.data_dir / "owner.key").read_text().strip()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def owner_in_default_project(rt: Runtime) -> dict[str, str]:
    """The owner's headers in their first (default) project, as /api/v1 resource routes want them."""
    headers = bearer(owner_key(rt))
    project_id = httpx.get(rt.url + "/api/v1/projects", headers=headers).json()["items"][0]["id"]
    return {**headers, "X-Project-ID": project_id}


def sign_in(rt: Runtime, email: str) -> str:
    """The one-time-code flow a person would follow: request, read the code from the runtime's log, verify."""
    r = httpx.post(rt.url + "/api/auth/request-otp", json={"email": email})
    assert r.status_code == 200, r.text
    pattern = re.compile(rf"one-time sign-in code for {re.escape(email.lower())}: (\d{{6}})")
    deadline = time.monotonic() + 5
    while not (codes := pattern.findall(rt.log())):
        assert time.monotonic() < deadline, "no code in the runtime log"
        time.sleep(0.05)
    r = httpx.post(rt.url + "/api/auth/verify-otp", json={"email": email, "code": codes[-1]})
    assert r.status_code == 200, r.text
    return r.json()["payload"]["token"]


def user_key(rt: Runtime, email: str) -> str:
    """A platform key for `email` (who must already be a member somewhere), minted with their own session."""
    token = sign_in(rt, email)
    r = httpx.post(rt.url + "/api/v1/platform-keys", json={"name": "tests"}, headers=bearer(token))
    assert r.status_code == 201, r.text
    return r.json()["key"]
