"""Retake the README's Dagster UI screenshots: headless Debian chromium (selenium + chromedriver) against a running
UI, e.g. ``make demo && make ui`` then ``python docs/dagster_screenshots.py http://127.0.0.1:3000 docs/images``."""

from __future__ import annotations

import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

SETTLE_S = 8.0  # the UI is a single-page app: give it time to fetch and render before each picture


def main(base: str, out: str) -> None:
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1500,1100"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"{base}/assets/trained_model")
        time.sleep(SETTLE_S)
        for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):  # first-visit dialog
            button.click()
        driver.get(f"{base}/assets/trained_model")
        time.sleep(SETTLE_S)
        for title in driver.find_elements(By.XPATH, "//*[text()='Compute details']"):  # shows the code version
            driver.execute_script("arguments[0].click(); arguments[0].parentElement.click();", title)
        time.sleep(2)
        driver.save_screenshot(f"{out}/dagster-asset-overview.png")
        for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Plots']"):
            driver.execute_script("arguments[0].click();", button)
        time.sleep(4)
        driver.save_screenshot(f"{out}/dagster-asset-plots.png")
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2])
