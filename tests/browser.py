"""A real headless Chromium (Debian's `chromium`, driven through Debian's `chromedriver` by
selenium) for the page's tests and bench.

Started with the flags that keep it off the network (no background fetches, no component
updates: this machine reaches nothing outside), in a fresh profile dir, and quit by the
caller. Waits poll the page's DOM with a deadline; no test sleeps.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PACKAGES = ["chromium", "chromium-driver"]
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1"]


@contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[webdriver.Chrome]:
    from daemons.install import ensure_packages

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        ensure_packages(PACKAGES)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not look for drivers
    profile = tempfile.mkdtemp(prefix="oc-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        opts.add_argument(f)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.set_window_size(width, height)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: webdriver.Chrome, what: Callable[[webdriver.Chrome], Any], timeout: float = 20,
         message: str = "") -> Any:
    """`what(driver)` once truthy; the page re-renders live, so an element that went stale
    between finding and reading it is simply looked up again."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(what, message)


def css(driver: webdriver.Chrome, selector: str, timeout: float = 20,
        text: str | None = None) -> WebElement:
    """The first element matching `selector` (containing `text`, if given) once it shows."""
    def found(d: webdriver.Chrome) -> WebElement | bool:
        for el in d.find_elements(By.CSS_SELECTOR, selector):
            if el.is_displayed() and (text is None or text in el.text):
                return el
        return False
    return wait(driver, found, timeout, f"no {selector!r}" + (f" with {text!r}" if text else ""))


def read(driver: webdriver.Chrome, selector: str, timeout: float = 20,
         text: str | None = None, attr: str | None = None) -> str:
    """The text (or attribute `attr`) of the first element matching `selector` (containing
    `text`, if given), read in the same breath as it is found: a live re-render between the
    two would leave a stale element."""
    def got(d: webdriver.Chrome) -> str | bool:
        el = css(d, selector, timeout, text)
        value = el.get_attribute(attr) if attr else el.text
        return value if value is not None else False
    return str(wait(driver, got, timeout, f"could not read {selector!r}"))


def click(driver: webdriver.Chrome, selector: str, text: str | None = None,
          timeout: float = 20) -> None:
    """Click the element once it shows (looked up again if a re-render replaced it)."""
    def done(d: webdriver.Chrome) -> bool:
        css(d, selector, timeout, text).click()
        return True
    wait(driver, done, timeout, f"could not click {selector!r}")


def texts(driver: webdriver.Chrome, selector: str) -> list[str]:
    return list(wait(driver, lambda d: [el.text for el in
                                        d.find_elements(By.CSS_SELECTOR, selector)] or [""]))


def sign_in(driver: webdriver.Chrome, url: str, token: str) -> None:
    driver.get(url + "/")
    field = css(driver, "#token")
    field.send_keys(token)
    field.submit()
    css(driver, "#who-name")


def shot(driver: webdriver.Chrome, name: str, folder: Path) -> Path:
    """A PNG of the page as shown; also into $OVERCLOUD_SCREENSHOTS when that is set."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    extra = os.environ.get("OVERCLOUD_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path


def no_reload_mark(driver: webdriver.Chrome) -> None:
    """Mark this document; `reloaded` tells later whether the page was loaded again."""
    driver.execute_script("window.__ocMark = 'still-here';")


def reloaded(driver: webdriver.Chrome) -> bool:
    return driver.execute_script("return window.__ocMark !== 'still-here';") is True
