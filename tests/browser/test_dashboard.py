"""The dashboard in a real headless Chromium against live hub nodes (memory engine, and two Redis-engine nodes
sharing one redis-server behind a switchable proxy)."""

import os
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import ROOT, Proxy, Redis, SECRET, alert, hs256_token, http, machine_status, now_iso, statushub_binary


def wait_until(page, predicate, timeout=10):
    """Polls `predicate` (a JS function) from Python: wait_for_function would evaluate it as a string, which the
    dashboard's Content-Security-Policy (no unsafe-eval) rightly refuses."""
    deadline = time.time() + timeout
    while not page.evaluate(predicate):
        assert time.time() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.05)


def open_dashboard(page, base, query="line=Line-2"):
    page.goto(f"{base}/?{query}")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)


def test_tiles_counters_and_feed_follow_what_is_published(hubs, page):
    hub = hubs.start()
    hub.publish(machine_status("M-201", "running"), machine_status("M-202", "idle"))
    sockets, sent = [], []

    def watch(socket):
        sockets.append(socket.url)
        socket.on("framesent", lambda payload: sent.append(payload))

    page.on("websocket", watch)
    open_dashboard(page, hub.url)
    # The line is subscribed in the socket's URL, with its snapshot: no subscribe message, no round trip first.
    assert len(sockets) == 1 and "channels=" in sockets[0] and "snapshot=true" in sockets[0], sockets
    assert not any('"subscribe"' in str(payload) for payload in sent), sent
    # The snapshot.
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")
    expect(page.get_by_test_id("tile-M-202")).to_have_attribute("data-status", "idle")
    expect(page.get_by_test_id("counter-machines_running")).to_contain_text("1")

    # Live: a breakdown flips the tile and the line's counter, an alert lands at the top of the feed.
    hub.publish(machine_status("M-202", "running"), machine_status("M-201", "breakdown"), alert("M-201", "spindle overheating", "critical"))
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "breakdown")
    expect(page.get_by_test_id("tile-M-202")).to_have_attribute("data-status", "running")
    expect(page.get_by_test_id("feed-item").first).to_contain_text("spindle overheating")
    expect(page.get_by_test_id("feed-item").first).to_have_attribute("data-severity", "critical")
    expect(page.get_by_test_id("counter-machines_running")).to_contain_text("1")

    # A late event (older source timestamp) is delivered but never flips the tile back.
    late = hub.publish(machine_status("M-201", "running", timestamp=now_iso(-3600)))[0]
    wait_until(page, f"() => window.statushub.seen.includes('{late}')")
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "breakdown")

    # Another line's events stay off this screen.
    hub.publish(machine_status("M-901", "breakdown", line="Line-9"))
    hub.publish(machine_status("M-203", "maintenance"))
    expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-status", "maintenance")
    expect(page.get_by_test_id("tile-M-901")).to_have_count(0)
    assert page.errors == []


def test_a_tile_follows_the_hubs_order_when_a_devices_clock_jumps_back(hubs, page):
    """The hub ranks a machine's states by the publisher's `sequence` when both carry one, so a state whose source
    clock jumped back is the newer one, not late, and the hub caches it. The page compared timestamps itself and kept
    the tile on the older status, against the hub's cache (a reload showed the other status)."""
    def status(current, sequence, seconds_ago):
        event = machine_status("M-201", current, timestamp=now_iso(-seconds_ago))
        event["sequence"] = sequence
        return event

    hub = hubs.start()
    hub.publish(status("running", 41, 5))
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")
    # Its clock set back 10 minutes; its sequence goes on. The hub caches it (not late).
    status_code, answer = http("POST", hub.url + "/v1/events", [status("breakdown", 42, 600)])
    assert status_code == 202 and not answer["accepted"][0].get("late"), answer
    assert http("GET", hub.url + "/v1/state/machine/M-201")[1]["data"]["current_status"] == "breakdown"
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "breakdown")
    # A state the hub does mark late (a lower sequence) still never flips the tile.
    late = hub.publish(status("running", 40, 0))[0]
    wait_until(page, f"() => window.statushub.seen.includes('{late}')")
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "breakdown")
    assert page.errors == []


def test_the_counters_are_the_lines_own_from_the_first_snapshot(hubs, page):
    """Every line's counters arrive on the `counters` channel: the snapshot's too, not only live ones. A plant's
    other lines change their counts after this one's, so a page that took whichever came last showed another line's
    machines running until its own changed."""
    hub = hubs.start()
    hub.publish(machine_status("M-201", "running"), machine_status("M-202", "idle"))
    hub.publish(*[machine_status(f"M-90{n}", "running", line="Line-9") for n in range(1, 5)])
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")
    running = page.get_by_test_id("counter-machines_running").locator(".value")
    expect(running).to_have_text("1")
    # Live: another line's change leaves this line's count; this line's own moves it.
    hub.publish(machine_status("M-905", "running", line="Line-9"))
    hub.publish(machine_status("M-202", "running"))
    expect(running).to_have_text("2")
    hub.publish(machine_status("M-906", "running", line="Line-9"))
    late = hub.publish(machine_status("M-203", "idle"))[0]
    wait_until(page, f"() => window.statushub.seen.includes('{late}')")
    expect(running).to_have_text("2")
    assert page.errors == []


def test_the_counters_say_whose_count_they_are(hubs, page):
    """The shift's count of operators available is the plant's, beside the line's own: read on Line-2's screen as
    "operators available" it looked like the line's, and disagreed with the line's count next to it."""
    hub = hubs.start()
    operator = machine_status("O-156", "available")
    operator["entity_type"] = "operator"
    hub.publish(operator)
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("counter-operators_available").locator(".name")).to_have_text("operators available · shift")
    expect(page.get_by_test_id("counter-line_operators_available").locator(".name")).to_have_text("line operators available")
    assert page.errors == []


def test_the_lines_kpis_show_their_value_against_target(hubs, page):
    """Seed 004's KPI platform recalculates a line's KPIs as production entries come in: the line's screen shows the
    latest figure of each, marked when under its target, and a recalculation replaces it."""
    hub = hubs.start()
    def kpi(name, number, value, target=90):
        return event("kpi_calculated", "kpi", f"Line-2.{name}", {"kpi_number": number, "kpi_name": name, "value": value, "target": target}, source="kpi")
    hub.publish(kpi("performance", 9, 113.6), kpi("efficiency", 3, 29.41), kpi("efficiency", 3, 31.25, target=90) | {"line": "Line-9", "entity_id": "Line-9.efficiency"})
    open_dashboard(page, hub.url)
    efficiency = page.get_by_test_id("kpi-Line-2.efficiency")
    expect(efficiency.locator(".value")).to_have_text("29.4")
    expect(efficiency.locator(".name")).to_have_text("efficiency · target 90")
    expect(efficiency).to_have_attribute("data-below", "true")
    expect(page.get_by_test_id("kpi-Line-2.performance")).to_have_attribute("data-below", "false")
    expect(page.get_by_test_id("kpi-Line-9.efficiency")).to_have_count(0)
    # In the platform's order (KPI #3 before #9), whichever came first.
    shown = page.eval_on_selector_all("#kpis .kpi", "boxes => boxes.map((b) => b.dataset.testid)")
    assert shown == ["kpi-Line-2.efficiency", "kpi-Line-2.performance"], shown
    hub.publish(kpi("efficiency", 3, 92.5))
    expect(efficiency.locator(".value")).to_have_text("92.5")
    expect(efficiency).to_have_attribute("data-below", "false")
    assert page.errors == []


