"""Chat through the SDK against the live platform: whole answers, streams, a stream left midway
(still billed), and the async client."""

from __future__ import annotations

import asyncio

from ai_hub import AIHubClient, AsyncAIHubClient, ChatCompletion, ChatCompletionChunk, Stream

from conftest import COMPLETION_TOKENS, GREETING, wait_for

HELLO = [{"role": "user", "content": "Hello!"}]


def test_create_answers_in_openai_shape(owner: AIHubClient):
    response = owner.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert isinstance(response, ChatCompletion)
    assert response.choices[0].message.content == GREETING
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens == COMPLETION_TOKENS
    assert response._request_id


def test_stream_yields_chunks_with_delta_content_until_done(owner: AIHubClient):
    stream = owner.chat.completions.stream(model="gpt-4o", messages=HELLO)
    assert isinstance(stream, Stream) and stream.request_id
    chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == GREETING
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == COMPLETION_TOKENS


def test_create_with_stream_true_streams_too(owner: AIHubClient):
    with owner.chat.completions.create(
        model="gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == GREETING
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == COMPLETION_TOKENS


def test_a_stream_left_after_its_first_chunk_is_still_billed_in_full(admin: AIHubClient, new_tenant, base_url):
    tenant = new_tenant()
    client = tenant.client(base_url)
    for chunk in client.chat.completions.stream(model="gpt-4o", messages=HELLO):
        assert chunk.choices[0].delta is not None
        break  # the loop is left: the SDK closes the connection
    usage = wait_for(
        lambda: (u := admin.usage.retrieve(org_id=tenant.org_id)).totals.requests == 1 and u,
        "the cancelled call in the usage",
    )
    assert usage.totals.completion_tokens == COMPLETION_TOKENS, "billed for everything generated"
    assert usage.totals.failed_requests == 0


def test_models_lists_what_the_plan_serves(owner: AIHubClient):
    assert "gpt-4o" in [m.id for m in owner.models.list().data]
    chat_models = {m.id: m for m in owner.chat.models.list().data}
    assert chat_models["gpt-4o"].pricing.input_usd_per_million_tokens > 0


def test_the_async_client_creates_streams_and_cancels(tenant, base_url):
    async def run():
        async with AsyncAIHubClient(api_key=tenant.owner_key, base_url=base_url) as client:
            whole = await client.chat.completions.create(model="gpt-4o", messages=HELLO)
            streamed = ""
            async for chunk in await client.chat.completions.stream(model="gpt-4o", messages=HELLO):
                streamed += chunk.choices[0].delta.content or ""
            stream = await client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
            async for _ in stream:
                break
            await stream.close()
            return whole.choices[0].message.content, streamed

    whole, streamed = asyncio.run(run())
    assert whole == GREETING and streamed == GREETING
