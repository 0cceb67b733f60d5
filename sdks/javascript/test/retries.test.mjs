// Retries, timeouts and errors of the transport, against answers made up here (a fetch of the
// test's own). The live tests show the same errors coming from the real platform.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  AIHubClient,
  AIHubError,
  APITimeoutError,
  APIUserAbortError,
  QuotaExceededError,
  RateLimitError,
  ServiceUnavailableError,
} from '../dist/index.js';

const TEAM = { id: 't1', object: 'team', org_id: 'o1', name: 'Research', members: [], version: 1 };

function error(status, code, retryAfter) {
  const headers = { 'content-type': 'application/json', 'x-request-id': `req-${status}` };
  if (retryAfter !== undefined) headers['retry-after'] = retryAfter;
  return new Response(JSON.stringify({ error: { message: `no (${code})`, type: 'x', code, param: null } }), { status, headers });
}

function ok(body) {
  return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json', 'x-request-id': 'r-ok' } });
}

function script(...answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    return answers.shift()();
  };
  return { calls, fetch };
}

function client(s, options = {}) {
  return new AIHubClient({ apiKey: 'aihub-sk-test', baseURL: 'http://hub.test/api/v1', fetch: s.fetch, ...options });
}

test('a GET answered 429 is tried again after retry-after', async () => {
  const s = script(() => error(429, 'rate_limit_exceeded', '0.01'), () => ok(TEAM));
  const team = await client(s).teams.retrieve('t1');
  assert.equal(team.name, 'Research');
  assert.equal(s.calls.length, 2);
  assert.equal(team._requestId, 'r-ok');
});

test('a 503 is retried up to maxRetries, then thrown with its request id', async () => {
  const s = script(...Array.from({ length: 2 }, () => () => error(503, 'service_unavailable', '0')));
  await assert.rejects(client(s, { maxRetries: 1 }).teams.retrieve('t1'), (e) => {
    assert.ok(e instanceof ServiceUnavailableError);
    assert.equal(e.status, 503);
    assert.equal(e.requestId, 'req-503');
    return true;
  });
  assert.equal(s.calls.length, 2);
});

test('a POST is never retried', async () => {
  const s = script(() => error(429, 'rate_limit_exceeded', '0'));
  await assert.rejects(client(s).teams.create({ name: 'x' }), RateLimitError);
  assert.equal(s.calls.length, 1);
});

test('a spent quota and a retry-after past the cap are thrown at once', async () => {
  const s = script(() => error(429, 'insufficient_quota', '0'), () => error(429, 'rate_limit_exceeded', '3600'));
  await assert.rejects(client(s).teams.retrieve('t1'), QuotaExceededError);
  await assert.rejects(client(s).teams.retrieve('t1'), (e) => e instanceof RateLimitError && e.retryAfter === 3600);
  assert.equal(s.calls.length, 2);
});

test('a timeout is its own error, and a signal cancels', async () => {
  const hang = (url, init) =>
    new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
  const c = new AIHubClient({ apiKey: 'k', baseURL: 'http://hub.test/api/v1', fetch: hang, timeout: 20 });
  await assert.rejects(c.teams.retrieve('t1'), APITimeoutError);
  const controller = new AbortController();
  const pending = c.teams.retrieve('t1', { signal: controller.signal, timeout: 60_000 });
  controller.abort();
  await assert.rejects(pending, APIUserAbortError);
});

test('configuration comes from the environment', async () => {
  const saved = { ...process.env };
  try {
    process.env.AIHUB_API_KEY = 'aihub-sk-from-env';
    process.env.AIHUB_BASE_URL = 'http://elsewhere.test/api/v1/';
    const s = script(() => ok(TEAM));
    await new AIHubClient({ fetch: s.fetch }).teams.retrieve('a b', { ifMatch: '"1"' });
    assert.equal(s.calls[0].url, 'http://elsewhere.test/api/v1/teams/a%20b');
    assert.equal(s.calls[0].init.headers.Authorization, 'Bearer aihub-sk-from-env');
    assert.equal(s.calls[0].init.headers['If-Match'], '"1"');
    delete process.env.AIHUB_API_KEY;
    assert.throws(() => new AIHubClient(), AIHubError);
    delete process.env.AIHUB_BASE_URL;
    assert.equal(new AIHubClient({ apiKey: 'k' }).baseURL, 'http://localhost:8001/api/v1');
  } finally {
    process.env = saved;
  }
});
