"""A headless Chromium for the console's browser tests (Selenium 4, Debian's `chromium` and
`chromium-driver`): page loads that wait for what a page shows, full-page screenshots, the
browser's console log (any error fails the test unless the test expected that HTTP status)
and every request the page made (checked against /openapi.json)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "console-screenshots"
# A copy for people reading a report outside the checkout.
SCREENSHOT_COPY = Path(os.environ.get("MODELHUB_CONSOLE_SHOTS", "/tmp/console-shots"))


def _which(names: Iterable[str]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> tuple[str, str]:
    """The browser and its driver; skips when they are missing, except in CI (CI=true),
    where .ci/run installs them and a missing one must fail."""
    browser, driver = _which(CHROMIUM_NAMES), _which(DRIVER_NAMES)
    try:
        import selenium  # noqa: F401
    except ImportError:
        browser = None
    if browser and driver:
        return browser, driver
    reason = (
        "the console's browser tests need Chromium, chromedriver and selenium "
        "(apt-get install chromium chromium-driver; pip install selenium): "
        f"found browser={browser}, driver={driver}"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} — CI must run them (.ci/run installs them)")
    pytest.skip(reason)
    raise AssertionError  # unreachable: skip raises


@dataclass
class Browser:
    driver: Any
    base: str
    shots: list[Path] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, url)
    errors: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- navigation

    def open(self, hash_: str, wait_for: str, timeout: float = 20.0) -> Any:
        """Navigates to the console page `hash_` ("#/models") and waits for `wait_for` (CSS)."""
        self.driver.get(f"{self.base}/console/{hash_}")
        return self.wait(wait_for, timeout)

    def go(self, hash_: str, wait_for: str, timeout: float = 20.0) -> Any:
        """Like a click on a link: the hash changes, the page does not reload."""
        self.driver.execute_script("window.location.hash = arguments[0]", hash_)
        return self.wait(wait_for, timeout)

    def wait(self, css: str, timeout: float = 20.0) -> Any:
        return self.until(lambda: self.find(css), timeout, f"no element {css!r} appeared")

    def find(self, css: str) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        try:
            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            return found[0] if found and found[0].is_displayed() else None
        except StaleElementReferenceException:  # the page re-rendered meanwhile
            return None

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def until(self, check: Callable[[], Any], timeout: float, message: str) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException

        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
            except StaleElementReferenceException:  # a refresh replaced the element
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                self.screenshot("failure")
                raise AssertionError(f"{message} within {timeout:.0f}s; page text:\n{self.text()}")
            time.sleep(0.1)

    def text(self) -> str:
        return str(self.driver.execute_script("return document.body.innerText"))[:3000]

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def js_async(self, script: str, *args: Any) -> Any:
        """Runs `script` as an async function body; its `return` value comes back."""
        wrapped = (
            "const done = arguments[arguments.length - 1];"
            f"(async () => {{ {script} }})(...Array.from(arguments).slice(0, -1))"
            ".then(done, (e) => done({error: String(e && e.stack || e)}));"
        )
        result = self.driver.execute_async_script(wrapped, *args)
        if isinstance(result, dict) and "error" in result:
            raise AssertionError(result["error"])
        return result

    def set_width(self, width: int, height: int = 900) -> None:
        self.driver.set_window_size(width, height)

    # ---------------------------------------------------------------- screenshots

    def screenshot(self, name: str) -> Path:
        """A full-page PNG under build/console-screenshots/ (and a copy in SCREENSHOT_COPY)."""
        self.driver.execute_script("window.scrollTo(0, 0)")  # the sticky header on top
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        try:
            SCREENSHOT_COPY.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOT_COPY / path.name)
        except OSError:
            pass
        self.shots.append(path)
        return path

    # ------------------------------------------------------------------------ logs

    def drain(self, expected_statuses: Iterable[int] = ()) -> None:
        """Reads the browser's console and network logs; an error there fails the test,
        except a failed request with one of `expected_statuses`."""
        allowed = set(expected_statuses)
        for entry in self.driver.get_log("browser"):
            if entry["level"] != "SEVERE":
                continue
            message = entry["message"]
            status = re.search(r"status of (\d{3})", message)
            if entry.get("source") == "network" and status and int(status.group(1)) in allowed:
                continue
            self.errors.append(message)
        for entry in self.driver.get_log("performance"):
            event = json.loads(entry["message"])["message"]
            if event.get("method") != "Network.requestWillBeSent":
                continue
            request = event["params"]["request"]
            self.requests.append((request["method"], request["url"]))
        errors, self.errors = self.errors, []
        assert not errors, "the browser logged errors:\n" + "\n".join(errors)


def start_browser(base: str, width: int = 1280, height: int = 900) -> Browser:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",  # the page's own width in screenshots
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.set_script_timeout(30)
    return Browser(chrome, base)