def test_an_operator_is_named_when_the_token_may_see_names(hubs, page):
    """Operators' names are personal (the catalog's `pii` claim): a screen whose token has it shows them beside the ids,
    with the operator's location as the chip's title; one without it shows ids only."""
    hub = hubs.start(env={"STATUSHUB_AUTH_JWT_HS256_SECRET": SECRET})
    hub.publish(event("resource_status_changed", "operator", "O-156",
                      {"current_status": "available", "name": "John Doe", "location": "Line 2, Zone A"}, source="time_and_attendance"))
    for see, shown in ((["pii"], "O-156 · John Doe"), ([], "O-156")):
        open_dashboard(page, hub.url, f"line=Line-2&token={hs256_token(['line:Line-2:*'], see=see)}")
        expect(page.get_by_test_id("operator-O-156")).to_have_text(shown)
        expect(page.get_by_test_id("operator-O-156")).to_have_attribute("title", "Line 2, Zone A")
    assert page.errors == []


def event(event_type, entity_type, entity_id, data, line="Line-2", timestamp=None, source="mes"):
    return {
        "event_type": event_type, "entity_type": entity_type, "entity_id": entity_id, "line": line,
        "timestamp": timestamp or now_iso(), "data": data, "metadata": {"source": source, "triggered_by": "browser-test"},
    }


def test_a_tile_names_its_allocation_and_forecast_and_materials_show_their_levels(hubs, page):
    """Seed 003 is a resource allocation system: a machine's tile names the order it is allocated to and who runs it
    (until the allocation is released or completed, the catalog's `final`), and the ML engine's newest idle-time
    forecast; the line's materials show what is available against the reorder point and safety stock their inventory
    system plans with."""
    hub = hubs.start()
    hub.publish(
        machine_status("M-201", "running"), machine_status("M-202", "idle"),
        event("allocation_changed", "allocation", "A-1", {"change_type": "created", "machine_id": "M-201", "operator_id": "O-156", "work_order_id": "WO-7"}),
        event("material_inventory_changed", "material", "MAT-1",
              {"available_quantity": 900, "on_hand_quantity": 1000, "reorder_point": 500, "safety_stock_level": 200}, source="erp"),
        event("material_inventory_changed", "material", "MAT-2", {"available_quantity": 450, "on_hand_quantity": 470, "reorder_point": 500}, source="erp"))
    open_dashboard(page, hub.url)
    # From the snapshot: the allocation and the materials carry state.
    expect(page.get_by_test_id("tile-allocation-M-201")).to_have_text("WO-7 · O-156")
    expect(page.get_by_test_id("tile-allocation-M-202")).to_have_count(0)
    expect(page.get_by_test_id("material-MAT-1")).to_have_attribute("data-level", "ok")
    expect(page.get_by_test_id("material-MAT-1")).to_contain_text("900 available / 1,000 on hand")
    expect(page.get_by_test_id("material-MAT-2")).to_have_attribute("data-level", "reorder")
    expect(page.get_by_test_id("material-MAT-2")).to_contain_text("reorder point reached")

    # Live: a forecast, a newer one, then an older one arriving late (news: the newest by source time stays).
    hub.publish(event("idle_time_predicted", "machine", "M-201", {"predicted_idle_minutes": 25, "confidence": 0.8}, source="ml"))
    expect(page.get_by_test_id("tile-prediction-M-201")).to_have_text("idle forecast 25 min (80 %)")
    hub.publish(event("idle_time_predicted", "machine", "M-201", {"predicted_idle_minutes": 5}, source="ml"))
    expect(page.get_by_test_id("tile-prediction-M-201")).to_have_text("idle forecast 5 min")
    old = hub.publish(event("idle_time_predicted", "machine", "M-201", {"predicted_idle_minutes": 40}, timestamp=now_iso(-600), source="ml"))[0]
    wait_until(page, f"() => window.statushub.seen.includes('{old}')")
    expect(page.get_by_test_id("tile-prediction-M-201")).to_have_text("idle forecast 5 min")

    # A reassignment moves the allocation to the other machine; completing it ends it.
    hub.publish(event("allocation_changed", "allocation", "A-1", {"change_type": "reassigned", "machine_id": "M-202", "operator_id": "O-157", "work_order_id": "WO-7"}))
    expect(page.get_by_test_id("tile-allocation-M-202")).to_have_text("WO-7 · O-157")
    expect(page.get_by_test_id("tile-allocation-M-201")).to_have_count(0)
    # Paused, it is still in force, and says so.
    hub.publish(event("allocation_changed", "allocation", "A-1", {"change_type": "paused", "machine_id": "M-202", "operator_id": "O-157", "work_order_id": "WO-7"}))
    expect(page.get_by_test_id("tile-allocation-M-202")).to_have_text("WO-7 · O-157 (paused)")
    hub.publish(event("allocation_changed", "allocation", "A-1", {"change_type": "completed", "machine_id": "M-202", "work_order_id": "WO-7"}))
    expect(page.get_by_test_id("tile-allocation-M-202")).to_have_count(0)

    # Consumption takes MAT-1 under its safety stock.
    hub.publish(event("material_inventory_changed", "material", "MAT-1",
                      {"available_quantity": 150, "on_hand_quantity": 1000, "reorder_point": 500, "safety_stock_level": 200}, source="erp"))
    expect(page.get_by_test_id("material-MAT-1")).to_have_attribute("data-level", "safety")
    expect(page.get_by_test_id("material-MAT-1")).to_contain_text("below safety stock")
    out = ROOT / "tests" / "browser" / "out"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / "allocations-and-materials.png"), full_page=True)
    assert page.errors == []

def test_the_counters_keep_the_catalogs_order_whatever_came_first(hubs, page):
    """The counters were drawn in the order their first events arrived, so one load showed machines first and the
    next operators first. They follow the catalog's `tallies` now: here the operator's counters arrive first."""
    hub = hubs.start()
    open_dashboard(page, hub.url)
    operator = machine_status("O-156", "available")
    operator["entity_type"] = "operator"
    hub.publish(operator)
    expect(page.get_by_test_id("counter-line_operators_available")).to_be_visible()
    hub.publish(machine_status("M-201", "running"))
    expect(page.get_by_test_id("counter-machines_running")).to_be_visible()
    catalog = http("GET", f"{hub.url}/v1/catalog")[1]
    declared = [t["name"] for t in catalog["tallies"]]
    shown = page.eval_on_selector_all("#counters .counter", "tiles => tiles.map((t) => t.dataset.testid.slice(8))")
    assert sorted(shown, key=declared.index) == shown and shown[0] == "machines_running", (shown, declared)
    assert page.errors == []


def test_a_tile_says_how_long_its_status_has_held_from_the_first_snapshot(hubs, page):
    """A snapshot holds each machine's latest report; the hub stamps it `status_since` when it saw the status begin
    (or the event said it changed), so a heartbeat does not reset the time. When nobody knows the start (the hub's
    first report of a machine repeats its status), the tile gives the time as a lower bound, not as exact."""
    def status(machine, current, previous=None, seconds_ago=0):
        event = machine_status(machine, current, timestamp=now_iso(-seconds_ago))
        if previous:
            event["data"]["previous_status"] = previous
        return event

    hub = hubs.start()
    hub.publish(status("M-201", "breakdown", "running", seconds_ago=3600), status("M-201", "breakdown", "breakdown", seconds_ago=20))
    hub.publish(status("M-202", "running", seconds_ago=30), status("M-203", "idle", "running", seconds_ago=180))
    open_dashboard(page, hub.url)
    meta = lambda machine: page.get_by_test_id(f"tile-{machine}").locator(".meta").first
    # Ages tick (the tiles are drawn again every 5 s), so the seconds are read, not matched.
    lower_bound, exact_seconds = re.compile(r"^for ≥ (\d+) s$"), re.compile(r"^for (\d+) s$")
    expect(meta("M-201")).to_have_text("for 1 h")    # the heartbeat carries the start the hub saw
    expect(meta("M-202")).to_have_text(lower_bound)   # first seen, no previous_status: the start is unknown
    assert int(lower_bound.match(meta("M-202").inner_text()).group(1)) >= 30
    expect(meta("M-203")).to_have_text("for 3 min")   # the event says the status changed then
    # A change the page sees is exact, and a heartbeat after it keeps its start (the seconds stay below 20).
    hub.publish(status("M-202", "maintenance"))
    expect(meta("M-202")).to_have_text(exact_seconds)
    heartbeat = hub.publish(status("M-202", "maintenance", "maintenance"))[0]
    wait_until(page, f"() => window.statushub.seen.includes('{heartbeat}')")
    expect(meta("M-202")).to_have_text(exact_seconds)
    assert int(exact_seconds.match(meta("M-202").inner_text()).group(1)) < 20
    assert page.errors == []


