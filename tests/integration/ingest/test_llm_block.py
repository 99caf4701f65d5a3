"""The LLM block through the one resolver (env mode), wired into the flow's extractor builder."""

from __future__ import annotations

import pytest

from clinicflow.ingest.extractors import DocumentText, LLMExtractor
from tests.integration.ingest.conftest import referral
from tests.integration.ingest.llm_server import LLMServer


def test_llm_block_from_env_builds_the_extractor(llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from blocks.llm import resolve_llm
    from tasks.ingest import make_extractor

    monkeypatch.setenv("CLINICFLOW_CREDENTIALS", "env")
    monkeypatch.setenv("CLINICFLOW_INGEST_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("CLINICFLOW_INGEST_LLM_MODEL", "local-model")
    monkeypatch.setenv("CLINICFLOW_INGEST_LLM_API_KEY", "fake-sentinel-not-a-credential-10")
    monkeypatch.setenv("CLINICFLOW_INGEST_LLM_BATCH_SIZE", "2")
    block = resolve_llm()
    assert (block.base_url, block.model, block.batch_size) == (llm_server.base_url, "local-model", 2)
    assert "fake-sentinel-not-a-credential-10" not in repr(block)
    assert "fake-sentinel-not-a-credential-10" not in str(block.model_dump())
    extractor = make_extractor("llm")
    assert isinstance(extractor, LLMExtractor)
    assert extractor.model == "local-model"
    outcomes = extractor.extract([DocumentText(f"d{n}", f"s{n}", referral(n).decode()) for n in range(3)])
    assert [o.medical.patient_id for o in outcomes] == ["MRN000000", "MRN000001", "MRN000002"]
    assert len(llm_server.requests) == 2  # batches of 2 and 1
    with pytest.raises(ValueError, match="extractor must be"):
        make_extractor("gpt")
