// A management round trip through the SDK against the live platform.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { AIHubClient, AuthenticationError, ConflictError, NotFoundError, Page } from '../dist/index.js';
import { admin, baseURL, live, makeTenant, unique } from './helpers.mjs';

test('a team, keys listed page by page, and a revoked key', live, async () => {
  const { client, orgId } = await makeTenant();
  const team = await client.teams.create({ name: unique('research'), description: "the SDK's team" });
  assert.equal(team.org_id, orgId);
  const user = await client.users.create({ email: `${unique('dev')}@example.com` });
  assert.ok((await client.teams.addMember(team.id, { user_id: user.id })).members.includes(user.id));
  const assigned = await client.users.assignRole(user.id, { role: 'developer', team_id: team.id });
  assert.deepEqual(assigned.roles, [{ role: 'developer', team_id: team.id }]);

  const created = [];
  for (let i = 0; i < 3; i++) {
    created.push(await client.apiKeys.create({ name: `ci ${i}`, permissions: ['teams:read'], team_id: team.id }));
  }
  assert.ok(created.every((k) => k.key.startsWith('aihub-sk-')));

  const first = await client.apiKeys.list({ limit: 2 });
  assert.ok(first instanceof Page && first.data.length === 2 && first.hasNextPage());
  const ids = [];
  for await (const key of client.apiKeys.list({ limit: 2 })) ids.push(key.id);
  assert.equal(ids.length, 4, 'the owner key and three more, over two pages');
  assert.ok(created.every((k) => ids.includes(k.id)));
  assert.deepEqual(ids, [...ids].sort(), 'ids are UUIDv7: id order is creation order');
  let pages = 0;
  for await (const _ of first.iterPages()) pages++;
  assert.equal(pages, 2);

  const asKey = new AIHubClient({ apiKey: created[0].key, baseURL, maxRetries: 0 });
  assert.equal((await asKey.teams.retrieve(team.id)).name, team.name);
  assert.equal((await client.apiKeys.revoke(created[0].id)).status, 'revoked');
  await assert.rejects(asKey.teams.retrieve(team.id), (e) => e instanceof AuthenticationError && e.status === 401);
  await client.teams.removeMember(team.id, user.id);
  assert.ok(!(await client.teams.retrieve(team.id)).members.includes(user.id));
});

test('permissions and limits of a key', live, async () => {
  const { client } = await makeTenant();
  const key = await client.apiKeys.create({ name: 'narrow', permissions: ['teams:read'] });
  await client.apiKeys.setPermissions(key.id, { permissions: ['teams:read', 'usage:read'] });
  assert.deepEqual((await client.apiKeys.getPermissions(key.id)).permissions, ['teams:read', 'usage:read']);
  const limits = await client.apiKeys.setLimits(key.id, { requests_per_minute: 30 });
  assert.equal(limits.subject, 'api_key');
  assert.equal((await client.apiKeys.getLimits(key.id)).overrides.requests_per_minute, 30);
  const updated = await client.apiKeys.update(key.id, { enabled: false });
  assert.equal(updated.status, 'disabled');
});

test('organizations with If-Match, limits, plans, subscriptions and invoices', live, async () => {
  const a = admin();
  const { orgId, client } = await makeTenant();
  const org = await a.organizations.retrieve(orgId);
  const renamed = await a.organizations.update(org.id, { name: 'Renamed Inc' }, { ifMatch: `"${org.version}"` });
  assert.equal(renamed.version, org.version + 1);
  await assert.rejects(a.organizations.update(org.id, { name: 'Stale' }, { ifMatch: `"${org.version}"` }), ConflictError);
  assert.equal((await a.organizations.setLimits(org.id, { requests_per_minute: 5000 })).requests_per_minute, 5000);
  assert.equal((await a.organizations.getLimits(org.id)).plan, 'pro');
  assert.deepEqual((await client.plans.list()).data.map((p) => p.id), ['free', 'developer', 'pro', 'enterprise']);
  assert.equal((await client.subscriptions.retrieve(orgId)).plan, 'pro');
  assert.equal((await client.subscriptions.downgrade(orgId, { plan: 'developer' })).pending_downgrade.plan, 'developer');
  assert.equal((await client.subscriptions.cancelDowngrade(orgId)).pending_downgrade ?? null, null);
  assert.deepEqual((await client.invoices.list()).data, []);
  assert.ok((await client.roles.list()).data.some((r) => r.name === 'owner'));
  await a.organizations.delete(org.id);
  await assert.rejects(a.organizations.retrieve(org.id), NotFoundError);
});