def test_a_machine_tile_shows_its_newest_alert_until_its_status_changes(hubs, page):
    hub = hubs.start()
    hub.publish(machine_status("M-203", "running", timestamp=now_iso(-60)), machine_status("M-204", "running", timestamp=now_iso(-60)))
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-status", "running")
    expect(page.get_by_test_id("tile-alert-M-203")).to_have_count(0)

    hub.publish(alert("M-203", "spindle overheating", "critical", timestamp=now_iso(-10)))
    expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-alert", "critical")
    expect(page.get_by_test_id("tile-alert-M-203")).to_contain_text("critical")
    expect(page.get_by_test_id("tile-alert-M-203")).to_contain_text("spindle overheating")
    expect(page.get_by_test_id("tile-alert-M-204")).to_have_count(0)

    # An older alert (by source time) does not replace the newer one; a newer one does.
    older = hub.publish(alert("M-203", "door open", "low", timestamp=now_iso(-30)))[0]
    wait_until(page, f"() => window.statushub.seen.includes('{older}')")
    expect(page.get_by_test_id("tile-alert-M-203")).to_contain_text("spindle overheating")
    hub.publish(alert("M-203", "coolant low", "medium", timestamp=now_iso(-8)))
    expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-alert", "medium")
    expect(page.get_by_test_id("tile-alert-M-203")).to_contain_text("coolant low")

    # The same status again (a heartbeat) keeps it; another status is the alert dealt with, and the feed keeps it.
    heartbeat = hub.publish(machine_status("M-203", "running"))[0]
    wait_until(page, f"() => window.statushub.seen.includes('{heartbeat}')")
    expect(page.get_by_test_id("tile-alert-M-203")).to_contain_text("coolant low")
    hub.publish(machine_status("M-203", "maintenance"))
    expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-status", "maintenance")
    expect(page.get_by_test_id("tile-alert-M-203")).to_have_count(0)
    expect(page.get_by_test_id("feed-item").first).to_contain_text("coolant low")
    assert page.errors == []


def test_an_alert_that_announces_its_breakdown_stays_on_the_tile(hubs, page):
    """An alert and the status it explains come from two sources on two clocks (in `make demo-sparkplug`, an MES alert
    over HTTP and the machine's breakdown through mosquitto): the breakdown's alert stamped 1 ms before the breakdown
    was left off its tile. Within a few seconds before the status began it is the status's; well before, it is not."""
    hub = hubs.start()
    hub.publish(machine_status("M-203", "running", timestamp=now_iso(-120)), machine_status("M-204", "running", timestamp=now_iso(-120)))
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-status", "running")
    hub.publish(alert("M-203", "axis drive fault", "critical", timestamp=now_iso(-1.001)), alert("M-204", "door open", "low", timestamp=now_iso(-60)))
    breakdown = machine_status("M-203", "breakdown", timestamp=now_iso(-1))
    breakdown["data"]["previous_status"] = "running"
    maintenance = machine_status("M-204", "maintenance")
    maintenance["data"]["previous_status"] = "running"
    hub.publish(breakdown, maintenance)
    expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-status", "breakdown")
    expect(page.get_by_test_id("tile-alert-M-203")).to_contain_text("axis drive fault")
    expect(page.get_by_test_id("tile-M-204")).to_have_attribute("data-status", "maintenance")
    expect(page.get_by_test_id("tile-alert-M-204")).to_have_count(0)
    assert page.errors == []


def quality_failure(report_id, line="Line-2", timestamp=None):
    """A failed quality report: a feed type that carries state (so the snapshot holds it too)."""
    return {"event_type": "quality_report_recorded", "entity_type": "quality_report", "entity_id": report_id, "line": line,
            "timestamp": timestamp or now_iso(), "data": {"status": "FAIL", "description": "bore diameter over tolerance"},
            "metadata": {"source": "qms", "triggered_by": "browser-test"}}


def feed_texts(page):
    return page.eval_on_selector_all("[data-testid=feed-item]", "items => items.map(i => [i.dataset.severity, i.textContent])")


def test_a_dashboard_opened_now_shows_the_alerts_raised_before_it(hubs, page):
    """An andon screen switched on at shift start: the line's alerts raised before it connected come with the
    subscribe (`recent`), newest first in the feed and on their machines' tiles, without touching any state; a
    reconnect that resumes with `since` shows none of them twice."""
    hub = hubs.start()
    balancer = Proxy(hub.port)
    try:
        hub.publish(machine_status("M-201", "breakdown", timestamp=now_iso(-120)), machine_status("M-202", "running", timestamp=now_iso(-120)),
                    machine_status("M-203", "idle", timestamp=now_iso(-120)))
        # M-201's older alert by source time is posted second: the tile keeps the newer one, the feed shows both.
        before = hub.publish(
            alert("M-201", "spindle overheating", "critical", timestamp=now_iso(-60)),
            alert("M-203", "coolant flow lost", "medium", timestamp=now_iso(-50)),
            alert("M-201", "door open", "low", timestamp=now_iso(-90)),
            alert("M-901", "another line's alert", "critical", line="Line-9"),
            quality_failure("48213"),
        )
        sockets, received = [], {}

        def watch(socket):
            sockets.append(socket.url)
            received[socket.url] = []
            socket.on("framereceived", lambda payload: received[socket.url].append(str(payload)))

        page.on("websocket", watch)
        open_dashboard(page, balancer.url)
        for key in before[:3] + before[4:]:
            wait_until(page, f"() => window.statushub.seen.includes('{key}')")
        # Newest first as the hub stored them, as a page open all along would list them; the failed quality report
        # (state-carrying, so also in the snapshot) shown once, in its place; Line-9's alert not at all.
        expected = [["high", "quality report recorded"], ["low", "door open"], ["medium", "coolant flow lost"],
                    ["critical", "spindle overheating"]]
        expect(page.get_by_test_id("feed-item")).to_have_count(4)
        shown = feed_texts(page)
        assert [severity for severity, _ in shown] == [severity for severity, _ in expected], shown
        assert all(text in item for (_, item), (_, text) in zip(shown, expected)), shown
        expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-alert", "critical")
        expect(page.get_by_test_id("tile-alert-M-201")).to_contain_text("spindle overheating")
        expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-alert", "medium")
        expect(page.get_by_test_id("tile-alert-M-203")).to_contain_text("coolant flow lost")
        expect(page.get_by_test_id("tile-alert-M-202")).to_have_count(0)
        # The alerts are news, not state: every tile keeps its status.
        for machine, status in (("M-201", "breakdown"), ("M-202", "running"), ("M-203", "idle")):
            expect(page.get_by_test_id("tile-" + machine)).to_have_attribute("data-status", status)
        expect(page.get_by_test_id("tile-M-901")).to_have_count(0)
        assert "recent=50" in sockets[0], sockets

        # Dropped, an alert raised meanwhile, then resumed with `since`: the replay carries only what was missed.
        dead = Proxy(hub.port)
        dead.stop()
        balancer.switch(dead.port)
        balancer.drop()
        expect(page.get_by_test_id("connection")).not_to_have_attribute("data-state", "live", timeout=10000)
        missed = hub.publish(alert("M-202", "belt slipping", "high"))
        balancer.switch(hub.port)
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=40000)
        wait_until(page, f"() => window.statushub.seen.includes('{missed[0]}')")
        assert len(sockets) >= 2 and "since=" in sockets[-1], sockets
        assert not any('"op":"recent"' in frame for frame in received[sockets[-1]]), received[sockets[-1]]
        expect(page.get_by_test_id("feed-item")).to_have_count(5)
        expect(page.get_by_test_id("feed-item").first).to_contain_text("belt slipping")
        expect(page.get_by_test_id("tile-M-202")).to_have_attribute("data-alert", "high")
        expect(page.get_by_test_id("tile-alert-M-201")).to_contain_text("spindle overheating")
        shown = [item for _, item in feed_texts(page)]
        for text in ("belt slipping", "quality report recorded", "door open", "coolant flow lost", "spindle overheating"):
            assert sum(text in item for item in shown) == 1, shown
        seen = page.evaluate("window.statushub.seen")
        assert all(seen.count(key) == 1 for key in before[:3] + before[4:] + missed), seen
        out = ROOT / "tests" / "browser" / "out"
        out.mkdir(exist_ok=True)
        page.screenshot(path=str(out / "recent-alerts.png"))
        assert page.errors == []
    finally:
        balancer.stop()


