"""The dataset wizard in a real browser: Debian's chromium, headless, driven through chromium-driver by
selenium, against `fp api serve` on loopback. Creates a definition from scratch (tables, suggested joins,
roles, filters, split), sees the live analysis and SQL, activates it, compares it, then checks it with
`fp definitions validate`. With FP_WIZARD_SCREENSHOTS=DIR the main pages are saved there as PNG."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from feature_platform.api.tokens import TokenStore, token_store_path
from feature_platform.contracts.provenance import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
NAME = "browser_made"
WAIT_S = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, warehouse: Path) -> Iterator[dict[str, Any]]:
    """`fp api serve` on a free loopback port, with a copy of the repository's definitions and a token."""
    root = tmp_path_factory.mktemp("wizard-server")
    definitions = root / "definitions"
    shutil.copytree(PROJECT_ROOT / "definitions", definitions)
    token, _ = TokenStore(token_store_path(root)).create("wizard", ["datasets:read", "datasets:write"])
    port = _free_port()
    env = {**os.environ, "FP_DATA_ROOT": str(root), "FP_DEFINITIONS_DIR": str(definitions),
           "FP_WAREHOUSE": str(warehouse), "DAGSTER_HOME": str(root / "dagster_home")}
    (root / "dagster_home").mkdir()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "feature_platform.cli", "api", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fp api serve did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield {"base": base, "token": token, "definitions": definitions, "warehouse": warehouse, "env": env}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: webdriver.Chrome, name: str, tmp_path: Path) -> None:
    target = Path(os.environ.get("FP_WIZARD_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    height = int(driver.execute_script("return Math.min(document.documentElement.scrollHeight, 1600)"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": max(600, height), "deviceScaleFactor": 1, "mobile": False})
    path = target / f"wizard-{name}.png"
    try:
        assert driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    if os.environ.get("FP_WIZARD_SCREENSHOTS"):  # for docs/images: 64 colours, a third of the size, still sharp
        from PIL import Image

        Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)


def wait(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    # the page re-renders tables it is polled on: a vanished element means "not yet"
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))


