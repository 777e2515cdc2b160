"""The `tarx` command. Exit codes: 0 ok, 1 failure, 2 usage (argparse's own).

Management commands (`keys`, `projects`, `jobs`, `entitlements`, `mcp`) reach a runtime through TarxClient: the
one named by `--url/--key`, `TARX_URL/TARX_API_KEY`, or the current context; otherwise the local runtime, over HTTP
when it is running and in-process on its database when it is not. A runtime that cannot be reached, or a URL that
is not one, is one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tarx_console import rag_cli

if TYPE_CHECKING:
    from runtime.config import Settings
    from tarx_console.client.api import TarxClient


# /v0 job states (the runtime's JobState), spelled out: importing the runtime would slow `tarx --help`.
JOB_STATE_NAMES = ("QUEUED", "ASSIGNED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT")


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (env TARX_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env TARX_PORT, default 11440)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tarx", description="TARX local AI runtime and console")
    parser.add_argument("--url", "--remote", dest="url",
                        help="runtime to attach to or manage (env TARX_URL; default: the current context)")
    parser.add_argument("--key", help="API key for --url/--remote (env TARX_API_KEY)")
    parser.add_argument("--context", help="use this saved context instead of the current one")
    parser.add_argument("--data-dir", type=Path, help="local data dir (env TARX_DATA_DIR)")
    parser.add_argument("--no-mouse", action="store_true", help="console: keyboard only (mouse reporting off)")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the runtime")
    serve.add_argument("--headless", action="store_true",
                       help="run in the foreground without the console (logs on stderr)")
    _serve_args(serve)
    serve.add_argument("--data-dir", type=Path, dest="serve_data_dir", help=argparse.SUPPRESS)

    node = sub.add_parser("node", help="run a worker node that takes jobs from a runtime")
    node.add_argument("--url", dest="node_url", help="the runtime (env TARX_URL)")
    node.add_argument("--key", dest="node_key",
                      help="a compute key (tnv_) or platform key to register with, or an existing node key (tnn_)")
    node.add_argument("--name", dest="node_name", help="default: this host's name")
    node.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="extra label (repeatable)")
    node.add_argument("--capacity", type=int, default=1, help="jobs run at once (default 1)")
    node.add_argument("--workdir", type=Path, help="where jobs run (default: a temporary directory)")
    node.add_argument("--state-file", type=Path, help="keeps the node's id and key across restarts (0600)")
    node.add_argument("--heartbeat-seconds", type=float, help="default: what the runtime asks for (30)")
    node.add_argument("--rotate-key-every", type=float, metavar="SECONDS", help="rotate the node key periodically")
    node.add_argument("--workspace", help="workspace (project) id, when the key reaches several")

    keys = sub.add_parser("keys", help="create, list and revoke API keys").add_subparsers(dest="action",
                                                                                        required=True)
    create = keys.add_parser("create", help="mint a key; its plaintext is shown once")
    create.add_argument("--kind", choices=["tarx", "platform", "compute"], default="platform")
    create.add_argument("--scope", choices=["developer_runtime", "supercomputer"],
                        help="for --kind tarx (default developer_runtime)")
    create.add_argument("--name", required=True)
    create.add_argument("--workspace", help="for --kind compute: workspace (project) id")
    create.add_argument("--max-jobs-per-hour", type=int)
    create.add_argument("--max-concurrent-jobs", type=int)
    create.add_argument("--allowed-job-types", help="comma-separated, e.g. COMMAND")
    create.add_argument("--expires-at", help="RFC 3339 time")
    create.add_argument("--json", action="store_true")
    listing = keys.add_parser("list", help="keys of every kind, without secrets")
    listing.add_argument("--kind", choices=["tarx", "platform", "compute"])
    listing.add_argument("--json", action="store_true")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    revoke.add_argument("--json", action="store_true")

    projects = sub.add_parser("projects", help="list and create projects; manage their members").add_subparsers(
        dest="action", required=True)
    plist = projects.add_parser("list")
    plist.add_argument("--json", action="store_true")
    pcreate = projects.add_parser("create")
    pcreate.add_argument("name")
    pcreate.add_argument("--slug")
    pcreate.add_argument("--json", action="store_true")
    members = projects.add_parser("members", help="a project's members and their roles").add_subparsers(
        dest="members_action", required=True)
    mlist = members.add_parser("list", help="who is in the project")
    mlist.add_argument("project", help="project slug or id")
    mlist.add_argument("--json", action="store_true")
    madd = members.add_parser("add", help="add a user (by email) with a role")
    madd.add_argument("project", help="project slug or id")
    madd.add_argument("email")
    madd.add_argument("--role", choices=["member", "editor", "admin", "owner"], default="member")
    madd.add_argument("--json", action="store_true")
    mremove = members.add_parser("remove", help="remove a member (by email or user id)")
    mremove.add_argument("project", help="project slug or id")
    mremove.add_argument("member", help="email or user id")
    mremove.add_argument("--json", action="store_true")

    jobs = sub.add_parser("jobs", help="submit, list, follow and cancel compute jobs").add_subparsers(
        dest="action", required=True)
    jsubmit = jobs.add_parser("submit", help="queue a shell command for a node to run")
    jsubmit.add_argument("job_command", metavar="command", help="run by sh on a node, e.g. 'echo hello'")
    jsubmit.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                         help="only nodes carrying it take the job (repeatable)")
    jsubmit.add_argument("--timeout", type=int, default=3600, help="seconds (default 3600)")
    jsubmit.add_argument("--max-attempts", type=int)
    jlist = jobs.add_parser("list", help="the newest jobs")
    jlist.add_argument("--state", choices=list(JOB_STATE_NAMES), help="only jobs in this state")
    jlist.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    jlogs = jobs.add_parser("logs", help="a job's log")
    jlogs.add_argument("id")
    jlogs.add_argument("--follow", "-f", action="store_true", help="keep printing lines until the job ends")
    jcancel = jobs.add_parser("cancel", help="cancel a queued or running job")
    jcancel.add_argument("id")
    for p in (jsubmit, jlist, jlogs, jcancel):
        p.add_argument("--project", help="project slug or id (default: `default`, else the first)")
        p.add_argument("--json", action="store_true")

    ent = sub.add_parser("entitlements", help="grant or revoke account entitlements (owner only)")
    ent.add_argument("action", choices=["grant", "revoke"])
    ent.add_argument("name", choices=["supercomputer"])
    ent.add_argument("--email", help="account to change (default: yours)")
    ent.add_argument("--json", action="store_true")

    sub.add_parser("mcp", help="serve the runtime's tools (chat, RAG search, jobs) to an MCP client over stdio")
    rag_cli.add_parser(sub)
    demo = sub.add_parser("demo", help="create a demo project: an agent, a RAG source, a workflow, a few jobs")
    demo.add_argument("--no-jobs", action="store_true", help="leave the jobs out")
    demo.add_argument("--json", action="store_true")
    login = sub.add_parser("login", help="save a remote runtime as a context and switch to it")
    login.add_argument("--url", dest="login_url", required=True)
    login.add_argument("--key", dest="login_key", required=True)
    login.add_argument("--name", required=True)

    ctx = sub.add_parser("context", help="switch between saved runtimes").add_subparsers(dest="action",
                                                                                       required=True)
    use = ctx.add_parser("use")
    use.add_argument("name")
    ctx.add_parser("list")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    from runtime.config import Settings  # lazily: keeps `tarx --help` fast

    data_dir = getattr(args, "serve_data_dir", None) or args.data_dir
    overrides = {k: v for k, v in (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None)),
                                   ("data_dir", data_dir)) if v is not None}
    return Settings(**overrides)


def _print(args: argparse.Namespace, data: Any, rows: list[list[str]] | None = None) -> None:
    if getattr(args, "json", False) or rows is None:
        print(json.dumps(data, indent=2))
        return
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


async def _keys(args: argparse.Namespace, client: TarxClient) -> None:
    if args.action == "create":
        quotas = {k: v for k, v in (("maxJobsPerHour", args.max_jobs_per_hour),
                                    ("maxConcurrentJobs", args.max_concurrent_jobs),
                                    ("allowedJobTypes", args.allowed_job_types.split(",")
                                     if args.allowed_job_types else None)) if v is not None}
        if args.kind != "compute" and (quotas or args.workspace):
            raise UsageError("quotas and --workspace apply to --kind compute only")
        if args.scope and args.kind != "tarx":
            raise UsageError("--scope applies to --kind tarx only")
        key = await client.create_key(args.kind, args.name, args.scope, workspace=args.workspace, quotas=quotas,
                                      expires_at=args.expires_at)
        if args.json:
            _print(args, key)
            return
        print(f"created {key['kind']} key {key['id']} ({key['name']})")
        print("Copy it now: it is shown only this once.", file=sys.stderr)
        print(key["key"])
    elif args.action == "list":
        keys = await client.list_keys(args.kind)
        rows = [["ID", "KIND", "NAME", "PREFIX", "SCOPE", "LAST USED", "STATE"]] + [
            [k["id"], k["kind"], k["name"], k.get("display_prefix", ""), k.get("scope") or "",
             k.get("last_used_at") or "never", "revoked" if k.get("revoked_at") else "active"] for k in keys]
        _print(args, keys, rows)
    else:
        key = await client.revoke_key(args.id)
        _print(args, {"id": key["id"], "kind": key["kind"], "revoked": True},
               [[f"revoked {key['kind']} key {key['id']}"]])


async def _projects(args: argparse.Namespace, client: TarxClient) -> None:
    if args.action == "members":
        await _members(args, client)
    elif args.action == "list":
        projects = await client.list_projects()
        rows = [["ID", "SLUG", "NAME", "ROLE"]] + [[p["id"], p["slug"], p["name"], p.get("role", "")]
                                                   for p in projects]
        _print(args, projects, rows)
    else:
        p = await client.create_project(args.name, args.slug)
        _print(args, p, [[f"created project {p['id']} ({p['slug']})"]])


async def _project_id(client: TarxClient, wanted: str) -> str:
    """A project's id from its slug or id."""
    for p in await client.list_projects():
        if wanted in (p["id"], p["slug"]):
            return str(p["id"])
    raise UsageError(f"no project '{wanted}' (see `tarx projects list`)")


