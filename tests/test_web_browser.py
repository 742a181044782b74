"""The web UI in a real headless Chromium (Debian's `chromium` + `chromedriver`, offline) against a real
`nvr run` on the video with recognition on, served over HTTPS (`web.tls`, a test CA): log in, the Recent
list fills, a stranger group appears, naming it makes that face's next event carry the name, uploads show
one message per photo, a name full of HTML stays text, and a phone-sized screen works. One daemon and one
browser for the whole module."""

from __future__ import annotations

import io
import shutil
import signal
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import asset_path
from nvr_daemon import NvrDaemon
from PIL import Image
from pki import TlsFiles, make_tls_files
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from web_support import PASSWORD, Client

from nvr.contracts.alignment import align_face
from nvr.contracts.arrays import FloatArray
from nvr.detector import open_detector
from nvr.families.arcface import open_embedder

EMBEDDER = "models/recognition/fr_feature_512.onnx"
DETECTOR = "models/scrfd/det_2.5g.onnx"
LIN = "Lin-Manuel Miranda"
CLIP = "video/hamilton_clip.mp4"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
)  # fmt: skip


def start_chromium(profile: Path, *extra_flags: str) -> WebDriver:
    for tool in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/setup.sh --dev installs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (StaleElementReferenceException, NoSuchElementException):
            value = None  # the page is loading or was re-rendered under us: look again
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Ui:
    def __init__(self, driver: WebDriver, url: str, daemon: NvrDaemon, api: Client, pki: TlsFiles) -> None:
        self.driver, self.url, self.daemon, self.api, self.pki = driver, url, daemon, api, pki

    def go(self, page: str) -> None:
        self.driver.get(f"{self.url}/#{page}")

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    tmp = tmp_path_factory.mktemp("web-browser")
    (tmp / "password").write_text(PASSWORD + "\n")
    pki = make_tls_files(tmp / "pki")
    config = {
        "instance": f"web{uuid.uuid4().hex[:8]}",
        "state_dir": str(tmp / "state"),
        "cameras": [{"name": "hall", "url": f"file://{asset_path(CLIP)}", "detect_fps": 5}],
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": {"backend": "onnx", "model": str(asset_path(DETECTOR))},
        "events": {"update_interval": 1, "tracker": {"end_after": 1.0}},
        "recognition": {
            "enabled": True, "embedder": str(asset_path(EMBEDDER)), "stranger_after_embeddings": 3,
        },
        "metrics": {"port": 0},
        "web": {
            "port": 0, "password_file": str(tmp / "password"),
            "tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)},
        },
    }  # fmt: skip
    daemon = NvrDaemon(tmp / "daemon", config)
    driver: WebDriver | None = None
    try:
        url = daemon.wait_for_event("web UI listening", 60)["url"]
        daemon.wait_for_event("recognition on", 60)
        assert url.startswith("https://")
        # The test CA is not in Chromium's store; the Secure cookie and the live stream still have to work.
        driver = start_chromium(tmp / "chromium-profile", "--ignore-certificate-errors")
        api = Client(url, tls=ssl.create_default_context(cafile=pki.ca_cert))
        api.login()
        yield Ui(driver, url, daemon, api, pki)
    finally:
        if driver is not None:
            driver.quit()
        daemon.stop()


