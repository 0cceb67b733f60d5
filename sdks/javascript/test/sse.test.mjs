// The SSE decoder: events come out whole however the bytes were cut.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SSEDecoder } from '../dist/index.js';

const BODY = new TextEncoder().encode(
  ': a comment\n' +
    'data: {"text": "héllo wörld ✓"}\n\n' +
    'event: note\r\n' +
    'data: line one\r\n' +
    'data: line two\r\n\r\n' +
    'data: third\r\r' +
    'data: [DONE]\n\n',
);
const EXPECTED = [
  [undefined, '{"text": "héllo wörld ✓"}'],
  ['note', 'line one\nline two'],
  [undefined, 'third'],
  [undefined, '[DONE]'],
];

function decode(pieces) {
  const decoder = new SSEDecoder();
  const events = pieces.flatMap((p) => decoder.feed(p));
  events.push(...decoder.end());
  return events.map((e) => [e.event, e.data]);
}

test('the whole body gives every event', () => {
  assert.deepEqual(decode([BODY]), EXPECTED);
});

test('events survive every cut into two reads', () => {
  for (let cut = 0; cut <= BODY.length; cut++) {
    assert.deepEqual(decode([BODY.subarray(0, cut), BODY.subarray(cut)]), EXPECTED, `cut at byte ${cut}`);
  }
});

test('events survive one-byte reads, split characters and split line endings', () => {
  const pieces = [];
  for (let i = 0; i < BODY.length; i++) pieces.push(BODY.subarray(i, i + 1));
  assert.deepEqual(decode(pieces), EXPECTED);
});

test('a last event without its blank line is kept at the end', () => {
  assert.deepEqual(decode([new TextEncoder().encode('data: a\n\ndata: b')]), [
    [undefined, 'a'],
    [undefined, 'b'],
  ]);
});
