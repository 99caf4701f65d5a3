"""Toolkit fixtures: a local HTTP API (paginates, rate-limits, fails transiently) and one chDB engine per session."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import unique_name

ITEMS = [{"id": i, "name": f"item {i}", "price": f"{i}.25"} for i in range(1, 24)]


class ApiState:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()

    def hit(self, path: str) -> int:
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            return self.hits[path]


def make_handler(state: ApiState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def send_json(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            n = state.hit(url.path)
            if url.path == "/pages":
                page, size = int(q.get("page", 1)), int(q.get("per_page", 10))
                size = min(size, int(q.get("cap", size)))  # an API that caps its page size below the one asked
                if q.get("strict") and (page - 1) * size >= len(ITEMS):
                    self.send_json({"detail": "Invalid page."}, status=404)  # Django REST framework's, past the end
                    return
                self.send_json({"data": ITEMS[(page - 1) * size : page * size]})
            elif url.path == "/offset":
                offset, limit = int(q.get("offset", 0)), int(q.get("limit", 10))
                self.send_json({"data": ITEMS[offset : offset + limit]})
            elif url.path == "/cursor":
                start = int(q.get("cursor", 0))
                nxt = start + 10 if start + 10 < len(ITEMS) else None
                self.send_json({"data": ITEMS[start : start + 10], "meta": {"next": nxt}})
            elif url.path == "/link":
                page = int(q.get("p", 1))
                headers = {"Link": f'</link?p={page + 1}>; rel="next"'} if page * 10 < len(ITEMS) else {}
                self.send_json(ITEMS[(page - 1) * 10 : page * 10], headers=headers)
            elif url.path == "/drf":  # Django REST framework: the next page's absolute URL in the body
                page = int(q.get("page", 1))
                nxt = f"http://{self.headers['Host']}/drf?page={page + 1}" if page * 10 < len(ITEMS) else None
                self.send_json({"count": len(ITEMS), "next": nxt, "results": ITEMS[(page - 1) * 10 : page * 10]})
            elif url.path == "/fhir/Patient":  # a FHIR search: Bundle.link[relation=next], no entry when empty
                offset = int(q.get("_offset", 0))
                links = [{"relation": "self", "url": self.path}]
                if offset + 10 < len(ITEMS) and q.get("name") != "nobody":
                    links.append({"relation": "next", "url": f"Patient?_offset={offset + 10}"})
                bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
                if q.get("name") != "nobody":
                    bundle["entry"] = [
                        {"fullUrl": f"Patient/{i['id']}", "resource": {"resourceType": "Patient", **i}}
                        for i in ITEMS[offset : offset + 10]
                    ]
                self.send_json(bundle)
            elif url.path == "/limited":
                if n == 1:
                    self.send_json({"error": "slow down"}, 429, {"Retry-After": "1"})
                else:
                    self.send_json({"data": ITEMS[:3]})
            elif url.path == "/flaky":
                if n <= 2:
                    self.send_json({"error": "unavailable"}, 503)
                else:
                    self.send_json({"data": ITEMS[:2]})
            elif url.path == "/drop":
                if n == 1:  # a connection closed with no response: transient
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.send_json({"data": ITEMS[:1]})
            elif url.path == "/always503":
                self.send_json({"error": "down"}, 503)
            else:
                self.send_json({"error": "not found"}, 404)

    return Handler


class Api:
    def __init__(self, base: str, state: ApiState) -> None:
        self.base, self.state = base, state


@pytest.fixture
def api() -> Iterator[Api]:
    state = ApiState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Api(f"http://127.0.0.1:{server.server_address[1]}", state)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chDB allows one engine path per process: every toolkit test shares this one (unique databases inside)."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def ch_database(chdb_path: Path) -> Iterator[tuple[str, str]]:
    """(url, database): an empty uniquely named database on the session's chDB engine."""
    import clickhouse_connect

    url = f"chdb://{chdb_path}"
    name = unique_name("ch")
    client = clickhouse_connect.get_client(dsn=url)
    client.command(f"CREATE DATABASE {name}")
    try:
        yield url, name
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name}")
        client.close()


from tests.support.services import S3Server  # noqa: E402,F401 - s3_server is the session's (tests/support/services.py)
