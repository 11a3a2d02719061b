"""Browser test of the citizen gateway: headless Chromium driven by Selenium.

Run by tests/tests/browser.rs against a real node:
    browser.py BASE_URL TERRITORY QUERY TITLE FILE_NAME ORIGINAL_FILE DOWNLOAD_DIR

A reader loads the home page, types a search in the labelled field and submits it with
Enter, opens the record from the results, reads its Dublin Core description and downloads
its file, whose bytes must be the original's. On every page: lang="fr", one h1, an alt on
every img and a label on every form field. Exits non-zero with a message on any failure.
"""

import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def fail(msg):
    print(f"browser test: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def accessible_basics(driver, where):
    """lang="fr", one h1, alt on every img, a label on every form field."""
    lang = driver.find_element(By.TAG_NAME, "html").get_attribute("lang")
    check(lang == "fr", f"{where}: html lang is {lang!r}, not 'fr'")
    h1 = driver.find_elements(By.TAG_NAME, "h1")
    check(len(h1) == 1, f"{where}: {len(h1)} h1 elements, want one")
    for img in driver.find_elements(By.TAG_NAME, "img"):
        check(img.get_attribute("alt") is not None, f"{where}: an img without alt")
    for field in driver.find_elements(By.CSS_SELECTOR, "input, select, textarea"):
        kind = (field.get_attribute("type") or "").lower()
        if kind in ("hidden", "submit", "button", "reset", "image"):
            continue
        fid = field.get_attribute("id")
        labelled = bool(field.get_attribute("aria-label")) or bool(
            field.get_attribute("aria-labelledby")
        )
        if fid and driver.find_elements(By.CSS_SELECTOR, f'label[for="{fid}"]'):
            labelled = True
        if field.find_elements(By.XPATH, "ancestor::label"):
            labelled = True
        check(labelled, f"{where}: form field {field.get_attribute('name')!r} has no label")
    return h1[0].text


def wait_for_download(directory, timeout=60):
    """The one complete file Chromium saved in directory."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = [n for n in os.listdir(directory) if not n.endswith(".crdownload")]
        partial = [n for n in os.listdir(directory) if n.endswith(".crdownload")]
        if names and not partial:
            return os.path.join(directory, names[0])
        time.sleep(0.2)
    fail(f"no download in {directory} after {timeout} s: {os.listdir(directory)}")


def main():
    if len(sys.argv) != 8:
        fail(__doc__)
    base, territory, query, title, file_name, original, download_dir = sys.argv[1:]
    options = Options()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in (
        "--headless=new",
        # Root in a container has no user namespace for Chromium's sandbox.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--lang=fr-FR",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": download_dir,
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    # The Debian driver, named explicitly: Selenium Manager would otherwise try to fetch one.
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": download_dir},
        )
        wait = WebDriverWait(driver, 30)

        # Home page.
        driver.get(base + "/")
        heading = accessible_basics(driver, "home page")
        check("Rechercher" in heading and territory in heading, f"home h1 is {heading!r}")

        # Search: the labelled field, typed into, submitted with the keyboard.
        label = driver.find_element(By.CSS_SELECTOR, 'label[for="q"]')
        check("Mots recherchés" in label.text, f"search label is {label.text!r}")
        field = driver.find_element(By.ID, label.get_attribute("for"))
        field.send_keys(query)
        field.send_keys(Keys.ENTER)
        wait.until(ec.url_contains("q="))
        accessible_basics(driver, "results page")
        results = driver.find_elements(By.LINK_TEXT, title)
        check(len(results) == 1, f"{len(results)} results titled {title!r}: {driver.page_source}")

        # The record page and its Dublin Core description.
        results[0].click()
        wait.until(ec.url_contains("/records/"))
        heading = accessible_basics(driver, "record page")
        check(heading == title, f"record h1 is {heading!r}")
        dc = {
            m.get_attribute("name"): m.get_attribute("content")
            for m in driver.find_elements(By.CSS_SELECTOR, 'meta[name^="DC."]')
        }
        check(dc.get("DC.title") == title, f"DC.title: {dc}")
        check(dc.get("DC.publisher") == territory, f"DC.publisher: {dc}")
        check(dc.get("DC.creator") == "Secrétariat général", f"DC.creator: {dc}")
        check(dc.get("DC.date") == "1998-01-01/1998-12-31", f"DC.date: {dc}")
        check(dc.get("DC.type") == "délibération", f"DC.type: {dc}")
        record_id = driver.current_url.rsplit("/", 1)[-1]
        check(dc.get("DC.identifier") == record_id, f"DC.identifier: {dc}")
        shown = {
            dt.text: dt.find_element(By.XPATH, "following-sibling::dd[1]").text
            for dt in driver.find_elements(By.CSS_SELECTOR, "dl.notice dt")
        }
        check(shown.get("Titre") == title, f"shown Titre: {shown}")
        check(shown.get("Producteur") == "Secrétariat général", f"shown Producteur: {shown}")

        # Download, then compare the bytes with the original.
        link = driver.find_element(By.PARTIAL_LINK_TEXT, f"Télécharger {file_name}")
        link.click()
        saved = wait_for_download(download_dir)
        with open(saved, "rb") as f, open(original, "rb") as g:
            got, want = f.read(), g.read()
        check(
            got == want,
            f"downloaded {len(got)} bytes to {saved}, differ from the {len(want)} archived",
        )
        check(
            os.path.basename(saved) == file_name,
            f"saved as {os.path.basename(saved)!r}, not {file_name!r}",
        )

        # The communicability page is reachable by keyboard users too.
        driver.get(base + "/communicabilite")
        accessible_basics(driver, "communicability page")
        print(f"browser test: ok ({len(got)} bytes downloaded from record {record_id})")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