async def _members(args: argparse.Namespace, client: TarxClient) -> None:
    project = await _project_id(client, args.project)
    if args.members_action == "list":
        members = await client.members(project)
        rows = [["USER", "EMAIL", "NAME", "ROLE"]] + [[m["user_id"], m["email"], m.get("name") or "", m["role"]]
                                                     for m in members]
        _print(args, members, rows)
    elif args.members_action == "add":
        member = await client.add_member(project, args.email, args.role)
        _print(args, member, [[f"added {args.email} to {args.project} as {args.role}"]])
    else:
        wanted = args.member.lower()
        found = next((m for m in await client.members(project) if wanted in (m["user_id"].lower(),
                                                                             m["email"].lower())), None)
        if found is None:
            raise UsageError(f"'{args.member}' is not a member of {args.project}")
        await client.remove_member(project, found["user_id"])
        _print(args, {"user_id": found["user_id"], "email": found["email"], "removed": True},
               [[f"removed {found['email']} from {args.project}"]])


async def _use_project(client: TarxClient, wanted: str | None) -> None:
    """Act in `--project`, else as the console does: `default`, else the first project (with several projects
    and no header the runtime answers 400, which `tarx demo` makes the usual case)."""
    if wanted:
        client.use_project(await _project_id(client, wanted))
        return
    projects = await client.list_projects()
    chosen = next((p for p in projects if p["slug"] == "default"), projects[0] if projects else None)
    client.use_project(chosen["id"] if chosen else None)


