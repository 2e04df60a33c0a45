"""Bug reports, feedback, the mentor's session report and the staff pages, in real headless
Chromium against a real `parloir serve`.

Sessions and join links come from the platform API, as the education platform gets them; the
staff pages are logged into with the staff credential, as support does.
Recipe for the browser: /work/shared/BROWSER.md.
"""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import aiohttp
import pytest

from tests.support.browser import (
    CHROMIUM,
    PlatformApi,
    WatchedPage,
    join_from_waiting_room,
    launched_chromium,
    run_with_timeout,
    wait_until,
    watched_page,
)
from tests.support.server_process import ServerProcess

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium"),
]

BUG_PANEL = "#bug-panel"


async def screenshot(page: Any, path: Path, full_page: bool = False) -> None:
    image = await page.screenshot(path=str(path), full_page=full_page)
    assert image[:8] == b"\x89PNG\r\n\x1a\n", path


async def join_call(browser: Any, url: str) -> WatchedPage:
    """Open a call link, join from the waiting room, wait until joined and published."""
    watched = await watched_page(browser)
    await watched.page.goto(url)
    await join_from_waiting_room(watched.page)
    await wait_until(
        watched.page,
        "() => window.parloir.phase === 'joined' && window.parloir.publicationId",
        what="joining and publishing",
    )
    return watched


