"""The dashboard in real Chromium against a real ``mediaforge serve``: the issue's scenarios, end to end (form,
upload, live table, previews, cancel, keys), and the README's screenshots rendered fresh."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.dashboard.conftest import API_KEY, Console, open_page
from tests.service_fixtures import submit, wait_for, wav_bytes

DOCS = Path(__file__).resolve().parents[2] / "docs"
JOB_S = 180_000  # ms: a model host's first load on a busy 2-core machine
WATCH_STATES = """(id) => {
  window.seenStates = [];
  const record = () => {
    const state = document.querySelector(`tr[data-job="${id}"] [data-state]`)?.dataset.state;
    if (state && window.seenStates.at(-1) !== state) window.seenStates.push(state);
  };
  record();
  new MutationObserver(record).observe(document.getElementById("jobs"), { subtree: true, childList: true });
}"""
WATCH_ROWS = """() => {
  window.seenRows = [];
  new MutationObserver(() => {
    for (const tr of document.querySelectorAll("#jobs tbody tr")) {
      const row = `${tr.dataset.job} ${tr.querySelector("[data-state]").dataset.state}`;
      if (!window.seenRows.includes(row)) window.seenRows.push(row);
    }
  }).observe(document.getElementById("jobs"), { subtree: true, childList: true });
}"""


def _slow_job(api: httpx.Client, seconds: float, steps: int) -> dict[str, Any]:
    audio = api.post("/v1/artifacts", params={"filename": "slow.wav"}, content=wav_bytes(0.2)).json()["id"]
    return submit(api, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio},
                        "params": {"seconds": seconds, "steps": steps}})


def _job_id(page: Any) -> str:
    page.wait_for_url("**/#/jobs/*")
    return page.url.rsplit("/", 1)[1]


def _wait_state(page: Any, state: str) -> None:
    page.locator(f'#job-header [data-state="{state}"]').wait_for(timeout=JOB_S)


@pytest.fixture(scope="module")
def tokens_job(browser: Any, dashboard_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """audio.tokenize submitted from the form behind a slow job, watched in the table without a reload."""
    with httpx.Client(base_url=dashboard_url, timeout=60,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as api:
        page, console = open_page(browser, dashboard_url)
        wav = tmp_path_factory.mktemp("wav") / "speech.wav"
        wav.write_bytes(wav_bytes(3.0))
        # The one worker thread is busy until the test cancels this job: the next job waits queued until then, on a
        # machine of any speed.
        ahead = _slow_job(api, seconds=60.0, steps=120)
        page.goto(f"{dashboard_url}/#/submit/audio.tokenize")
        page.select_option('select[name="model"]', "wavtokenizer-tiny")
        page.set_input_files('input[name="input:audio"]', str(wav))
        page.click("#submit-form button[type=submit]")
        job_id = _job_id(page)
        page.evaluate("window.notReloaded = true")
        page.click("header nav >> text=Jobs")
        page.locator(f'tr[data-job="{job_id}"]').wait_for()
        page.evaluate(WATCH_STATES, job_id)
        assert api.post(f"/v1/jobs/{ahead['id']}/cancel").status_code == 200
        page.locator(f'tr[data-job="{job_id}"] [data-state="succeeded"]').wait_for(timeout=JOB_S)
        seen = page.evaluate("window.seenStates")
        assert page.evaluate("window.notReloaded") is True
        console.check()
        page.context.close()
        return {"id": job_id, "seen": seen}


def test_tokenize_from_the_form_goes_queued_running_succeeded_live(tokens_job: dict[str, Any]) -> None:
    assert tokens_job["seen"] == ["queued", "running", "succeeded"]


def test_job_page_summarises_the_token_file(page: tuple[Any, Console], dashboard_url: str,
                                            tokens_job: dict[str, Any], api: httpx.Client) -> None:
    browser_page, console = page
    browser_page.goto(f"{dashboard_url}/#/jobs")
    browser_page.click(f'tr[data-job="{tokens_job["id"]}"] a')
    summary = browser_page.locator('#outputs [data-artifact="tokens"] .token-summary')
    summary.wait_for()
    job = api.get(f"/v1/jobs/{tokens_job['id']}").json()
    tokens = api.get(f"/v1/artifacts/{job['outputs']['tokens']}").content
    header_length = int.from_bytes(tokens[:8], "little")
    header = json.loads(tokens[8:8 + header_length])
    codes = header["codes"]
    assert summary.locator('[data-tensor="codes"]').inner_text().split("\t") == [
        "codes", codes["dtype"], f"({', '.join(map(str, codes['shape']))})"]
    assert summary.locator('[data-meta="token_rate"]').inner_text() == header["__metadata__"]["token_rate"]
    assert summary.locator('[data-meta="model"]').inner_text() == "wavtokenizer-tiny"
    # The input is previewed as audio, the job's params shown.
    assert browser_page.locator('#inputs [data-artifact="audio"] audio').count() == 1
    console.check()


def test_detokenize_from_the_job_page_plays_audio(page: tuple[Any, Console], dashboard_url: str,
                                                  tokens_job: dict[str, Any]) -> None:
    browser_page, console = page
    browser_page.goto(f"{dashboard_url}/#/jobs/{tokens_job['id']}")
    browser_page.click("#outputs a.detokenize")
    browser_page.wait_for_url("**/#/submit/audio.detokenize*")
    browser_page.click("#submit-form button[type=submit]")
    _job_id(browser_page)
    _wait_state(browser_page, "succeeded")
    audio = browser_page.locator('#outputs [data-artifact="audio"] audio')
    audio.wait_for()
    seconds = audio.evaluate("""async (el) => {
      if (!(el.duration > 0)) await new Promise((ok) => el.addEventListener("loadedmetadata", ok, { once: true }));
      await el.play();
      return el.duration;
    }""")
    assert 2.5 < seconds < 3.5  # the 3 s clip, back from its codes
    console.check()


def test_image_job_shows_the_png(page: tuple[Any, Console], dashboard_url: str) -> None:
    browser_page, console = page
    browser_page.goto(f"{dashboard_url}/#/submit/image.generate")
    browser_page.select_option('select[name="model"]', "xar-tiny")
    browser_page.fill('input[name="class"]', "0")
    browser_page.fill('input[name="num_inference_steps"]', "2")
    browser_page.click("#submit-form button[type=submit]")
    _job_id(browser_page)
    _wait_state(browser_page, "succeeded")
    image = browser_page.locator("#outputs img")
    image.first.wait_for()
    assert image.first.evaluate("(el) => el.decode().then(() => [el.naturalWidth, el.naturalHeight])")[0] > 0
    assert "image/png" in browser_page.locator("#outputs .card").first.inner_text()
    browser_page.click("#run-again")  # the submit form, filled in from this job
    browser_page.wait_for_url("**/#/submit/image.generate?from=*")
    assert browser_page.locator('select[name="model"]').input_value() == "xar-tiny"
    assert browser_page.locator('input[name="class"]').input_value() == "0"
    assert browser_page.locator('input[name="num_inference_steps"]').input_value() == "2"
    console.check()


def test_bad_param_shows_the_422_message_at_its_field(page: tuple[Any, Console], dashboard_url: str,
                                                      api: httpx.Client) -> None:
    browser_page, console = page
    before = api.get("/v1/jobs", params={"kind": "image.generate"}).json()["count"]
    browser_page.goto(f"{dashboard_url}/#/submit/image.generate")
    browser_page.select_option('select[name="model"]', "xar-tiny")
    browser_page.fill('input[name="class"]', "0")
    browser_page.fill('input[name="num_inference_steps"]', "500")
    browser_page.click("#submit-form button[type=submit]")
    slot = browser_page.locator('[data-error-for="num_inference_steps"]')
    slot.filter(has_text="num_inference_steps").wait_for()
    assert "allowed: 1 <= num_inference_steps <= 200" in slot.inner_text()
    assert browser_page.locator('[data-error-for="class"]').inner_text() == ""
    assert "#/submit/" in browser_page.url
    assert api.get("/v1/jobs", params={"kind": "image.generate"}).json()["count"] == before
    console.check(422)


def test_cancel_a_running_job(page: tuple[Any, Console], dashboard_url: str, api: httpx.Client) -> None:
    browser_page, console = page
    job = _slow_job(api, seconds=60.0, steps=600)
    browser_page.goto(f"{dashboard_url}/#/jobs/{job['id']}")
    _wait_state(browser_page, "running")
    browser_page.locator("#job-message").filter(has_text="step").wait_for(timeout=JOB_S)  # live progress text
    browser_page.click("#cancel")
    _wait_state(browser_page, "cancelled")
    assert browser_page.locator("#cancel").count() == 0
    assert wait_for(api, job["id"])["state"] == "cancelled"
    console.check()


def test_a_job_another_client_submits_appears_live(page: tuple[Any, Console], dashboard_url: str,
                                                    api: httpx.Client) -> None:
    browser_page, console = page
    browser_page.goto(f"{dashboard_url}/#/jobs")
    browser_page.locator("#jobs[data-live]").wait_for()  # the table's stream hears new jobs from here on
    browser_page.evaluate("window.notReloaded = true")
    job = _slow_job(api, seconds=0.2, steps=2)
    browser_page.locator(f'tr[data-job="{job["id"]}"] [data-state="succeeded"]').wait_for(timeout=JOB_S)
    assert browser_page.locator("#jobs tbody tr").first.get_attribute("data-job") == job["id"]  # on top
    assert browser_page.evaluate("window.notReloaded") is True
    console.check()


def test_a_filtered_table_adds_a_new_job_once_it_matches(page: tuple[Any, Console], dashboard_url: str,
                                                          api: httpx.Client) -> None:
    browser_page, console = page
    browser_page.goto(f"{dashboard_url}/#/jobs?state=succeeded")
    browser_page.locator("#jobs[data-live]").wait_for()
    browser_page.evaluate(WATCH_ROWS)
    job = _slow_job(api, seconds=0.2, steps=2)
    browser_page.locator(f'tr[data-job="{job["id"]}"]').wait_for(timeout=JOB_S)
    assert wait_for(api, job["id"])["state"] == "succeeded"
    seen = [row for row in browser_page.evaluate("window.seenRows") if row.startswith(job["id"])]
    assert seen == [f"{job['id']} succeeded"]  # never shown queued or running: those are not this table's rows
    console.check()


def test_api_key_asked_once_wrong_refused_right_works(browser: Any, dashboard_url: str) -> None:
    browser_page, console = open_page(browser, dashboard_url, key=None)
    browser_page.goto(f"{dashboard_url}/#/jobs")
    dialog = browser_page.locator("#auth")
    dialog.wait_for()
    assert "needs an API key" in browser_page.locator("#auth-reason").inner_text()
    assert browser_page.locator("#jobs").count() == 0
    browser_page.fill("#auth-key", "not-the-key")
    browser_page.click("#auth button")
    browser_page.locator("#auth-reason").filter(has_text="refused").wait_for()
    browser_page.fill("#auth-key", API_KEY)
    browser_page.click("#auth button")
    browser_page.locator("#jobs").wait_for()
    assert not dialog.is_visible()
    assert API_KEY not in browser_page.url
    browser_page.click("header nav >> text=Models")  # the key is kept: no second question
    browser_page.locator("#models").wait_for()
    assert "max 16" in browser_page.locator("#models").inner_text()  # batch settings shown
    assert not dialog.is_visible()
    console.check(401)
    browser_page.context.close()


def test_docs_load_swagger_ui_from_the_server(page: tuple[Any, Console], dashboard_url: str) -> None:
    browser_page, console = page
    browser_page.goto(f"{dashboard_url}/docs")
    browser_page.locator(".opblock").first.wait_for()
    assert browser_page.locator(".opblock").count() > 10
    console.check()


def test_workers_page_shows_the_embedded_worker_and_the_last_hour(page: tuple[Any, Console], dashboard_url: str,
                                                                  tokens_job: dict[str, Any]) -> None:
    browser_page, console = page
    browser_page.goto(f"{dashboard_url}/#/workers")
    row = browser_page.locator("#workers tbody tr").first
    row.wait_for()
    assert row.inner_text().startswith("embedded@mediaforge\taudio, generate, image, speech")
    assert browser_page.locator("#throughput rect").count() == 60
    assert browser_page.locator("#queues tbody tr").count() == 4
    console.check()


def test_screenshots_of_the_jobs_page_and_a_job_page(page: tuple[Any, Console], dashboard_url: str,
                                                     tokens_job: dict[str, Any], tmp_path: Path) -> None:
    """Rendered fresh each run; ``MEDIAFORGE_UPDATE_SCREENSHOTS=1`` copies them to docs/ for the README."""
    browser_page, console = page
    browser_page.goto(f"{dashboard_url}/#/jobs")
    browser_page.locator(f'tr[data-job="{tokens_job["id"]}"]').wait_for()
    shots = {"dashboard-jobs.png": tmp_path / "jobs.png", "dashboard-job.png": tmp_path / "job.png"}
    browser_page.screenshot(path=shots["dashboard-jobs.png"])
    browser_page.goto(f"{dashboard_url}/#/jobs/{tokens_job['id']}")
    browser_page.locator("#outputs .token-summary").wait_for()
    browser_page.screenshot(path=shots["dashboard-job.png"], full_page=True)
    for shot in shots.values():
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    console.check()
    if os.environ.get("MEDIAFORGE_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        for name, shot in shots.items():
            shutil.copyfile(shot, DOCS / name)


def test_image_tokens_get_a_token_map(page: tuple[Any, Console], dashboard_url: str, api: httpx.Client) -> None:
    browser_page, console = page
    picture = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((64, 64)).save(picture, format="PNG")
    image = api.post("/v1/artifacts", params={"filename": "g.png"}, content=picture.getvalue()).json()["id"]
    job = submit(api, {"kind": "image.tokenize", "model": "karl-tiny", "inputs": {"image": image}})
    browser_page.goto(f"{dashboard_url}/#/jobs/{job['id']}")
    _wait_state(browser_page, "succeeded")
    token_map = browser_page.locator('#outputs [data-artifact="tokens"] canvas.token-map')
    token_map.wait_for()
    width, height = token_map.evaluate("(el) => [el.width, el.height]")
    assert width * height > 0
    assert browser_page.locator('#outputs [data-meta="model"]').inner_text() == "karl-tiny"
    console.check()


def test_one_stream_carries_every_named_job_to_its_final_event(api: httpx.Client) -> None:
    jobs = [_slow_job(api, seconds=0.5, steps=2)["id"] for _ in range(2)]
    finals: set[str] = set()
    with api.stream("GET", "/v1/dashboard/events", params={"job": jobs}) as stream:
        assert stream.status_code == 200
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "final":
                finals.add(json.loads(line.removeprefix("data: "))["id"])
    assert finals == set(jobs)  # and the stream ended by itself once both were final
    # A finished job: both streams send its one final event, in the same bytes (one formatter, api/sse.py).
    alone = api.get(f"/v1/jobs/{jobs[0]}/events").text
    assert alone.startswith("event: final\n") and alone.count("event: ") == 1
    assert api.get("/v1/dashboard/events", params={"job": jobs[0]}).text == alone
    missing = api.get("/v1/dashboard/events", params={"job": [jobs[0], "0" * 32]})
    assert missing.status_code == 404 and missing.json()["detail"] == f"job {'0' * 32} not found"
    assert httpx.get(f"{api.base_url}/v1/dashboard/events", params={"job": jobs}).status_code == 401


def test_workers_route_counts_the_last_hours_jobs(api: httpx.Client, tokens_job: dict[str, Any]) -> None:
    status = api.get("/v1/workers").json()
    assert [w["name"] for w in status["workers"]] == ["embedded@mediaforge"]
    assert status["workers"][0]["concurrency"] == 1 and status["workers"][0]["processed"] >= 2
    assert [q["family"] for q in status["queues"]] == ["image", "audio", "speech", "generate"]
    minutes = status["minutes"]
    assert len(minutes) == 60 and minutes == sorted(minutes, key=lambda m: m["minute"])
    assert minutes[-1]["minute"] <= status["inspected_at"] < minutes[-1]["minute"] + 60
    finished = [j for j in api.get("/v1/jobs", params={"limit": 500}).json()["data"] if j["finished_at"]]
    assert sum(m["finished"] for m in minutes) == len(finished)
    slowest = max(j["finished_at"] - j["started_at"] for j in finished if j["started_at"])
    means = [m["mean_run_seconds"] for m in minutes if m["mean_run_seconds"] is not None]
    assert means and 0 < max(means) <= slowest + 1e-6
    totals = {t["kind"]: t for t in status["run_totals"]}
    assert totals["audio.tokenize"]["runs"] >= 2 and totals["audio.tokenize"]["mean_run_seconds"] > 0


def test_failed_job_shows_its_error_type_and_message(page: tuple[Any, Console], dashboard_url: str,
                                                     api: httpx.Client) -> None:
    browser_page, console = page
    audio = api.post("/v1/artifacts", params={"filename": "p.wav"}, content=wav_bytes(0.2)).json()["id"]
    job = submit(api, {"kind": "audio.tokenize", "model": "slow-echo", "inputs": {"audio": audio},
                       "params": {"seconds": 0.1, "steps": 1, "poison": True}})
    browser_page.goto(f"{dashboard_url}/#/jobs/{job['id']}")
    _wait_state(browser_page, "failed")
    error = wait_for(api, job["id"])["error"]
    assert browser_page.locator("#job-error").inner_text() == f"{error['type']}: {error['message']}"
    assert "poisoned request" in error["message"]
    console.check()


def test_jobs_table_filters_and_pages(page: tuple[Any, Console], dashboard_url: str, api: httpx.Client,
                                      tokens_job: dict[str, Any]) -> None:
    browser_page, console = page
    browser_page.goto(f"{dashboard_url}/#/jobs")
    browser_page.locator("#jobs tbody tr").first.wait_for()
    browser_page.select_option('select[name="kind"]', "audio.tokenize")
    browser_page.wait_for_url("**/#/jobs?kind=audio.tokenize")
    browser_page.select_option('select[name="state"]', "succeeded")
    browser_page.wait_for_url("**/#/jobs?state=succeeded&kind=audio.tokenize")
    browser_page.locator(f'tr[data-job="{tokens_job["id"]}"]').wait_for()
    rows = browser_page.locator("#jobs tbody tr")
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
    assert cells and all(c[1] == "audio.tokenize" and c[3] == "succeeded" for c in cells)
    expected = api.get("/v1/jobs", params={"kind": "audio.tokenize", "state": "succeeded"}).json()["data"]
    assert [tr.get_attribute("data-job") for tr in rows.all()] == [j["id"] for j in expected]
    # One job a page: "Older" walks the cursor through the same jobs, newest first.
    browser_page.goto(f"{dashboard_url}/#/jobs?state=succeeded&kind=audio.tokenize&limit=1")
    seen = []
    for _ in expected:
        browser_page.locator("#jobs tbody tr").first.wait_for()
        seen.append(browser_page.locator("#jobs tbody tr").first.get_attribute("data-job"))
        older = browser_page.locator("button", has_text="Older")
        if not older.count():
            break
        older.click()
        browser_page.wait_for_function("(id) => !document.querySelector(`tr[data-job=\"${id}\"]`)", arg=seen[-1])
    assert seen == [j["id"] for j in expected]
    console.check()
