"""First start: the owner account, a default project, and the owner's key in a 0600 file beside the database.

The console and CLI on the same machine read that file, so nobody pastes a key locally. Deleting the file and
restarting mints a fresh one (the old key stays valid until revoked).
"""

from __future__ import annotations

import getpass
from pathlib import Path

from runtime.auth import keys
from runtime.auth.keys import KeyKind
from runtime.auth.principal import Principal
from runtime.auth.secretbox import write_private
from runtime.store import Database, api_keys, audit, identity
from runtime.store.audit import Actor

OWNER_EMAIL = "owner@localhost"


async def bootstrap(db: Database, owner_key_file: Path) -> None:
    owner = await identity.owner(db)
    if owner is None:
        async with db.transaction() as tx:
            owner = await identity.create_user(tx, OWNER_EMAIL, getpass.getuser() or "owner", is_owner=True)
            project = await identity.create_project(tx, owner.id, "Default", "default")
            actor = Actor(owner.id, None, "bootstrap")
            await audit.write(tx, actor, "account.bootstrap", target=owner.id)
            await audit.write(tx, actor, "project.create", target=project.id, project_id=project.id,
                              detail={"name": "Default", "slug": "default"})
    path = owner_key_file
    if path.exists():
        parsed = keys.parse(path.read_text().strip())
        key = await api_keys.by_hash(db, parsed.hash) if parsed else None
        if key is not None and key.revoked_at is None and key.user_id == owner.id:
            return
        path.unlink()
    plaintext = keys.generate(KeyKind.platform)
    async with db.transaction() as tx:
        key = await api_keys.insert(tx, kind=KeyKind.platform.value, user_id=owner.id, name="local console",
                                    key_hash=keys.hash_key(plaintext), display_prefix=keys.display_prefix(plaintext))
        await audit.write(tx, Principal(owner, "bootstrap", None, "bootstrap").actor, "key.create", target=key.id,
                          detail={"kind": "platform", "name": "local console"})
    write_private(path, plaintext + "\n")