def test_after_a_resync_the_feed_comes_back_with_the_fresh_snapshot(hubs, page):
    """A resume the hub cannot replay (its history ring moved past the page's position) is a `resync`: the page
    clears what it shows for the fresh snapshot, and the alerts come back with it, since the page asks for `recent`
    when resuming too."""
    hub = hubs.start(env={"STATUSHUB_MEMORY_HISTORY_MAX_LENGTH": "10"})
    balancer = Proxy(hub.port)
    try:
        hub.publish(machine_status("M-201", "breakdown", timestamp=now_iso(-120)))
        raised = hub.publish(alert("M-201", "spindle overheating", "critical", timestamp=now_iso(-60)))
        open_dashboard(page, balancer.url)
        expect(page.get_by_test_id("feed-item")).to_have_count(1)

        dead = Proxy(hub.port)
        dead.stop()
        balancer.switch(dead.port)
        balancer.drop()
        expect(page.get_by_test_id("connection")).not_to_have_attribute("data-state", "live", timeout=10000)
        for _ in range(15):
            hub.publish(machine_status("M-202", "running"))
        balancer.switch(hub.port)
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=40000)
        expect(page.get_by_test_id("errors")).to_contain_text("Resynchronising")
        expect(page.get_by_test_id("tile-M-202")).to_have_attribute("data-status", "running")
        expect(page.get_by_test_id("feed-item")).to_have_count(1)
        expect(page.get_by_test_id("feed-item").first).to_contain_text("spindle overheating")
        expect(page.get_by_test_id("tile-alert-M-201")).to_contain_text("spindle overheating")
        assert page.evaluate("window.statushub.seen").count(raised[0]) == 2  # once per connection's fresh answer
        assert page.errors == []
    finally:
        balancer.stop()


def test_the_feed_takes_its_types_and_severities_from_the_catalog(hubs, page):
    hub = hubs.start()
    open_dashboard(page, hub.url)
    capa = {"event_type": "capa_status_changed", "entity_type": "capa", "entity_id": "CAPA-CA-2025-001", "line": "Line-2",
            "timestamp": now_iso(), "data": {"previous_status": "IN_PROGRESS", "status": "PENDING_VERIFICATION",
                                             "capa_type": "CORRECTIVE", "severity": "MAJOR", "problem_statement": "bore diameter drifts",
                                             "due_date": "2025-12-15", "work_order_id": 51},
            "metadata": {"source": "qms", "triggered_by": "browser-test"}}
    kpi = {"event_type": "kpi_below_target", "entity_type": "kpi", "entity_id": "Line-2.efficiency", "line": "Line-2",
           "timestamp": now_iso(), "data": {"kpi_number": 3, "kpi_name": "efficiency", "value": 29.41, "target": 90},
           "metadata": {"source": "kpi", "triggered_by": "browser-test"}}
    measurement = {"event_type": "measurement_out_of_tolerance", "entity_type": "part", "entity_id": "SN-000123", "line": "Line-2",
                   "timestamp": now_iso(), "data": {"label": "Bore diameter", "measurement_type": "NUMERIC", "value_numeric": 12.071,
                                                    "unit": "mm", "nominal": 12.0, "upper_tol": 0.05, "lower_tol": 0.05},
                   "metadata": {"source": "cmm", "triggered_by": "browser-test"}}
    keys = hub.publish(machine_status("M-201", "running"), capa, kpi, measurement)
    wait_until(page, f"() => window.statushub.seen.includes('{keys[3]}')")
    items = page.get_by_test_id("feed-item")
    # The status is not a feed type; the catalog maps the QMS's MAJOR to high and gives a KPI miss medium.
    expect(items).to_have_count(3)
    expect(items.nth(1)).to_have_attribute("data-severity", "medium")
    # With the figure it is about: the KPI's value against its target, the measurement against its tolerance.
    expect(items.nth(1)).to_contain_text("kpi below target — efficiency 29.41 (target 90)")
    expect(items.nth(2)).to_have_attribute("data-severity", "high")
    expect(items.nth(2)).to_contain_text("capa status changed")
    expect(items.nth(0)).to_contain_text("measurement out of tolerance — Bore diameter 12.071 mm (nominal 12 ± 0.05)")
    assert page.errors == []


def test_chromium_reads_the_events_the_hub_compressed_once(hubs, page):
    """Chromium offers permessage-deflate, and the hub serves it from channel handlers: each event is compressed
    once (the metric counts it) and the page reads the compressed frames (the tile and the feed follow)."""
    hub = hubs.start()
    open_dashboard(page, hub.url)
    hub.publish(machine_status("M-301", "breakdown"), alert("M-301", "coolant pressure low on spindle 3 " * 4, "critical"))
    expect(page.get_by_test_id("tile-M-301")).to_have_attribute("data-status", "breakdown")
    expect(page.get_by_test_id("feed-item").first).to_contain_text("coolant pressure low")
    with urllib.request.urlopen(hub.url + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    deflated = [line for line in metrics.splitlines() if line.startswith("statushub_websocket_messages_deflated_total ")]
    assert deflated and float(deflated[0].split()[-1]) >= 1, deflated
    assert page.errors == []


def test_chromium_compresses_each_message_on_its_own_as_the_hub_asks(hubs, page):
    """The hub answers every permessage-deflate offer with `client_no_context_takeover`, so that no connection keeps
    an inflater: Chromium honours it (a message that referred back to the one before would be closed with 1007), and
    every one of its compressed, alike messages is answered."""
    hub = hubs.start()
    open_dashboard(page, hub.url)
    page.evaluate("""(url) => {
        window.pings = { extensions: null, replies: [], closed: null };
        const socket = new WebSocket(url);
        socket.onopen = () => {
            window.pings.extensions = socket.extensions;
            for (let i = 0; i < 5; i++) socket.send(JSON.stringify({ op: "ping", id: `p${i}-` + "machine L2-M07 ".repeat(6) }));
        };
        socket.onmessage = (message) => { window.pings.replies.push(JSON.parse(message.data)); };
        socket.onclose = (close) => { window.pings.closed = close.code; };
    }""", hub.url.replace("http", "ws", 1) + "/v1/ws")
    wait_until(page, "() => window.pings.replies.length === 5 || window.pings.closed !== null")
    result = page.evaluate("() => window.pings")
    assert "client_no_context_takeover" in result["extensions"], result["extensions"]
    assert result["closed"] is None, result
    assert [reply["op"] for reply in result["replies"]] == ["pong"] * 5, result["replies"]
    assert page.errors == []


def test_the_page_works_from_a_tls_hub_over_wss(hubs, page):
    hub = hubs.start(tls=True)
    hub.publish(machine_status("M-211", "running"))
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-211")).to_have_attribute("data-status", "running")
    hub.publish(machine_status("M-211", "breakdown"))
    expect(page.get_by_test_id("tile-M-211")).to_have_attribute("data-status", "breakdown")
    assert sockets and all(url.startswith("wss://") for url in sockets), sockets
    assert page.errors == []


@pytest.mark.parametrize("placement", ["one Redis", "three shards"])
def test_page_reconnects_through_another_node_and_shows_every_missed_event(hubs, redis_server, placement, page, request):
    """With three shards (12 partitions) the page resumes with the resume token the last event carried, which names
    a position in every partition, instead of an event id."""
    if placement == "one Redis":
        node_a = hubs.start(redis_url=redis_server.url)
        node_b = hubs.start(redis_url=redis_server.url)
    else:
        shards = [redis_server, Redis(), Redis()]
        request.addfinalizer(lambda: [shard.stop() for shard in shards[1:]])
        env = {"STATUSHUB_REDIS_SHARDS": "[" + ", ".join(shard.url for shard in shards) + "]"}
        node_a = hubs.start(env=env)
        node_b = hubs.start(env=env)
    balancer = Proxy(node_a.port)
    try:
        node_a.publish(machine_status("M-201", "running"))
        open_dashboard(page, balancer.url)
        expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")

        node_a.stop()  # closes the page's socket with 1001
        expect(page.get_by_test_id("connection")).not_to_have_attribute("data-state", "live", timeout=10000)
        missed = node_b.publish(
            machine_status("M-201", "breakdown"), alert("M-201", "hydraulic pressure low"),
            machine_status("M-202", "idle"), machine_status("M-203", "maintenance"), alert("M-203", "coolant flow lost", "medium"),
        )
        balancer.switch(node_b.port)

        open_state = page.get_by_test_id("connection")
        expect(open_state).to_have_attribute("data-state", "live", timeout=40000)
        for key in missed:
            wait_until(page, f"() => window.statushub.seen.includes('{key}')")
        expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "breakdown")
        expect(page.get_by_test_id("tile-M-202")).to_have_attribute("data-status", "idle")
        expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-status", "maintenance")
        expect(page.get_by_test_id("feed-item")).to_have_count(2)
        expect(page.get_by_test_id("feed-item").first).to_contain_text("coolant flow lost")
        # Resumed with `since`, so each missed event was applied once.
        seen = page.evaluate("window.statushub.seen")
        assert all(seen.count(key) == 1 for key in missed), seen
        # And live again, through node B.
        node_b.publish(machine_status("M-202", "running"))
        expect(page.get_by_test_id("tile-M-202")).to_have_attribute("data-status", "running")
    finally:
        balancer.stop()


