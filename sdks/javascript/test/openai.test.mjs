// The official `openai` npm package, pointed at the gateway, works unchanged: create, stream,
// models.list and its error classes.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import OpenAI from 'openai';

import { GREETING, HELLO, baseURL, live, makeTenant } from './helpers.mjs';

let client;
before(async () => {
  if (live.skip) return;
  const tenant = await makeTenant();
  client = new OpenAI({ baseURL, apiKey: tenant.key, maxRetries: 0 });
});

test('chat.completions.create', live, async () => {
  const response = await client.chat.completions.create({ model: 'gpt-4o', messages: HELLO });
  assert.equal(response.choices[0].message.content, GREETING);
  assert.equal(response.usage.prompt_tokens, 1);
});

test('chat.completions.create with stream: true', live, async () => {
  const stream = await client.chat.completions.create({ model: 'gpt-4o', messages: HELLO, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(text, GREETING);
});

test('models.list', live, async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  assert.deepEqual(ids.sort(), ['broken-model', 'gpt-4o']);
});

test('errors arrive as its classes', live, async () => {
  await assert.rejects(new OpenAI({ baseURL, apiKey: 'aihub-sk-wrong', maxRetries: 0 }).models.list(), OpenAI.AuthenticationError);
  await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages: HELLO }), OpenAI.NotFoundError);
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: [] }), OpenAI.BadRequestError);
  await assert.rejects(client.chat.completions.create({ model: 'broken-model', messages: HELLO }), (e) => e instanceof OpenAI.APIError && e.status === 502);
});