def test_login_then_recent_faces_fill_in_live(ui: Ui) -> None:
    ui.driver.get(ui.url + "/")
    assert ui.driver.current_url.endswith("/login")
    ui.driver.find_element(By.NAME, "password").send_keys("wrong password")
    ui.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(lambda: ui.driver.find_element(By.ID, "failed").is_displayed(), 10, "the wrong-password note")
    ui.driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    ui.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(lambda: ui.all("#page-recent:not([hidden])"), 10, "the Recent page after logging in")
    cookies = {c["name"]: c for c in ui.driver.get_cookies()}
    assert cookies["nvr_session"]["httpOnly"] and cookies["nvr_session"]["sameSite"] == "Strict"
    first = len(ui.all("#events .event"))
    # Without reloading, new events appear (server-sent events): more cards than when the page was drawn.
    wait_until(lambda: len(ui.all("#events .event")) > max(first, 1), 90, "live face events on the page")
    wait_until(lambda: ui.all("#live.ok"), 10, "the live badge")
    # Live events redraw the list, so every element is read inside a wait that looks again if it went stale.
    loaded = "#events .event img.snap"

    def loaded_sources() -> list[str]:
        images = ui.all(loaded)
        return [(i.get_attribute("src") or "") for i in images if i.get_attribute("naturalWidth") != "0"]

    sources = wait_until(loaded_sources, 30, "a loaded thumbnail")
    assert "/snapshot" in sources[0]
    wait_until(lambda: [m for m in ui.all("#events .event .meta")[:1] if "hall" in m.text], 10, "the camera")


def lin_group(ui: Ui) -> str | None:
    """The stranger group whose crops are most like Lin-Manuel Miranda's photo (cosine >= 0.4), if any."""
    reference = _lin_embedding()
    best: tuple[float, str | None] = (0.4, None)
    with open_embedder(asset_path(EMBEDDER)) as embedder:
        for group in ui.api.get("/api/strangers").json()["groups"]:
            crops = [ui.api.get(f"/api/strangers/{group['name']}/crops/{n}").body for n in group["crops"]]
            pixels = np.stack([np.asarray(Image.open(io.BytesIO(c)).convert("RGB")) for c in crops])
            score = float(np.max(embedder.embed(pixels) @ reference))
            best = max(best, (score, group["name"]), key=lambda b: b[0])
    return best[1]


def _lin_embedding() -> FloatArray:
    image = np.asarray(Image.open(asset_path("faces/lin_manuel_miranda/1.png")).convert("RGB"))
    with open_detector(asset_path(DETECTOR), score_threshold=0.5) as detector:
        found = detector.detect(image)
    largest = int(np.argmax(found.boxes[:, 2] - found.boxes[:, 0]))
    aligned = align_face(image, found.landmarks[largest], found.landmark_names)
    assert aligned is not None
    with open_embedder(asset_path(EMBEDDER)) as embedder:
        vector: FloatArray = embedder.embed(aligned[None])[0]
    return vector


def test_a_stranger_group_appears_and_naming_it_names_the_next_event(ui: Ui) -> None:
    ui.go("strangers")
    wait_until(lambda: ui.all("#groups .group"), 120, "a stranger group on the Strangers page")
    group = wait_until(lambda: lin_group(ui), 120, "Lin-Manuel Miranda's stranger group")
    ui.driver.refresh()

    def shown_card() -> WebElement | None:
        # The page re-renders as the group grows: look the card up afresh (wait_until retries a stale one).
        cards = ui.all(f'#groups .group[data-group="{group}"]')
        shown = cards and cards[0].find_elements(By.CSS_SELECTOR, ".crops img") and "hall" in cards[0].text
        return cards[0] if shown else None

    def name_it() -> bool:
        card = shown_card()
        if card is None:
            return False
        card.find_element(By.CSS_SELECTOR, ".name-group input").send_keys(LIN)
        card.find_element(By.CSS_SELECTOR, ".name-group button").click()
        return True

    wait_until(name_it, 20, f"{group}'s card with its crops and camera, named")
    wait_until(
        lambda: f"{group} is now {LIN}." in ui.driver.find_element(By.ID, "message").text, 20, "confirmation"
    )
    wait_until(lambda: not ui.all(f'#groups .group[data-group="{group}"]'), 20, "the named group to go")
    named_at = time.time()
    # The running daemon picks the change up; his next event on the Recent page carries his name.
    ui.go("recent")

    def named_card() -> list[WebElement]:
        return [c for c in ui.all("#events .event") if c.find_element(By.CSS_SELECTOR, ".name").text == LIN]

    wait_until(named_card, 120, f"an event named {LIN} on the Recent page")
    events = ui.api.get("/api/events?limit=200").json()["events"]
    named = [e for e in events if e["identity"] and e["identity"]["name"] == LIN]
    assert named and max(e["frame_time"] for e in named) > named_at - 5
    assert {e["identity"]["name"] for e in events if e["identity"] and e["identity"]["name"]} == {LIN}
    # His stranger crops became his samples: the People page shows him.
    ui.go("people")
    wait_until(
        lambda: [p for p in ui.all("#people .person .name") if p.text == LIN], 20, "him on the People page"
    )


