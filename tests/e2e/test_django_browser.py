"""A real browser against the example Django project served by ``manage.py
prefork``: Debian's chromium, headless, driven by selenium through
chromium-driver. The admin login and the guestbook form, as a person would
use them: cookies, the CSRF token in the page, redirects, the CSS.

Skipped, with the reason, when chromium, chromedriver or selenium is missing
(.ci/run installs them).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.django_kit import ADMIN_PASSWORD, ADMIN_USER, manage_prefork, migrate

pytestmark = pytest.mark.timeout(90)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    SELENIUM = True
except ImportError:
    SELENIUM = False

if not SELENIUM:
    pytest.skip("selenium is not installed (pip install -e '.[test]')", allow_module_level=True)
if not CHROMIUM or not CHROMEDRIVER:
    pytest.skip("chromium and chromedriver are not installed "
                "(apt-get install chromium chromium-driver)", allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    env = migrate(tmp_path_factory.mktemp("mysite-browser"))
    with manage_prefork(env, "--workers", "2") as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # A profile of its own, removed with the test's temporary directory.
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: Any) -> Any:
    return WebDriverWait(driver, 15)


def test_admin_login_in_a_browser(site, browser):
    base = f"http://127.0.0.1:{site.port}"
    browser.delete_all_cookies()
    browser.get(f"{base}/admin/")
    wait(browser).until(EC.url_contains("/admin/login/"))
    browser.find_element(By.NAME, "username").send_keys(ADMIN_USER)
    browser.find_element(By.NAME, "password").send_keys("wrong password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".errornote")))

    browser.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait(browser).until(EC.title_contains("Site administration"))
    assert browser.current_url == f"{base}/admin/"
    assert {c["name"] for c in browser.get_cookies()} >= {"csrftoken", "sessionid"}
    # The admin's own stylesheet came through the static files handler (DEBUG).
    display = browser.execute_script(
        "return getComputedStyle(document.getElementById('header')).display")
    assert display == "flex"
    browser.find_element(By.LINK_TEXT, "Entries").click()
    wait(browser).until(EC.title_contains("Select entry to change"))


def test_guestbook_form_in_a_browser(site, browser):
    base = f"http://127.0.0.1:{site.port}"
    browser.get(f"{base}/guestbook/")
    wait(browser).until(EC.presence_of_element_located((By.ID, "guestbook-form")))
    count_before = int(browser.find_element(By.ID, "count").text.split()[0])
    browser.find_element(By.NAME, "name").send_keys("Chromium")
    browser.find_element(By.NAME, "message").send_keys("signed in a real browser")
    browser.find_element(By.CSS_SELECTOR, "#guestbook-form button[type=submit]").click()
    wait(browser).until(EC.text_to_be_present_in_element(
        (By.ID, "count"), f"{count_before + 1} entries"))
    assert browser.current_url == f"{base}/guestbook/"     # the redirect after the POST
    entry = browser.find_element(By.CSS_SELECTOR, ".entry")
    assert entry.text == "Chromium: signed in a real browser"
    # The page's own CSS, served as a static file, applies.
    width = browser.execute_script("return getComputedStyle(document.body).maxWidth")
    assert width.endswith("px") and width != "none"