async def _rag(args: argparse.Namespace, client: TarxClient) -> None:
    await _use_project(client, args.project)
    await rag_cli.run(args, client)


async def _jobs(args: argparse.Namespace, client: TarxClient) -> None:
    await _use_project(client, args.project)
    if args.action == "submit":
        labels = {}
        for item in args.label:
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise UsageError(f"--label takes KEY=VALUE, not '{item}'")
            labels[k] = v
        job = await client.submit_job(args.job_command, labels=labels, timeout_seconds=args.timeout,
                                      max_attempts=args.max_attempts)
        _print(args, job, [[f"submitted job {job['id']} ({job['state']})"]])
    elif args.action == "list":
        if args.limit < 1:
            raise UsageError("--limit is at least 1")
        jobs, total = await client.list_jobs(args.limit, args.state)
        if args.json:
            _print(args, {"items": jobs, "total": total})
            return
        rows = [["ID", "STATE", "COMMAND", "TRY", "EXIT", "CREATED"]] + [
            [j["id"], j["state"], j["command"].replace("\n", " ")[:50], f"{j['attempt']}/{j['maxAttempts']}",
             "" if j.get("exitCode") is None else str(j["exitCode"]), j["createdAt"]] for j in jobs]
        _print(args, jobs, rows)
        if total > len(jobs):
            print(f"({len(jobs)} of {total}; --limit shows more)", file=sys.stderr)
    elif args.action == "logs":
        await _job_logs(args, client)
    else:
        job = await client.cancel_job(args.id)
        _print(args, job, [[f"cancel requested for job {job['id']} ({job['state']})"]])


