// Every error family, as the live platform answers it, arrives as its own class carrying status,
// code, param and the request id.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, test } from 'node:test';

import {
  AIHubClient,
  APIConnectionError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  InternalServerError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  QuotaExceededError,
  RateLimitError,
  UpstreamError,
} from '../dist/index.js';
import { HELLO, admin, baseURL, live, makeTenant, unique } from './helpers.mjs';

let tenant;
before(async () => {
  if (!live.skip) tenant = await makeTenant();
});

function check(cls, status, code) {
  return (e) => {
    assert.ok(e instanceof cls, `${e.name}: ${e.message}`);
    assert.equal(e.status, status);
    if (code) assert.equal(e.code, code);
    assert.ok(e.message && e.type);
    assert.ok(e.requestId && e.requestId === e.headers.get('x-request-id'));
    return true;
  };
}

test('400 names the param', live, async () => {
  await assert.rejects(tenant.client.usage.retrieve({ group_by: 'planet' }), (e) => check(BadRequestError, 400, 'invalid_value')(e) && e.param === 'group_by');
});

test('401, 403 and 404', live, async () => {
  await assert.rejects(new AIHubClient({ apiKey: 'aihub-sk-wrong', baseURL }).teams.list(), check(AuthenticationError, 401, 'invalid_api_key'));
  const narrow = await tenant.client.apiKeys.create({ name: 'read only', permissions: ['teams:read'] });
  await assert.rejects(new AIHubClient({ apiKey: narrow.key, baseURL }).teams.create({ name: 'nope' }), check(PermissionDeniedError, 403));
  await assert.rejects(tenant.client.teams.retrieve(randomUUID()), check(NotFoundError, 404, 'not_found'));
  await assert.rejects(tenant.client.chat.completions.stream({ model: 'no-such-model', messages: HELLO }), check(NotFoundError, 404));
});

test('409 and 413', live, async () => {
  const slug = unique('dup');
  await admin().organizations.create({ name: 'First', slug });
  await assert.rejects(admin().organizations.create({ name: 'Second', slug }), (e) => check(ConflictError, 409, 'already_exists')(e) && e.param === 'slug');
  await assert.rejects(
    tenant.client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x'.repeat(2_000_000) }] }),
    check(PayloadTooLargeError, 413, 'payload_too_large'),
  );
});

test('429 rate limited with retry-after, and a POST is not retried', live, async () => {
  const key = await tenant.client.apiKeys.create({ name: 'one a minute', permissions: ['teams:read', 'teams:write'] });
  await tenant.client.apiKeys.setLimits(key.id, { requests_per_minute: 1 });
  let sent = 0;
  const counting = (url, init) => {
    sent++;
    return fetch(url, init);
  };
  const limited = new AIHubClient({ apiKey: key.key, baseURL, maxRetries: 3, fetch: counting });
  await limited.teams.list();
  sent = 0;
  await assert.rejects(limited.teams.create({ name: 'too many' }), (e) => check(RateLimitError, 429, 'rate_limit_exceeded')(e) && e.retryAfter > 0 && e.retryAfter <= 60);
  assert.equal(sent, 1, 'a POST is never retried');
});

test('429 quota exceeded on the Free plan', live, async () => {
  const free = await makeTenant('free');
  await assert.rejects(free.client.chat.completions.create({ model: 'gpt-4o', messages: HELLO, max_tokens: 2000 }), check(QuotaExceededError, 429, 'insufficient_quota'));
});

test('502 when every provider fails', live, async () => {
  await assert.rejects(
    tenant.client.chat.completions.create({ model: 'broken-model', messages: HELLO }),
    (e) => check(UpstreamError, 502, 'upstream_error')(e) && e instanceof InternalServerError,
  );
});

test('a refused connection is a connection error', async () => {
  const c = new AIHubClient({ apiKey: 'k', baseURL: 'http://127.0.0.1:9/api/v1', maxRetries: 0 });
  await assert.rejects(c.models.list(), APIConnectionError);
});
