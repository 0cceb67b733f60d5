"""The models follow docs/openapi.json: the generated files are what the document generates now,
and a response that differs from the document is caught."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

import ai_hub

REPO = Path(__file__).resolve().parents[3]


def load_generator():
    spec = importlib.util.spec_from_file_location("sdk_generate", REPO / "sdks" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sdk_generate"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (REPO / "docs" / "openapi.json").exists(), reason="outside the repository")
def test_generated_files_match_the_openapi_document():
    generator = load_generator()
    stale = [str(p.relative_to(REPO)) for p, text in generator.outputs().items() if p.read_text() != text]
    assert not stale, f"{stale} differ from docs/openapi.json: run python3 sdks/generate.py"


@pytest.mark.skipif(not (REPO / "docs" / "openapi.json").exists(), reason="outside the repository")
def test_every_operation_of_the_document_has_a_method_on_both_clients():
    generator = load_generator()
    import json

    doc = generator.Document(json.loads((REPO / "docs" / "openapi.json").read_text()))
    sync = ai_hub.AIHubClient(api_key="k")
    async_ = ai_hub.AsyncAIHubClient(api_key="k")
    for op in doc.operations():
        for client in (sync, async_):
            target = client
            for part in op["resource"].split("."):
                target = getattr(target, part)
            assert callable(getattr(target, op["name"])), op["id"]


def test_strict_mode_refuses_a_field_the_document_does_not_have():
    team = {"id": "t", "object": "team", "org_id": "o", "name": "n", "members": [], "version": 1}
    assert ai_hub.Team(team).name == "n"
    with pytest.raises(ai_hub.ModelDriftError, match="surprise"):
        ai_hub.Team({**team, "surprise": 1})
    with pytest.raises(ai_hub.ModelDriftError, match="members"):
        ai_hub.Team({k: v for k, v in team.items() if k != "members"})
    with pytest.raises(ai_hub.ModelDriftError, match="version"):
        ai_hub.Team({**team, "version": "1"})
    with pytest.raises(ai_hub.ModelDriftError, match="object"):
        ai_hub.Team({**team, "object": "user"})


def test_without_strict_mode_a_newer_field_is_kept(monkeypatch):
    monkeypatch.setenv("AIHUB_SDK_STRICT", "0")
    team = ai_hub.Team({"id": "t", "object": "team", "org_id": "o", "name": "n", "members": [], "version": 1, "new": 2})
    assert team.new == 2 and team.to_dict()["new"] == 2


def test_nested_models_and_keyword_fields():
    usage = ai_hub.Usage(
        {
            "object": "usage",
            "org_id": "o",
            "from": "2026-11-01T00:00:00.000Z",
            "to": "2026-12-01T00:00:00.000Z",
            "data": [{"key": "all", "requests": 1, "failed_requests": 0, "prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6, "cost_micros": 7}],
            "totals": {"requests": 1, "failed_requests": 0, "prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6, "cost_micros": 7},
        }
    )
    assert usage.from_ == "2026-11-01T00:00:00.000Z"
    assert isinstance(usage.data[0], ai_hub.UsageLine) and usage.data[0].total_tokens == 6
    assert usage.totals.cost_micros == 7
