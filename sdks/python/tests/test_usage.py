"""Usage through the SDK against the live platform: the figures of the calls made, and the
export streamed to a file, CSV and JSON Lines."""

from __future__ import annotations

import io
import json

from ai_hub import AIHubClient

from conftest import COMPLETION_TOKENS, wait_for

HELLO = [{"role": "user", "content": "Hello!"}]


def test_usage_and_its_export_streamed_to_a_file(new_tenant, base_url, tmp_path):
    tenant = new_tenant()
    client = tenant.client(base_url)
    ids = [client.chat.completions.create(model="gpt-4o", messages=HELLO)._request_id for _ in range(2)]
    usage = wait_for(
        lambda: (u := client.usage.retrieve(group_by="model")).totals.requests == 2 and u,
        "two calls in the usage",
    )
    assert [(line.key, line.requests) for line in usage.data] == [("gpt-4o", 2)]
    assert usage.totals.completion_tokens == 2 * COMPLETION_TOKENS and usage.totals.cost_micros > 0

    csv_file = tmp_path / "usage.csv"
    written = client.usage.export(csv_file, format="csv")
    text = csv_file.read_text()
    assert written == len(text.encode())
    header, *rows = text.strip().splitlines()
    assert header.split(",")[:3] == ["occurred_at", "request_id", "model"]
    assert sorted(row.split(",")[1] for row in rows) == sorted(ids)

    buffer = io.BytesIO()
    client.usage.export(buffer, format="jsonl")
    lines = [json.loads(line) for line in buffer.getvalue().decode().splitlines()]
    assert sorted(line["request_id"] for line in lines) == sorted(ids)
    assert all(line["completion_tokens"] == COMPLETION_TOKENS for line in lines)
