"""The real thing: a Streamlit server on localhost driven by headless Chromium (Debian's packages)."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", ROOT / "tests" / "screenshots"))

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    env = {**os.environ, "SIMPLEX_STORE": str(tmp_path_factory.mktemp("browser-store")), "PYTHONPATH": str(ROOT)}
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        log.seek(0)
        pytest.fail("streamlit did not start:\n" + log.read())
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing: `make test` installs them (make browser-deps)")
        pytest.skip("chromium/chromedriver not installed (run `make browser-deps`)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1600,2600", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver), options=options)
    yield drv
    drv.quit()


def wait_for(fn, timeout=120.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def texts(drv, css: str) -> list[str]:
    """The texts of every element matching ``css``, read again if a rerun replaced them while reading
    (a live fragment redraws its charts; an element found before the redraw is then stale)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            return [e.text for e in drv.find_elements(By.CSS_SELECTOR, css)]
        except StaleElementReferenceException:
            time.sleep(0.5)
    raise AssertionError(f"the elements {css!r} kept being replaced")


def assert_no_exception(drv):
    from selenium.webdriver.common.by import By

    boxes = drv.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not boxes, "Streamlit exception on the page: " + " | ".join(b.text for b in boxes)


def test_start_page_one_click_comparison_in_a_real_browser(server, browser):
    from selenium.webdriver.common.by import By

    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(server)
    button = wait_for(lambda: [b for b in browser.find_elements(By.TAG_NAME, "button")
                               if "Train CE vs GCCS" in b.text], what="the start button")[0]
    assert_no_exception(browser)
    button.click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"), what="a live chart")
    sidebar = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    wait_for(lambda: "done in" in sidebar.text, timeout=240, what="the job to finish")
    # after the job: accuracy, loss, and a simplex + 3-D view for each run
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= 6, what="six charts")
    time.sleep(1.5)  # let plotly finish drawing before the screenshot
    browser.save_screenshot(str(SHOTS / "start_page.png"))
    assert_no_exception(browser)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "CE vs GCCS · digits · cnn · 100 ep" in text and "GCCS (" in text


def test_train_and_latent_pages_in_a_real_browser(server, browser):
    from selenium.webdriver.common.by import By

    for path, marker, shot in (("/train", "Live curves", "train_page.png"), ("/latent", "simplex view", "latent_page.png")):
        browser.get(server + path)
        if path == "/train":
            wait_for(lambda: any("Train" == b.text.strip("▶ ").strip() for b in browser.find_elements(By.TAG_NAME, "button")),
                     what="the train button")
        else:
            wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= 4, what="latent charts")
            time.sleep(1.5)
        browser.save_screenshot(str(SHOTS / shot))
        assert_no_exception(browser)


def shot_at_heading(drv, heading: str, name: str) -> None:
    """A screenshot with the page scrolled to the subheader ``heading`` (after plotly has drawn)."""
    from selenium.webdriver.common.by import By

    time.sleep(2)
    target = [e for e in drv.find_elements(By.TAG_NAME, "h3") if heading in e.text][0]
    drv.execute_script("arguments[0].scrollIntoView();", target)
    time.sleep(1)
    drv.save_screenshot(str(SHOTS / name))
    assert_no_exception(drv)


def _click_button(drv, text: str):
    from selenium.webdriver.common.by import By

    button = wait_for(lambda: [b for b in drv.find_elements(By.TAG_NAME, "button") if text in b.text],
                      what=f"the button {text!r}")[0]
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()


def test_robustness_sweep_and_latents_under_attack_in_a_real_browser(server, browser):
    """Runs after the start page's comparison: its CE and GCCS runs are in this server's store."""
    from selenium.webdriver.common.by import By

    browser.get(server + "/robustness")
    _click_button(browser, "Run sweep")  # PGD-5 over the default ε grid, with adaptive and margin PGD paired
    sidebar = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebar"]'), what="sidebar")[0]
    wait_for(lambda: sidebar.text.count("done in") >= 4, timeout=600, what="the three sweeps to finish")
    # the worst-case chart is drawn first; the sweep's own chart, with the paired curves, a rerun later
    wait_for(lambda: "adaptive-pgd" in " ".join(texts(browser, ".js-plotly-plot .legendtext")), timeout=180,
             what="the paired curves")
    time.sleep(2)
    browser.save_screenshot(str(SHOTS / "robustness_page.png"))
    assert_no_exception(browser)
    legend = " ".join(texts(browser, ".js-plotly-plot .legendtext"))
    assert "adaptive-pgd" in legend and "GCCS (" in legend and "CE (" in legend
    # the headline: the per-sample worst case over the three sweeps, bold, in a chart of its own first
    assert "· worst case" in legend
    titles = texts(browser, ".js-plotly-plot .gtitle")
    assert titles and titles[0].startswith("Worst case over every attack tried"), titles
    assert "one attack alone: an upper bound" in browser.find_element(By.TAG_NAME, "body").text

    browser.get(server + "/latent")
    _click_button(browser, "Compute latents under attack")
    wait_for(lambda: "left their decision region" in browser.find_element(By.TAG_NAME, "body").text, timeout=300,
             what="the latents under attack")
    shot_at_heading(browser, "Under attack", "latent_under_attack.png")


