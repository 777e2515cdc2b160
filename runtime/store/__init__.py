"""Persistence: one SQLite file. Domain code calls the aggregate modules here; routers never write SQL."""

from runtime.store import meta
from runtime.store.db import Database, utcnow

__all__ = ["Database", "meta", "utcnow"]
