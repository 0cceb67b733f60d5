"""A management round trip through the SDK against the live platform: teams, members, roles,
API keys (listed page by page, limited, revoked), organizations with If-Match, plans and
subscriptions, invoices, with both clients."""

from __future__ import annotations

import asyncio

import pytest

from ai_hub import (
    AIHubClient,
    AsyncAIHubClient,
    AuthenticationError,
    ConflictError,
    NewApiKey,
    NotFoundError,
    SyncPage,
    Team,
)

from conftest import unique


def test_team_key_pagination_and_revocation_round_trip(owner: AIHubClient, tenant, base_url):
    team = owner.teams.create(name=unique("research"), description="the SDK's team")
    assert isinstance(team, Team) and team.org_id == tenant.org_id
    user = owner.users.create(email=f"{unique('dev')}@example.com", name="Dev")
    team = owner.teams.add_member(team.id, user_id=user.id)
    assert user.id in team.members
    user = owner.users.assign_role(user.id, role="developer", team_id=team.id)
    assert [(r.role, r.team_id) for r in user.roles] == [("developer", team.id)]

    created = [
        owner.api_keys.create(name=f"ci {i}", permissions=["teams:read", "chat:write"], team_id=team.id)
        for i in range(3)
    ]
    assert all(isinstance(k, NewApiKey) and k.key.startswith("aihub-sk-") for k in created)

    first = owner.api_keys.list(limit=2)
    assert isinstance(first, SyncPage) and len(first.data) == 2 and first.has_next_page()
    pages = list(first.iter_pages())
    assert len(pages) >= 2
    every = [k.id for k in owner.api_keys.list(limit=2)]  # iterating runs through every page
    assert len(every) == len(set(every)) >= 4
    assert {k.id for k in created} <= set(every)
    assert every == sorted(every), "ids are UUIDv7: id order is creation order"

    key = created[0]
    as_key = AIHubClient(api_key=key.key, base_url=base_url, max_retries=0)
    assert as_key.teams.retrieve(team.id).name == team.name
    revoked = owner.api_keys.revoke(key.id)
    assert revoked.status == "revoked"
    with pytest.raises(AuthenticationError) as raised:
        as_key.teams.retrieve(team.id)
    assert raised.value.status == 401 and raised.value.code == "invalid_api_key"
    assert owner.api_keys.retrieve(key.id).status == "revoked"

    owner.teams.remove_member(team.id, user.id)
    assert user.id not in owner.teams.retrieve(team.id).members


def test_permissions_and_limits_of_a_key(owner: AIHubClient):
    key = owner.api_keys.create(name="narrow", permissions=["teams:read"])
    perms = owner.api_keys.get_permissions(key.id)
    assert perms.permissions == ["teams:read"] and "chat:write" in perms.available
    owner.api_keys.set_permissions(key.id, permissions=["teams:read", "usage:read"])
    assert owner.api_keys.get_permissions(key.id).permissions == ["teams:read", "usage:read"]
    limits = owner.api_keys.set_limits(key.id, requests_per_minute=30)
    assert limits.subject == "api_key" and limits.requests_per_minute == 30
    assert limits.overrides.requests_per_minute == 30
    assert owner.api_keys.get_limits(key.id).requests_per_minute == 30
    updated = owner.api_keys.update(key.id, name="renamed", enabled=False)
    assert updated.name == "renamed" and updated.enabled is False and updated.status == "disabled"


def test_organizations_with_if_match_and_limits(admin: AIHubClient, new_tenant):
    tenant = new_tenant()
    org = admin.organizations.retrieve(tenant.org_id)
    renamed = admin.organizations.update(org.id, name="Renamed Inc", if_match=f'"{org.version}"')
    assert renamed.name == "Renamed Inc" and renamed.version == org.version + 1
    with pytest.raises(ConflictError) as raised:
        admin.organizations.update(org.id, name="Stale", if_match=f'"{org.version}"')
    assert raised.value.status == 409 and raised.value.request_id
    limits = admin.organizations.set_limits(org.id, requests_per_minute=5000, tokens_per_minute=None)
    assert limits.subject == "organization" and limits.requests_per_minute == 5000
    assert admin.organizations.get_limits(org.id).plan == "pro"
    assert org.id in [o.id for o in admin.organizations.list(limit=1000)]
    admin.organizations.delete(org.id)
    with pytest.raises(NotFoundError):
        admin.organizations.retrieve(org.id)


def test_plans_subscriptions_invoices_roles_and_permissions(owner: AIHubClient, tenant):
    assert [p.id for p in owner.plans.list()] == ["free", "developer", "pro", "enterprise"]
    subscription = owner.subscriptions.retrieve(tenant.org_id)
    assert subscription.plan == "pro"
    assert [s.org_id for s in owner.subscriptions.list()] == [tenant.org_id]
    pending = owner.subscriptions.downgrade(tenant.org_id, plan="developer")
    assert pending.pending_downgrade.plan == "developer"
    assert owner.subscriptions.cancel_downgrade(tenant.org_id).pending_downgrade is None
    assert list(owner.invoices.list()) == []  # nothing issued in the first month
    assert "owner" in [r.name for r in owner.roles.list()]
    assert "chat:write" in [p.name for p in owner.permissions.list()]


def test_the_async_client_pages_and_writes(tenant, base_url):
    async def run():
        async with AsyncAIHubClient(api_key=tenant.owner_key, base_url=base_url) as client:
            for i in range(3):
                await client.teams.create(name=unique(f"async-{i}"))
            first = await client.teams.list(limit=1)
            names = [t.name async for t in client.teams.list(limit=1)]
            return first, names

    first, names = asyncio.run(run())
    assert len(first.data) == 1 and first.has_next_page()
    assert len([n for n in names if n.startswith("async-")]) == 3
