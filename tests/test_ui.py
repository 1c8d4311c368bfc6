"""``llm-otel ui`` and ``llm-otel report --format html`` in headless Chromium (Debian's, driven by Playwright),
against a ledger filled by real SDK calls to the simulated provider.

Every view: no console errors, its charts and tables present, every number on it equal to
``llm-otel report --format json`` for the same range and filters, filters and ranges changing them as the ledger
says. Screenshots of each view go to test-artifacts/ui/.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telemetry_capture import Capture
from ui_browser import (
    CHROMIUM_ARGS,
    assert_numbers_equal,
    chromium_path,
    cli,
    json_report,
    shot,
    ui_server,
    wait_render,
)

from llm_otel.demo.history import fill
from llm_otel.demo.simulated_provider import SimulatedProvider
from llm_otel.demo.workload import run
from llm_otel.sinks.ledger import connect, read_rows

VIEWS = ("cost", "table", "speed", "limits", "budgets", "calls")
CHARTS = {
    "cost": ("cost", "tokens"),
    "speed": ("duration", "ttfc", "tps", "burst"),
    "limits": ("waits",),
    "budgets": ("budgets",),
}
TRACE_URL = "http://127.0.0.1:16686/trace/{trace_id}"
APPROX = ("forecast",)  # a budget's forecast moves with the clock between the page and the CLI


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, sim_server: SimulatedProvider) -> dict[str, Path]:
    """A ledger and budget state from 150 real SDK calls: openai and anthropic, streams, 429s and 5xx, two jobs,
    three tenants, a budget that fires its thresholds and one that blocks tenant-0."""
    tmp = tmp_path_factory.mktemp("ui")
    ledger, state = tmp / "ledger.sqlite3", tmp / "budgets.sqlite3"
    sim_server.reset()
    budgets = [
        {"name": "daily-spend", "limit": 0.05, "unit": "USD", "period": "daily"},
        {
            "name": "tenant0-cap",
            "limit": 0.01,
            "unit": "USD",
            "period": "daily",
            "scope": {"tenant": "tenant-0"},
            "action": "block",
        },
    ]
    cap = Capture(ledger, budgets=budgets, budget_state=str(state))
    try:
        progress = run(sim_server.base_url, 150, 4, None)
    finally:
        cap.close()
    assert progress.done == 150 and progress.blocked > 0
    return {"ledger": ledger, "state": state}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, **context: Any) -> None:
        self.context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"exception: {e}"))

    def open(self, url: str) -> int:
        """Load ``url`` and wait for its first render; returns the render count."""
        self.page.goto(url)
        return wait_render(self.page)

    def close(self) -> None:
        self.context.close()


def _report_for(page: Any, files: dict[str, Path]) -> dict[str, Any]:
    """The JSON report for what the page shows: its range, grouping, stacking and filters."""
    rng = page.locator("#range-shown")
    args = [
        "--ledger",
        str(files["ledger"]),
        "--state",
        str(files["state"]),
        "--since",
        rng.get_attribute("data-from"),
        "--until",
        rng.get_attribute("data-to"),
        "--by",
        page.locator("#group-by").input_value(),
        "--stack-by",
        page.locator("#stack-by").input_value(),
    ]
    for sel in page.locator("select.filter").all():
        if sel.input_value():
            args += ["--filter", f"{sel.get_attribute('data-filter-key')}={sel.input_value()}"]
    return json_report(*args)


def _show(page: Any, view: str, renders: int) -> int:
    page.click(f"nav a[data-view={view}]")
    page.wait_for_selector(f"#view-{view}", state="visible")
    return renders


def _charts(page: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return page.evaluate(
        """names => Object.fromEntries(names.map(n => {
        const c = (window.llmOtelCharts || {})[n];
        return [n, c ? {datasets: c.data.datasets.map(d => ({label: d.label, data: d.data}))} : null];
    }))""",
        list(names),
    )


def test_every_view_shows_the_json_reports_numbers(browser: Any, filled: dict[str, Path]) -> None:
    with ui_server("--ledger", str(filled["ledger"]), "--state", str(filled["state"]), "--trace-url", TRACE_URL) as (
        url,
        _proc,
    ):
        tab = Page(browser)
        page = tab.page
        renders = tab.open(url + "#range=all")
        page.select_option("#range", "all")
        renders = wait_render(page, renders)
        report = _report_for(page, filled)
        rows = read_rows(filled["ledger"])
        assert report["totals"]["calls"] == len(rows) == 150
        for view in VIEWS:
            _show(page, view, renders)
            for name, chart in _charts(page, CHARTS.get(view, ())).items():
                assert chart and chart["datasets"], f"chart {name} missing in view {view}"
                assert any(v is not None for d in chart["datasets"] for v in d["data"]), f"chart {name} is empty"
            shot(page, f"{view}")
        assert assert_numbers_equal(page, report, APPROX) > 100
        charts = _charts(page, ("cost", "tokens"))
        for name, series in (("cost", report["series"]["cost_usd"]), ("tokens", report["series"]["tokens"])):
            assert {d["label"]: d["data"] for d in charts[name]["datasets"]} == series
        # the calls view links trace ids to the trace UI
        page.click("nav a[data-view=calls]")
        link = page.locator("#view-calls a[href*='/trace/']").first
        assert link.get_attribute("href") == TRACE_URL.format(trace_id=report["slowest"][0]["trace_id"])
        # budgets: each budget's utilization as the state file has it; the blocked calls the ledger recorded
        assert {e["budget"] for e in report["budgets"]["entries"]} == {"daily-spend", "tenant0-cap"}
        assert report["totals"]["blocked"] == sum(
            1 for r in rows if r["error_type"] == "llm_otel.errors.BudgetExceeded"
        )
        assert tab.errors == []
        tab.close()


def test_filters_and_ranges_change_the_numbers(browser: Any, filled: dict[str, Path]) -> None:
    rows = read_rows(filled["ledger"])
    with ui_server("--ledger", str(filled["ledger"]), "--state", str(filled["state"])) as (url, _proc):
        tab = Page(browser)
        page = tab.page
        renders = tab.open(url)
        page.click("nav a[data-view=table]")
        page.select_option("select.filter[data-filter-key=tenant]", "tenant-1")
        renders = wait_render(page, renders)
        report = _report_for(page, filled)
        assert report["filters"] == {"tenant": ["tenant-1"]}
        want = [r for r in rows if r["tenant"] == "tenant-1"]
        assert page.locator("[data-key='totals.calls']").first.get_attribute("data-value") == str(len(want))
        assert report["totals"]["tokens"]["input"] == sum(r["input_tokens"] or 0 for r in want)
        assert_numbers_equal(page, report, APPROX)
        shot(page, "table-filtered-tenant-1")
        # a grouping by job: one row per job the filtered calls had
        page.select_option("#group-by", "job")
        renders = wait_render(page, renders)
        jobs = {cell.inner_text() for cell in page.locator("td[data-group-key=job]").all()}
        assert jobs == {r["job"] for r in want}
        assert_numbers_equal(page, _report_for(page, filled), APPROX)
        # a custom range with no calls in it
        page.select_option("#range", "custom")
        page.fill("#since", "2001-01-01T00:00")
        page.fill("#until", "2001-01-02T00:00")
        page.click("#apply")
        renders = wait_render(page, renders)
        assert page.locator("[data-key='totals.calls']").first.get_attribute("data-value") == "0"
        assert tab.errors == []
        tab.close()


def test_dark_mode_and_a_narrow_window(browser: Any, filled: dict[str, Path]) -> None:
    with ui_server("--ledger", str(filled["ledger"]), "--state", str(filled["state"])) as (url, _proc):
        for name, context in (
            ("dark", {"viewport": {"width": 1280, "height": 800}, "color_scheme": "dark"}),
            ("narrow", {"viewport": {"width": 420, "height": 900}}),
        ):
            tab = Page(browser, **context)
            renders = tab.open(url + "#range=all")
            for view in VIEWS:
                tab.page.click(f"nav a[data-view={view}]")
                shot(tab.page, f"{view}-{name}")
            width = tab.page.evaluate("document.documentElement.scrollWidth")
            assert width <= context["viewport"]["width"] + 1, f"{name}: the page is {width}px wide"
            assert renders >= 1 and tab.errors == []
            tab.close()


def test_html_report_is_self_contained_and_equal_to_json(browser: Any, filled: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    base = ["--ledger", str(filled["ledger"]), "--state", str(filled["state"]), "--filter", "provider=openai"]
    cli("report", *base, "--format", "html", "-o", str(out))
    tab = Page(browser)
    page = tab.page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    tab.open(out.as_uri())
    assert page.evaluate("document.body.dataset.mode") == "static"
    rng = page.locator("#range-shown")
    report = json_report(*base, "--since", rng.get_attribute("data-from"), "--until", rng.get_attribute("data-to"))
    for view in VIEWS:
        page.click(f"nav a[data-view={view}]")
        shot(page, f"html-report-{view}")
    assert_numbers_equal(page, report, APPROX)
    assert {r["key"]["provider"] for r in report["groups"]} == {"openai"}
    assert [u for u in requests if not u.startswith("file://")] == []
    assert tab.errors == []
    tab.close()


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt", "locked"])
def test_a_bad_ledger_gives_a_clear_page_and_line(browser: Any, tmp_path: Path, kind: str) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    holder = None
    if kind == "empty":
        connect(ledger).close()
    elif kind == "corrupt":
        ledger.write_bytes(b"this is not a database\n" * 200)
    elif kind == "locked":
        connect(ledger).close()
        holder = sqlite3.connect(ledger)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
    expected = {"missing": "no ledger at", "empty": "No calls", "corrupt": "corrupt", "locked": "locked"}[kind]
    try:
        with ui_server("--ledger", str(ledger), "--state", str(tmp_path / "none.sqlite3")) as (url, proc):
            tab = Page(browser)
            tab.open(url)
            status = tab.page.locator("#status")
            assert status.get_attribute("data-state") == ("empty" if kind == "empty" else "error")
            assert expected.lower() in status.inner_text().lower()
            shot(tab.page, f"ledger-{kind}")
            assert tab.errors == []
            tab.close()
        out, err = proc.communicate(timeout=10)
        assert "Traceback" not in out + err
        if kind != "empty":
            assert expected in err and err.count("\n") == 1, err
    finally:
        if holder is not None:
            holder.close()


@pytest.mark.parametrize("span", ["24h", "7d", "30d"])
def test_a_month_of_history(browser: Any, tmp_path: Path, span: str) -> None:
    """Hourly and daily points (the cells of whole hours and days, and the rows of partial hours) shown as the
    JSON report has them; the screenshots show what a month looks like."""
    ledger = tmp_path / "ledger.sqlite3"
    fill(ledger, 20_000, days=35)
    with ui_server("--ledger", str(ledger), "--state", str(tmp_path / "none.sqlite3")) as (url, _proc):
        tab = Page(browser)
        page = tab.page
        renders = tab.open(url)
        page.select_option("#range", span)
        wait_render(page, renders)
        rng = page.locator("#range-shown")
        report = json_report(
            "--ledger",
            str(ledger),
            "--state",
            str(tmp_path / "none.sqlite3"),
            "--since",
            rng.get_attribute("data-from"),
            "--until",
            rng.get_attribute("data-to"),
        )
        assert report["range"]["step_s"] == {"24h": 3600, "7d": 3600, "30d": 86400}[span]
        assert 0 < report["totals"]["calls"] < 20_000
        for view in VIEWS:
            page.click(f"nav a[data-view={view}]")
            if span == "30d":
                shot(page, f"month-{view}")
        assert_numbers_equal(page, report, APPROX)
        charts = _charts(page, ("cost",))
        assert {d["label"]: d["data"] for d in charts["cost"]["datasets"]} == report["series"]["cost_usd"]
        assert tab.errors == []
        tab.close()


def test_the_page_follows_a_growing_ledger(browser: Any, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    fill(ledger, 300, days=0.5)
    with ui_server("--ledger", str(ledger), "--state", str(tmp_path / "none.sqlite3")) as (url, _proc):
        tab = Page(browser)
        page = tab.page
        renders = tab.open(url)
        calls = page.locator("[data-key='totals.calls']").first
        assert calls.get_attribute("data-value") == "300"
        fill(ledger, 45, days=0.01, seed=2)  # as an instrumented app would, while the page is open
        wait_render(page, renders, timeout=30)
        deadline = 30
        while calls.get_attribute("data-value") != "345" and deadline > 0:
            page.wait_for_timeout(500)
            deadline -= 0.5
        assert calls.get_attribute("data-value") == "345"
        assert tab.errors == []
        tab.close()