async def _job_logs(args: argparse.Namespace, client: TarxClient) -> None:
    """Lines as they come (one JSON object a line with --json); with --follow, until the job ends, and then the
    exit code tells the job's outcome: 0 when it succeeded, 1 otherwise."""
    if not args.follow:
        await client.job(args.id)  # an unknown job is an error, not an empty log
        for record in await client.job_log(args.id):
            print(json.dumps(record) if args.json else record["text"], flush=True)
        return
    async for record in client.follow_job_log(args.id):
        if "end" in record:
            end = record["end"]
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                print(f"── end: {end.get('state')} exit {end.get('exitCode')}", file=sys.stderr)
            if end.get("state") != "SUCCEEDED":
                raise JobEnded(end.get("state") or "ended")
            return
        print(json.dumps(record) if args.json else record["text"], flush=True)


class JobEnded(Exception):
    """A followed job ended without succeeding: `tarx jobs logs --follow` exits 1."""


async def _entitlements(args: argparse.Namespace, client: TarxClient) -> None:
    names = await client.grant_entitlement(args.name, args.email, revoke=args.action == "revoke")
    _print(args, {"entitlements": names}, [["entitlements: " + (", ".join(names) or "none")]])


class UsageError(Exception):
    pass


async def _demo(args: argparse.Namespace, client: TarxClient) -> None:
    from dataclasses import asdict

    from tarx_console.demo import DEMO_SLUG, create_demo

    made = await create_demo(client, jobs=not args.no_jobs)
    lines = [[f"created {line}"] for line in made.created] + [[f"already there: {line}"] for line in made.found]
    lines.append([f"open it with `tarx` and `:projects` (slug {DEMO_SLUG}), or set project = \"{DEMO_SLUG}\" "
                  "in the console's config.toml"])
    _print(args, asdict(made), lines)


async def _mcp(args: argparse.Namespace, client: TarxClient) -> None:
    from tarx_console.mcp_server import serve_stdio

    await serve_stdio(client)