def test_an_invalid_token_is_shown_in_words(hubs, page):
    hub = hubs.start(env={"STATUSHUB_AUTH_REQUIRED": "true", "STATUSHUB_AUTH_JWT_HS256_SECRET": SECRET})
    page.goto(f"{hub.url}/?line=Line-2&token=not-a-valid-token")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "error", timeout=15000)
    expect(page.get_by_test_id("errors")).to_contain_text("Authorization")
    expect(page.get_by_test_id("errors")).to_contain_text("token")

    # A token signed with another secret passes the catalog's format check nowhere: refused in words too.
    forged = hs256_token(["line:Line-2:*"], secret="another-secret-0123456789abcdef-0123456")
    page.get_by_test_id("token").fill(forged)
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_test_id("errors")).to_contain_text("Cannot load the catalog")

    # The right token connects, and the line picker offers the token's line.
    page.get_by_test_id("token").fill(hs256_token(["line:Line-2:*"]))
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
    assert page.eval_on_selector_all("#lines option", "options => options.map(o => o.value)") == ["Line-2"]


def test_an_expired_token_on_the_socket_is_shown_as_a_close_reason(hubs, page):
    hub = hubs.start(env={"STATUSHUB_AUTH_REQUIRED": "true", "STATUSHUB_AUTH_JWT_HS256_SECRET": SECRET})
    page.goto(f"{hub.url}/?line=Line-2&token={hs256_token(['line:Line-2:*'], expires_in=3)}")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
    expect(page.get_by_test_id("errors")).to_contain_text("the token expired", timeout=15000)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "error")


def test_event_source_in_the_browser(hubs, page):
    hub = hubs.start()
    hub.publish(machine_status("M-201", "idle", timestamp=now_iso(-60)), alert("M-201", "guard door open", "medium"))
    open_dashboard(page, hub.url, "line=Line-2&transport=sse")
    expect(page.get_by_test_id("connection")).to_contain_text("SSE")
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "idle")
    # The alert raised before the page opened comes as the stream's `recent` message.
    expect(page.get_by_test_id("feed-item")).to_have_count(1)
    expect(page.get_by_test_id("tile-alert-M-201")).to_contain_text("guard door open")
    hub.publish(machine_status("M-201", "running"))
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")

    # A bare EventSource: a filtered stream, and its lastEventId is the event's id.
    page.evaluate("""() => {
        window.received = [];
        const source = new EventSource('/v1/sse?channels=alerts&filter=' + encodeURIComponent('data.severity = critical'));
        source.onmessage = (m) => window.received.push({id: m.lastEventId, data: JSON.parse(m.data)});
    }""")
    wait_until(page, "() => window.received.some(m => m.data.op === 'subscribed')")
    ids = hub.publish_ids(alert("M-1", "minor", "low"), alert("M-2", "fire", "critical"))
    wait_until(page, "() => window.received.some(m => m.data.op === 'event')")
    events = page.evaluate("window.received.filter(m => m.data.op === 'event')")
    assert [e["id"] for e in events] == [ids[1]]
    assert events[0]["data"]["event"]["data"]["message"] == "fire"


def test_curl_reads_the_stream(hubs):
    hub = hubs.start()
    curl = subprocess.Popen(["curl", "-sN", "--max-time", "4", f"{hub.url}/v1/sse?channels=line:Line-2:*&snapshot=true"],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    event_id = hub.publish_ids(machine_status("M-204", "offline"))[0]
    output = curl.communicate(timeout=10)[0]
    assert "retry: 2000" in output
    assert '"op":"subscribed"' in output
    assert f"id: {event_id}\ndata: {{\"op\":\"event\",\"event\":{{\"event_id\":\"{event_id}\"" in output


def test_screenshot_of_a_simulated_plant(hubs, page):
    """The README's screenshot (docs/dashboard.png): a hub with `statushub simulate` running against it."""
    hub = hubs.start()
    simulator = subprocess.Popen([statushub_binary(), "simulate", "--url", hub.url, "--speed", "30", "--duration", "30", "--seed", "11"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2)
        open_dashboard(page, hub.url, "line=Line-2&report_ms=1000")
        hub.publish(alert("M-203", "spindle overheating", "critical"))
        expect(page.get_by_test_id("tile-M-208")).to_be_visible(timeout=10000)
        page.wait_for_timeout(6000)
        expect(page.get_by_test_id("compliance")).to_contain_text("% of status updates under 500 ms", timeout=15000)
        # Into tests/browser/out/ on every run; UPDATE_SCREENSHOT=1 also replaces the README's docs/dashboard.png.
        out = ROOT / "tests" / "browser" / "out"
        out.mkdir(exist_ok=True)
        page.screenshot(path=str(out / "dashboard.png"))
        if os.environ.get("UPDATE_SCREENSHOT") == "1":
            page.screenshot(path=str(ROOT / "docs" / "dashboard.png"))
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


def test_patterns_and_filters_leave_the_lines_own_subscription_alone(hubs, page):
    """A supervisor lists the line's serious alerts with the panel's example filter on the line's own pattern. On the
    line's socket, subscribing the pattern again replaced its filter: the tiles stopped getting status events, and
    the list showed the line's events the filter refused. The panel has a stream of its own."""
    hub = hubs.start()
    hub.publish(machine_status("M-201", "running"))
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")
    page.get_by_text("Patterns and filters").click()
    page.get_by_test_id("patterns").fill("line:Line-2:*")
    page.get_by_test_id("filter").fill("data.severity in (high, critical)")
    page.get_by_role("button", name="Subscribe").click()
    custom = page.get_by_test_id("custom-feed").locator("li")
    # Subscribed once the first admitted event is listed (the snapshot holds states only, which it refuses).
    deadline = time.time() + 15
    while custom.count() == 0:
        assert time.time() < deadline, "the panel listed nothing"
        hub.publish(alert("M-201", "spindle overheating", "critical"))
        page.wait_for_timeout(500)

    keys = hub.publish(machine_status("M-201", "breakdown"), alert("M-201", "door open", "low"))
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "breakdown")
    wait_until(page, f"() => window.statushub.seen.includes('{keys[1]}')")
    expect(page.get_by_test_id("feed-item").first).to_contain_text("door open")
    # The list: the critical alerts only (a late one is still coming if it was going to).
    hub.publish(alert("M-201", "hydraulic pressure low", "high"))
    expect(custom.first).to_contain_text("hydraulic pressure low")
    listed = custom.all_inner_texts()
    assert not any("door open" in item or "breakdown" in item for item in listed), listed
    assert page.errors == []


def test_a_refused_patterns_and_filters_subscribe_is_shown_in_words(hubs, page):
    hub = hubs.start()
    open_dashboard(page, hub.url)
    page.get_by_text("Patterns and filters").click()
    page.get_by_test_id("patterns").fill("alerts")
    page.get_by_test_id("filter").fill("severity = high")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_test_id("errors")).to_contain_text("invalid filter 'severity = high'")
    expect(page.get_by_test_id("errors")).to_contain_text("not an event field")
    # The line's connection is untouched.
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    assert page.errors == []


