// Usage through the SDK against the live platform, and its export streamed to a file.
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { COMPLETION_TOKENS, HELLO, live, makeTenant, waitFor } from './helpers.mjs';

test('usage figures and the export streamed to a file', live, async () => {
  const { client } = await makeTenant();
  const ids = [];
  for (let i = 0; i < 2; i++) ids.push((await client.chat.completions.create({ model: 'gpt-4o', messages: HELLO }))._requestId);
  const usage = await waitFor(async () => {
    const u = await client.usage.retrieve({ group_by: 'model' });
    return u.totals.requests === 2 && u;
  }, 'two calls in the usage');
  assert.deepEqual(usage.data.map((l) => [l.key, l.requests]), [['gpt-4o', 2]]);
  assert.equal(usage.totals.completion_tokens, 2 * COMPLETION_TOKENS);

  const file = join(await mkdtemp(join(tmpdir(), 'aihub-sdk-')), 'usage.csv');
  const written = await client.usage.exportToFile(file, { format: 'csv' });
  const text = await readFile(file, 'utf8');
  assert.equal(written, Buffer.byteLength(text));
  const [header, ...rows] = text.trim().split('\n');
  assert.deepEqual(header.split(',').slice(0, 3), ['occurred_at', 'request_id', 'model']);
  assert.deepEqual(rows.map((r) => r.split(',')[1]).sort(), [...ids].sort());

  const body = await client.usage.export({ format: 'jsonl' });
  let jsonl = '';
  for await (const piece of body.pipeThrough(new TextDecoderStream())) jsonl += piece;
  const lines = jsonl.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.request_id).sort(), [...ids].sort());
});
