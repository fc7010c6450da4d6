"""`hpo dashboard` in a real headless browser: Debian's chromium driven by selenium, nothing downloaded.

The browser test fails (never skips) when chromium or chromedriver is missing: `make test` installs them
(tools/test-deps.sh).
Screenshots are kept in pytest's tmp folder (path printed) or in $HPO_TEST_ARTIFACTS when set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from hpo.final.dashboard import is_loopback

from conftest import hpo_cmd
from final_support import NAME, FinishedStudy, Retrained

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,2600")


def _start(args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], str, str]:
    """Start `hpo dashboard`, return it, its URL and what it printed before listening."""
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_ARTIFACTS", "HPO_STORAGE")}
    proc = subprocess.Popen(hpo_cmd("dashboard", *args), cwd=cwd, env={**env, "PYTHONUNBUFFERED": "1",
                            "COLUMNS": "300"}, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []
    deadline = time.time() + 60
    assert proc.stderr is not None
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        match = re.search(r"optuna-dashboard on (http://\S+/)", line)
        if match:
            return proc, match.group(1), "".join(seen)
    proc.kill()
    raise AssertionError("dashboard did not start: " + "".join(seen))


@pytest.fixture
def server(fin: FinishedStudy, done: Retrained) -> Iterator[tuple[str, str]]:
    proc, url, text = _start(["--storage", fin.url, "--port", "0"], fin.root)
    try:
        yield url, text
    finally:
        proc.terminate()
        proc.wait(10)


def _browser(profile: Path):
    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), (
        "the dashboard test needs Debian's chromium and chromedriver: "
        "apt-get install -y chromium chromium-driver (`make test` does: tools/test-deps.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = str(CHROMIUM)
    # An explicit driver path: selenium-manager (which would download a driver) never runs.
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def _keep(path: Path) -> Path:
    target = os.environ.get("HPO_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    print(f"screenshot: {path}")
    return path


def test_dashboard_in_headless_chromium(fin: FinishedStudy, server: tuple[str, str], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, banner = server
    assert url.startswith("http://127.0.0.1:") and "warning" not in banner  # loopback: no warning
    assert f"artifacts: {fin.artifacts}" in banner
    profile = Path(tempfile.mkdtemp(prefix="hpo-chromium-"))
    driver = _browser(profile)
    try:
        wait = WebDriverWait(driver, 60)
        # The study list names the study and links to it.
        driver.get(url + "dashboard")
        link = wait.until(ec.element_to_be_clickable((By.XPATH, f"//a[contains(@href, '/dashboard/studies/')]"
                                                                f"[contains(., '{NAME}')]")))
        driver.save_screenshot(str(tmp_path / "dashboard_studies.png"))
        _keep(tmp_path / "dashboard_studies.png")
        link.click()
        # The study page: history, the intermediate-values chart with one line per trial, the final artifacts.
        wait.until(ec.presence_of_element_located((By.XPATH, "//*[normalize-space(text())='Intermediate values']")))
        wait.until(lambda d: len(d.find_elements(By.XPATH, "//*[normalize-space(text())='Intermediate values']"
                                                           "/ancestor::div[.//*[contains(@class, 'js-plotly-plot')]]"
                                                           "[1]//*[contains(@class, 'scatterlayer')]//*"
                                                           "[contains(@class, 'trace')]")) >= 3)
        body = driver.find_element(By.TAG_NAME, "body").text
        for number in range(3):
            assert f"trial #{number}" in body
        assert "History" in body and "Study Artifacts" in body
        assert re.search(r"final_trial_\d{4}_[0-9a-f]{8}_best\.pt", body)
        chart = driver.find_element(By.XPATH, "//*[normalize-space(text())='Intermediate values']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", chart)
        time.sleep(0.5)
        shot = tmp_path / "dashboard_study.png"
        driver.save_screenshot(str(shot))
        _keep(shot)
        # The trial list shows every trial with its uploaded hyp.yaml and results.csv.
        driver.get(driver.current_url.rstrip("/") + "/trials")
        wait.until(lambda d: "hyp.yaml" in d.find_element(By.TAG_NAME, "body").text)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "results.csv" in body and "Trial 0" in body, body[:2000]
        shot = tmp_path / "dashboard_trials.png"
        driver.save_screenshot(str(shot))
        _keep(shot)
        assert shot.stat().st_size > 20_000
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_dashboard_serves_artifacts(server: tuple[str, str], fin: FinishedStudy) -> None:
    import urllib.request

    from optuna.artifacts import get_all_artifact_meta

    url, _ = server
    study = fin.study()
    trial = study.trials[0]
    meta = next(m for m in get_all_artifact_meta(trial, storage=study._storage) if m.filename == "hyp.yaml")
    with urllib.request.urlopen(f"{url}artifacts/{study._study_id}/{trial._trial_id}/{meta.artifact_id}",
                                timeout=30) as resp:
        assert resp.read() == (Path(trial.user_attrs["hpo:dir"]) / "hyp.yaml").read_bytes()


def test_dashboard_warns_when_not_on_loopback(fin: FinishedStudy) -> None:
    proc, url, banner = _start(["--storage", fin.url, "--host", "0.0.0.0", "--port", "0"], fin.root)
    try:
        assert "no authentication" in banner and "0.0.0.0" in url
    finally:
        proc.terminate()
        proc.wait(10)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
