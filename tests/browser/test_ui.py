"""The web UI in a real browser: a real master gates a green and a red tag, then headless
Chromium checks the landing page (the waterfall) and the release-gate dashboard, follows
the dashboard's log and evidence links, and leaves screenshots in test-output/screenshots/.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from harness import EXAMPLE_MATRIX, USERS, GateMaster, PlatformRepo, cleanup, result_name  # noqa: E402

from matrixgate import loader  # noqa: E402

CHROMIUM = Path(os.environ.get("MATRIXGATE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "test-output" / "screenshots"
GREEN, RED, FAULT, BROKEN_LEG = "v1.0.0", "v1.0.1", "NON_ATOMIC_CAS", "plasmavmc-creditservice"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A master that has gated GREEN (passes) and RED (NON_ATOMIC_CAS breaks one leg)."""
    root = tmp_path_factory.mktemp("ui")
    repo = PlatformRepo(root)
    master = GateMaster(root, repo)
    timings = {}
    t0 = time.monotonic()
    try:
        master.start()
        timings["master started"] = time.monotonic() - t0
        # Both gates at once: they share the workers, which is quicker than one after the other.
        repo.tag(GREEN)
        repo.set_fault(FAULT)
        repo.tag(RED)
        master.wait_builds("release-gate", 2, timeout=180)
        timings["both gates done"] = time.monotonic() - t0
        yield master, timings
    finally:
        cleanup(master)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        # launch() gives every run a fresh temporary profile.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_landing_page_is_the_waterfall_with_every_builder(gated, page):
    master, _ = gated
    page.goto(master.url + "/")
    page.wait_for_url(re.compile(r"#/waterfall$"), timeout=15_000)
    header = page.locator(".bb-waterfall-view .header-content")
    legs = [leg.name for leg in loader.load_matrix(EXAMPLE_MATRIX).enabled_legs]
    for name in ["release-gate", *legs]:
        header.get_by_text(name, exact=True).wait_for(timeout=15_000)
    shot(page, "waterfall")


def test_dashboard_shows_which_tag_may_be_released_and_what_blocks_the_other(gated, page):
    master, timings = gated
    t0 = time.monotonic()
    page.goto(master.url + "/#/gate")
    dashboard = page.locator(".bb-wsgi-dashboard-view .mg-gate")
    dashboard.wait_for(timeout=15_000)
    timings["dashboard shown"] = time.monotonic() - t0

    glance = dashboard.locator("#mg-glance")
    assert glance.locator(".mg-release-ok").all_inner_texts() == [GREEN]
    assert re.search(rf"Held back: {re.escape(RED)} — BLOCKED by {BROKEN_LEG} on worker \S+", glance.inner_text())

    green = dashboard.locator(f'tr.mg-gate-row[data-tag="{GREEN}"]')
    red = dashboard.locator(f'tr.mg-gate-row[data-tag="{RED}"]')
    assert green.get_attribute("data-verdict") == "green"
    assert "may be released" in green.inner_text()
    assert red.get_attribute("data-verdict") == "blocked"
    broken_cell = red.locator(f'td[data-leg="{BROKEN_LEG}"]')
    assert "fail" in broken_cell.get_attribute("class")
    assert green.locator("td.mg-cell.ok").count() == 4   # every leg but the on-request plasmavmc-e2e
    blocked = dashboard.locator(f'li.mg-blocked[data-tag="{RED}"]')
    assert blocked.locator(".mg-blocking-leg").all_inner_texts() == [BROKEN_LEG]
    assert "first failing step admission cas/rollback under contention" in blocked.inner_text()
    shot(page, "dashboard")

    # The failing step's log, as linked from the page.
    log = page.request.get(blocked.locator("a.mg-log").first.evaluate("a => a.href"))
    assert log.status == 200, log.url
    assert "test result: FAILED" in log.text()
    # The green gate's evidence bundle.
    bundle = page.request.get(green.locator("a.mg-bundle").evaluate("a => a.href"))
    assert bundle.status == 200, bundle.url
    assert bundle.headers["content-type"] == "application/gzip"
    assert bundle.body()[:2] == b"\x1f\x8b"

    # A cell leads to the leg's build inside the UI.
    broken_cell.locator("a").first.click()
    page.wait_for_url(re.compile(r"#/builders/\d+/builds/\d+$"), timeout=10_000)
    page.get_by_text("admission cas/rollback under contention").first.wait_for(timeout=10_000)
    shot(page, "blocking-leg-build")

    # The plugin page itself (outside the UI) renders the same dashboard.
    page.goto(master.url + "/plugins/wsgi_dashboards/gate/index.html")
    assert page.locator(f'tr.mg-gate-row[data-tag="{RED}"]').count() == 1
    shot(page, "dashboard-plugin-page")
    print("timings:", {k: round(v, 1) for k, v in timings.items()})



def test_run_leg_on_a_leg_page_runs_that_leg_only(gated, browser):
    """``force-leg`` is one form for every leg: the leg page's *Run leg* sends that builder's id."""
    master, _ = gated
    leg = "creditservice-nightlight"
    builderid = master.builder_id(leg)
    before = {r["buildrequestid"] for r in master.buildrequests()}
    context = browser.new_context(viewport={"width": 1500, "height": 950},
                                  http_credentials={"username": "dev", "password": USERS["dev"][0]})
    try:
        page = context.new_page()
        page.goto(master.url + "/auth/login")          # Basic auth once: the session cookie
        page.goto(f"{master.url}/#/builders/{builderid}")
        page.get_by_role("button", name="Run leg").click()
        modal = page.locator(".bb-forcebuild-modal")
        modal.get_by_text("Run this leg").wait_for(timeout=10_000)
        assert modal.get_by_label("Dry run").is_checked()
        page.wait_for_timeout(500)                      # the modal's fade-in, for the screenshot
        shot(page, "run-leg-form")
        modal.get_by_role("button", name="Start build").click()
        page.wait_for_url(re.compile(r"#/buildrequests/\d+"), timeout=15_000)
    finally:
        context.close()
    new = [r for r in master.buildrequests() if r["buildrequestid"] not in before]
    assert [r["builderid"] for r in new] == [builderid]
    build = master.wait_for(lambda: [b for b in master.get(f"buildrequests/{new[0]['buildrequestid']}/builds") or []
                                     if b["complete"]], 60, "the forced leg")[0]
    assert result_name(build) == "success" and "dry run" in build["state_string"]   # dry by default
    assert master.build_properties(build["buildid"])["owner"] == "dev"