def test_a_line_name_the_hub_refuses_is_shown_in_words_and_not_retried(hubs, page):
    """A supervisor types "Line 2": the hub refuses the handshake's query with a 400 the browser cannot read (it sees
    1006). The page said "the connection dropped" and retried forever; it asks the hub why, shows it, and stops."""
    hub = hubs.start()
    hub.publish(machine_status("M-201", "running"))
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    open_dashboard(page, hub.url)
    page.get_by_test_id("line-picker").fill("Line 2")
    page.get_by_test_id("line-picker").press("Tab")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "error", timeout=10000)
    expect(page.get_by_test_id("errors")).to_contain_text("channels")
    expect(page.get_by_test_id("errors")).to_contain_text("Line 2")
    tried = len(sockets)
    page.wait_for_timeout(3000)
    assert len(sockets) == tried, sockets
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "error")
    # The right name connects.
    page.get_by_test_id("line-picker").fill("Line-2")
    page.get_by_test_id("line-picker").press("Tab")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=10000)
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")
    assert page.errors == []


def test_a_connection_that_goes_silent_is_not_shown_as_live(hubs, page):
    """A connection that dies without a close (a Wi-Fi roam, a host that lost power) left the screen saying "live"
    for as long as TCP took to give up. The page pings the hub and resumes elsewhere when nothing comes back."""
    hub = hubs.start()
    balancer = Proxy(hub.port)
    try:
        hub.publish(machine_status("M-201", "running"))
        open_dashboard(page, balancer.url, "line=Line-2&alive_ms=1000")
        expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")
        # Every state the badge takes is recorded: the page is back to live about half a second after it drops the
        # silent connection, which polling the badge can miss.
        page.evaluate("""() => {
            const badge = document.querySelector('[data-testid="connection"]');
            window.badgeStates = [];
            new MutationObserver(() => window.badgeStates.push(badge.dataset.state)).observe(badge, { attributeFilter: ["data-state"] });
        }""")
        balancer.freeze()
        missed = hub.publish(machine_status("M-201", "breakdown"), alert("M-201", "spindle overheating", "critical"))
        wait_until(page, "() => window.badgeStates.some((state) => state !== 'live')", timeout=5)
        expect(page.get_by_test_id("errors")).to_contain_text("stopped answering")
        # Resumed through a fresh connection with `since`: what was missed, once.
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
        for key in missed:
            wait_until(page, f"() => window.statushub.seen.includes('{key}')")
        expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "breakdown")
        seen = page.evaluate("window.statushub.seen")
        assert all(seen.count(key) == 1 for key in missed), seen
        assert page.errors == []
    finally:
        balancer.stop()


def test_an_expired_token_ends_the_sse_stream_for_good(hubs, page):
    """Over SSE the hub ends the stream at the token's `exp`; the browser's retry is then refused with a 401. The page
    retried that forever, saying "reconnecting"; like the WebSocket's 4003 it now says the token was refused and
    waits for a fresh one."""
    hub = hubs.start(env={"STATUSHUB_AUTH_REQUIRED": "true", "STATUSHUB_AUTH_JWT_HS256_SECRET": SECRET})
    requests = []
    page.on("request", lambda request: requests.append(request.url) if "/v1/sse" in request.url else None)
    page.goto(f"{hub.url}/?line=Line-2&transport=sse&token={hs256_token(['line:Line-2:*'], expires_in=3)}")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
    expect(page.get_by_test_id("errors")).to_contain_text("token", timeout=15000)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "error", timeout=10000)
    expect(page.get_by_test_id("connection")).to_have_text("token refused")
    asked = len(requests)
    page.wait_for_timeout(4000)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "error")
    assert len(requests) == asked, requests
    # A fresh token connects again.
    page.get_by_test_id("token").fill(hs256_token(["line:Line-2:*"]))
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
    assert page.errors == []


def test_the_line_picked_is_kept_in_the_address(hubs, page):
    """Switching lines left `?line=` at the first line: a reload (or a kiosk's restart) went back to it."""
    hub = hubs.start()
    hub.publish(machine_status("M-201", "running"), machine_status("M-901", "idle", line="Line-9"))
    open_dashboard(page, hub.url)
    page.get_by_test_id("line-picker").fill("Line-9")
    page.get_by_test_id("line-picker").press("Tab")  # a change, as picking from the list is; no Connect
    expect(page.get_by_test_id("tile-M-901")).to_have_attribute("data-status", "idle")
    assert "line=Line-9" in page.url, page.url
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
    expect(page.get_by_test_id("tile-M-901")).to_have_attribute("data-status", "idle")
    expect(page.get_by_test_id("tile-M-201")).to_have_count(0)
    assert page.errors == []


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_token_for_one_line_connects_without_a_refusal(hubs, page, transport):
    """The page asked for the `counters` channel whatever the token allowed: with a token for one line the hub
    refused the SSE stream whole (403, retried forever) and answered every socket with a `forbidden` error."""
    hub = hubs.start(env={"STATUSHUB_AUTH_JWT_HS256_SECRET": SECRET})
    hub.publish(machine_status("M-201", "running"))
    open_dashboard(page, hub.url, f"line=Line-2&transport={transport}&token={hs256_token(['line:Line-2:*'])}")
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")
    expect(page.get_by_test_id("counter-machines_running").locator(".value")).to_have_text("1")
    hub.publish(machine_status("M-202", "running"))
    expect(page.get_by_test_id("counter-machines_running").locator(".value")).to_have_text("2")
    page.wait_for_timeout(1000)
    assert page.get_by_test_id("errors").inner_text() == ""
    assert page.errors == []


def test_a_tile_opened_after_a_heartbeat_still_shows_its_alert(hubs, page):
    """A machine whose status began before the hub first saw it has no known start: the page's "for ≥ …" counts from
    its latest heartbeat. The tile took that lower bound as the start and hid every alert raised before the
    heartbeat, so a screen opened now showed no alert where one open all along did."""
    hub = hubs.start()
    hub.publish(machine_status("M-203", "running", timestamp=now_iso(-60)))
    hub.publish(alert("M-203", "spindle overheating", "critical", timestamp=now_iso(-40)))
    hub.publish(machine_status("M-203", "running", timestamp=now_iso(-10)))  # a heartbeat: same status
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-203").locator(".meta").first).to_have_text(re.compile(r"^for ≥ "))
    expect(page.get_by_test_id("tile-alert-M-203")).to_contain_text("spindle overheating")
    expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-alert", "critical")
    # A status the page sees change is the alert dealt with, as before.
    hub.publish(machine_status("M-203", "maintenance"))
    expect(page.get_by_test_id("tile-M-203")).to_have_attribute("data-status", "maintenance")
    expect(page.get_by_test_id("tile-alert-M-203")).to_have_count(0)
    assert page.errors == []


