"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium: for the
dashboard's browser test and scripts/screenshot.py. Nothing is downloaded: the browser and its
driver are the Debian packages' (`python3 scripts/stack.py install` installs them)."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from typing import Iterator

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# What works on these machines: no sandbox (root, no user namespaces), no GPU, and nothing
# that reaches out to the network on its own.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1")


def available() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    return f"{', '.join(missing)} missing: run `python3 scripts/stack.py install`" \
        if missing else None


@contextlib.contextmanager
def chromium(width: int = 1440, height: int = 1000, still: bool = False
             ) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium (its own profile folder, removed afterwards). `still`: pages
    are told the reader prefers reduced motion (a screenshot catches no animation half-way)."""
    profile = tempfile.mkdtemp(prefix="basewatch-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    if still:
        options.add_argument("--force-prefers-reduced-motion")
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def sign_in(driver: webdriver.Chrome, url: str, token: str) -> None:
    """Fill the dashboard's sign-in form and submit it, as a person would."""
    driver.get(url + "/")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def wait(driver: webdriver.Chrome, condition, timeout: float, what: str):
    """`condition(driver)` once it is true (None counts as not yet); fails saying `what`.
    An element not there yet, or redrawn away between being found and being used (the
    dashboard redraws its tables on every event), counts as not yet too."""
    def check(d):
        try:
            return condition(d)
        except (NoSuchElementException, StaleElementReferenceException):
            return None
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        check, f"timed out after {timeout:.0f}s waiting for {what}")


def click_fresh(driver: webdriver.Chrome, locator: tuple[str, str], timeout: float,
                what: str) -> None:
    """Click the element `locator` finds, found again on each try: a row of a table that is
    redrawn under the click (StaleElementReference) is looked up and clicked again."""
    def click(d) -> bool:
        d.find_element(*locator).click()
        return True
    wait(driver, click, timeout, f"a click on {what}")
