// Chat through the SDK against the live platform: whole answers, streams, a stream cancelled
// midway by an AbortSignal (still billed), and a stream left by `break`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { APIUserAbortError, Stream } from '../dist/index.js';
import { COMPLETION_TOKENS, GREETING, HELLO, admin, live, makeTenant, waitFor } from './helpers.mjs';

test('create answers in the OpenAI shape', live, async () => {
  const { client } = await makeTenant();
  const response = await client.chat.completions.create({ model: 'gpt-4o', messages: HELLO });
  assert.equal(response.choices[0].message.content, GREETING);
  assert.equal(response.usage.completion_tokens, COMPLETION_TOKENS);
  assert.ok(response._requestId);
});

test('stream is an async iterable of chunks with delta.content, ended by [DONE]', live, async () => {
  const { client } = await makeTenant();
  const stream = await client.chat.completions.stream({ model: 'gpt-4o', messages: HELLO });
  assert.ok(stream instanceof Stream && stream.requestId);
  let text = '';
  let pieces = 0;
  for await (const chunk of stream) {
    const content = chunk.choices[0]?.delta.content;
    if (content) {
      text += content;
      pieces++;
    }
  }
  assert.equal(text, GREETING);
  assert.equal(pieces, COMPLETION_TOKENS);
  const viaCreate = await client.chat.completions.create({ model: 'gpt-4o', messages: HELLO, stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const chunk of viaCreate) chunks.push(chunk);
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.equal(chunks.at(-1).usage.completion_tokens, COMPLETION_TOKENS);
});

test('an AbortSignal cancels a stream midway, and the call is still billed in full', live, async () => {
  const tenant = await makeTenant();
  const controller = new AbortController();
  const stream = await tenant.client.chat.completions.stream({ model: 'gpt-4o', messages: HELLO }, { signal: controller.signal });
  const seen = [];
  await assert.rejects(
    (async () => {
      for await (const chunk of stream) {
        seen.push(chunk);
        controller.abort();
      }
    })(),
    APIUserAbortError,
  );
  assert.equal(seen.length, 1);
  const usage = await waitFor(async () => {
    const u = await admin().usage.retrieve({ org_id: tenant.orgId });
    return u.totals.requests === 1 && u;
  }, 'the cancelled call in the usage');
  assert.equal(usage.totals.completion_tokens, COMPLETION_TOKENS, 'billed for everything generated');
  assert.equal(usage.totals.failed_requests, 0);
});

test('a stream left by break is closed and cannot be read again', live, async () => {
  const { client } = await makeTenant();
  const stream = await client.chat.completions.stream({ model: 'gpt-4o', messages: HELLO });
  for await (const chunk of stream) {
    assert.ok(chunk.choices[0].delta);
    break;
  }
  // The connection is closed: reading again is refused rather than hanging.
  await assert.rejects(async () => {
    for await (const _ of stream) void _;
  }, /read once/);
});

test('models list what the plan serves, with prices', live, async () => {
  const { client } = await makeTenant();
  assert.ok((await client.models.list()).data.some((m) => m.id === 'gpt-4o'));
  const chat = (await client.chat.models.list()).data.find((m) => m.id === 'gpt-4o');
  assert.ok(chat.pricing.input_usd_per_million_tokens > 0);
});
