"""`POST /v1/completions` (legacy text completion) and model aliases, through the official `openai` SDK."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from llama_cpp import Llama
from openai import OpenAI

from conftest import Runtime
from runtime.inference.registry import smollm2_path

ALIASES = {"gpt-4o-mini": "tarx-local", "davinci-002": "tarx-local", "text-embedding-3-small": "tarx-local"}


@pytest.fixture(scope="module")
def rt(make_runtime_module: Any) -> Runtime:
    return make_runtime_module({"TARX_MODEL_ALIASES": json.dumps(ALIASES)}, name="completions")


@pytest.fixture(scope="module")
def client(rt: Runtime) -> OpenAI:
    return OpenAI(base_url=rt.url + "/v1", api_key="unused-locally", max_retries=0)


ARGS: dict[str, Any] = {"model": "tarx-local", "prompt": "The capital of France is", "max_tokens": 8,
                        "temperature": 0, "seed": 2}


def test_completion_non_stream(client: OpenAI) -> None:
    r = client.completions.create(**ARGS)
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.model == "tarx-local"
    [choice] = r.choices
    assert choice.index == 0 and choice.text.strip() and choice.finish_reason in ("stop", "length")
    assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in choice.text), choice.text  # no stray NULs
    assert 0 < r.usage.completion_tokens <= 8
    assert r.model_extra["tarx_route"]["execution_plane"] == "local"


def test_prompt_is_evaluated_as_written(client: OpenAI) -> None:
    # No chat template: the prompt costs exactly its own tokens (SmolLM2 adds no BOS), not a templated turn.
    vocab = Llama(str(smollm2_path()), vocab_only=True, verbose=False)
    expected = vocab.tokenize(ARGS["prompt"].encode(), add_bos=False, special=True)
    assert client.completions.create(**ARGS).usage.prompt_tokens == len(expected)


def test_stream_matches_non_stream(client: OpenAI) -> None:
    whole = client.completions.create(**ARGS)
    chunks = list(client.completions.create(**ARGS, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" and c.id.startswith("cmpl-") for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_a_list_of_prompts_gets_one_choice_each(client: OpenAI) -> None:
    prompts = ["One, two, three,", "Red, green,"]
    r = client.completions.create(**{**ARGS, "prompt": prompts})
    assert [c.index for c in r.choices] == [0, 1]
    singles = [client.completions.create(**{**ARGS, "prompt": p}).choices[0].text for p in prompts]
    assert [c.text for c in r.choices] == singles
    streamed = list(client.completions.create(**{**ARGS, "prompt": prompts}, stream=True))
    assert ["".join(c.choices[0].text for c in streamed if c.choices and c.choices[0].index == i)
            for i in range(2)] == singles


def test_logprobs_in_the_legacy_shape(client: OpenAI) -> None:
    r = client.completions.create(**ARGS, logprobs=2)
    [choice] = r.choices
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text and len(lp.token_logprobs) == r.usage.completion_tokens
    assert all(p <= 0 for p in lp.token_logprobs) and all(1 <= len(top) <= 2 for top in lp.top_logprobs)
    # temperature 0 picks the most likely token: it leads its own alternatives
    assert all(top[tok] == max(top.values()) for tok, top in zip(lp.tokens, lp.top_logprobs, strict=True))
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    streamed = [c for c in client.completions.create(**ARGS, logprobs=2, stream=True) if c.choices]
    assert [t for c in streamed if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens] == lp.tokens
    assert client.completions.create(**ARGS).choices[0].logprobs is None


@pytest.mark.parametrize(("extra", "param"), [
    ({"echo": True}, "echo"), ({"suffix": " end."}, "suffix"),
    ({"best_of": 3}, "best_of"), ({"prompt": [1, 2, 3]}, "prompt"), ({"prompt": ""}, "prompt"),
])
def test_unsupported_options_are_refused_clearly(client: OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(**{**ARGS, **extra})
    body = err.value.body
    assert isinstance(body, dict) and body["param"] == param and param in body["message"]


@pytest.mark.parametrize("bad", [{"max_tokens": "8"}, {"prompt": None}, {"temperature": 9}, {"n": 9}, {"prompt": []},
                                 {"prompt": ["a"] * 17}, {"prompt": ["ok", "\ud800"]}, {"prompt": [["a"]]}])
def test_bad_bodies_are_400_in_the_openai_envelope(rt: Runtime, bad: dict[str, Any]) -> None:
    with rt.client() as c:
        # json.dumps escapes the lone surrogate (\\ud800) as a client would send it
        r = c.post("/v1/completions", content=json.dumps({**ARGS, **bad}), headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_unknown_model_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(**{**ARGS, "model": "no-such-model"})


# ---- aliases -----------------------------------------------------------------------------------------------------

def test_models_lists_aliases(client: OpenAI) -> None:
    cards = {m.id: m for m in client.models.list().data}
    assert {"tarx-local", *ALIASES} <= set(cards)
    assert cards["gpt-4o-mini"].model_extra["alias_of"] == "tarx-local"
    assert client.models.retrieve("gpt-4o-mini").model_extra["alias_of"] == "tarx-local"


def test_aliases_resolve_everywhere(client: OpenAI) -> None:
    chat_args = {"messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 6, "temperature": 0,
                 "seed": 4}
    real = client.chat.completions.create(model="tarx-local", **chat_args).choices[0].message.content
    aliased = client.chat.completions.create(model="gpt-4o-mini", **chat_args)
    assert aliased.choices[0].message.content == real and aliased.model == "gpt-4o-mini"
    assert client.completions.create(**{**ARGS, "model": "davinci-002"}).choices[0].text == \
        client.completions.create(**ARGS).choices[0].text
    emb = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert emb.data[0].embedding == client.embeddings.create(model="tarx-local", input="hello").data[0].embedding
    resp = client.responses.create(model="gpt-4o-mini", input="Name a fruit.", max_output_tokens=6, temperature=0)
    assert resp.model == "gpt-4o-mini" and resp.output_text
