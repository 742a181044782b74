#!/usr/bin/env python3
"""Screenshots of the web UI for the README, with every face blurred by this script.

Runs `nvr run` on the video asset with recognition on (CPU: SCRFD-2.5G and the 512-d test embedder), enrols
three people by uploading photos through the web API, waits for face events and a stranger group, then drives
headless Chromium (Debian's `chromium` + `chromedriver`) over each page. Every <img> on a page is a face, so
each image's box is pixelated and blurred in the PNG before it is written: no recognisable face and no raw
frame ever reaches the repository.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import yaml  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

from nvr.assets import assets_dir  # noqa: E402

PASSWORD = "screenshots only"
CLIP = "video/hamilton_clip.mp4"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")  # fmt: skip
LIN = ("Lin-Manuel Miranda", ["faces/lin_manuel_miranda/1.png"])  # in the clip: enrolled once strangers exist
ENROL = {
    "Barack Obama": ["faces/obama/1.jpg", "faces/obama/2.jpg"],
    "Rose Leslie": ["faces/rose_leslie/1.jpg"],
}


def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"screenshots: timed out waiting for {what}")


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.auth = {"Authorization": f"Bearer {PASSWORD}"}

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(
            urllib.request.Request(self.url + path, headers=self.auth), timeout=30
        ) as r:
            return json.loads(r.read())

    def upload(self, person: str, photos: list[Path]) -> Any:
        boundary = uuid.uuid4().hex
        disposition = "Content-Disposition: form-data; name="
        body = f'--{boundary}\r\n{disposition}"person"\r\n\r\n{person}\r\n'.encode()
        for photo in photos:
            head = f'--{boundary}\r\n{disposition}"photo"; filename="{photo.name}"\r\n\r\n'
            body += head.encode() + photo.read_bytes() + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        headers = {**self.auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        request = urllib.request.Request(self.url + "/api/photos", body, headers, method="POST")
        with urllib.request.urlopen(request, timeout=120) as r:
            return json.loads(r.read())


def start_daemon(work: Path) -> tuple[subprocess.Popen[str], str]:
    assets = assets_dir()
    (work / "password").write_text(PASSWORD + "\n")
    config = {
        "instance": f"shots{uuid.uuid4().hex[:6]}",
        "state_dir": str(work / "state"),
        "cameras": [{"name": "front_door", "url": f"file://{assets / CLIP}", "detect_fps": 5}],
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": {"backend": "onnx", "model": str(assets / "models/scrfd/det_2.5g.onnx")},
        "events": {"update_interval": 1, "tracker": {"end_after": 1.0}},
        "recognition": {"enabled": True, "embedder": str(assets / "models/recognition/fr_feature_512.onnx"),
                        "stranger_after_embeddings": 3},
        "metrics": {"enabled": False},
        "web": {"port": 0, "password_file": str(work / "password")},
    }  # fmt: skip
    path = work / "nvr.yml"
    path.write_text(yaml.safe_dump(config))
    log = (work / "daemon.log").open("w")  # a file, not a pipe: a full pipe would stall the daemon
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nvr", "run", str(path), "--log-format", "json"], cwd=PROJECT_ROOT,
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def listening() -> str | None:
        for line in (work / "daemon.log").read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("event") == "web UI listening":
                return str(entry["url"])
        if daemon.poll() is not None:
            raise SystemExit("screenshots: nvr run exited before its web UI listened (see its log above)")
        return None

    return daemon, wait(listening, 120, "the web UI")


def blur_faces(driver: WebDriver, png: bytes, out: Path) -> int:
    """Pixelate and blur every image's box on the page: they are all faces."""
    boxes = driver.execute_script(
        "return Array.from(document.images).filter(i => i.offsetParent !== null && !i.src.endsWith('.svg'))"
        ".map(i => { const r = i.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; });"
    )
    scale = float(driver.execute_script("return window.devicePixelRatio || 1"))
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for left, top, right, bottom in boxes:
        x1, y1, x2, y2 = (round(v * scale) for v in (left, top, right, bottom))
        box = (max(0, x1), max(0, y1), min(image.width, x2), min(image.height, y2))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        region = image.crop(box)
        small = region.resize(
            (max(1, region.width // 12), max(1, region.height // 12)), Image.Resampling.BILINEAR
        )
        region = small.resize(region.size, Image.Resampling.NEAREST).filter(ImageFilter.GaussianBlur(6))
        image.paste(region, box[:2])
    image.save(out, optimize=True)
    return len(boxes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nvr-shots-") as temp:
        work = Path(temp)
        daemon, url = start_daemon(work)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in (*FLAGS, f"--user-data-dir={work / 'profile'}", "--window-size=1200,900"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            api = Api(url)
            for person, photos in ENROL.items():
                reply = api.upload(person, [assets_dir() / p for p in photos])
                print(
                    f"{person}: {len(reply['accepted'])} photo(s) enrolled, {len(reply['rejected'])} refused",
                    flush=True,
                )
            wait(lambda: len(api.get("/api/events")["events"]) >= 6, 120, "face events")

            def named() -> bool:
                return any((e["identity"] or {}).get("name") for e in api.get("/api/events")["events"])

            wait(lambda: api.get("/api/strangers")["groups"], 180, "a stranger group")
            api.upload(LIN[0], [assets_dir() / p for p in LIN[1]])
            wait(named, 240, "an event with a name")
            driver.get(url + "/login")
            driver.find_element(By.NAME, "password").send_keys(PASSWORD + "\n")
            wait(
                lambda: driver.find_elements(By.CSS_SELECTOR, "#events .event img.snap"),
                30,
                "the Recent page",
            )
            obama = next(p for p in api.get("/api/people")["people"] if p["name"] == "Barack Obama")
            shots = [
                ("recent", "#events .event"), ("strangers", "#groups .group"), ("people", "#people .person"),
                (f"people/{obama['id']}", "#person .crops img"), ("status", "#status table"),
            ]  # fmt: skip
            for page, ready in shots:
                driver.get(f"{url}/#{page}")
                driver.refresh()
                wait(lambda ready=ready: driver.find_elements(By.CSS_SELECTOR, ready), 30, page)  # type: ignore[misc]
                time.sleep(1.5)  # images finish loading
                name = "person" if page.startswith("people/") else page
                blurred = blur_faces(driver, driver.get_screenshot_as_png(), args.out / f"{name}.png")
                print(f"{name}.png: {blurred} face image(s) blurred")
            driver.set_window_size(390, 844)
            driver.get(f"{url}/#recent")
            driver.refresh()
            wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#events .event img.snap"), 30, "phone view")
            time.sleep(1.5)
            blurred = blur_faces(driver, driver.get_screenshot_as_png(), args.out / "phone.png")
            print(f"phone.png: {blurred} face image(s) blurred")
        finally:
            driver.quit()
            daemon.terminate()
            daemon.wait(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
