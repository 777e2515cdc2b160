"""What routers reach through `request.app.state`: the services the lifespan started."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from runtime.config import Settings
from runtime.inference.chat import ChatService
from runtime.inference.engine import InferenceEngine
from runtime.store import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    engine: InferenceEngine
    chat: ChatService
    instance_id: str
    version: str
    started_at_epoch: int
    started_at: str


def services(request: Request) -> Services:
    return request.app.state.services
