"""The console end to end in headless Chromium, against the whole service with sandbox vendors:
sign in, search, procure, see it running, delete it, see it deleted; a bad key, a bad SSH key,
and a procurement done with the keyboard only. Writes a screenshot of each page (to
`docs/screenshots` with GPUSUPPLY_SCREENSHOTS=docs/screenshots)."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import SSH_KEY
from tests.web.browser import WAIT_MS, Console, focus_outline, tab_to

VENDOR = "nebula"  # stops, starts and reboots: every button shows
GPU = "RTX4090"


def sign_in(page: Any, console: Console, tenant: str) -> None:
    page.goto(console.url + "/")
    page.get_by_label("API key").fill(console.key(tenant))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/offers$"))


def search(page: Any, gpu: str = GPU, vendor: str = VENDOR) -> None:
    page.get_by_label("GPU", exact=True).select_option(gpu)
    page.get_by_label("Vendor").select_option(vendor)
    page.get_by_role("button", name="Search offers").click()
    page.wait_for_selector("#results-heading")


def status_of(row_or_page: Any) -> Any:
    return row_or_page.locator(".status")


def test_sign_in_search_procure_run_delete(page: Any, console: Console) -> None:
    from playwright.sync_api import expect

    page.goto(console.url + "/")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    console.screenshot(page, "sign-in")
    page.get_by_label("API key").fill(console.key("flow"))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/offers$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "gs_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert page.evaluate("document.cookie") == ""  # page scripts cannot read the key
    assert console.key("flow") not in page.content()

    search(page, vendor="")  # every vendor, for the screenshot
    expect(page.locator("#results-summary")).to_contain_text("Showing 1–50 of")
    console.screenshot(page, "offers", max_height=1500)
    search(page)
    price_header = page.locator("th[aria-sort]")
    expect(price_header).to_have_attribute("aria-sort", "ascending")
    cheapest = page.locator("tbody tr").first.locator("td.number").first.inner_text()
    page.locator("#sort-price").click()
    expect(price_header).to_have_attribute("aria-sort", "descending")
    dearest = page.locator("tbody tr").first.locator("td.number").first.inner_text()
    assert float(dearest.strip("$")) >= float(cheapest.strip("$"))
    page.locator("#sort-price").click()
    expect(price_header).to_have_attribute("aria-sort", "ascending")

    page.locator("tbody tr").first.get_by_role("link", name=re.compile("^Procure")).click()
    expect(page.get_by_role("heading", name="Procure an offer")).to_be_visible()
    page.get_by_label("SSH public key").fill(SSH_KEY)
    page.get_by_label("Name (optional)").fill("trainer-1")
    console.screenshot(page, "procure")
    page.locator("#procure-submit").click()

    expect(page.get_by_role("heading", name="trainer-1")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Procurement started")).to_be_visible()
    live = page.locator("#resource-live")
    expect(status_of(live)).to_have_text(re.compile("running"), timeout=WAIT_MS)
    expect(live).to_contain_text(re.compile(r"ssh [a-z]+@"))  # root, or the login the vendor's image takes
    expect(page.locator("#resource-announcer")).to_have_text("trainer-1 is running.")
    expect(live.locator("ol.timeline")).to_contain_text("provisioning → running")
    expect(page.get_by_text("Procurement started")).to_have_count(0)  # the banner went once it ran
    console.screenshot(page, "resource")

    page.get_by_role("link", name="Resources", exact=True).click()
    row = page.locator("#resource-rows tr").filter(has_text="trainer-1")
    expect(status_of(row)).to_have_text(re.compile("running"))
    expect(row.locator("code")).to_contain_text(re.compile(r"ssh [a-z]+@"))
    console.screenshot(page, "resources")

    row.get_by_role("button", name=re.compile("^Delete")).click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Delete trainer-1?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    console.screenshot(page, "confirm-delete")
    dialog.get_by_role("button", name="Delete it").click()

    expect(page).to_have_url(re.compile(r"/console/resources$"))
    expect(page.get_by_role("status").filter(has_text="Deleting trainer-1")).to_be_visible()
    row = page.locator("#resource-rows tr").filter(has_text="trainer-1")
    expect(status_of(row)).to_have_text(re.compile("deleted"), timeout=WAIT_MS)  # the engine confirmed it gone
    expect(row.get_by_role("button")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    assert not [c for c in page.context.cookies() if c["name"] == "gs_session"]
    page.goto(console.url + "/console/resources")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))


def test_a_bad_key_is_refused_with_the_reason(page: Any, console: Console) -> None:
    from playwright.sync_api import expect

    page.goto(console.url + "/console/sign-in")
    page.get_by_label("API key").fill("gsk_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    key_input = page.get_by_label("API key")
    expect(key_input).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#api_key-error")).to_have_text(re.compile("That API key was not accepted"))
    expect(key_input).to_be_focused()
    assert page.context.cookies() == []
    console.screenshot(page, "sign-in-error")


def test_a_bad_ssh_key_is_shown_at_the_field(page: Any, console: Console) -> None:
    from playwright.sync_api import expect

    sign_in(page, console, "badkey")
    # Any vendor's offer: the module's other tests procure Nebula's few, in whatever order they run.
    search(page, vendor="")
    page.locator("tbody tr").first.get_by_role("link", name=re.compile("^Procure")).click()
    page.get_by_label("SSH public key").fill("ssh-ed25519 this-is-not-a-key me@laptop")
    page.locator("#procure-submit").click()
    textarea = page.get_by_label("SSH public key")
    expect(textarea).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#ssh_public_key-error")).to_have_text(re.compile("not a valid OpenSSH public key"))
    expect(textarea).to_be_focused()
    expect(textarea).to_have_value("ssh-ed25519 this-is-not-a-key me@laptop")
    described = textarea.get_attribute("aria-describedby") or ""
    assert "ssh_public_key-error" in described.split()
    console.screenshot(page, "procure-error")
    page.get_by_role("link", name="Resources", exact=True).click()
    expect(page.locator("#resource-rows")).to_contain_text("No resources yet")


def test_procure_and_delete_with_the_keyboard_only(page: Any, console: Console) -> None:
    from playwright.sync_api import expect

    token = console.key("keyboard")
    page.goto(console.url + "/console/sign-in")
    tab_to(page, "#api_key")
    assert focus_outline(page) != "none 0px"
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/offers$"))

    tab_to(page, "#gpu_type")
    assert focus_outline(page).startswith("solid")
    page.keyboard.type(GPU)  # a closed select picks the option typed
    expect(page.locator("#gpu_type")).to_have_value(GPU)
    tab_to(page, "#vendor")
    page.keyboard.type(VENDOR)
    expect(page.locator("#vendor")).to_have_value(VENDOR)
    tab_to(page, "#gpu_count", backwards=True)
    page.keyboard.press("Enter")  # Enter in a field sends the form
    expect(page.locator("#results-heading")).to_be_visible()

    tab_to(page, "a.row-action")
    assert focus_outline(page).startswith("solid")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Procure an offer")).to_be_visible()
    tab_to(page, "#ssh_public_key")
    page.keyboard.type(SSH_KEY)
    tab_to(page, "#resource_name")
    page.keyboard.type("keyboard-1")
    tab_to(page, "#procure-submit")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="keyboard-1")).to_be_visible()
    expect(status_of(page.locator("#resource-live"))).to_have_text(re.compile("running"), timeout=WAIT_MS)

    # The confirmation dialog: opened from the keyboard, Escape closes it and gives focus back.
    tab_to(page, "#resource-live button.danger")
    page.keyboard.press("Enter")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert page.evaluate("document.activeElement.id").startswith("delete-")
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Delete it")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.get_by_role("status").filter(has_text="Deleting keyboard-1")).to_be_visible()
    expect(status_of(page.locator("#resource-live"))).to_have_text(re.compile("deleted"), timeout=WAIT_MS)


def procure_first_offer(page: Any, console: Console, tenant: str, name: str, gpu: str) -> None:
    """Sign in, search Nebula's offers of `gpu` and procure the cheapest; wait until it runs.
    Each test procures another GPU: a procured offer leaves the catalog, and Nebula has few of each."""
    from playwright.sync_api import expect

    sign_in(page, console, tenant)
    search(page, gpu=gpu)
    page.locator("tbody tr").first.get_by_role("link", name=re.compile("^Procure")).click()
    page.get_by_label("SSH public key").fill(SSH_KEY)
    page.get_by_label("Name (optional)").fill(name)
    page.locator("#procure-submit").click()
    expect(status_of(page.locator("#resource-live"))).to_have_text(re.compile("running"), timeout=WAIT_MS)


def test_stop_and_start_through_the_dialog(page: Any, console: Console) -> None:
    from playwright.sync_api import expect

    procure_first_offer(page, console, "stopstart", "paused-1", gpu="RTX3090")
    live = page.locator("#resource-live")
    dialog = page.locator("#confirm-dialog")
    for button, title, confirm, settled in (
        ("Stop", "Stop paused-1?", "Stop it", "stopped"),
        ("Start", "Start paused-1?", "Start it", "running"),
    ):
        live.get_by_role("button", name=re.compile(f"^{button}")).click()
        expect(dialog.get_by_role("heading")).to_have_text(title)
        dialog.get_by_role("button", name=confirm).click()
        expect(status_of(page.locator("#resource-live"))).to_have_text(re.compile(settled), timeout=WAIT_MS)
    timeline = page.locator("#resource-live ol.timeline")
    for step in ("running → stopping", "stopping → stopped", "stopped → starting", "starting → running"):
        expect(timeline).to_contain_text(step)


def test_delete_without_javascript_uses_the_confirmation_page(chromium: Any, console: Console) -> None:
    """With scripts off the buttons lead to a confirmation page with the same form."""
    from playwright.sync_api import expect

    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        token = console.key("noscript")
        page.goto(console.url + "/console/sign-in")
        page.get_by_label("API key").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/console/offers$"))
        search(page, gpu="RTX5090", vendor="")  # any vendor deletes
        page.locator("tbody tr").first.get_by_role("link", name=re.compile("^Procure")).click()
        page.get_by_label("SSH public key").fill(SSH_KEY)
        page.get_by_label("Name (optional)").fill("plain-1")
        page.locator("#procure-submit").click()
        expect(page.get_by_role("heading", name="plain-1")).to_be_visible()

        page.get_by_role("button", name=re.compile("^Delete")).click()
        expect(page).to_have_url(re.compile(r"/confirm/delete"))
        expect(page.get_by_role("heading", name="Delete plain-1?")).to_be_visible()
        page.get_by_role("button", name="Delete it").click()
        expect(page.get_by_role("status").filter(has_text="Deleting plain-1")).to_be_visible()
        for _ in range(60):  # no live refresh without scripts: reload until the engine is done
            if "deleted" in page.locator(".status").first.inner_text():
                break
            page.wait_for_timeout(500)
            page.reload()
        expect(page.locator(".status").first).to_have_text(re.compile("deleted"))
    finally:
        context.close()