def test_long_ids_and_messages_stay_inside_their_boxes(hubs, page):
    """Ids of up to 128 characters and messages without spaces come from the plant. One of each widened its tile,
    the work orders' panel and the feed past the screen (the page scrolled sideways, a work order's quantities
    off-screen)."""
    hub = hubs.start()
    long_machine, long_order = "M-" + "7" * 126, "WO-" + "9" * 125
    order = {"event_type": "work_order_progress", "entity_type": "work_order", "entity_id": long_order, "line": "Line-2",
             "timestamp": now_iso(), "data": {"current_status": "in_progress", "quantity_produced": 40, "quantity_ordered": 100},
             "metadata": {"source": "mes", "triggered_by": "browser-test"}}
    hub.publish(machine_status("M-201", "running"), machine_status(long_machine, "breakdown"), order,
                alert(long_machine, "E" * 300, "critical"))
    open_dashboard(page, hub.url)
    page.get_by_text("Patterns and filters").click()
    page.get_by_test_id("patterns").fill("alerts")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_test_id("tile-alert-" + long_machine)).to_contain_text("EEEE")
    expect(page.get_by_test_id("wo-" + long_order)).to_contain_text("40 / 100")
    expect(page.get_by_test_id("custom-feed")).to_have_attribute("data-state", "live")
    hub.publish(alert("M-201", "F" * 300, "high"))
    expect(page.get_by_test_id("custom-feed").locator("li").first).to_contain_text("FFFF")
    page.wait_for_timeout(200)
    width = page.evaluate("document.documentElement.clientWidth")
    overflowing = page.evaluate("""() => [...document.querySelectorAll('section, .tile, .wo, .feed li, .power')]
        .filter((box) => box.scrollWidth > box.clientWidth + 1 || box.getBoundingClientRect().right > document.documentElement.clientWidth)
        .map((box) => (box.dataset.testid || box.className) + ' ' + box.scrollWidth + '>' + box.clientWidth)""")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert overflowing == [], overflowing
    quantities = page.get_by_test_id("wo-" + long_order).get_by_text("40 / 100").bounding_box()
    assert quantities["x"] + quantities["width"] <= width, quantities
    out = ROOT / "tests" / "browser" / "out"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / "long-names.png"), full_page=True)
    assert page.errors == []


def test_a_machine_whose_clock_is_behind_is_not_shown_stale(hubs, page):
    """The hub's TTL runs from when it heard of a state (`received_at`); the page counted it from the source
    timestamp, so a machine whose clock is 10 minutes behind was greyed as stale ("last seen 10 min ago") on every
    report while the hub held its state fresh."""
    hub = hubs.start()
    hub.publish(machine_status("M-201", "running", timestamp=now_iso(-600)), machine_status("M-202", "running"))
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-202")).to_have_attribute("data-stale", "false")
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "running")
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-stale", "false")
    hub.publish(machine_status("M-201", "breakdown", timestamp=now_iso(-590)))
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "breakdown")
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-stale", "false")
    assert page.errors == []


def test_the_compliance_badge_never_rounds_a_late_update_away(hubs, page):
    """1 status update over budget in 2,000 is 99.95 %; rounded to the nearest tenth the badge read "100.0 %"."""
    hub = hubs.start()
    page.goto(hub.url + "/")
    page.evaluate("""(url) => { window.reported = 0; const socket = new WebSocket(url);
        socket.onopen = () => {
            socket.send(JSON.stringify({ op: "report", id: "a", samples_ms: { "resource-status": Array(1000).fill(20) } }));
            socket.send(JSON.stringify({ op: "report", id: "b", samples_ms: { "resource-status": Array(999).fill(20).concat([900]) } }));
        };
        socket.onmessage = (message) => { if (JSON.parse(message.data).op === "reported") window.reported++; }; }""",
                  hub.url.replace("http", "ws", 1) + "/v1/ws")
    wait_until(page, "() => window.reported === 2")
    page.reload()
    expect(page.get_by_test_id("compliance")).to_have_text("99.95 % of status updates under 500 ms in the last 10 min")
    expect(page.get_by_test_id("compliance")).to_have_class(re.compile("ok"))
    assert page.errors == []


def test_a_stale_work_order_is_shown_stale(hubs, page):
    """Machines and operators went grey when their state expired; a work order looked as live as ever (the page
    kept its stale notice and drew it like a fresh state), so a shift's finished and abandoned orders piled up
    looking current."""
    hub = hubs.start(env={"STATUSHUB_CACHE_TTL_WORK_ORDER": "5"})
    order = {"event_type": "work_order_progress", "entity_type": "work_order", "entity_id": "WO-7", "line": "Line-2",
             "timestamp": now_iso(), "data": {"current_status": "in_progress", "quantity_produced": 40, "quantity_ordered": 100},
             "metadata": {"source": "mes", "triggered_by": "browser-test"}}
    open_dashboard(page, hub.url)
    hub.publish(order)
    expect(page.get_by_test_id("wo-WO-7")).to_have_attribute("data-stale", "false")
    expect(page.get_by_test_id("wo-WO-7")).to_have_attribute("data-stale", "true", timeout=20000)
    expect(page.get_by_test_id("wo-WO-7")).to_contain_text("in_progress · stale")
    hub.publish(dict(order, timestamp=now_iso(), data=dict(order["data"], quantity_produced=41)))
    expect(page.get_by_test_id("wo-WO-7")).to_have_attribute("data-stale", "false")
    expect(page.get_by_test_id("wo-WO-7")).to_contain_text("41 / 100")
    assert page.errors == []


@pytest.mark.parametrize("engine", ["memory", "redis"])
def test_a_finished_work_order_leaves_instead_of_going_stale(hubs, page, redis_server, engine):
    """A completed work order gets no more progress reports, so it went grey as stale five minutes after it
    finished, and a reload listed the shift's finished orders as stale for a day. A final state (the catalog's
    `final`) now leaves the hub's cache quietly at its TTL, and the page drops it then; an unfinished order still
    goes stale."""
    hub = hubs.start(redis_url=redis_server.url if engine == "redis" else None, env={"STATUSHUB_CACHE_TTL_WORK_ORDER": "3"})
    def order(entity_id, status):
        return {"event_type": "work_order_progress", "entity_type": "work_order", "entity_id": entity_id, "line": "Line-2",
                "timestamp": now_iso(), "data": {"current_status": status, "quantity_produced": 100, "quantity_ordered": 100},
                "metadata": {"source": "mes", "triggered_by": "browser-test"}}
    open_dashboard(page, hub.url)
    hub.publish(order("WO-8", "completed"), order("WO-9", "in_progress"))
    expect(page.get_by_test_id("wo-WO-8")).to_contain_text("completed")
    # Until it leaves, a finished order is listed below the ones still running, whatever came first.
    shown = page.eval_on_selector_all("#workorders .wo", "rows => rows.map((r) => r.dataset.testid)")
    assert shown == ["wo-WO-9", "wo-WO-8"], shown
    expect(page.get_by_test_id("wo-WO-9")).to_have_attribute("data-stale", "true", timeout=20000)
    expect(page.get_by_test_id("wo-WO-8")).to_have_count(0, timeout=20000)
    page.reload()
    expect(page.get_by_test_id("wo-WO-9")).to_have_attribute("data-stale", "true")
    expect(page.get_by_test_id("wo-WO-8")).to_have_count(0)
    expect(page.get_by_test_id("tiles")).to_contain_text("No machine states on this line yet.", timeout=3000)
    out = ROOT / "tests" / "browser" / "out"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / f"finished-order-{engine}.png"))
    assert page.errors == []


