"""The web page once in a real headless browser: Chromium from the system packages and Selenium
(scripts/install-browser.sh installs both). Skipped with the reason where either is missing.
Saves a screenshot to $SIMCORE_UI_SCREENSHOT when set."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from simcore.ui import streamlit_command

pytest.importorskip("streamlit", reason="streamlit is not installed (pip install 'simcore[ui]')")
pytest.importorskip("selenium", reason="selenium is not installed (scripts/install-browser.sh)")
CHROME = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROME and DRIVER),
                                reason="no Chromium and chromedriver on PATH (scripts/install-browser.sh installs them)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(streamlit_command(port, "127.0.0.1", headless=True), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start within 90 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROME
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,2200"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _wait_text(driver, text: str, timeout: float = 120) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: text in d.find_element(By.TAG_NAME, "body").text)


def test_page_plan_and_recommend_in_chromium(server, browser):
    from selenium.webdriver.common.by import By

    from simcore.planner.capacity import plan
    from simcore.config.hardware import GIB

    browser.get(server)
    _wait_text(browser, "KV cache capacity")
    kv = plan("llama-3.1-8b", "h100-sxm").as_dict()["memory_per_gpu_bytes"]["kv_cache"] / GIB
    _wait_text(browser, f"{kv:,.2f} GiB")
    assert "llama-3.1-8b on 1x h100-sxm" in browser.find_element(By.TAG_NAME, "body").text
    browser.find_element(By.XPATH, "//*[@role='tab'][contains(., 'Recommend')]").click()
    from selenium.webdriver.support.ui import WebDriverWait

    run = "//div[@data-testid='stButton']//button[contains(., 'Recommend')]"
    WebDriverWait(browser, 60).until(lambda d: any(b.is_displayed() for b in d.find_elements(By.XPATH, run)))
    next(b for b in browser.find_elements(By.XPATH, run) if b.is_displayed()).click()
    _wait_text(browser, "recommendations", timeout=180)
    _wait_text(browser, "cost_per_million_output_tokens_usd", timeout=60)
    ranked = [t.text for t in browser.find_elements(By.TAG_NAME, "table") if "cost_per_million_output_tokens_usd" in t.text]
    assert ranked and "h100-sxm" in ranked[0], [t.text[:200] for t in browser.find_elements(By.TAG_NAME, "table")]
    shot = os.environ.get("SIMCORE_UI_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)