async def participant_post(server: ServerProcess, token: str, path: str, body: Any) -> Any:
    """The participant API, called directly (to fill the staff pages quickly)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status == 201, (path, response.status, await response.text())
        return await response.json()


async def staff_login(page: Any, server: ServerProcess, wrong_first: bool = False) -> None:
    """On the /staff login form: log in with the staff credential."""
    field = page.get_by_label("Staff credential")
    await field.wait_for(timeout=10_000)
    if wrong_first:
        await field.fill("not-the-credential")
        await page.get_by_role("button", name="Log in").click()
        error = page.locator("#login-error")
        await error.wait_for(state="visible", timeout=5000)
        assert "not right" in await error.inner_text()
    await field.fill(server.staff_token)
    await page.get_by_role("button", name="Log in").click()


async def table_rows(page: Any, tbody: str) -> list[dict[str, Any]]:
    """The rows of a staff table as a user reads them, with their highlighting."""
    rows: list[dict[str, Any]] = await page.evaluate(
        """(selector) => [...document.querySelectorAll(selector + ' tr')].map(tr => ({
             session: tr.dataset.sessionId,
             exception: tr.classList.contains('row-exception'),
             cells: [...tr.cells].map(td => td.innerText.trim()),
             redTags: [...tr.querySelectorAll('.tag-exception')].map(t => t.textContent),
           }))""",
        tbody,
    )
    return rows


def test_bug_from_the_call_panel_marks_the_session_exception_for_billing_and_feedback_does_not(
    server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    platform = PlatformApi(server)

    async def scenario() -> None:
        started = time.monotonic()
        reported = await platform.create_session()
        untouched = await platform.create_session(
            mentor=("mentor-2", "Mina Mentor"), student=("student-2", "Sid Student")
        )
        student_link = await platform.join_link(reported["id"], "student")
        mentor_link = await platform.join_link(reported["id"], "mentor")
        async with (
            async_playwright() as pw,
            launched_chromium(pw) as student_browser,
            launched_chromium(pw) as mentor_browser,
        ):
            student = await join_call(student_browser, student_link["url"])
            mentor = await join_call(mentor_browser, mentor_link["url"])
            page = student.page

            # The panel opens on the right of the call, categories from the server.
            report_button = page.get_by_role("button", name="Report a problem")
            await report_button.click()
            panel = page.locator(BUG_PANEL)
            await panel.wait_for(state="visible", timeout=5000)
            assert await report_button.get_attribute("aria-expanded") == "true"
            box, call_box = await panel.bounding_box(), await page.locator("#call").bounding_box()
            assert box and call_box and box["x"] > call_box["x"] + call_box["width"] - 1, box
            category = page.get_by_label("What went wrong?")
            await wait_until(
                page,
                "() => document.getElementById('bug-category').options.length > 2",
                what="the categories",
            )
            labels = await category.locator("option").all_inner_texts()
            assert labels[:3] == ["Choose…", "Cannot join", "No video"], labels

            # Feedback first: sent, said not to change the session, and it does not.
            await page.locator("#feedback-form label", has_text="4").click()
            await page.get_by_label("Your feedback").fill("Sound was fine, the picture froze.")
            await page.get_by_role("button", name="Send feedback").click()
            sent = page.locator("#feedback-sent")
            await sent.wait_for(state="visible", timeout=5000)
            assert "does not change the session" in await sent.inner_text()
            assert (await platform.session(reported["id"]))["tags"] == []
            feedback = await page.evaluate("window.parloir.bugPanel.feedback")
            assert feedback == [{"exception_tagged": False, "tags": []}], feedback

            # The details box stops at 2000 characters and counts them.
            details = page.get_by_label("Details")
            await details.fill("x" * 2100)
            assert len(await details.input_value()) == 2000
            assert await page.locator("#bug-counter").inner_text() == "2000 / 2000"
            await details.fill("The student's video froze twice, then went black.")
            assert await page.locator("#bug-counter").inner_text() == "49 / 2000"
            # Submitting without a category is refused on the page.
            await page.get_by_role("button", name="Send report").click()
            assert "Choose what went wrong" in await page.locator("#bug-error").inner_text()
            await category.select_option(label="No video")
            await screenshot(page, tmp_path / "01-bug-panel-in-call.png")
            await page.get_by_role("button", name="Send report").click()
            confirmation = page.locator("#bug-sent")
            await confirmation.wait_for(state="visible", timeout=5000)
            text = await confirmation.inner_text()
            assert "Report sent" in text and "Exception" in text, text
            assert "“No video” was sent to support" in text, text
            assert (await platform.session(reported["id"]))["tags"] == ["Exception"]
            await screenshot(page, tmp_path / "02-bug-sent.png")

            # After Leave: declare a problem with this session (source after_call).
            await page.get_by_role("button", name="Close", exact=True).click()
            await page.get_by_role("button", name="Leave").click()
            await page.get_by_role("heading", name="You left").wait_for(timeout=5000)
            declare = page.get_by_role("button", name="Declare a problem with this session")
            await declare.click()
            await panel.wait_for(state="visible", timeout=5000)
            title = await page.locator("#bug-title").inner_text()
            assert title == "Declare a problem with this session"
            await category.select_option(label="Repeated disconnections")
            await page.get_by_role("button", name="Send report").click()
            await confirmation.wait_for(state="visible", timeout=5000)
            await screenshot(page, tmp_path / "03-after-call-report.png")
            filed = await platform.bug_reports(reported["id"])
            kinds = sorted((r["source"], r["category"], r["blocking"]) for r in filed)
            assert kinds == [
                ("after_call", "repeated_disconnections", True),
                ("call", "feedback", False),
                ("call", "no_video", True),
            ], kinds
            # Reopening the link later in this browser offers the same declaration.
            await page.goto(student_link["url"])
            past = page.locator("#past-session")
            await past.wait_for(state="visible", timeout=10_000)
            assert "You were in a call in this room" in await past.inner_text()
            await past.get_by_role("button", name="Declare a problem with this session").click()
            await panel.wait_for(state="visible", timeout=5000)
            assert await page.evaluate("window.parloir.bugPanel.source") == "after_call"
            await screenshot(page, tmp_path / "03b-reopened-link.png")

            # The mentor's end screen leads to the session report.
            await mentor.page.get_by_role("button", name="Leave").click()
            report_link = mentor.page.get_by_role("link", name="Write the session report")
            await report_link.wait_for(timeout=5000)
            href = await report_link.get_attribute("href") or ""
            assert href.startswith(f"/room/{reported['room_id']}/report?token="), href

            # Staff: billing shows the session with Exception highlighted, the other without.
            staff_context = await mentor_browser.new_context(
                viewport={"width": 1280, "height": 720}
            )
            staff = await watched_page(staff_context)
            await staff.page.goto(f"{server.url}/staff/billing")
            await staff.page.wait_for_url(re.compile(r"/staff\?next="), timeout=10_000)
            await staff_login(staff.page, server)
            await staff.page.wait_for_url(re.compile(r"/staff/billing$"), timeout=10_000)
            await staff.page.locator("#billing-rows tr").first.wait_for(timeout=10_000)
            rows = {r["session"]: r for r in await table_rows(staff.page, "#billing-rows")}
            assert rows[reported["id"]]["exception"] is True, rows
            assert rows[reported["id"]]["redTags"] == ["Exception"], rows
            assert rows[untouched["id"]]["exception"] is False, rows
            assert rows[untouched["id"]]["redTags"] == [], rows
            assert "Sam Student" in rows[reported["id"]]["cells"], rows
            await screenshot(staff.page, tmp_path / "04-staff-billing.png")
            await staff.page.get_by_role("link", name="Bug reports").click()
            await staff.page.locator("#bugs-rows tr").first.wait_for(timeout=10_000)
            bug_rows = await table_rows(staff.page, "#bugs-rows")
            assert len(bug_rows) == 3, bug_rows
            assert sum(r["exception"] for r in bug_rows) == 2, bug_rows
            assert any("Feedback" in r["cells"] for r in bug_rows), bug_rows
            await screenshot(staff.page, tmp_path / "05-staff-bugs.png")

            for watched in (student, mentor, staff):
                watched.assert_no_errors()
            assert await page.evaluate("window.parloir.errors") == []
        print(f"screenshots in {tmp_path}; done in {time.monotonic() - started:.1f}s")

    run_with_timeout(scenario)


def test_a_room_without_a_session_hides_the_report_forms_and_says_why(
    server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    async def scenario() -> None:
        token = server.token("free-room", "guest", "publisher", name="Guest")
        async with async_playwright() as pw, launched_chromium(pw) as browser:
            watched = await watched_page(browser)
            page = watched.page
            await page.goto(f"{server.url}/room/free-room?token={quote(token)}")
            await page.locator("#join-button:enabled").wait_for(timeout=10_000)
            await wait_until(
                page, "() => window.parloir.sessionAccess === 'none'", what="the session check"
            )
            await page.get_by_role("button", name="Report a problem").click()
            note = page.locator("#bug-unavailable")
            await note.wait_for(state="visible", timeout=5000)
            assert "not part of a scheduled session" in await note.inner_text()
            assert await page.locator("#bug-form").is_hidden()
            assert await page.locator("#feedback-section").is_hidden()
            await screenshot(page, tmp_path / "no-session.png")
            watched.assert_no_errors()

    run_with_timeout(scenario)


def test_mentor_validates_a_report_where_video_was_never_used_through_the_reason_dialog(
    server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    platform = PlatformApi(server)

    async def scenario() -> None:
        # Nobody joins either session: the video is never used, so a reason is required.
        first = await platform.create_session()
        second = await platform.create_session(
            mentor=("mentor-2", "Mina Mentor"), student=("student-2", "Sid Student")
        )
        async with async_playwright() as pw, launched_chromium(pw) as browser:
            # The student cannot open the mentor's report.
            student_link = await platform.join_link(first["id"], "student")
            watched = await watched_page(browser)
            page = watched.page
            room = first["room_id"]
            await page.goto(f"{server.url}/room/{room}/report?token={student_link['token']}")
            refused = page.locator("#load-error")
            await refused.wait_for(state="visible", timeout=10_000)
            assert "Only the session's mentor" in await refused.inner_text()

            mentor_link = await platform.join_link(first["id"], "mentor")
            await page.goto(f"{server.url}/room/{room}/report?token={mentor_link['token']}")
            facts = page.locator("#measured-facts")
            await facts.wait_for(state="visible", timeout=10_000)
            measured = await facts.inner_text()
            assert "No: the video was never used" in measured, measured
            assert "Effective duration\n0 s" in measured, measured
            session_facts = await page.locator("#session-facts").inner_text()
            assert "Maya Mentor" in session_facts and "Sam Student" in session_facts
            assert await page.locator("#reason-note").is_visible()

            await page.get_by_label("Student absent").check()
            await page.get_by_label("Notes").fill("Waited 20 minutes; no answer by phone.")
            await page.get_by_role("button", name="Save").click()
            await page.get_by_text(re.compile(r"^Saved at")).wait_for(timeout=5000)

            await page.get_by_role("button", name="Validate", exact=True).click()
            dialog = page.get_by_role("dialog", name="Why was the video not used?")
            await dialog.wait_for(timeout=5000)
            await dialog.get_by_label("Accommodation need (RQTH)").check()
            await dialog.get_by_role("button", name="Validate the report").click()
            error = dialog.locator("#reason-error")
            await error.wait_for(state="visible", timeout=5000)
            shown = await error.inner_text()
            print(f"refusal shown: {shown!r}")
            assert "lists no accommodation need (RQTH)" in shown, shown
            assert "Server: the student's profile lists no accommodation need" in shown, shown
            await screenshot(page, tmp_path / "01-no-accommodation-on-file.png")

            # The platform records the accommodation; validating again goes through.
            await platform.set_accommodation(first["student"]["identity"], True)
            await dialog.get_by_role("button", name="Validate the report").click()
            await dialog.wait_for(state="hidden", timeout=5000)
            note = page.locator("#validated-note")
            await note.wait_for(state="visible", timeout=5000)
            assert "Accommodation need (RQTH)" in await note.inner_text()
            assert await page.locator("#report-fields").evaluate("e => e.disabled") is True
            assert await page.get_by_label("Notes").is_disabled()
            assert await page.get_by_role("button", name="Save").is_hidden()
            await screenshot(page, tmp_path / "02-validated-read-only.png", full_page=True)
            report = (await platform.session(first["id"]))["report"]
            assert report["validated"] is True, report
            assert report["status"] == "student_absent", report
            assert report["video_unused_reason"] == "accommodation_need", report

            # Other reason: the text is required, and the server's refusal says so.
            mentor_link = await platform.join_link(second["id"], "mentor")
            room = second["room_id"]
            await page.goto(f"{server.url}/room/{room}/report?token={mentor_link['token']}")
            await page.locator("#report-body").wait_for(state="visible", timeout=10_000)
            await page.get_by_label("Completed").check()
            await page.get_by_role("button", name="Validate", exact=True).click()
            dialog = page.get_by_role("dialog", name="Why was the video not used?")
            await dialog.wait_for(timeout=5000)
            await dialog.get_by_label("Other reason").check()
            await dialog.get_by_role("button", name="Validate the report").click()
            error = dialog.locator("#reason-error")
            await error.wait_for(state="visible", timeout=5000)
            assert "Explain the other reason" in await error.inner_text()
            await dialog.get_by_label("Explanation").fill("The call moved to the phone.")
            await screenshot(page, tmp_path / "03-other-reason.png")
            await dialog.get_by_role("button", name="Validate the report").click()
            await page.locator("#validated-note").wait_for(state="visible", timeout=5000)
            assert (
                "The call moved to the phone." in await page.locator("#validated-note").inner_text()
            )
            report = (await platform.session(second["id"]))["report"]
            assert report["video_unused_reason"] == "other", report
            assert await page.evaluate("window.parloirReport.errors") == []
            watched.assert_no_errors()

    run_with_timeout(scenario)


def test_staff_bug_reports_filter_by_category_type_kind_and_date_and_paginate(
    server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    platform = PlatformApi(server)

    async def scenario() -> None:
        mentoring = await platform.create_session()
        defence = await platform.create_session(
            type="defence",
            starts_in_s=-3 * 86400,
            mentor=("mentor-2", "Mina Mentor"),
            student=("student-2", "Sid Student"),
        )
        mentoring_token = (await platform.join_link(mentoring["id"], "student"))["token"]
        defence_token = (await platform.join_link(defence["id"], "student"))["token"]
        room_m, room_d = mentoring["room_id"], defence["room_id"]
        for index in range(23):
            await participant_post(
                server,
                mentoring_token,
                f"/api/rooms/{room_m}/feedback",
                {"source": "call", "rating": 1 + index % 5, "details": f"feedback {index}"},
            )
        for _ in range(2):
            await participant_post(
                server,
                defence_token,
                f"/api/rooms/{room_d}/bug-reports",
                {"source": "call", "category": "no_sound", "details": "silence"},
            )
        await participant_post(
            server,
            mentoring_token,
            f"/api/rooms/{room_m}/bug-reports",
            {"source": "waiting_room", "category": "echo", "details": "echo <b>loud</b>"},
        )

        async with async_playwright() as pw, launched_chromium(pw) as browser:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            watched = await watched_page(context)
            page = watched.page
            await page.goto(f"{server.url}/staff/bugs")
            await page.wait_for_url(re.compile(r"/staff\?next="), timeout=10_000)
            await staff_login(page, server, wrong_first=True)
            await page.wait_for_url(re.compile(r"/staff/bugs$"), timeout=10_000)
            range_label = page.locator("#range")
            await page.locator("#bugs-rows tr").first.wait_for(timeout=10_000)
            assert await range_label.inner_text() == "1–20 of 26"
            assert len(await table_rows(page, "#bugs-rows")) == 20
            assert await page.get_by_role("button", name="Previous").is_disabled()
            # Newest first; markup in the details is shown as text.
            assert await page.locator("#bugs-rows b").count() == 0
            assert "echo <b>loud</b>" in await page.locator("#bugs-rows tr").first.inner_text()
            await screenshot(page, tmp_path / "01-bugs-page-1.png")
            await page.get_by_role("button", name="Next").click()
            await page.wait_for_url(re.compile(r"page=2"), timeout=10_000)
            await page.locator("#bugs-rows tr").first.wait_for(timeout=10_000)
            assert await range_label.inner_text() == "21–26 of 26"
            assert await page.get_by_role("button", name="Next").is_disabled()

            async def apply(**fields: str) -> list[dict[str, Any]]:
                await page.goto(f"{server.url}/staff/bugs")
                for label, value in fields.items():
                    field = page.get_by_label(label.replace("_", " "), exact=True)
                    if await field.evaluate("e => e.tagName") == "SELECT":
                        await field.select_option(label=value)
                    else:
                        await field.fill(value)
                await page.get_by_role("button", name="Apply").click()
                await page.wait_for_url(re.compile(r"\?"), timeout=10_000)
                await wait_until(page, "() => window.parloirStaff.total !== undefined")
                await page.wait_for_load_state("networkidle")
                return await table_rows(page, "#bugs-rows")

            rows = await apply(Category="No sound")
            assert len(rows) == 2 and all(r["exception"] for r in rows), rows
            assert await range_label.inner_text() == "1–2 of 2"
            assert "category=no_sound" in page.url
            await screenshot(page, tmp_path / "02-bugs-no-sound.png")
            rows = await apply(Session_type="Defence")
            assert {r["session"] for r in rows} == {defence["id"]}, rows
            rows = await apply(Kind="Feedback")
            assert await range_label.inner_text() == "1–20 of 23"
            assert not any(r["exception"] for r in rows), rows
            tomorrow = (date.today() + timedelta(days=1)).isoformat()
            rows = await apply(Filed_from=tomorrow)
            assert rows == [] and await page.locator("#empty").is_visible()
            rows = await apply(Filed_from=date.today().isoformat(), Category="Echo")
            assert len(rows) == 1 and rows[0]["cells"][3] == "Waiting room", rows

            # Billing: the period filter, and the CSV export of the same selection.
            await page.get_by_role("link", name="Billing").click()
            await page.locator("#billing-rows tr").first.wait_for(timeout=10_000)
            billing = {r["session"]: r for r in await table_rows(page, "#billing-rows")}
            assert set(billing) == {mentoring["id"], defence["id"]}
            # Both had a blocking report (no_sound, echo); feedback alone would not tag.
            assert billing[defence["id"]]["exception"] and billing[mentoring["id"]]["exception"]
            yesterday = (date.today() - timedelta(days=1)).isoformat()
            await page.get_by_label("Sessions from").fill(yesterday)
            await page.get_by_role("button", name="Apply").click()
            await page.wait_for_url(re.compile(r"from="), timeout=10_000)
            await page.wait_for_load_state("networkidle")
            billing = {r["session"]: r for r in await table_rows(page, "#billing-rows")}
            assert set(billing) == {mentoring["id"]}, billing
            href = await page.get_by_role("link", name="Export CSV").get_attribute("href")
            assert href and href.startswith("/api/staff/billing.csv?"), href
            query = parse_qs(urlparse(href).query)
            assert "start_from" in query, query
            csv = await page.request.get(server.url + href)
            assert csv.status == 200, csv.status
            lines = (await csv.text()).strip().splitlines()
            assert lines[0].startswith("session_id,type,scheduled_start"), lines
            assert len(lines) == 2 and lines[1].startswith(mentoring["id"]), lines
            await screenshot(page, tmp_path / "03-billing-period.png")

            await page.get_by_role("button", name="Log out").click()
            await page.wait_for_url(re.compile(r"/staff$"), timeout=10_000)
            await page.get_by_label("Staff credential").wait_for(timeout=5000)
            watched.assert_no_errors()

    run_with_timeout(scenario)


def test_recording_badge_shows_while_the_room_is_recorded_also_to_a_late_joiner(
    server: ServerProcess, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    platform = PlatformApi(server)

    async def scenario() -> None:
        session = await platform.create_session(type="defence", auto_record=False)
        student_link = await platform.join_link(session["id"], "student")
        mentor_link = await platform.join_link(session["id"], "mentor")
        async with (
            async_playwright() as pw,
            launched_chromium(pw) as student_browser,
            launched_chromium(pw) as mentor_browser,
        ):
            student = await join_call(student_browser, student_link["url"])
            badge = student.page.locator("#recording-badge")
            assert await badge.is_hidden()

            recording = await platform.call(
                "POST", f"/api/rooms/{session['room_id']}/recordings", {}, expect=201
            )
            await badge.wait_for(state="visible", timeout=10_000)
            assert (await badge.inner_text()).strip() == "● Recording"
            assert await student.page.evaluate("window.parloir.recording.id") == recording["id"]
            # Red, in the header.
            color = await badge.evaluate("e => getComputedStyle(e).backgroundColor")
            assert color == "rgb(229, 72, 77)", color
            assert await student.page.locator("header #recording-badge").count() == 1

            # Someone joining while it records sees it from the start (joined.room.recording).
            mentor = await join_call(mentor_browser, mentor_link["url"])
            await mentor.page.locator("#recording-badge").wait_for(state="visible", timeout=5000)
            await screenshot(mentor.page, tmp_path / "recording-badge.png")

            await platform.call("POST", f"/api/recordings/{recording['id']}/stop", expect=200)
            for watched in (student, mentor):
                await watched.page.locator("#recording-badge").wait_for(
                    state="hidden", timeout=15_000
                )
                assert await watched.page.evaluate("window.parloir.recording") is None
                watched.assert_no_errors()

    run_with_timeout(scenario)