def test_wizard_builds_a_valid_definition(server: dict[str, Any], browser: webdriver.Chrome, tmp_path: Path) -> None:
    base, d = server["base"], browser
    # unauthenticated: sent to the login
    d.get(f"{base}/models/default/dataset/new")
    assert d.current_url == f"{base}/login"
    d.find_element(By.ID, "token").send_keys("fpt_wrong")
    d.find_element(By.ID, "login-submit").click()
    login_error = wait(d).until(ec.presence_of_element_located((By.ID, "login-error")))
    assert login_error.text == "the bearer token is malformed"
    d.find_element(By.ID, "token").send_keys(server["token"])
    d.find_element(By.ID, "login-submit").click()
    wait(d).until(ec.presence_of_element_located((By.ID, "definitions")))
    cookie = d.get_cookie("fp_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert d.execute_script("return document.cookie").find("fp_session") == -1  # invisible to scripts
    shot(d, "list", tmp_path)

    # step 1: name (a taken name is flagged live), description
    d.find_element(By.ID, "nav-new").click()
    name = wait(d).until(ec.element_to_be_clickable((By.ID, "name")))
    name.send_keys("purchases_90d")
    wait(d).until(ec.text_to_be_present_in_element((By.ID, "name-status"), "taken"))
    name.clear()
    name.send_keys(NAME)
    wait(d).until(ec.text_to_be_present_in_element((By.ID, "name-status"), "available"))
    d.find_element(By.ID, "description").send_keys("Built in the browser wizard")
    shot(d, "1-basics", tmp_path)
    d.find_element(By.ID, "next-1").click()

    # step 2: tables (primary first), schema + stats + samples, suggested joins
    for table in ("transactions", "users", "products"):
        wait(d).until(ec.element_to_be_clickable((By.ID, f"table-{table}"))).click()
        wait(d).until(ec.text_to_be_present_in_element((By.ID, "schema-table"), table))
    wait(d).until(ec.presence_of_element_located((By.XPATH, "//table[@id='schema']//a[text()='category']"))).click()
    wait(d).until(ec.text_to_be_present_in_element((By.ID, "samples"), "products.category:"))
    d.find_element(By.ID, "detect-joins").click()
    wait(d).until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#joins tbody input:checked")) == 2)
    joins = d.find_element(By.ID, "joins").text
    assert "transactions.user_id = users.user_id" in joins and "transactions.product_id = products.product_id" in joins
    shot(d, "2-tables", tmp_path)
    d.find_element(By.ID, "next-2").click()

    # step 3: suggested roles are preset; add two features
    wait(d).until(ec.visibility_of_element_located((By.ID, "columns")))
    row = "//tr[@data-ref='{}']"
    assert Select(d.find_element(By.XPATH, row.format("transactions.transaction_ts") + "//select")) \
        .first_selected_option.text == "timestamp"
    assert d.find_element(By.XPATH, row.format("transactions.user_id") + "//input[@class='use']").is_selected()
    for ref in ("users.country", "products.category"):
        d.find_element(By.XPATH, row.format(ref) + "//input[@class='use']").click()
    shot(d, "3-columns", tmp_path)
    d.find_element(By.ID, "next-3").click()

    # step 4: filters and split, save, live analysis and SQL
    Select(d.find_element(By.ID, "range-kind")).select_by_value("fixed")  # the sample warehouse ends 2026-06-01
    for field, value in (("start", "2026-04-01"), ("end", "2026-05-31")):
        d.execute_script("arguments[0].value = arguments[1]", d.find_element(By.ID, field), value)
    Select(d.find_element(By.ID, "split-strategy")).select_by_value("random")
    fraction = d.find_element(By.ID, "eval-fraction")
    fraction.clear()
    fraction.send_keys("0.25")
    d.find_element(By.ID, "salt").send_keys("wizard-v1")
    d.find_element(By.ID, "save").click()
    wait(d).until(ec.presence_of_element_located((By.ID, "split-sizes")))
    train = int(d.find_element(By.CSS_SELECTOR, "#split-sizes .train-rows").text.replace(",", ""))
    evals = int(d.find_element(By.CSS_SELECTOR, "#split-sizes .eval-rows").text.replace(",", ""))
    assert train > 0 and evals > 0  # a per-user hash split: rows per user vary, so the row share does too
    wait(d).until(ec.text_to_be_present_in_element((By.ID, "sql"), f"dataset definition {NAME}"))
    assert d.find_element(By.ID, "issues").text
    shot(d, "4-analysis", tmp_path)
    saved_file = server["definitions"] / f"{NAME}.yaml"
    saved = saved_file.read_text()
    assert "status: draft" in saved and "wizard-v1" in saved and "start: '2026-04-01'" in saved

    # live: once saved, changing the split re-saves the draft and refreshes the analysis
    fraction = d.find_element(By.ID, "eval-fraction")
    fraction.clear()
    fraction.send_keys("0.5", Keys.TAB)
    wait(d).until(lambda _: "eval_fraction: 0.5" in saved_file.read_text())
    wait(d).until(lambda drv: drv.find_element(By.CSS_SELECTOR, "#split-sizes .eval-rows").text
                  .replace(",", "") not in ("", str(evals)))
    assert d.find_element(By.ID, "error").is_displayed() is False

    # the CLI agrees: the definition validates against the warehouse
    validate = subprocess.run(
        [sys.executable, "-m", "feature_platform.cli", "definitions", "validate", NAME, "--definitions-dir",
         str(server["definitions"]), "--warehouse", str(server["warehouse"])],
        capture_output=True, text=True, env=server["env"], timeout=120)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert f"OK  {NAME}" in validate.stdout

    # activate from the wizard: the detail page shows it active
    d.find_element(By.ID, "activate").click()
    wait(d).until(ec.text_to_be_present_in_element((By.ID, "status"), "active"))
    assert "status: active" in (server["definitions"] / f"{NAME}.yaml").read_text()
    d.find_element(By.ID, "analyze").click()
    wait(d).until(ec.presence_of_element_located((By.ID, "split-sizes")))
    shot(d, "detail", tmp_path)

    # compare it with an existing definition side by side
    d.get(f"{base}/models/default/dataset/")
    for compared in (NAME, "fixed_window_by_product"):
        d.find_element(By.CSS_SELECTOR, f"input[name='names'][value='{compared}']").click()
    d.find_element(By.ID, "compare-submit").click()
    comparison = wait(d).until(ec.presence_of_element_located((By.ID, "comparison")))
    assert NAME in comparison.text and "fixed_window_by_product" in comparison.text
    assert "quality_score" in comparison.text
    shot(d, "compare", tmp_path)


def test_wizard_shows_field_errors(server: dict[str, Any], browser: webdriver.Chrome) -> None:
    """A definition the warehouse refuses shows the field and expected value; nothing is written."""
    base, d = server["base"], browser
    d.get(f"{base}/models/default/dataset/new")
    if d.current_url.endswith("/login"):
        d.find_element(By.ID, "token").send_keys(server["token"])
        d.find_element(By.ID, "login-submit").click()
        d.get(f"{base}/models/default/dataset/new")
    before = sorted(p.name for p in server["definitions"].iterdir())
    wait(d).until(ec.element_to_be_clickable((By.ID, "name"))).send_keys("no_timestamp")
    d.find_element(By.ID, "next-1").click()
    wait(d).until(ec.element_to_be_clickable((By.ID, "table-users"))).click()
    wait(d).until(ec.text_to_be_present_in_element((By.ID, "schema-table"), "users"))
    d.find_element(By.ID, "next-2").click()
    wait(d).until(ec.visibility_of_element_located((By.ID, "columns")))
    d.find_element(By.ID, "next-3").click()
    d.find_element(By.ID, "save").click()
    box = wait(d).until(ec.visibility_of_element_located((By.ID, "error")))
    assert "HTTP 422" in box.text and "field: columns" in box.text and "timestamp" in box.text
    assert sorted(p.name for p in server["definitions"].iterdir()) == before
