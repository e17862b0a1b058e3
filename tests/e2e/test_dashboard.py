"""The dashboard in headless Chromium, against a running daemon on the real engine and a registry
that notifies it (the scene of scripts/dashboard_scene.py): a wrong token is refused, sign-in,
the graph shows the tasks, and a patched base makes runs appear and their logs arrive, all
without a reload; a hostile log line stays text."""
from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.by import By

import browser  # scripts/, put on sys.path by tests/conftest.py
import dashboard_scene
import stack

pytestmark = pytest.mark.e2e

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
RUNS_JS = """return [...document.querySelectorAll('#runs tbody tr[data-run]')]
  .map(r => ({id: r.dataset.run, task: r.cells[1].textContent,
              status: r.cells[3].textContent}));"""


def latest_runs(driver) -> dict[str, dict]:
    """Each task's newest run as the page lists it."""
    return {run["task"]: run for run in reversed(driver.execute_script(RUNS_JS))}


def log_text(driver) -> str:
    return driver.execute_script("return document.getElementById('log').textContent")


@pytest.fixture
def scene(tmp_path, start_registry, base_images, docker_host):
    port = stack.free_port()
    registry = start_registry(**dashboard_scene.notify_options(port))
    started = dashboard_scene.start(tmp_path, docker_host, registry.address, port, base_images,
                                    hostile_line=HOSTILE)
    yield started
    output = started.stop()
    assert "Traceback" not in output, output[-6000:]


def test_dashboard_in_a_browser(scene):
    timings = {}
    with browser.chromium() as driver:
        # A wrong token: refused, saying so, after a delay, with no cookie set.
        started = time.monotonic()
        browser.sign_in(driver, scene.url, "not-the-token")
        alert = browser.wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "p.error"), 10,
                             "the sign-in form's error")
        assert alert.text == "Wrong token: that is not the daemon's API token."
        assert time.monotonic() - started >= 1.0, "a wrong token is answered slowly"
        assert driver.get_cookies() == []
        driver.get(scene.url + "/ui/state")
        assert "sign in first" in driver.find_element(By.TAG_NAME, "body").text
        assert "api" not in driver.find_element(By.TAG_NAME, "body").text

        # Sign in: the graph shows every registered task and the failing reference.
        started = time.monotonic()
        browser.sign_in(driver, scene.url, dashboard_scene.TOKEN)
        browser.wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#graph g.task"))
                     == 4, 30, "the four tasks in the graph")
        timings["sign-in to graph"] = time.monotonic() - started
        nodes = driver.find_elements(By.CSS_SELECTOR, "#graph g.task")
        assert {node.get_attribute("data-task") for node in nodes} == \
            {"api", "web", "worker", "legacy"}
        failing = browser.wait(driver, lambda d: d.find_elements(
            By.CSS_SELECTOR, "#graph g.base.failing"), 30, "the unreachable base marked")
        assert "/legacy/base:2" in failing[0].get_attribute("data-reference")
        assert "cannot reach registry" in failing[0].text
        base = f'#graph g.base[data-reference="{scene.base}"]'
        assert "no change seen" in driver.find_element(By.CSS_SELECTOR, base).text
        # A task that could not be registered, its error quoting hostile text: shown as text.
        error = driver.find_element(By.CSS_SELECTOR, '#tasks tr[data-task="hostile"] .error')
        assert "'<script>window.pwned=1</script><img'" in error.text, error.text
        assert driver.find_elements(By.CSS_SELECTOR, "#tasks script, #tasks img") == []
        assert driver.execute_script("return window.pwned") is None
        cookie = driver.get_cookie("basewatch_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert driver.execute_script("return document.cookie") == "", "no script reads it"
        driver.execute_script("window.notReloaded = true")

        # A patched base: its runs appear and api's log arrives as the build prints it.
        started = time.monotonic()
        patched = scene.patch_base("security fix\n")
        api = browser.wait(driver, lambda d: latest_runs(d).get("api"), 60,
                           "api's run on the page")
        timings["push to run on the page"] = time.monotonic() - started
        # The table is redrawn on every event: a row found just before a redraw is gone.
        browser.click_fresh(driver, (By.CSS_SELECTOR, f'#runs tr[data-run="{api["id"]}"]'), 10,
                            "api's run")
        browser.wait(driver, lambda d: "api: resolving dependencies" in log_text(d)
                     and latest_runs(d)["api"]["status"] == "Running", 60,
                     "api's first lines while it is still running")
        timings["push to first log line"] = time.monotonic() - started
        browser.wait(driver, lambda d: "api: 312 passed" in log_text(d), 60,
                     "api's last line")
        text = log_text(driver)
        assert text.index("api: resolving dependencies") < text.index("api: 312 passed")
        assert HOSTILE in text, "the hostile line is shown as it was printed"
        assert driver.execute_script("return window.pwned") is None
        assert driver.find_elements(By.CSS_SELECTOR, "#log *") == [], "text, not markup"

        # The cascade: worker rebuilt on api's new image, drawn so in the graph.
        browser.wait(driver, lambda d: latest_runs(d).get("worker", {}).get("status")
                     == "Succeeded", 120, "worker's run, cascaded from api")
        timings["push to end of cascade"] = time.monotonic() - started
        assert latest_runs(driver)["api"]["status"] == "Succeeded"
        browser.wait(driver, lambda d: d.find_elements(
            By.CSS_SELECTOR, '#graph g.task.status-succeeded[data-task="worker"]'), 10,
            "worker drawn as succeeded")
        shown = driver.find_element(By.CSS_SELECTOR, base).text
        assert patched.split(":")[1][:12] in shown and "changed" in shown, shown
        assert driver.execute_script("return window.notReloaded") is True, "never reloaded"

        # Sign out: the form again, and the data closed.
        driver.find_element(By.CSS_SELECTOR, "header form button").click()
        browser.wait(driver, lambda d: d.find_elements(By.ID, "token"), 10, "the sign-in form")
        driver.get(scene.url + "/ui/state")
        assert "sign in first" in driver.find_element(By.TAG_NAME, "body").text
    print("dashboard timings:", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
