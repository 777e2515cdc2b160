"""The running runtime's parts, opened and closed together by the app's lifespan and handed to routers through
the `Svc` dependency (runtime/api/deps.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from runtime import __version__
from runtime.agents.service import AgentService
from runtime.auth.accounts import Accounts
from runtime.auth.bootstrap import bootstrap
from runtime.auth.principal import Authenticator
from runtime.auth.secretbox import SecretBox
from runtime.auth.signin_limits import SigninLimits, SigninPolicy
from runtime.compute.artifacts import ArtifactStore
from runtime.compute.jobs import JobService
from runtime.compute.nodes import NodeService
from runtime.compute.signals import Signals
from runtime.compute.webhooks import WebhookService
from runtime.config import Settings
from runtime.inference.chat import ChatService
from runtime.inference.engine import InferenceEngine
from runtime.inference.responses import ResponsesService
from runtime.mcp import McpService
from runtime.metrics import Metrics
from runtime.rag import RagService
from runtime.skills import SkillCatalog
from runtime.store import Database, meta, utcnow
from runtime.workflows.scheduler import ScheduleService
from runtime.workflows.service import WorkflowService
from runtime.workflows.triggers import TriggerService


@dataclass
class Services:
    """The running runtime's parts."""

    settings: Settings
    db: Database
    engine: InferenceEngine
    chat: ChatService
    auth: Authenticator
    accounts: Accounts
    jobs: JobService
    nodes: NodeService
    artifacts: ArtifactStore
    webhooks: WebhookService
    mcp: McpService  # the project's MCP servers and their tools (runtime/mcp)
    rag: RagService  # RAG sources, indexing, the directory watchers and hybrid retrieval (runtime/rag)
    agents: AgentService  # agent records and the tool loop (runtime/agents)
    skills: SkillCatalog  # the built-in skills (runtime/skills)
    metrics: Metrics  # this app's Prometheus registry (GET /metrics), shared with the engine and webhooks
    instance_id: str
    version: str
    started_at_epoch: int
    started_at: str
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    responses: ResponsesService = field(init=False)  # /v1/responses on the chat seam, stored per caller
    workflows: WorkflowService = field(init=False)  # workflow records and executions (runtime/workflows)
    schedules: ScheduleService = field(init=False)  # workflow cron schedules on APScheduler
    triggers: TriggerService = field(init=False)  # signed inbound webhooks starting workflows (webhooks: outbound)
    _reaper: asyncio.Task[None] | None = None
    _checkpoints: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        """Open the database (migrating it), bootstrap the owner, and start the background services."""
        db = Database(settings.db_path)
        await db.open()
        instance_id = await meta.ensure_instance(db)
        box = SecretBox(settings.key_file)
        auth = Authenticator(db, box, settings.session_seconds)
        await bootstrap(db, settings.owner_key_file)
        signals = Signals()
        webhooks = WebhookService(db, box, signals, max_attempts=settings.webhook_max_attempts,
                                  rotation_grace_seconds=settings.webhook_rotation_grace_seconds,
                                  base_backoff_seconds=settings.webhook_backoff_seconds)
        jobs = JobService(db, signals, webhooks, lease_grace_seconds=settings.lease_grace_seconds,
                          max_attempts=settings.job_max_attempts)
        engine = InferenceEngine(settings)
        metrics = Metrics()
        engine.metrics = webhooks.metrics = metrics
        chat = ChatService(settings, engine, db, box)
        skills = SkillCatalog(db)
        rag = RagService(db, chat, settings.embedding_model)
        mcp = McpService(db, box, allow_private=settings.agent_http_allow_private)
        svc = cls(
            settings=settings, db=db, engine=engine, chat=chat, auth=auth, rag=rag,
            accounts=Accounts(db, box, auth, SigninLimits(SigninPolicy.from_settings(settings))), jobs=jobs,
            nodes=NodeService(db, heartbeat_seconds=settings.node_heartbeat_seconds,
                              lease_grace_seconds=settings.lease_grace_seconds,
                              poll_wait_seconds=settings.node_poll_wait_seconds, keys_changed=auth.invalidate),
            artifacts=ArtifactStore(db, settings.data_dir / "artifacts", box.jwt_secret, settings.artifact_max_bytes,
                                    settings.artifact_url_seconds),
            agents=AgentService(settings, db, chat, skills, rag=rag, mcp=mcp), skills=skills, mcp=mcp,
            webhooks=webhooks, metrics=metrics, instance_id=instance_id, version=__version__,
            started_at_epoch=int(time.time()), started_at=utcnow(),
        )
        svc.responses = ResponsesService(chat, db)
        svc.workflows = WorkflowService(settings, db, chat, svc.agents, rag, jobs, svc.stopping)
        svc.schedules = ScheduleService(db, svc.workflows,
                                        misfire_grace_seconds=settings.workflow_schedule_misfire_grace_seconds)
        svc.workflows.schedule_info = svc.schedules.info
        svc.triggers = TriggerService(db, box, svc.workflows)
        webhooks.start()
        await svc.rag.start()
        await svc.workflows.open()  # resumes the executions a stop or crash left unfinished
        await svc.schedules.start()  # rebuilt from the database
        svc._reaper = asyncio.create_task(jobs.run_reaper(min(1.0, settings.lease_grace_seconds / 4)),
                                          name="tarx-reaper")
        if settings.wal_checkpoint_seconds > 0:
            svc._checkpoints = asyncio.create_task(db.run_checkpoints(settings.wal_checkpoint_seconds),
                                                   name="tarx-wal-checkpoint")
        return svc

    def begin_shutdown(self) -> None:
        """End what streams: generations are cut (their streams close with an error event) and log followers
        close with an end event, so no client is left with a half-sent response."""
        self.stopping.set()
        self.engine.begin_shutdown()

    async def close(self) -> None:
        self.begin_shutdown()
        for task in (self._reaper, self._checkpoints):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.schedules.stop()  # no new scheduled runs while the running ones stop
        await self.workflows.close()
        await self.webhooks.stop()
        await self.rag.close()
        await self.chat.close()
        await self.engine.stop()
        await self.db.close()
