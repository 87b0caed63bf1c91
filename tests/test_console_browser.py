"""The web console in headless Chromium (Selenium + Debian's chromium/chromium-driver) against real
``viewfinder serve`` processes on 127.0.0.1: one per pipeline, the classifier with an API key.

Each step saves a screenshot under the test's tmp_path; with ``CONSOLE_SCREENSHOTS=DIR`` they are
copied there too (docs/images/console-*.png come from such a run). ``make browser-deps`` installs
the browser.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_serving_e2e import Server, free_port
from test_serving_shitu import detector_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
API_KEY = "console-key"
WAIT_S = 120  # an inference on a busy 2-core machine, the first one after start-up included
CAT_NAMES = {"Egyptian cat", "tabby, tabby cat", "tiger cat"}


# ------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: run `make browser-deps` (apt-get install chromium "
                    "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver from the same Debian package as the browser: their versions always match, and a given
    # path keeps Selenium Manager (which would download one) out of it.
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


class Page:
    """The console in the browser, with the waits and screenshots a step needs."""

    def __init__(self, driver: Any, url: str, shots: Path) -> None:
        self.driver, self.url, self.shots = driver, url, shots
        self.step = 0
        shots.mkdir(parents=True, exist_ok=True)

    def open(self) -> "Page":
        self.driver.get("about:blank")
        self.driver.get(self.url + "/")
        return self

    def by_id(self, element_id: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = condition()
            except StaleElementReferenceException:  # the page re-rendered between the find and the read
                value = None
            if value:
                return value
            time.sleep(0.1)
        self.shot(f"timeout-{what.replace(' ', '-')[:40]}")
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; message: {self.message()!r}")

    def ready(self) -> "Page":
        self.wait(lambda: self.driver.execute_script("return document.body.dataset.ready") == "1", "the page")
        return self

    def visible(self, element_id: str) -> bool:
        return self.by_id(element_id).is_displayed()

    def message(self) -> str:
        box = self.all("#message")
        return box[0].text if box and box[0].is_displayed() else ""

    def wait_message(self, text: str) -> str:
        return self.wait(lambda: text in self.message() and self.message(), f"a message with {text!r}")

    def set_value(self, element_id: str, value: str) -> None:
        field = self.by_id(element_id)
        field.clear()
        field.send_keys(value)

    def upload(self, element_id: str, *files: Path) -> None:
        self.by_id(element_id).send_keys("\n".join(str(f) for f in files))

    def click(self, element_id: str) -> None:
        self.by_id(element_id).click()

    def answer_dialog(self, dialog_id: str, button_id: str | None) -> None:
        """Press ``button_id`` in the open dialog (None: Escape, i.e. cancel)."""
        from selenium.webdriver.common.keys import Keys

        self.wait(lambda: self.by_id(dialog_id).get_attribute("open") is not None, f"the {dialog_id}")
        if button_id is None:
            self.by_id(dialog_id).send_keys(Keys.ESCAPE)
        else:
            self.click(button_id)
        self.wait(lambda: self.by_id(dialog_id).get_attribute("open") is None, f"the {dialog_id} to close")

    def texts(self, css: str) -> list[str]:
        return [node.text for node in self.all(css)]

    def shot(self, name: str) -> Path:
        self.step += 1
        path = self.shots / f"{self.step:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        copy_to = os.environ.get("CONSOLE_SCREENSHOTS")
        if copy_to:
            Path(copy_to).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(copy_to) / f"console-{self.shots.name}-{path.name}")
        return path

    def errors(self) -> list[str]:
        """JavaScript errors the browser logged (not the API's answers, which the page shows)."""
        return [entry["message"] for entry in self.driver.get_log("browser")
                if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]]


