// Shared by the live tests: they run against the AI Hub that AIHUB_BASE_URL names, as the
// platform admin whose token is AIHUB_ADMIN_TOKEN (tests/tests/sdks.rs starts one: `aihub serve`
// with the real broker and PostgreSQL, and a fake model provider). Without them they are skipped.
// The platform serves `gpt-4o` ("Hello from openai openai/gpt-4o!", four completion tokens) and
// `broken-model`, whose provider refuses connections.

import { randomUUID } from 'node:crypto';

import { AIHubClient } from '../dist/index.js';

export const baseURL = process.env.AIHUB_BASE_URL;
export const adminToken = process.env.AIHUB_ADMIN_TOKEN;
export const live = baseURL && adminToken ? {} : { skip: 'no platform: set AIHUB_BASE_URL and AIHUB_ADMIN_TOKEN' };
export const GREETING = 'Hello from openai openai/gpt-4o!';
export const COMPLETION_TOKENS = 4;
export const HELLO = [{ role: 'user', content: 'Hello!' }];

export function admin() {
  return new AIHubClient({ apiKey: adminToken, baseURL });
}

export function unique(prefix) {
  return `${prefix}-${randomUUID().replaceAll('-', '').slice(0, 12)}`;
}

/** An organization on `plan` with an owner key holding every permission. */
export async function makeTenant(plan = 'pro') {
  const a = admin();
  const slug = unique('sdk-js');
  const org = await a.organizations.create({ name: `SDK ${slug}`, slug, owner_email: `owner@${slug}.example` });
  const owner = (await a.users.list({ org_id: org.id })).data[0];
  if (plan !== 'free') await a.subscriptions.upgrade(org.id, { plan });
  const permissions = (await a.permissions.list()).data.map((p) => p.name);
  const key = await a.apiKeys.create({ org_id: org.id, user_id: owner.id, name: 'owner', permissions });
  return { orgId: org.id, ownerId: owner.id, key: key.key, keyId: key.id, client: new AIHubClient({ apiKey: key.key, baseURL }) };
}

/** Polls `check` until it returns something truthy (the read side is eventually consistent). */
export async function waitFor(check, what, limitMs = 30_000) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
