"""``/docs``: the API's reference made from its own OpenAPI spec, readable without the internet
(no script, nothing fetched), with every operation and its parameters."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from fastapi.testclient import TestClient

from causalscope.daemon.serve.app import ApiOptions, make_api
from causalscope.daemon.serve.docs import reference_page


class _Page(HTMLParser):
    """The tags, the attributes that fetch something, and the text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.fetches: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            inline = (value or "").startswith("data:")
            if not inline and (name == "src" or (tag == "link" and name == "href")):
                self.fetches.append(f"{tag} {name}={value}")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_reference_lists_every_operation_and_needs_nothing_outside(tmp_path: Path) -> None:
    app = make_api(ApiOptions(sessions_dir=tmp_path))
    spec = app.openapi()
    page = _Page()
    page.feed(reference_page(spec))
    text = re.sub(r"\s+", " ", " ".join(page.text))
    assert "script" not in page.tags and page.fetches == []  # opens offline
    operations = [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) >= 20
    for method, path in operations:
        assert re.search(rf"{method}\s+{re.escape(path)}", text), (method, path)
    # a parameter with its bounds and meaning, and a body's schema
    sql = spec["paths"]["/sessions/{session_id}/sql"]["get"]
    names = {p["name"] for p in sql["parameters"]}
    assert {"q", "limit"} <= names
    assert "rows returned at most (1 to 10000)" in text
    page_size = next(
        p["schema"]
        for p in spec["paths"]["/sessions/{session_id}/exposures"]["get"]["parameters"]
        if p["name"] == "page_size"
    )
    assert f"<= {page_size['maximum']}" in text  # a bound, as the spec gives it
    assert "'seen' | 'done' | 'quarantined' | 'pass' | 'warn' | 'fail' | null" in text
    labels = spec["paths"]["/sessions/{session_id}/labels"]["post"]
    body = labels["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/")[-1]
    assert f"Body (application/json): {body}" in text


def test_docs_is_the_offline_reference_and_swagger_is_beside_it(tmp_path: Path) -> None:
    client = TestClient(make_api(ApiOptions(sessions_dir=tmp_path)))
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "<script" not in docs.text and "/sessions/{session_id}/exposures" in docs.text
    swagger = client.get("/docs/swagger")
    assert swagger.status_code == 200 and "swagger-ui" in swagger.text.lower()
    named = re.search(r"url: ?['\"]([^'\"]+)['\"]", swagger.text)
    assert named is not None and named.group(1) == "/openapi.json"
    assert "/docs" not in client.get("/openapi.json").json()["paths"]  # not an API operation
