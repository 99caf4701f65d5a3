"""A local OpenAI-compatible ``/v1/chat/completions`` server with scripted answers (no model).

``script`` is consumed one entry per request: an ``int`` answers with that
HTTP status, a ``str`` is returned verbatim as the message content, a
``dict`` is returned as JSON content. With the script empty, the server
answers correctly: it reads the MRN of each document in the prompt.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class LLMServer:
    port: int = 0
    script: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0  # seconds before each answer (to make a run slow enough to kill)
    # plus seconds per document in the prompt, like a hosted model writing one record per document (requests
    # are served on their own threads, so concurrent clients wait side by side, not one after the other)
    delay_per_document: float = 0.0
    # Refuse JSON mode as LM Studio does (400: "'response_format.type' must be 'json_schema' or 'text'").
    refuse_json_mode: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def client(self) -> Any:
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key="test-key", max_retries=0, timeout=10)


def correct_answer(prompt: str) -> dict[str, Any]:
    def fields(text: str) -> dict[str, Any]:
        mrn = re.search(r"MRN:\s*(\S+)", text)
        return {
            "MRN": mrn.group(1) if mrn else None,
            "Provider": "Dr. Alan Grant",
            "dx": ["E11.9"],
            "meds": "Metformin 500 mg; Amoxicillin",
            "date_of_service": "2024-05-02",
            "summary": "Follow up.",
        }

    documents = re.findall(r'<document id="([^"]+)">\n(.*?)\n</document>', prompt, re.S)
    if documents:
        return {"records": [{"document_id": doc_id, **fields(text)} for doc_id, text in documents]}
    return fields(prompt)


def _handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if server.delay or server.delay_per_document:
                prompt = str(body.get("messages", [{}])[-1].get("content", ""))
                documents = max(1, prompt.count("<document id="))
                time.sleep(server.delay + server.delay_per_document * documents)
            with server.lock:
                server.requests.append(body)
                refused = server.refuse_json_mode and body.get("response_format", {}).get("type") == "json_object"
                action = 400 if refused else server.script.pop(0) if server.script else None
            if refused:
                message = "'response_format.type' must be 'json_schema' or 'text'"
                payload = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
                self.send_response(400)
            elif isinstance(action, int):
                payload = json.dumps({"error": {"message": f"scripted {action}", "type": "test"}}).encode()
                self.send_response(action)
                if action == 429:
                    self.send_header("Retry-After", "0")
            else:
                prompt = body["messages"][-1]["content"]
                content = action if isinstance(action, str) else json.dumps(action or correct_answer(prompt))
                payload = json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model"),
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    server = LLMServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