@pytest.mark.parametrize("engine", ["memory", "redis"])
def test_a_machine_gone_stale_is_still_shown_after_a_reload(hubs, page, redis_server, engine):
    """A machine whose state expired went grey on the open screens, and vanished from every screen opened after
    it: the dead machine a supervisor most needs to see. Its stale notice now stays in the hub's cache
    (`server.stale_kept_seconds`), so a reload draws it stale again, until it reports."""
    hub = hubs.start(redis_url=redis_server.url if engine == "redis" else None, env={"STATUSHUB_CACHE_TTL_MACHINE": "3"})
    hub.publish(machine_status("M-201", "breakdown", timestamp=now_iso()), machine_status("M-202", "running", timestamp=now_iso()))
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-stale", "false")
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-stale", "true", timeout=20000)
    page.reload()
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-stale", "true")
    expect(page.get_by_test_id("tile-M-201")).to_contain_text("breakdown")
    expect(page.get_by_test_id("tile-M-201")).to_contain_text("stale · last seen")
    expect(page.get_by_test_id("tile-M-202")).to_have_attribute("data-stale", "true")
    out = ROOT / "tests" / "browser" / "out"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / f"stale-after-reload-{engine}.png"))
    hub.publish(machine_status("M-201", "idle", timestamp=now_iso()))
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-stale", "false")
    expect(page.get_by_test_id("tile-M-201")).to_contain_text("idle")
    assert page.errors == []


def test_an_alert_from_another_day_shows_its_date(hubs, browser):
    """The feed showed the time of day only: at shift start, yesterday's alerts that `recent` brings back read as
    today's. In the screen's own time zone."""
    hub = hubs.start()
    yesterday, today = now_iso(-26 * 3600), now_iso()
    hub.publish(machine_status("M-201", "breakdown", timestamp=now_iso(-30 * 3600)),
                alert("M-201", "spindle overheating", "critical", timestamp=yesterday), alert("M-201", "coolant low", "medium", timestamp=today))
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id="Asia/Kolkata", locale="en-GB")
    try:
        page = context.new_page()
        open_dashboard(page, hub.url)
        items = page.get_by_test_id("feed-item")
        expect(items).to_have_count(2)
        local = page.evaluate("(stamps) => stamps.map((s) => [new Date(s).toLocaleDateString(), new Date(s).toLocaleTimeString()])",
                              [today, yesterday])
        shown = [items.nth(n).locator("time").inner_text() for n in (0, 1)]
        assert shown[0] == local[0][1], (shown, local)                                    # today's: the time alone
        assert local[1][0] in shown[1] and local[1][1] in shown[1], (shown, local)      # yesterday's: dated
    finally:
        context.close()


def test_after_redis_restarts_empty_the_page_subscribes_afresh(hubs, redis_server, page):
    """Redis restarted without persistence: the hub tells every subscriber `resync` `engine_gap`, answered by no
    snapshot. The page cleared its screen for a snapshot that never came, so the feed stayed empty (and the tiles
    until each machine reported again); it now subscribes afresh and gets the node's recent alerts back."""
    hub = hubs.start(redis_url=redis_server.url)
    hub.publish(machine_status("M-201", "breakdown"), alert("M-201", "spindle overheating", "critical"))
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("feed-item")).to_have_count(1)
    redis_server.restart_empty()
    expect(page.get_by_test_id("errors")).to_contain_text("engine_gap", timeout=30000)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
    expect(page.get_by_test_id("feed-item")).to_have_count(1)
    expect(page.get_by_test_id("feed-item").first).to_contain_text("spindle overheating")
    # Live again: the machine reports and its tile is back.
    deadline = time.time() + 15
    while True:
        try:
            hub.publish(machine_status("M-201", "breakdown"))
            break
        except AssertionError:
            assert time.time() < deadline, "the hub never stored again"
            time.sleep(0.5)
    expect(page.get_by_test_id("tile-M-201")).to_have_attribute("data-status", "breakdown")
    assert page.errors == []


def test_a_work_order_without_quantities_does_not_say_zero_produced(hubs, page):
    """`quantity_produced` and `quantity_ordered` are optional: a status-only update read "0" produced."""
    hub = hubs.start()

    def order(entity_id, **data):
        return {"event_type": "work_order_progress", "entity_type": "work_order", "entity_id": entity_id, "line": "Line-2",
                "timestamp": now_iso(), "data": data, "metadata": {"source": "mes", "triggered_by": "browser-test"}}

    hub.publish(order("WO-1", current_status="paused"), order("WO-2", current_status="queued", quantity_ordered=500),
                order("WO-3", current_status="in_progress", quantity_produced=0, quantity_ordered=500))
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("wo-WO-1").locator(".label span").nth(1)).to_have_text("")
    expect(page.get_by_test_id("wo-WO-2").locator(".label span").nth(1)).to_have_text("? / 500")
    expect(page.get_by_test_id("wo-WO-3").locator(".label span").nth(1)).to_have_text("0 / 500 (0 %)")
    assert page.errors == []


def test_a_tiles_oee_is_rounded_to_a_tenth(hubs, page):
    """An MES computes OEE in floating point; the tile printed every digit of it ("OEE 87.123456789 %")."""
    hub = hubs.start()
    event = machine_status("M-201", "running")
    event["data"]["oee_percentage"] = 87.123456789
    hub.publish(event)
    open_dashboard(page, hub.url)
    expect(page.get_by_test_id("tile-M-201")).to_contain_text("OEE 87.1 %")
    expect(page.get_by_test_id("tile-M-201")).not_to_contain_text("87.12")


def test_the_supervisors_line_and_filters_come_back_on_another_screen(hubs, page, browser):
    """Seed 003 §4.2's user session: the line chosen and the patterns panel are kept on the hub for the user the token
    names (`sub`), so the same supervisor opening the page elsewhere, without `line=` in the address, sees the line
    they left and their filtered patterns running; another user does not."""
    hub = hubs.start(env={"STATUSHUB_AUTH_JWT_HS256_SECRET": SECRET})
    token = hs256_token(["*"], user="supervisor-7")
    hub.publish(machine_status("M-201", "running"), machine_status("M-901", "idle", line="Line-9"))
    page.goto(f"{hub.url}/?token={token}")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
    expect(page.get_by_test_id("line-picker")).to_have_value("Line-2")
    page.get_by_test_id("line-picker").fill("Line-9")
    page.get_by_test_id("line-picker").dispatch_event("change")
    expect(page.get_by_test_id("tile-M-901")).to_be_visible()
    page.get_by_text("Patterns and filters").click()
    page.get_by_test_id("patterns").fill("alerts")
    page.get_by_test_id("filter").fill("data.severity in (critical)")
    page.locator("#subscribe").click()
    status, kept = http("GET", f"{hub.url}/v1/session", token=token)
    deadline = time.time() + 10
    while (status != 200 or kept["session"].get("filter") != "data.severity in (critical)") and time.time() < deadline:
        time.sleep(0.1)
        status, kept = http("GET", f"{hub.url}/v1/session", token=token)
    assert status == 200 and kept["session"] == {"line": "Line-9", "patterns": "alerts", "filter": "data.severity in (critical)"}, kept

    other = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    other.goto(f"{hub.url}/?token={token}")
    expect(other.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
    expect(other.get_by_test_id("line-picker")).to_have_value("Line-9")
    expect(other.get_by_test_id("tile-M-901")).to_be_visible()
    expect(other.get_by_test_id("patterns")).to_have_value("alerts")
    expect(other.get_by_test_id("filter")).to_have_value("data.severity in (critical)")
    expect(other.get_by_test_id("custom-feed")).to_have_attribute("data-state", "live")
    hub.publish(alert("M-901", "spindle seized", severity="critical", line="Line-9"), alert("M-901", "door open", severity="low", line="Line-9"))
    expect(other.get_by_test_id("custom-feed")).to_contain_text("spindle seized")
    expect(other.get_by_test_id("custom-feed")).not_to_contain_text("door open")
    other.context.close()

    stranger = browser.new_context().new_page()
    stranger.goto(f"{hub.url}/?token={hs256_token(['*'], user='someone-else')}")
    expect(stranger.get_by_test_id("connection")).to_have_attribute("data-state", "live", timeout=15000)
    expect(stranger.get_by_test_id("line-picker")).to_have_value("Line-2")
    expect(stranger.get_by_test_id("patterns")).to_have_value("")
    stranger.context.close()
    assert page.errors == []
