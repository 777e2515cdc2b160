"""Runtime settings: constructor arguments > env `TARX_*` > `config.toml` in the platformdirs config dir > defaults."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

APP_NAME = "tarx"


def config_dir() -> Path:
    return Path(os.environ.get("TARX_CONFIG_DIR") or platformdirs.user_config_dir(APP_NAME))


def config_file() -> Path:
    return Path(os.environ.get("TARX_CONFIG") or config_dir() / "config.toml")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TARX_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 11440
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    db: Path | None = None  # defaults to <data_dir>/tarx.db
    # How often the write-ahead log (<db>-wal) is checkpointed into the database and truncated, so it cannot keep
    # growing under steady writes; 0 leaves it to SQLite's automatic checkpoints.
    wal_checkpoint_seconds: float = 300.0

    # Inference
    default_model: str = "tarx-local"
    # Other names a model answers to, so tools that hard-code one work unchanged, e.g. {"gpt-4o-mini" = "tarx-local",
    # "text-embedding-3-small" = "tarx-embed"}; /v1/models lists them, every /v1 endpoint resolves them.
    model_aliases: dict[str, str] = Field(default_factory=dict)
    embedding_model: str = "tarx-embed"  # the default for RAG sources (bundled all-MiniLM-L6-v2, see issue 13)
    model_files: list[Path] = Field(default_factory=list)  # extra GGUF files, served under their stem
    n_ctx: int = 4096
    # llama.cpp's threads per model runner. None: every core this process may use but one, which stays free for
    # the API process's per-token work (HTTP, SSE, the event loop); on a 2-core machine one thread decoded 138
    # tok/s and two only 89, because the Python side kept preempting llama.cpp's threads (issue 16).
    n_threads: int | None = None
    n_batch: int = 512
    keep_alive_seconds: float = 300.0  # unload a model after this long unused
    queue_max: int = 16  # pending requests per model before 429
    retry_after_seconds: int = 2
    # A request whose expected wait (the work queued ahead of it at the measured tokens/s) exceeds this is
    # answered 429 at once, with a Retry-After from that estimate, rather than left waiting; 0 turns it off.
    queue_max_wait_seconds: float = 90.0
    max_body_bytes: int = 4 * 1024 * 1024
    max_output_tokens: int = 2048  # ceiling when a request leaves max_tokens unset
    # Sequences a chat model decodes together in one batch per step (continuous batching); 1 serves one request at
    # a time. Requests past this wait in the queue.
    parallel: int = Field(default=4, ge=1, le=64)
    # Prompt tokens of a joining request evaluated per step while other requests are generating, so their streams
    # keep flowing during a long prefill; a prompt with nobody else running goes in n_batch-sized chunks.
    prefill_chunk: int = Field(default=256, ge=16)
    # Prefix reuse: a request whose prompt starts like what a slot's KV cache holds (a resent chat history, an
    # agent's long system prompt) evaluates only the rest. See README "Reproducibility" for what it may change.
    cache_prompt: bool = True
    # One KV cache of n_ctx cells shared by all `parallel` slots instead of n_ctx cells per slot: 1/parallel of the
    # KV memory (the memory llama-server's `-c` takes), but a cell's place then depends on what else ran, which
    # changes attention's summation order: measured, 7 of 8 greedy answers changed beside three others
    # (bench/determinism.py). Off by default, so an answer at temperature 0 never depends on its neighbours.
    kv_unified: bool = False

    log_requests: bool = True
    # GET /metrics (Prometheus text format) answers only the runtime's owner; true: anyone who can reach the port.
    metrics_public: bool = False

    # Access. None: /v1 inference needs no key on a loopback bind (seed 000's migration note) and needs one on
    # any other bind. Every other API family always needs a key.
    inference_requires_key: bool | None = None
    session_seconds: int = 3600  # lifetime of JWT sessions from /api/auth/verify-otp
    # Sign-in by one-time code (/api/auth/*), throttled per email and per client address (IPv6 per /64), in
    # memory (a restart clears it); see runtime/auth/signin_limits.py.
    signin_code_interval_seconds: float = 30.0  # one code request per email this often
    signin_codes_per_hour: int = 10  # code requests per client address per hour
    signin_code_attempts: int = 5  # wrong guesses after which a code is void
    signin_email_failures: int = 3  # failed verifications of one email before it locks
    signin_address_failures: int = 10  # failed verifications from one address before it locks
    signin_lockout_seconds: float = 30.0  # the first lockout; each further one doubles
    signin_lockout_max_seconds: float = 3600.0  # the longest lockout

    # Compute plane
    local_node: bool = True  # run one worker node inside the runtime, so jobs run with nothing else started
    local_node_capacity: int | None = None  # default: the machine's cores
    node_heartbeat_seconds: float = 30.0
    lease_grace_seconds: float = 90.0  # a node silent this long loses its jobs (requeued, or failed node_lost)
    node_poll_wait_seconds: float = 20.0  # long-poll length
    job_max_attempts: int = 3
    artifact_max_bytes: int = 256 * 1024 * 1024
    artifact_url_seconds: int = 900  # presigned URL lifetime
    # Retries follow Standard Webhooks' schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), then the delivery fails.
    webhook_max_attempts: int = 8  # the first attempt included
    webhook_backoff_seconds: float = 5.0  # the first retry's wait; later ones keep the schedule's proportions
    webhook_rotation_grace_seconds: float = 86400.0  # old secret keeps signing this long after a rotation

    # Execution planes (issue: planes and route evidence)
    supercomputer_url: str | None = None  # hosted upstream speaking the OpenAI-compatible API (another runtime)
    supercomputer_key: str | None = None
    upstream_timeout_seconds: float = 120.0
    cpu_watts_per_core: float = 15.0  # the CPU-time energy model when RAPL cannot be read
    monthly_joules_plan: float = 3_600_000.0  # the plan figure /v1/usage counts down from (1 kWh)

    # Agents (issue 13): the tool loop's bounds and the http_request tool's address policy
    agent_max_tool_rounds: int = Field(default=4, ge=0, le=32)  # rounds of tool calls before a tool-less answer
    agent_tool_timeout_seconds: float = Field(default=20.0, gt=0)  # one tool call's limit; then it fails
    agent_http_allow_private: bool = False  # let http_request reach private, loopback and link-local addresses

    # Workflows (issue 14): seed 001's execution limit, retention, node defaults, cancel grace
    workflow_executions_per_hour: int = Field(default=100, ge=0)  # per project; 0 turns the limit off
    workflow_retention_days: float = Field(default=30.0, ge=0)  # finished executions older are pruned; 0 keeps all
    workflow_node_timeout_seconds: float = Field(default=300.0, gt=0)  # a node's limit unless its config sets one
    workflow_cancel_grace_seconds: float = Field(default=5.0, ge=0)  # cooperative cancel, then forced
    workflow_max_concurrent: int = Field(default=64, ge=1)  # executions running at once (more wait as pending)
    # A scheduled run due this long ago or less still runs (once, however many were missed: coalesced), also one
    # missed while the runtime was down; an older one is skipped (runtime/workflows/scheduler.py).
    workflow_schedule_misfire_grace_seconds: int = Field(default=60, ge=1)
    # Browser origins allowed to read the API (CORS). Pages served from this machine (http://localhost:*,
    # http://127.0.0.1:*, http://[::1]:*) are allowed by default, as Ollama does; other origins only when listed
    # (["*"] for any). Any request header is allowed, since SDKs add their own (x-stainless-*); cookies never
    # are (keys travel as bearer headers). What an allowed page can do is what its key can do, or, with no key,
    # the key-less loopback /v1 surface.
    cors_origins: list[str] = Field(default_factory=list)
    cors_loopback_origins: bool = True
    # Host names a request's Host header may carry (DNS-rebinding defence, as llama.cpp and Jupyter do). IP
    # literals, `localhost` and `*.localhost` are always accepted, and on a non-loopback bind so are this machine's
    # own names; add the names clients use to reach it (e.g. ["gpubox.lan"]), or ["*"] to accept any.
    allowed_hosts: list[str] = Field(default_factory=list)

    # Rate limits per key (per client IP when anonymous); seed 001 and seed 003 figures.
    rate_limits: bool = True
    rate_platform_per_minute: int = 200
    rate_platform_burst: int = 30
    rate_platform_burst_seconds: int = 5
    rate_compute_per_minute: int = 1000
    rate_compute_per_hour: int = 30000

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        if self.db is None:
            self.db = self.data_dir / "tarx.db"
        return self

    @property
    def db_path(self) -> Path:
        assert self.db is not None
        return self.db

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    @property
    def inference_needs_key(self) -> bool:
        return (not self.loopback) if self.inference_requires_key is None else self.inference_requires_key

    @property
    def owner_key_file(self) -> Path:
        """The owner's first key, written at first start (0600): how local tools act as the owner."""
        return self.data_dir / "owner.key"

    @property
    def key_file(self) -> Path:
        """Encryption and signing secrets, beside the database (0600)."""
        return self.db_path.with_name(self.db_path.name + ".key")

    @property
    def threads(self) -> int:
        if self.n_threads:
            return self.n_threads
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        return max(1, cores - 1)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)
