"""Fixtures of the SDK's tests. The unit tests need nothing; the live ones (marked by their
``platform`` fixture) run against the AI Hub that ``AIHUB_BASE_URL`` names, as the platform
admin whose token is ``AIHUB_ADMIN_TOKEN``: tests/tests/sdks.rs starts one (``aihub serve``
with the real broker and PostgreSQL, a fake model provider) and runs this suite against it.

The live platform serves ``gpt-4o`` (answering "Hello from openai openai/gpt-4o!", four
completion tokens) and ``broken-model``, whose provider refuses connections.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import pytest

from ai_hub import AIHubClient

# Every response is checked against the OpenAPI document the models were generated from.
os.environ["AIHUB_SDK_STRICT"] = "1"

GREETING = "Hello from openai openai/gpt-4o!"
COMPLETION_TOKENS = 4
ALL_PERMISSIONS = None  # filled from GET /permissions

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, limit: float = 30.0) -> T:
    """Polls ``check`` until it returns something truthy (the read side is eventually consistent)."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        time.sleep(0.1)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Tenant:
    org_id: str
    owner_id: str
    owner_key: str
    owner_key_id: str

    def client(self, base_url: str, **options) -> AIHubClient:
        return AIHubClient(api_key=self.owner_key, base_url=base_url, **options)


@pytest.fixture(scope="session")
def base_url() -> str:
    url = os.environ.get("AIHUB_BASE_URL")
    if not url or not os.environ.get("AIHUB_ADMIN_TOKEN"):
        pytest.skip("no platform: set AIHUB_BASE_URL and AIHUB_ADMIN_TOKEN (tests/tests/sdks.rs does)")
    return url


@pytest.fixture(scope="session")
def admin(base_url: str) -> Iterator[AIHubClient]:
    with AIHubClient(api_key=os.environ["AIHUB_ADMIN_TOKEN"], base_url=base_url) as client:
        yield client


def make_tenant(admin: AIHubClient, plan: str = "pro") -> Tenant:
    slug = unique("sdk")
    org = admin.organizations.create(name=f"SDK {slug}", slug=slug, owner_email=f"owner@{slug}.example")
    owner = next(iter(admin.users.list(org_id=org.id)))
    if plan != "free":
        admin.subscriptions.upgrade(org.id, plan=plan)
    permissions = [p.name for p in admin.permissions.list()]
    key = admin.api_keys.create(org_id=org.id, user_id=owner.id, name="owner", permissions=permissions)
    return Tenant(org_id=org.id, owner_id=owner.id, owner_key=key.key, owner_key_id=key.id)


@pytest.fixture(scope="session")
def tenant(admin: AIHubClient) -> Tenant:
    """An organization on Pro with an owner key holding every permission."""
    return make_tenant(admin)


@pytest.fixture(scope="session")
def owner(tenant: Tenant, base_url: str) -> Iterator[AIHubClient]:
    with tenant.client(base_url) as client:
        yield client


@pytest.fixture
def new_tenant(admin: AIHubClient) -> Callable[..., Tenant]:
    return lambda plan="pro": make_tenant(admin, plan)