def test_start_page_compares_on_fashion_mnist_in_a_real_browser(server, browser):
    """The one-click comparison on real data (Debian's Fashion-MNIST), one epoch, seed 0."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make test installs it where apt is)")
    browser.get(server)
    option = wait_for(lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stRadio"] label')
                               if "Fashion-MNIST" in e.text], what="the Fashion-MNIST choice")[0]
    option.click()
    epochs = wait_for(lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, 'input[aria-label="epochs"]')
                               if e.get_attribute("value") == "5"], what="the preset's 5 epochs")[0]
    epochs.send_keys(Keys.CONTROL, "a")
    epochs.send_keys("1", Keys.ENTER)
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, 'input[aria-label="epochs"]').get_attribute("value") == "1",
             what="1 epoch")
    time.sleep(1)
    _click_button(browser, "Train CE vs GCCS on fashion-mnist")
    title = "CE vs GCCS · fashion-mnist · cnn · 1 ep"

    def job_done() -> bool:  # its own card: the title line, then the status line under it
        lines = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]').text.splitlines()
        return any(title in line and any("done in" in below for below in lines[i + 1:i + 3])
                   for i, line in enumerate(lines))

    try:
        wait_for(job_done, timeout=300, what="its job card to say done")
        wait_for(lambda: "T-shirt/top" in browser.find_element(By.TAG_NAME, "body").text, timeout=120,
                 what="Fashion-MNIST's class names under the latent view")
    except AssertionError as failure:  # keep what the page showed
        browser.save_screenshot(str(SHOTS / "start_page_fashion_mnist_failure.png"))
        raise AssertionError(f"{failure}; the page read: {browser.find_element(By.TAG_NAME, 'body').text[:3000]}")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")) >= 6, what="six charts")
    time.sleep(2)
    browser.save_screenshot(str(SHOTS / "start_page_fashion_mnist.png"))
    assert_no_exception(browser)


def test_studies_page_runs_a_reproduction_in_a_real_browser(server, browser):
    """GCCS Table 1 (λ) on digits, 2 seeds of 20 epochs: progress run by run, then the cells with the
    paper's numbers, the claims with their verdicts, and the figure."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server)  # the app first: a server's first request to a page's path would skip its frame
    wait_for(lambda: [b for b in browser.find_elements(By.TAG_NAME, "button") if "Train CE vs GCCS" in b.text],
             what="the start page")
    browser.get(server + "/studies")
    for label, value in (("seeds", "0,1"), ("epochs (0: the preset's)", "20")):
        box = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f'input[aria-label="{label}"]'),
                       what=f"the {label} input")[0]
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(value, Keys.ENTER)
        time.sleep(1)
    body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
    wait_for(lambda: "12 runs: 2 seeds of each cell" in body(), what="the study's size")
    _click_button(browser, "Run study")
    try:
        wait_for(lambda: "Study gccs-table1 finished: 12 runs" in body(), timeout=400, what="the study to finish")
        wait_for(lambda: "kurtosis term helps" in body() and browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"),
                 timeout=60, what="the claims and the figure")
    except AssertionError as failure:
        browser.save_screenshot(str(SHOTS / "studies_page_failure.png"))
        raise AssertionError(f"{failure}; the page read: {body()[:3000]}")
    text = body()
    assert any(v in text for v in ("reproduced", "within noise")), text[-2000:]
    assert "mnist: +0.0038, cifar10: +0.0364" in text  # the paper's differences beside the claim
    shot_at_heading(browser, "Stored studies", "studies_page.png")
