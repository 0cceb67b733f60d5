"""Streams over made-up answers: chunks cut anywhere, [DONE] ends the iteration, an error event
raises its class, and leaving the loop closes the response."""

from __future__ import annotations

import json

import httpx
import pytest

import ai_hub


def chunk(text: str) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": text}}]}


class Body(httpx.SyncByteStream):
    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece, self.closed = data, piece, False

    def __iter__(self):
        for i in range(0, len(self.data), self.piece):
            yield self.data[i : i + self.piece]

    def close(self) -> None:
        self.closed = True


def client(body: Body) -> ai_hub.AIHubClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream", "x-request-id": "r"}, stream=body)

    return ai_hub.AIHubClient(api_key="k", base_url="http://hub.test/api/v1", http_client=httpx.Client(transport=httpx.MockTransport(answer)))


EVENTS = "".join(f"data: {json.dumps(chunk(t))}\r\n\r\n" for t in ["Hé", "llo", " ✓"]) + "data: [DONE]\r\n\r\ndata: {\"ignored\": 1}\n\n"


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1000])
def test_chunks_arrive_whole_however_the_body_is_cut(piece):
    stream = client(Body(EVENTS.encode(), piece)).chat.completions.stream(model="gpt-4o", messages=[])
    assert stream.request_id == "r"
    assert [c.choices[0].delta.content for c in stream] == ["Hé", "llo", " ✓"]


def test_an_error_event_raises_its_class():
    error = {"error": {"message": "the provider stopped", "type": "api_error", "code": "upstream_timeout", "param": None}}
    body = Body((f"data: {json.dumps(chunk('a'))}\n\ndata: {json.dumps(error)}\n\n").encode(), 5)
    stream = client(body).chat.completions.create(model="gpt-4o", messages=[], stream=True)
    assert next(iter(stream)).choices[0].delta.content == "a"
    with pytest.raises(ai_hub.UpstreamError) as raised:
        next(iter(stream))
    assert raised.value.code == "upstream_timeout" and raised.value.status is None


def test_leaving_the_loop_closes_the_response():
    body = Body(EVENTS.encode(), 4)
    for _ in client(body).chat.completions.stream(model="gpt-4o", messages=[]):
        break
    assert body.closed