def test_uploads_report_each_photo_and_names_stay_text(ui: Ui, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    photo = asset_path("faces/kit_harington/1.jpeg")
    ui.go("people")
    form = wait_until(lambda: [f for f in ui.all("#new-person") if f.is_displayed()], 20, "the Add form")[0]
    form.find_element(By.NAME, "person").send_keys("Kit Harington")
    form.find_element(By.NAME, "photo").send_keys(f"{notes}\n{photo}")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = wait_until(lambda: ui.all("#new-person .results li.error"), 60, "the upload's messages")[0]
    assert error.text == "notes.txt: not an image (or a damaged one): use a JPEG or PNG photo"
    assert [li.text for li in ui.all("#new-person .results li.ok")] == ["1.jpeg: enrolled"]
    wait_until(lambda: [p for p in ui.all("#people .person .name") if p.text == "Kit Harington"], 20, "Kit")

    hostile = "<img src=x onerror=\"document.title='owned'\"><b>Eve</b>"
    assert ui.api.send("POST", "/api/people", {"name": hostile}).status == 201
    ui.driver.refresh()
    names = wait_until(
        lambda: [p for p in ui.all("#people .person .name") if p.text == hostile], 20, "the HTML name"
    )
    assert names[0].find_elements(By.CSS_SELECTOR, "*") == []  # no element was made from it
    assert ui.driver.title == "nvr" and not ui.all("img[src='x']")


def test_phone_sized_screen(ui: Ui) -> None:
    ui.driver.set_window_size(390, 844)
    try:
        for page, ready in (
            ("recent", "#events .event"),
            ("people", "#page-people:not([hidden]) #new-person"),
            ("status", "#status table"),
        ):
            ui.go(page)
            wait_until(lambda ready=ready: ui.all(ready), 30, f"the {page} page on a phone")  # type: ignore[misc]
            overflow = ui.driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{page}: {overflow} px wider than the phone's screen"
        ui.go("recent")

        def two_columns() -> bool:
            cards = ui.all("#events .event")[:2]
            return len(cards) == 2 and cards[0].rect["y"] == cards[1].rect["y"]

        wait_until(two_columns, 20, "two event cards side by side")
        for link in ui.all("nav a"):
            assert link.is_displayed() and link.rect["x"] + link.rect["width"] <= 390
        ui.go("status")
        text = wait_until(lambda: ui.driver.find_element(By.ID, "status").text, 20, "the status text")
        assert "hall" in text and "up" in text and "onnx" in text
    finally:
        ui.driver.set_window_size(1280, 900)


def test_sighup_serves_a_renewed_certificate(ui: Ui, tmp_path: Path) -> None:
    """What certbot's `--deploy-hook "systemctl reload nvr"` does; the page keeps working across it."""
    renewed = make_tls_files(tmp_path / "renewed", common_name="renewed CA")
    shutil.copyfile(renewed.server_cert, ui.pki.server_cert)
    shutil.copyfile(renewed.server_key, ui.pki.server_key)
    since = ui.daemon.mark()
    ui.daemon.signal(signal.SIGHUP)
    ui.daemon.wait_for_event("web certificate reloaded", 30, since=since)
    api = Client(ui.url, tls=ssl.create_default_context(cafile=renewed.ca_cert))
    assert api.login().status == 303 and api.get("/api/events").status == 200
    ui.go("status")
    wait_until(lambda: "hall" in ui.driver.find_element(By.ID, "status").text, 20, "the status page")
