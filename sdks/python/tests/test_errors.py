"""Every error family, as the live platform answers it, arrives as its own exception carrying
status, code, param and the request id."""

from __future__ import annotations

import uuid

import httpx
import pytest

import ai_hub
from ai_hub import AIHubClient

from conftest import unique

HELLO = [{"role": "user", "content": "Hello!"}]


def check(error: ai_hub.APIError, status: int, code: str) -> None:
    assert error.status == status, error
    assert error.code == code, error
    assert error.message and error.type
    assert error.request_id and len(error.request_id) >= 8
    assert error.headers["x-request-id"] == error.request_id


def test_400_bad_request_names_the_param(owner: AIHubClient):
    with pytest.raises(ai_hub.BadRequestError) as raised:
        owner.usage.retrieve(group_by="planet")
    check(raised.value, 400, "invalid_value")
    assert raised.value.param == "group_by"


def test_401_authentication(base_url):
    with pytest.raises(ai_hub.AuthenticationError) as raised:
        AIHubClient(api_key="aihub-sk-wrong", base_url=base_url).teams.list().data
    check(raised.value, 401, "invalid_api_key")


def test_403_permission_denied(owner: AIHubClient, base_url):
    narrow = owner.api_keys.create(name="read only", permissions=["teams:read"])
    with pytest.raises(ai_hub.PermissionDeniedError) as raised:
        AIHubClient(api_key=narrow.key, base_url=base_url).teams.create(name="nope")
    assert raised.value.status == 403 and raised.value.type == "permission_error"
    assert "teams:write" in raised.value.message


def test_404_not_found(owner: AIHubClient):
    with pytest.raises(ai_hub.NotFoundError) as raised:
        owner.teams.retrieve(str(uuid.uuid4()))
    check(raised.value, 404, "not_found")
    with pytest.raises(ai_hub.NotFoundError):
        owner.chat.completions.create(model="no-such-model", messages=HELLO)


def test_409_conflict(admin: AIHubClient):
    slug = unique("dup")
    admin.organizations.create(name="First", slug=slug)
    with pytest.raises(ai_hub.ConflictError) as raised:
        admin.organizations.create(name="Second", slug=slug)
    check(raised.value, 409, "already_exists")
    assert raised.value.param == "slug"


def test_413_payload_too_large(owner: AIHubClient):
    with pytest.raises(ai_hub.PayloadTooLargeError) as raised:
        owner.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x" * 2_000_000}])
    check(raised.value, 413, "payload_too_large")


def test_429_rate_limited_with_retry_after_and_a_post_is_not_retried(owner: AIHubClient, base_url):
    key = owner.api_keys.create(name="one a minute", permissions=["teams:read", "teams:write"])
    owner.api_keys.set_limits(key.id, requests_per_minute=1)
    sent = []
    http = httpx.Client(event_hooks={"request": [sent.append]})
    limited = AIHubClient(api_key=key.key, base_url=base_url, max_retries=3, http_client=http)
    limited.teams.list().data  # the one request of this minute
    sent.clear()
    with pytest.raises(ai_hub.RateLimitError) as raised:
        limited.teams.create(name="too many")
    check(raised.value, 429, "rate_limit_exceeded")
    assert 0 < raised.value.retry_after <= 60
    assert len(sent) == 1, "a POST is never retried"
    assert raised.value.headers["x-ratelimit-remaining-requests"] == "0"


def test_429_quota_exceeded_on_the_free_plan(new_tenant, base_url):
    free = new_tenant("free")
    with pytest.raises(ai_hub.QuotaExceededError) as raised:
        # Free's month is 1,000 tokens: a budget past it is refused before the call.
        free.client(base_url).chat.completions.create(model="gpt-4o", messages=HELLO, max_tokens=2000)
    check(raised.value, 429, "insufficient_quota")
    assert isinstance(raised.value, ai_hub.RateLimitError)


def test_502_upstream_error(owner: AIHubClient):
    with pytest.raises(ai_hub.UpstreamError) as raised:
        owner.chat.completions.create(model="broken-model", messages=HELLO)
    check(raised.value, 502, "upstream_error")
    assert isinstance(raised.value, ai_hub.InternalServerError)


def test_a_refused_stream_raises_before_any_chunk(owner: AIHubClient):
    with pytest.raises(ai_hub.NotFoundError):
        owner.chat.completions.stream(model="no-such-model", messages=HELLO)


def test_connection_refused_is_a_connection_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ai_hub.APIConnectionError):
        AIHubClient(api_key="k", base_url=f"http://127.0.0.1:{port}/api/v1", max_retries=0).models.list()
