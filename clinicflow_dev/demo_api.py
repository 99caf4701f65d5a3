"""A local "referral provider directory" API for the demo: paginated JSON, served from a thread.

``make demo`` has no internet: the HTTP example pipeline reads this instead
of a real directory. Deterministic records, ``?page=N&per_page=M`` pages.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

SPECIALTIES = ["Orthodontics", "Periodontics", "Endodontics", "Oral Surgery", "Pediatric Dentistry"]


def providers(count: int = 45) -> list[dict[str, Any]]:
    return [
        {
            "npi": str(1_000_000_000 + i * 7919),
            "name": f"Referral Clinic {i}",
            "specialty_name": SPECIALTIES[i % len(SPECIALTIES)],
            "city": ["Boston", "Austin", "Denver"][i % 3],
            "accepting_new": "yes" if i % 4 else "no",
            "updated_at": f"2026-0{1 + i % 9}-1{i % 10}T08:00:00Z",
        }
        for i in range(1, count + 1)
    ]


class _Handler(BaseHTTPRequestHandler):
    records: ClassVar[list[dict[str, Any]]] = []  # shared: the server makes one handler per request

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != "/providers":
            self.send_response(404)
            self.end_headers()
            return
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        page, size = int(q.get("page", 1)), int(q.get("per_page", 20))
        body = json.dumps({"results": self.records[(page - 1) * size : page * size], "page": page}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve(port: int = 0, count: int = 45) -> Iterator[str]:
    """Serve the directory on 127.0.0.1 (``port`` 0 picks a free one); yields the base URL."""
    handler = type("DemoHandler", (_Handler,), {"records": providers(count)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="demo-api")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
