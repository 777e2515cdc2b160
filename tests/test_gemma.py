"""Gemma 3 has no chat template in its GGUF: the runtime writes its turn format itself."""

from __future__ import annotations

from llama_cpp import Llama

from conftest import Runtime
from runtime.inference.prompts import gemma3_text


def test_gemma3_turns_fold_system_into_first_user_turn() -> None:
    text = gemma3_text([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Capital of France?"},
    ])
    assert text == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nCapital of France?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma_over_http_uses_the_turn_format(runtime: Runtime) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    with runtime.client() as c:
        r = c.post("/v1/chat/completions", json={"model": "gemma", "messages": messages, "temperature": 0,
                                                   "max_tokens": 8})
        streamed = c.post("/v1/chat/completions", json={"model": "gemma", "messages": messages, "temperature": 0,
                                                          "max_tokens": 8, "stream": True})
    assert r.status_code == 200, r.text
    body = r.json()
    # The prompt the runtime evaluated has exactly as many tokens as the Gemma 3 format written out by hand
    # (<bos> plus special turn tokens); llama-cpp-python's fallback format would count differently.
    gguf = runtime.data_dir / "bundled" / "gemma-3-270m-q4_k_m.gguf"
    vocab = Llama(str(gguf), vocab_only=True, verbose=False)
    expected = vocab.tokenize(
        b"<start_of_turn>user\nBe brief.\n\nCapital of France?<end_of_turn>\n<start_of_turn>model\n",
        add_bos=True, special=True)
    assert expected[0] == vocab.token_bos()
    assert body["usage"]["prompt_tokens"] == len(expected)
    # Generation ends at <end_of_turn> or the limit, and never shows the turn markers as text.
    content = body["choices"][0]["message"]["content"]
    assert "<start_of_turn>" not in content and "<end_of_turn>" not in content
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
