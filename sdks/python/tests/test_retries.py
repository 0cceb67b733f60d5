"""Retries and errors of the transport, against answers made up here (httpx.MockTransport):
which methods are retried, after how long, and what is raised. The live suites show the same
errors coming from the real platform."""

from __future__ import annotations

import asyncio
from typing import List

import httpx
import pytest

import ai_hub
from ai_hub import _transport

TEAM = {
    "id": "0193a4c1-b2d3-7e4f-8a9b-0c1d2e3f4a5b",
    "object": "team",
    "org_id": "0193a4c1-b2d3-7e4f-8a9b-0c1d2e3f4a5c",
    "name": "Research",
    "members": [],
    "version": 1,
}


def error(status: int, code: str, retry_after: str = None, kind: str = "rate_limit_error") -> httpx.Response:
    headers = {"x-request-id": f"req-{status}"}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = {"error": {"message": f"no ({code})", "type": kind, "code": code, "param": None}}
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """Answers requests in turn, and remembers them."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: List[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)


@pytest.fixture
def slept(monkeypatch) -> List[float]:
    waits: List[float] = []
    monkeypatch.setattr(_transport.time, "sleep", waits.append)

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(_transport.asyncio, "sleep", no_wait)
    return waits


def client(script: Script, **options) -> ai_hub.AIHubClient:
    return ai_hub.AIHubClient(
        api_key="aihub-sk-test", base_url="http://hub.test/api/v1", http_client=httpx.Client(transport=httpx.MockTransport(script)), **options
    )


def test_a_get_answered_429_is_tried_again_after_retry_after(slept):
    script = Script(error(429, "rate_limit_exceeded", "3"), httpx.Response(200, json=TEAM, headers={"x-request-id": "r2"}))
    team = client(script).teams.retrieve(TEAM["id"])
    assert team.name == "Research"
    assert team._request_id == "r2"
    assert len(script.requests) == 2
    assert slept == [3.0]


def test_a_503_without_retry_after_backs_off_exponentially_up_to_max_retries(slept):
    script = Script(*(error(503, "service_unavailable", kind="service_unavailable") for _ in range(3)))
    with pytest.raises(ai_hub.ServiceUnavailableError) as raised:
        client(script, max_retries=2).teams.retrieve(TEAM["id"])
    assert len(script.requests) == 3
    assert len(slept) == 2 and 0.375 <= slept[0] <= 0.5 and 0.75 <= slept[1] <= 1.0
    assert raised.value.status == 503 and raised.value.request_id == "req-503"


def test_a_post_is_never_retried(slept):
    script = Script(error(429, "rate_limit_exceeded", "1"))
    with pytest.raises(ai_hub.RateLimitError) as raised:
        client(script).teams.create(name="x")
    assert len(script.requests) == 1 and slept == []
    assert raised.value.retry_after == 1.0


def test_a_spent_quota_is_not_waited_for(slept):
    script = Script(error(429, "insufficient_quota", "1", kind="insufficient_quota"))
    with pytest.raises(ai_hub.QuotaExceededError):
        client(script).teams.list().data
    assert len(script.requests) == 1 and slept == []


def test_a_retry_after_past_the_cap_is_raised_not_waited(slept):
    script = Script(error(429, "rate_limit_exceeded", "3600"))
    with pytest.raises(ai_hub.RateLimitError) as raised:
        client(script).teams.retrieve(TEAM["id"])
    assert raised.value.retry_after == 3600.0 and slept == []


def test_the_async_client_retries_the_same_way(slept):
    script = Script(error(503, "service_unavailable", "2"), httpx.Response(200, json=TEAM))

    async def run():
        async with ai_hub.AsyncAIHubClient(
            api_key="k", base_url="http://hub.test/api/v1", http_client=httpx.AsyncClient(transport=httpx.MockTransport(script))
        ) as c:
            return await c.teams.retrieve(TEAM["id"])

    assert asyncio.run(run()).name == "Research"
    assert slept == [2.0]


def test_a_timeout_is_its_own_error():
    def hang(request):
        raise httpx.ReadTimeout("slow", request=request)

    c = ai_hub.AIHubClient(api_key="k", base_url="http://hub.test/api/v1", http_client=httpx.Client(transport=httpx.MockTransport(hang)))
    with pytest.raises(ai_hub.APITimeoutError):
        c.teams.retrieve(TEAM["id"])


def test_configuration_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("AIHUB_API_KEY", "aihub-sk-from-env")
    monkeypatch.setenv("AIHUB_BASE_URL", "http://elsewhere.test/api/v1/")
    script = Script(httpx.Response(200, json=TEAM))
    c = ai_hub.AIHubClient(http_client=httpx.Client(transport=httpx.MockTransport(script)))
    c.teams.retrieve("a b")
    assert str(script.requests[0].url) == "http://elsewhere.test/api/v1/teams/a%20b"
    assert script.requests[0].headers["authorization"] == "Bearer aihub-sk-from-env"
    monkeypatch.delenv("AIHUB_API_KEY")
    with pytest.raises(ai_hub.AIHubError):
        ai_hub.AIHubClient()
    monkeypatch.delenv("AIHUB_BASE_URL")
    assert ai_hub.AIHubClient(api_key="k").base_url == "http://localhost:8001/api/v1"


def test_arguments_left_out_are_not_sent_and_none_is_null():
    script = Script(httpx.Response(200, json=TEAM))
    client(script).teams.update(TEAM["id"], description=None, if_match='"1"')
    request = script.requests[0]
    assert request.headers["if-match"] == '"1"'
    assert request.content == b'{"description":null}'
