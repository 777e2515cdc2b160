"""What every `/api/v1` router shares: seed 001's list shape, its paging parameters and common field types."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import Field, StrictStr

Name = Annotated[StrictStr, Field(min_length=1, max_length=100)]
Email = Annotated[StrictStr, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
MAX_PAGE = 1_000_000  # as in the compute families: far past any real list, far below integer overflow
Page = Annotated[int, Query(ge=1, le=MAX_PAGE, alias="page")]
PerPage = Annotated[int, Query(ge=1, le=200)]


def page(items: list[Any], page: int, per_page: int) -> dict[str, Any]:
    start = (page - 1) * per_page
    return {"items": items[start:start + per_page], "total": len(items), "page": page, "per_page": per_page}
