"""What a newcomer trips on first: a JSON body sent the way `curl -d` sends it (as a form) or not sent at all is
refused with a message that says what to change, in each family's envelope, never pydantic's "a valid dictionary
or object to extract fields from"."""

from __future__ import annotations

import pytest

from conftest import Runtime
from support.identity import owner_in_default_project, owner_key
from support.workflows import create, execute, wait

CHAT = b'{"model": "tarx-local", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}'


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_json_sent_without_a_json_content_type_says_so(runtime: Runtime, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    with runtime.client() as c:
        r = c.post("/v1/chat/completions", content=CHAT, headers=headers)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_request"
    assert "Content-Type: application/json" in err["message"], err
    assert (content_type or "no content type") in err["message"]
    assert "extract fields" not in err["message"]


def test_the_readme_curl_without_content_type_is_explained_in_every_family(runtime: Runtime) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}  # what `curl -d` sends unless told
    auth = owner_in_default_project(runtime)  # the shared runtime may hold more projects by now
    with runtime.client() as c:
        platform = c.post("/api/v1/rags", content=b'{"name": "n", "kind": "text", "config": {"text": "t"}}',
                          headers={**auth, **form})
        compute = c.post("/v0/jobs", content=b'{"type": "COMMAND", "command": "true"}', headers={**auth, **form})
        right = c.post("/v1/chat/completions", content=CHAT, headers={"content-type": "application/json"})
    assert platform.status_code == 422 and platform.json()["error_code"] == "VALIDATION_ERROR", platform.text
    assert "Content-Type: application/json" in platform.json()["detail"]
    assert compute.status_code == 400 and compute.json()["status"] == "ERROR", compute.text
    assert "Content-Type: application/json" in compute.json()["message"]
    assert right.status_code == 200, right.text  # the same body with the header is served


def test_a_missing_body_and_a_json_body_of_the_wrong_shape(runtime: Runtime) -> None:
    with runtime.client() as c:
        missing = c.post("/v1/chat/completions")
        array = c.post("/v1/chat/completions", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert missing.status_code == 400 and missing.json()["error"]["message"] == "The request needs a JSON body."
    assert array.status_code == 400, array.text
    assert "Content-Type" not in array.json()["error"]["message"]  # it was JSON: the shape is what is wrong


def test_tarx_rag_works_once_a_second_project_exists(make_runtime) -> None:
    """`tarx demo` adds a project; with two, a call without a project header is a 400. `tarx rag` then acts in
    `default` (as `tarx jobs` and the console do), or in `--project`."""
    import subprocess
    import sys

    from conftest import REPO

    rt = make_runtime(name="newcomer-rag")
    base = [sys.executable, "-m", "tarx_console", "--url", rt.url, "--key", owner_key(rt)]

    def tarx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert tarx("projects", "create", "Second").returncode == 0
    added = tarx("rag", "add", "--name", "second-notes", "--text", "tarx notes", "--project", "second")
    assert added.returncode == 0, added.stderr
    plain = tarx("rag", "list")
    assert plain.returncode == 0, plain.stderr
    assert "second-notes" not in plain.stdout  # it lives in the other project
    second = tarx("rag", "list", "--project", "second")
    assert second.returncode == 0 and "second-notes" in second.stdout, second.stderr
    unknown = tarx("rag", "list", "--project", "nope")
    assert unknown.returncode == 2 and unknown.stderr.strip() == "tarx: no project 'nope' (see `tarx projects list`)"


def test_a_condition_written_as_a_template_means_its_expression(runtime: Runtime) -> None:
    """Every other config field is a template, so `{{ input.amount > 100 }}` is what a newcomer writes for a
    condition; Jinja alone refuses it ("expected token ':', got '}'"). Node conditions and edge conditions both."""
    owner = owner_in_default_project(runtime)
    nodes = [{"id": "t", "type": "trigger"},
             {"id": "check", "type": "conditionNode", "config": {"condition": "{{ input.amount > 100 }}"}},
             {"id": "big", "type": "transformNode", "config": {"template": "big"}},
             {"id": "small", "type": "transformNode", "config": {"template": "small"}},
             {"id": "vip", "type": "transformNode", "config": {"template": "vip"}}]
    edges = [{"source": "t", "target": "check"},
             {"source": "check", "target": "big", "label": "true"},
             {"source": "check", "target": "small", "label": "false"},
             {"source": "t", "target": "vip", "condition": " {{input.name == 'ada'}} "}]
    wf = create(runtime, owner, nodes, edges)
    high = wait(runtime, owner, execute(runtime, owner, wf["id"], {"amount": 500, "name": "ada"}))
    low = wait(runtime, owner, execute(runtime, owner, wf["id"], {"amount": 5, "name": "bob"}))
    assert high["status"] == low["status"] == "completed", (high, low)
    hr, lr = high["node_results"], low["node_results"]
    assert hr["check"]["output"] is True and lr["check"]["output"] is False
    assert hr["big"]["status"] == "completed" and hr["small"]["status"] == "skipped"
    assert lr["big"]["status"] == "skipped" and lr["small"]["status"] == "completed"
    assert hr["vip"]["status"] == "completed" and lr["vip"]["status"] == "skipped"
    with runtime.client() as c:  # a template that is more than one expression is still refused, naming the node
        r = c.post("/api/v1/workflows", headers=owner, json={"name": "two", "nodes": [
            {"id": "t", "type": "trigger"},
            {"id": "c", "type": "conditionNode", "config": {"condition": "{{ 1 }} and {{ 2 }}"}}],
            "edges": [{"source": "t", "target": "c"}]})
    assert r.status_code == 422 and r.json()["node_ids"] == ["c"], r.text


def test_a_reader_that_leaves_early_gets_no_error_line(runtime: Runtime) -> None:
    """`tarx keys list | head -1`: the pipe closes before the CLI writes. Before: "tarx: [Errno 32] Broken pipe"."""
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.Popen([sys.executable, "-m", "tarx_console", "--url", runtime.url, "--key", owner_key(runtime),
                             "keys", "list", "--kind", "platform", "--json"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # long before the CLI has its answer to print
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert err == "", err


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/embeddings", {"model": "tarx-embed", "input": []}, "input"),
    ("/v1/responses", {"model": "tarx-local", "input": [], "max_output_tokens": 2}, "input"),
    ("/v1/chat/completions", {"model": "tarx-local", "messages": "hello"}, "messages"),
    ("/v1/chat/completions", {"model": "tarx-local", "messages": [{"role": "user", "content": [{"type": "image"}]}]},
     "messages.0.content"),  # and the part that is wrong: "messages.0.content.0.type: Input should be 'text'"
])
def test_a_field_that_fits_no_member_of_its_union_is_named_plainly(runtime: Runtime, path: str, body: dict,
                                                                   field: str) -> None:
    """Before: "input.function-after[functools.partial(<function min_length_validator at 0x7f…>, min_length=1)(),
    …]: Input should be a valid string; input.list[constrained-int]: …", pydantic's internals and an address."""
    with runtime.client() as c:
        r = c.post(path, json=body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert message.startswith(f"Invalid request: {field}: "), message
    for internal in ("0x", "functools", "function-after", "constrained-", "[", "<"):
        assert internal not in message, message
    assert message.count(f"{field}:") == 1, message  # one entry for the field, its members' reasons joined