# ------------------------------------------------------------------ servers
class PhotoServer:
    """The photos over http on 127.0.0.1: images added to a gallery by URL, and their thumbnails."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def serve(config: Path, folder: Path, name: str, *extra: str) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "viewfinder.cli", "serve", "--pipeline", str(config), "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1", "--log_level", "warning", *extra], port, folder / f"{name}.log")


@pytest.fixture(scope="module")
def servers(mobilenet_v2_weights, shared_dir, tmp_path_factory) -> Iterator[dict[str, Server]]:
    folder = tmp_path_factory.mktemp("console-servers")
    classify = folder / "classify.yaml"
    classify.write_text(yaml.safe_dump({"pipeline_name": "image_classification", "SubModules": {
        "ImageClassification": {"model_name": "MobileNetV2_x1_0", "weights": str(mobilenet_v2_weights),
                                "engine": "torch"}}}))
    multilabel = folder / "multilabel.yaml"
    multilabel.write_text(yaml.safe_dump({"pipeline_name": "image_multilabel_classification", "SubModules": {
        "ImageMultiLabelClassification": {"model_name": "PP-LCNet_x1_0_ML", "engine": "torch"}}}))
    shitu = folder / "shitu.yaml"
    config = detector_config(shared_dir, mobilenet_v2_weights)
    config["Serving"] = {"url_policy": {"allow_loopback": True}}  # gallery images from the photo server
    shitu.write_text(yaml.safe_dump(config, allow_unicode=True))
    started = {
        "classify": serve(classify, folder, "classify", "--api_key", API_KEY),
        "multilabel": serve(multilabel, folder, "multilabel", "--random_init"),
        "shitu": serve(shitu, folder, "shitu", "--data_dir", str(folder / "indexes")),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()
    for server in started.values():
        assert "Traceback" not in server.log.read_text(), server.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def photo_server(photos) -> Iterator[PhotoServer]:
    server = PhotoServer(photos)
    yield server
    server.close()


# ------------------------------------------------------------------ tests
def test_classification_console_with_api_key(servers, driver, photos, tmp_path):
    page = Page(driver, servers["classify"].url, tmp_path / "classification")
    page.open()
    # The service has a key: the console asks for it before it can read the spec. A wrong one is refused
    # with the service's own message.
    page.set_value("key-input", "wrong")
    page.answer_dialog("key-dialog", "key-ok")
    page.ready()
    assert "missing or wrong API key" in page.wait_message("Error 401")
    assert page.by_id("pipeline-name").text == "not connected"
    page.shot("wrong-key")

    page.open()
    page.set_value("key-input", API_KEY)
    page.answer_dialog("key-dialog", "key-ok")
    page.ready()
    assert page.by_id("pipeline-name").text == "image_classification"
    assert page.visible("key-state") and page.visible("topk")
    assert not page.visible("threshold") and not page.visible("det-threshold") and not page.visible("galleries")
    page.shot("ready")

    page.set_value("topk", "3")
    page.upload("image-file", photos / "chelsea.png")
    page.wait(lambda: len(page.all("#categories li")) == 3, "three categories")
    names = page.texts("#categories .name")
    assert names[0] in CAT_NAMES, names
    assert page.by_id("result-canvas").size["width"] > 100  # the photo is drawn
    page.shot("classified")

    # The key is kept for the tab: a reload asks no more.
    page.open().ready()
    assert page.by_id("key-dialog").get_attribute("open") is None and page.visible("topk")

    # An API error is shown with the service's errorMsg: this service refuses loopback URLs.
    page.set_value("image-url", "http://127.0.0.1:9/kite.jpg")
    page.click("infer-button")
    assert "loopback" in page.wait_message("Error 400")
    page.shot("api-error")

    page.click("forget-key")
    assert not page.visible("key-state")
    assert page.errors() == []


def test_multilabel_console_shows_its_own_controls(servers, driver, photos, tmp_path):
    page = Page(driver, servers["multilabel"].url, tmp_path / "multilabel")
    page.open().ready()  # no key on this service: no dialog
    assert page.by_id("key-dialog").get_attribute("open") is None and not page.visible("key-state")
    assert page.by_id("pipeline-name").text == "image_multilabel_classification"
    assert page.visible("threshold")
    assert not page.visible("topk") and not page.visible("shitu-topk") and not page.visible("galleries")

    page.set_value("threshold", "0")  # every class scores above 0 (random weights: the scores do not matter)
    page.upload("image-file", photos / "dog.jpg")
    page.wait(lambda: len(page.all("#tags li")) == 80, "80 tags (COCO)")
    page.shot("tags")

    page.set_value("threshold", "1")
    page.click("infer-button")
    page.wait(lambda: "No class scores above" in page.by_id("result-list").text, "no tags")
    page.shot("no-tags")

    # A file dropped on the drop zone (a drop event carrying a File, as a drag from the desktop makes).
    page.set_value("threshold", "0")
    page.driver.execute_async_script(DROP_A_PICTURE)
    page.wait(lambda: page.by_id("drop-zone").get_attribute("data-picked") == "dropped.png", "the dropped file")
    page.wait(lambda: len(page.all("#tags li")) == 80, "tags for the dropped picture")
    page.shot("dropped")
    assert page.errors() == []


DROP_A_PICTURE = """
const done = arguments[arguments.length - 1];
const canvas = Object.assign(document.createElement("canvas"), {width: 64, height: 48});
canvas.getContext("2d").fillRect(0, 0, 64, 48);
canvas.toBlob((blob) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([blob], "dropped.png", {type: "image/png"}));
  document.getElementById("drop-zone").dispatchEvent(
    new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
  done();
}, "image/png");
"""


def test_shitu_console_gallery_flow(servers, driver, photos, photo_server, tmp_path):
    page = Page(driver, servers["shitu"].url, tmp_path / "shitu")
    page.open().ready()
    assert page.by_id("pipeline-name").text == "PP-ShiTuV2"
    for shown in ("galleries", "infer-index", "det-threshold", "rec-threshold", "shitu-topk"):
        assert page.visible(shown), shown
    assert not page.visible("topk") and not page.visible("threshold")
    assert page.visible("no-indexes")

    # No gallery yet, and this service has no default index: the API says indexKey is required.
    page.upload("image-file", photos / "dog.jpg")
    assert "indexKey: Field required" in page.wait_message("Error 422")
    page.shot("no-index-error")

    # A gallery from three uploaded photos (labels from the file names, one edited).
    page.upload("gallery-files", photos / "chelsea.png", photos / "dog.jpg", photos / "eagle.jpg")
    page.wait(lambda: len(page.all("#staged li")) == 3, "three staged images")
    labels = page.all("#staged input.label")
    assert [label.get_attribute("value") for label in labels] == ["chelsea", "dog", "eagle"]
    labels[0].clear()
    labels[0].send_keys("cat")
    page.shot("staged")
    page.click("create-index")
    page.wait_message("created with 3 items")
    page.wait(lambda: page.texts("#items .label") == ["cat", "dog", "eagle"], "the three items")
    assert page.texts("#index-table tbody .size") == ["3"]
    page.shot("gallery-built")

    # Add one by URL: the service fetches it and records the URL, so the item has a thumbnail.
    page.set_value("gallery-url", f"{photo_server.url}/giraffe.jpg")
    page.click("gallery-url-add")
    page.wait(lambda: len(page.all("#staged li")) == 1, "one staged URL")
    page.click("add-to-index")
    page.wait_message("Added 1 item to")
    page.wait(lambda: page.texts("#items .label") == ["cat", "dog", "eagle", "giraffe"], "four items")
    thumbs = page.all('#items li[data-id="3"] img.thumb')
    assert thumbs and thumbs[0].get_attribute("src") == f"{photo_server.url}/giraffe.jpg"
    page.wait(lambda: page.driver.execute_script("return arguments[0].naturalWidth", thumbs[0]) > 0, "the thumbnail")
    assert page.texts("#index-table tbody .size") == ["4"]
    page.shot("gallery-added")

    # Recognise a query against it: boxes drawn on the canvas, the label on the page.
    page.set_value("rec-threshold", "0.3")
    page.click("infer-button")
    page.wait(lambda: "dog" in page.texts("#objects .name"), "the dog recognised")
    page.shot("recognised")

    # Search by label, then remove the item found (after a confirmation).
    page.set_value("label-filter", "EAG")
    page.wait(lambda: page.texts("#items .label") == ["eagle"], "the search result")
    page.all('#items li[data-id="2"] button')[0].click()
    assert "Remove item #2 (eagle)" in page.by_id("confirm-text").text
    page.shot("confirm-remove")
    page.answer_dialog("confirm-dialog", "confirm-ok")
    page.wait_message("Removed item #2 (eagle)")
    page.set_value("label-filter", " ")
    page.wait(lambda: page.texts("#items .label") == ["cat", "dog", "giraffe"], "three items left")
    assert page.texts("#index-table tbody .size") == ["3"]
    page.shot("removed")

    # Delete the whole gallery: cancelling keeps it, confirming deletes it.
    page.click("delete-index")
    page.answer_dialog("confirm-dialog", None)
    assert len(page.all("#index-table tbody tr")) == 1
    page.click("delete-index")
    page.answer_dialog("confirm-dialog", "confirm-ok")
    page.wait_message("deleted")
    page.wait(lambda: page.visible("no-indexes"), "no gallery left")
    assert not page.visible("browser")
    page.shot("deleted")
    assert page.errors() == []
