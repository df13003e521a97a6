"""A real ``mediaforge serve`` (embedded Redis, Ray and worker) and Debian's Chromium driven by Playwright
(``/usr/bin/chromium``: Playwright's own browser download cannot work offline).

One server for a module's tests (test_dashboard.py's with an API key, test_keyless.py's without), one at a time:
the worker runs one job at a time, so a job submitted behind a slow one is seen queued, then running. Each page
records its console errors and failed requests; a test passes only if the page logged none but the HTTP statuses
it expected (Chromium logs every 4xx of a fetch as a console error).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.slow_pipeline as slow_pipeline
from tests.service_fixtures import SERVICE_ENV, mediaforge_process

CHROMIUM = Path("/usr/bin/chromium")
API_KEY = "dashboard-test-key"
SERVER_START_S = 180.0
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extras)")
if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(root: Path, api_keys: str) -> Iterator[str]:
    """``mediaforge serve`` on a free port: the shipped zoo plus slow-echo, one worker thread, ``api_keys`` (none:
    the keyless mode). Yields its URL once it answers."""
    slow_pipeline.write_model_dir(root / "zoo" / "slow-echo")
    port = _free_port()
    env = {**SERVICE_ENV, "MEDIAFORGE_MODELS_DIR": str(root / "zoo"), "MEDIAFORGE_DATA_DIR": str(root / "data"),
           "MEDIAFORGE_WORKER_CONCURRENCY": "1", "MEDIAFORGE_API_KEYS": api_keys, "MEDIAFORGE_REDIS_URL": ""}
    log = root / "serve.log"
    process = mediaforge_process("serve", "--port", str(port), "--log-level", "warning", env=env, log=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            pytest.fail(f"mediaforge serve exited: {log.read_text()[-3000:]}")
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"mediaforge serve did not answer within {SERVER_START_S:g} s: {log.read_text()[-3000:]}")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except Exception:
            process.kill()
            raise


@pytest.fixture(scope="module")
def dashboard_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server of test_dashboard.py, with one API key (module scope: test_keyless.py runs its own after it)."""
    with serve(tmp_path_factory.mktemp("dashboard"), API_KEY) as url:
        yield url


@pytest.fixture
def api(dashboard_url: str) -> Iterator[httpx.Client]:
    """The same server over HTTP with the key, for setting up jobs the browser then looks at."""
    with httpx.Client(base_url=dashboard_url, timeout=60, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Package scope: Playwright's sync API keeps an event loop running on this thread until it stops, and later
    tests (asyncio.run) need it gone."""
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield chromium
        chromium.close()


@dataclass
class Console:
    """What a page logged: console errors and warnings, uncaught exceptions, requests that left the origin."""

    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def check(self, *expected_statuses: int) -> None:
        """No error but Chromium's 'Failed to load resource' for one of ``expected_statuses``; nothing foreign."""
        allowed = [re.compile(rf"status of {s}\b") for s in expected_statuses]
        unexpected = [e for e in self.errors if not any(p.search(e) for p in allowed)]
        assert not unexpected, unexpected
        assert not self.foreign, self.foreign


def open_page(browser: Any, url: str, key: str | None = API_KEY) -> tuple[Any, Console]:
    """A fresh browser context on the dashboard, its key already given (sessionStorage) unless ``key`` is None;
    any request outside the server is refused and recorded (the dashboard must work offline)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    if key is not None:
        context.add_init_script(f"sessionStorage.setItem('mediaforge.apiKey', {key!r})")
    console = Console(url)
    page = context.new_page()
    page.on("console", lambda m: console.errors.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda err: console.errors.append(f"uncaught: {err}"))

    def guard(route: Any) -> None:
        if route.request.url.startswith(url) or route.request.url.startswith(("blob:", "data:")):
            route.continue_()
        else:
            console.foreign.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    return page, console


@pytest.fixture
def page(browser: Any, dashboard_url: str) -> Iterator[tuple[Any, Console]]:
    page, console = open_page(browser, dashboard_url)
    yield page, console
    page.context.close()
