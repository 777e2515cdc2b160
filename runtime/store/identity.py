"""Users, entitlements, projects (served also as compute workspaces) and their members."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiosqlite

from runtime.store.db import Database, connection, utcnow
from runtime.store.ids import new_id

ROLES = ("member", "editor", "admin", "owner")  # ascending power


@dataclass
class User:
    id: str
    email: str
    name: str
    is_owner: bool
    created_at: str

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "name": self.name, "is_owner": self.is_owner,
                "created_at": self.created_at}


@dataclass
class Project:
    id: str
    owner_id: str
    slug: str
    name: str
    description: str
    default_region: str
    created_at: str
    updated_at: str
    role: str | None = None  # the caller's role, when read for a caller

    def public(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "role"}
        if self.role is not None:
            out["role"] = self.role
        return out


def _user(row: Any) -> User:
    return User(row["id"], row["email"], row["name"], bool(row["is_owner"]), row["created_at"])


def _project(row: Any) -> Project:
    keys = row.keys()
    return Project(row["id"], row["owner_id"], row["slug"], row["name"], row["description"], row["default_region"],
                   row["created_at"], row["updated_at"], row["role"] if "role" in keys else None)


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:48] or "project"


# ---- users ---------------------------------------------------------------------------------------------------

async def create_user(tx: aiosqlite.Connection, email: str, name: str, is_owner: bool = False) -> User:
    user = User(new_id("usr"), email.lower(), name, is_owner, utcnow())
    await tx.execute("INSERT INTO users (id, email, name, is_owner, created_at) VALUES (?, ?, ?, ?, ?)",
                     (user.id, user.email, user.name, int(is_owner), user.created_at))
    return user


async def get_user(db: Database, user_id: str) -> User | None:
    row = await db.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))
    return _user(row) if row else None



async def user_by_email(db: Database | aiosqlite.Connection, email: str) -> User | None:
    async with connection(db).execute("SELECT * FROM users WHERE email = ?", (email.lower(),)) as cur:
        row = await cur.fetchone()
    return _user(row) if row else None


async def owner(db: Database) -> User | None:
    row = await db.fetchone("SELECT * FROM users WHERE is_owner = 1 ORDER BY created_at LIMIT 1")
    return _user(row) if row else None


async def entitlements(db: Database, user_id: str) -> list[str]:
    rows = await db.fetchall("SELECT name FROM entitlements WHERE user_id = ? ORDER BY name", (user_id,))
    return [r["name"] for r in rows]


async def grant(tx: aiosqlite.Connection, user_id: str, name: str, by: str | None) -> None:
    await tx.execute("INSERT OR IGNORE INTO entitlements (user_id, name, granted_by, granted_at) VALUES (?, ?, ?, ?)",
                     (user_id, name, by, utcnow()))


async def revoke_entitlement(tx: aiosqlite.Connection, user_id: str, name: str) -> bool:
    cur = await tx.execute("DELETE FROM entitlements WHERE user_id = ? AND name = ?", (user_id, name))
    return cur.rowcount > 0


# ---- projects and members -------------------------------------------------------------------------------------

async def create_project(tx: aiosqlite.Connection, owner_id: str, name: str, slug: str | None = None,
                         description: str = "", default_region: str = "local") -> Project:
    now = utcnow()
    project = Project(new_id("proj"), owner_id, slug or slugify(name), name, description, default_region, now, now,
                      "owner")
    await tx.execute(
        "INSERT INTO projects (id, owner_id, slug, name, description, default_region, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (project.id, owner_id, project.slug, name, description, default_region, now, now))
    await tx.execute("INSERT INTO project_members (project_id, user_id, role, added_at) VALUES (?, ?, 'owner', ?)",
                     (project.id, owner_id, now))
    return project


async def slug_taken(db: Database | aiosqlite.Connection, owner_id: str, slug: str) -> bool:
    sql = "SELECT 1 FROM projects WHERE owner_id = ? AND slug = ?"
    async with connection(db).execute(sql, (owner_id, slug)) as cur:
        return await cur.fetchone() is not None


_MEMBER_PROJECTS = (
    "SELECT p.*, m.role AS role FROM projects p JOIN project_members m ON m.project_id = p.id WHERE m.user_id = ?"
)


async def projects_for(db: Database, user_id: str) -> list[Project]:
    rows = await db.fetchall(_MEMBER_PROJECTS + " ORDER BY p.created_at", (user_id,))
    return [_project(r) for r in rows]


async def project_for(db: Database, user_id: str, project_id: str) -> Project | None:
    row = await db.fetchone(_MEMBER_PROJECTS + " AND p.id = ?", (user_id, project_id))
    return _project(row) if row else None


async def projects_by_slug(db: Database, user_id: str, slug: str) -> list[Project]:
    rows = await db.fetchall(_MEMBER_PROJECTS + " AND p.slug = ? ORDER BY p.owner_id = ? DESC",
                             (user_id, slug, user_id))
    return [_project(r) for r in rows]


async def update_project(tx: aiosqlite.Connection, project_id: str, fields: dict[str, Any]) -> None:
    if not fields:
        return
    sets = ", ".join(f"{k} = ?" for k in fields)
    await tx.execute(f"UPDATE projects SET {sets}, updated_at = ? WHERE id = ?",
                     (*fields.values(), utcnow(), project_id))


async def members(db: Database, project_id: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT u.id AS user_id, u.email, u.name, m.role, m.added_at FROM project_members m "
        "JOIN users u ON u.id = m.user_id WHERE m.project_id = ? ORDER BY m.added_at", (project_id,))
    return [dict(r) for r in rows]


async def set_member(tx: aiosqlite.Connection, project_id: str, user_id: str, role: str) -> None:
    await tx.execute(
        "INSERT INTO project_members (project_id, user_id, role, added_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
        (project_id, user_id, role, utcnow()))


async def remove_member(tx: aiosqlite.Connection, project_id: str, user_id: str) -> bool:
    cur = await tx.execute("DELETE FROM project_members WHERE project_id = ? AND user_id = ?", (project_id, user_id))
    return cur.rowcount > 0