def _with_client(args: argparse.Namespace, fn: Callable[[argparse.Namespace, TarxClient], Awaitable[None]]) -> int:
    from tarx_console.client.connect import resolve_target
    from tarx_console.client.errors import ClientError, Unreachable
    from tarx_console.host import open_client

    where = ["the runtime"]  # named in the one line an unreachable runtime gets, once the target is known

    async def run() -> None:
        target = resolve_target(args.url, args.key, args.context)
        if target.url:
            where[0] = target.url
        async with open_client(target, _settings(args)) as client:
            await fn(args, client)

    try:
        asyncio.run(run())
    except UsageError as exc:
        print(f"tarx: {exc}", file=sys.stderr)
        return 2
    except JobEnded:
        return 1
    except rag_cli.IndexingFailed as exc:
        print(f"tarx: indexing failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Unreachable as exc:
        print(f"tarx: cannot reach {where[0]}: {exc.message}", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"tarx: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `tarx jobs logs J | head`: the reader left; say nothing, as other CLIs do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail
        return 1
    except (KeyError, OSError) as exc:
        print(f"tarx: {exc}", file=sys.stderr)
        return 1
    return 0


def _login(args: argparse.Namespace) -> int:
    from tarx_console.client.connect import LOCAL, Target, check_url, load_contexts, save_contexts
    from tarx_console.client.errors import ClientError, Refused
    from tarx_console.host import open_client

    if args.name == LOCAL:
        print(f"tarx: '{LOCAL}' is reserved for this machine's runtime", file=sys.stderr)
        return 2

    async def check() -> dict[str, Any]:
        async with open_client(Target(args.name, check_url(args.login_url), args.login_key)) as client:
            return await client.me()

    try:
        me = asyncio.run(check())
    except Refused as exc:
        print(f"tarx: the runtime refused the key: {exc}", file=sys.stderr)
        return 1
    except (ClientError, OSError) as exc:
        print(f"tarx: cannot reach {args.login_url}: {exc}", file=sys.stderr)
        return 1
    data = load_contexts()
    data["contexts"][args.name] = {"url": args.login_url.rstrip("/"), "key": args.login_key}
    data["current"] = args.name
    path = save_contexts(data)
    print(f"logged in to {args.login_url} as {me['email']}; context '{args.name}' saved in {path} and in use")
    return 0


def _context(args: argparse.Namespace) -> int:
    from tarx_console.client.connect import LOCAL, load_contexts, save_contexts

    data = load_contexts()
    if args.action == "list":
        for name in [LOCAL, *sorted(data["contexts"])]:
            url = data["contexts"].get(name, {}).get("url", "this machine")
            print(f"{'*' if data.get('current', LOCAL) == name else ' '} {name}  {url}")
        return 0
    if args.name != LOCAL and args.name not in data["contexts"]:
        print(f"tarx: no context named '{args.name}'", file=sys.stderr)
        return 1
    data["current"] = args.name
    save_contexts(data)
    print(f"using context '{args.name}'")
    return 0


def _node(args: argparse.Namespace) -> int:
    import os
    import signal
    import socket
    import tempfile

    import httpx

    from runtime.node.runner import NodeRunner
    from runtime.server import configure_logging

    url = args.node_url or args.url or os.environ.get("TARX_URL")
    key = args.node_key or args.key or os.environ.get("TARX_API_KEY")
    if not url or not key:
        print("tarx node: --url and --key are required (or TARX_URL and TARX_API_KEY)", file=sys.stderr)
        return 2
    labels = {}
    for item in args.label:
        k, sep, v = item.partition("=")
        if not sep or not k:
            print(f"tarx node: --label takes KEY=VALUE, not '{item}'", file=sys.stderr)
            return 2
        labels[k] = v
    configure_logging()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tarx-node-"))
        async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=60) as http:
            runner = NodeRunner(http, key, name=args.node_name or socket.gethostname(), labels=labels,
                                capacity=args.capacity, workdir=workdir, state_file=args.state_file,
                                heartbeat_seconds=args.heartbeat_seconds, rotate_every=args.rotate_key_every,
                                workspace=args.workspace)
            await runner.run(stop)

    try:
        asyncio.run(run())
    except httpx.HTTPError as exc:
        print(f"tarx node: {exc}", file=sys.stderr)
        return 1
    return 0


def _console(args: argparse.Namespace) -> int:
    from tarx_console.app import Launch, TarxApp
    from tarx_console.client.connect import resolve_target
    from tarx_console.config import ConsoleConfig

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        print("tarx: the console needs a terminal; use `tarx serve --headless` to run only the runtime",
              file=sys.stderr)
        return 2
    from tarx_console.client.errors import ClientError

    try:
        target = resolve_target(args.url, args.key, args.context)
    except KeyError as exc:
        print(f"tarx: {exc.args[0]}", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"tarx: {exc}", file=sys.stderr)
        return 1
    config = ConsoleConfig.load()
    if args.no_mouse:
        config.mouse = False
    TarxApp(config, Launch(target, _settings(args))).run(mouse=config.mouse)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return _console(args)
    if args.command == "serve":
        if not args.headless:
            return _console(args)
        from runtime.server import serve

        try:
            return serve(_settings(args))
        except KeyboardInterrupt:
            return 0
    if args.command == "node":
        return _node(args)
    handlers = {"keys": _keys, "projects": _projects, "jobs": _jobs, "entitlements": _entitlements, "mcp": _mcp,
                "demo": _demo, "rag": _rag}
    if args.command in handlers:
        return _with_client(args, handlers[args.command])
    if args.command == "login":
        return _login(args)
    return _context(args)


if __name__ == "__main__":
    sys.exit(main())
