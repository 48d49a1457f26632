"""scnn-inpaint --serve (scnn_jax.cli.serve): the endpoint through Flask's
test client (the composite is the file command's, known pixels unchanged;
bad uploads get one line of JSON), the command's start-up errors, the real
command serving on a free port, and the page in headless Chromium (open a
photo, paint, undo, fill, download).

The browser test needs Debian's ``chromium`` and ``chromium-driver``
(``apt-get install -y chromium chromium-driver``; CI installs them). It fails
when they are missing, so CI cannot pass it by skipping; developers without
Chromium set ``SCNN_SKIP_BROWSER_TESTS=1`` to skip it.
"""

import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest
import skimage.data
from PIL import Image

from scnn_jax import pretrained
from scnn_jax.cli import serve
from scnn_jax.data.images import to_uint8
from scnn_jax.cli.inpaint import main
from scnn_jax.models import baselines
from scnn_jax.runtime.inpainter import Inpainter, TilingError
from tests.workdirs import REPO

SKIP_BROWSER = "SCNN_SKIP_BROWSER_TESTS"
N = 96   # every fill is 96x96: one compile of the model per test process


@pytest.fixture(scope="module")
def loaded():
  return pretrained.load()


@pytest.fixture(scope="module")
def inpainter(loaded):
  return Inpainter(loaded.model, loaded.config)


def make_app(inpainter, **limits):
  return serve.create_app(inpainter, model_name=pretrained.DEFAULT, **limits)


@pytest.fixture(scope="module")
def client(inpainter):
  return make_app(inpainter).test_client()


def photo():
  """A 96x96 crop of a real photo (scikit-image's astronaut: her face)."""
  return np.ascontiguousarray(skimage.data.astronaut()[100:196, 180:276])


def box_holes(y0, y1, x0, x1):
  holes = np.zeros((N, N), bool)
  holes[y0:y1, x0:x1] = True
  return holes


def png(arr, fmt="PNG"):
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format=fmt)
  return buf.getvalue()


def post(client, image, mask, **kw):
  data = {}
  if image is not None:
    data["image"] = (io.BytesIO(image), "photo.png")
  if mask is not None:
    data["mask"] = (io.BytesIO(mask), "mask.png")
  return client.post("/api/inpaint", data=data,
                     content_type="multipart/form-data", **kw)


def decoded(b64):
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def one_line_error(resp, status):
  """The JSON error of ``resp``: exactly ``{"error": one line}``."""
  assert resp.status_code == status, resp.data
  assert resp.mimetype == "application/json"
  body = json.loads(resp.data)
  assert list(body) == ["error"] and "\n" not in body["error"]
  return body["error"]


# ---------------------------------------------------------------------------
# The endpoint
# ---------------------------------------------------------------------------


def test_fill_is_the_commands_composite_beside_biharmonic(client, inpainter):
  pixels, holes = photo(), box_holes(40, 56, 30, 60)
  resp = post(client, png(pixels), png(holes.astype(np.uint8) * 255))
  assert resp.status_code == 200, resp.data
  body = resp.get_json()
  assert (body["width"], body["height"], body["channels"]) == (N, N, 3)
  assert body["hole_fraction"] == pytest.approx(16 * 30 / N**2)
  assert body["notes"] == []
  fill, bih = decoded(body["fill"]), decoded(body["biharmonic"])
  # The file command's path (Inpainter.inpaint), byte for byte.
  np.testing.assert_array_equal(fill, inpainter.inpaint(pixels, holes))
  np.testing.assert_array_equal(fill[~holes], pixels[~holes])
  assert (fill[holes] != pixels[holes]).any(-1).mean() > 0.5
  smooth = baselines.biharmonic(pixels / np.float32(255), holes)
  np.testing.assert_array_equal(bih[holes], to_uint8(smooth)[holes])
  np.testing.assert_array_equal(bih[~holes], pixels[~holes])
  assert (fill[holes] != bih[holes]).any()


def test_exif_orientation_is_applied_as_browsers_show_it(client):
  # A JPEG stored sideways with EXIF orientation 6 (turn 90 degrees
  # clockwise to view): the mask is painted over the turned photo.
  stored = np.ascontiguousarray(np.rot90(photo(), 1))
  exif = Image.Exif()
  exif[0x0112] = 6
  buf = io.BytesIO()
  Image.fromarray(stored).save(buf, format="JPEG", quality=95, exif=exif)
  shown = np.asarray(Image.open(io.BytesIO(buf.getvalue())).transpose(
      Image.Transpose.ROTATE_270))
  holes = box_holes(10, 20, 50, 80)
  resp = post(client, buf.getvalue(), png(holes.astype(np.uint8) * 255))
  assert resp.status_code == 200, resp.data
  body = resp.get_json()
  assert body["notes"] == ["turned by its EXIF orientation (6), as the "
                           "browser shows it"]
  fill = decoded(body["fill"])
  np.testing.assert_array_equal(fill[~holes], shown[~holes])


def test_wrong_size_mask_is_one_line_of_json(client):
  resp = post(client, png(photo()), png(np.zeros((90, N), np.uint8)))
  assert one_line_error(resp, 400) == (
      "mask is 96x90 px but the image is 96x96 px: they must be the same "
      "size")


def test_too_large_uploads_are_refused(inpainter, loaded):
  image, mask = png(photo()), png(box_holes(1, 5, 1, 5).astype(np.uint8) * 255)
  # Over --max-upload-mb: Flask refuses the body.
  small = make_app(inpainter, max_upload_mb=0.01).test_client()
  assert len(image) > 0.01 * 2**20
  assert one_line_error(post(small, image, mask), 413) == (
      "the upload is over the 0.01 MB limit of this server (--max-upload-mb)")
  # Over --max-megapixels: refused from the header, before decoding.
  few = make_app(inpainter, max_megapixels=0.005).test_client()
  assert one_line_error(post(few, image, mask), 413) == (
      "image: 96x96 px (0.0 MP) is over the 0.005 MP limit of this server "
      "(--max-megapixels)")
  # Over the model's memory budget: the Inpainter's own refusal.
  tight = Inpainter(loaded.model, loaded.config, memory_mb=0.01)
  with pytest.raises(TilingError) as refusal:
    tight.plan(N, N, box_holes(1, 5, 1, 5))
  assert "--memory-mb 0.01" in str(refusal.value)
  assert one_line_error(post(make_app(tight).test_client(), image, mask),
                        413) == f"image: {refusal.value}"


@pytest.mark.parametrize("image,mask,status,message", [
    (b"not an image", "ok", 400, "image: not an image Pillow can decode "
     "(unknown file format; use PNG, JPEG, MPO, WEBP, GIF, BMP, TIFF)"),
    ("ok", "jpeg", 400, "mask: JPEG files are not accepted here (use PNG)"),
    ("ok", b"", 400, "mask: the file is empty"),
    ("ok", "empty", 400, "the mask has no hole (no pixel >= 50 % white): "
     "paint over the part to fill first"),
    ("ok", None, 400, "no 'mask' file in the request: POST multipart/"
     "form-data with the files 'image' (the photo) and 'mask' (a PNG of its "
     "size, white = hole)"),
])
def test_bad_uploads_are_named(client, image, mask, status, message):
  box = box_holes(4, 9, 4, 9).astype(np.uint8) * 255
  image = png(photo()) if image == "ok" else image
  mask = {"ok": png(box), "jpeg": png(box, "JPEG"),
          "empty": png(np.zeros((N, N), np.uint8))}.get(mask, mask)
  assert one_line_error(post(client, image, mask), status) == message


def test_other_sites_and_host_names_are_refused(client):
  box = png(box_holes(4, 9, 4, 9).astype(np.uint8) * 255)
  resp = post(client, png(photo()), box,
              headers={"Origin": "http://example.com"})
  assert one_line_error(resp, 403) == (
      "requests from http://example.com are refused: use the page this "
      "server shows")
  # DNS rebinding: a page of another name that resolves to 127.0.0.1.
  resp = client.get("/api/info", headers={"Host": "attacker.example:8765"})
  assert "is not trusted" in one_line_error(resp, 400)


def test_page_loads_nothing_from_the_network(client):
  page = client.get("/")
  assert page.status_code == 200 and page.mimetype == "text/html"
  assert "default-src 'self'" in page.headers["Content-Security-Policy"]
  html = page.get_data(as_text=True)
  for needed in ('id="file"', 'id="brush"', 'id="undo"', 'id="fill"',
                 'id="mask"', 'id="result-biharmonic"', 'src="inpaint.js"'):
    assert needed in html, needed
  script = client.get("/inpaint.js")
  assert script.mimetype == "text/javascript"
  for text in (html, script.get_data(as_text=True)):
    # Only relative URLs: no http(s)://, no protocol-relative //host.
    assert not re.search(r"(https?:)?//[a-z0-9]", text, re.I)
  info = client.get("/api/info").get_json()
  assert info["model"] == pretrained.DEFAULT and info["channels"] == 3
  assert info["max_upload_bytes"] == 64 * 2**20
  assert info["max_pixels"] == 64_000_000


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def run_main(capsys, *args):
  rc = main(["--serve", *map(str, args), "--compilation-cache", "off"])
  return rc, capsys.readouterr()


def test_serve_command_errors_are_one_line(capsys, tmp_path, monkeypatch):
  rc, out = run_main(capsys, "--workdir", tmp_path / "nope", "--port", 0)
  assert (rc, out.err.strip()) == (2, f"error: workdir {tmp_path / 'nope'} "
                                      "not found")
  rc, out = run_main(capsys, "--port", 70000)
  assert (rc, out.err.strip()) == (2, "error: --port 70000: must be in "
                                      "0..65535")
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    rc, out = run_main(capsys, "--port", port)
  assert rc == 2 and out.err.count("\n") == 1
  assert out.err.startswith(f"error: cannot listen on 127.0.0.1:{port} "
                            "(Address already in use)")
  monkeypatch.setitem(sys.modules, "flask", None)   # Flask not installed
  rc, out = run_main(capsys, "--port", 0)
  assert (rc, out.err.strip()) == (2, f"error: {serve.INSTALL_HINT}")
  assert "pip install 'scnn_jax[serve]'" in serve.INSTALL_HINT


def test_the_command_serves_the_page_and_prints_its_url(tmp_path):
  proc = subprocess.Popen(
      [sys.executable, "-m", "scnn_jax.inpaint", "--serve", "--port", "0",
       "--compilation-cache", "off"],
      cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
  watchdog = threading.Timer(180, proc.kill)   # a hung start-up fails
  watchdog.start()
  try:
    line = proc.stdout.readline()
    match = re.fullmatch(r"scnn_jax inpainting page: "
                         r"(http://127\.0\.0\.1:\d+/) \(Ctrl\+C stops it\)\n",
                         line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    url = match.group(1)
    with urllib.request.urlopen(url, timeout=30) as r:
      assert b'id="fill"' in r.read()
    with urllib.request.urlopen(url + "api/info", timeout=30) as r:
      assert json.load(r)["model"] == pretrained.DEFAULT
  finally:
    watchdog.cancel()
    proc.terminate()
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


# ---------------------------------------------------------------------------
# The page in a real browser
# ---------------------------------------------------------------------------

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--window-size=1100,1000")

# Reads a blob: URL of the page (a download link) as base64.
FETCH = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then((r) => r.arrayBuffer()).then((b) => {
  const u = new Uint8Array(b);
  let s = "";
  for (let i = 0; i < u.length; i += 8192)
    s += String.fromCharCode.apply(null, u.subarray(i, i + 8192));
  done(btoa(s));
}).catch((e) => done("failed: " + e));
"""


def chromium():
  """(chromium, chromedriver) paths; fails, never skips, without them unless
  SCNN_SKIP_BROWSER_TESTS is set."""
  if os.environ.get(SKIP_BROWSER):
    pytest.skip(f"{SKIP_BROWSER} is set")
  browser = shutil.which("chromium") or shutil.which("chromium-browser")
  driver = shutil.which("chromedriver")
  if not (browser and driver):
    pytest.fail("the web page's browser test needs headless Chromium and its "
                "driver: apt-get install -y chromium chromium-driver (or set "
                f"{SKIP_BROWSER}=1 to skip it)", pytrace=False)
  try:
    import selenium  # noqa: F401
  except ImportError:
    pytest.fail("the browser test needs selenium: pip install -c "
                "constraints.txt -r requirements-dev.txt", pytrace=False)
  return browser, driver


@pytest.fixture
def live_url(inpainter):
  server = serve.make_server(make_app(inpainter), 0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{server.port}/"
  server.shutdown()
  server.server_close()
  thread.join(timeout=10)


def test_page_fills_a_painted_hole_in_chromium(live_url, inpainter, tmp_path):
  browser, driver_path = chromium()
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  from selenium.webdriver.support.ui import WebDriverWait

  pixels = photo()
  Image.fromarray(pixels).save(tmp_path / "crop.png")
  options = webdriver.ChromeOptions()
  options.binary_location = browser
  for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path / 'profile'}",):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(driver_path), options=options)
  try:
    driver.set_script_timeout(30)
    find = lambda id_: driver.find_element(By.ID, id_)  # noqa: E731
    driver.get(live_url)
    WebDriverWait(driver, 30).until(
        lambda d: find("model-info").text.startswith(f"model: {pretrained.DEFAULT}"))
    find("file").send_keys(str(tmp_path / "crop.png"))
    WebDriverWait(driver, 30).until(
        lambda d: find("photo").get_attribute("data-loaded"))
    assert find("status").text == "crop.png: 96x96 px. Paint the hole."
    assert find("brush-value").text == "6 px"     # min(w, h) / 16
    find("brush").send_keys(*[Keys.ARROW_RIGHT] * 4)
    assert find("brush-value").text == "10 px"
    canvas = find("mask")
    # 96 px photo shown at 384 px: 4 screen px per photo px.
    assert canvas.size == {"width": 384, "height": 384}
    # Offsets are from the canvas centre (photo px 48, 48).
    ActionChains(driver).move_to_element_with_offset(canvas, -100, -80) \
        .click_and_hold().move_by_offset(80, 0).move_by_offset(80, 0) \
        .release().perform()                      # rows ~23..33, x 23..63
    ActionChains(driver).move_to_element_with_offset(canvas, -100, 80) \
        .click_and_hold().move_by_offset(160, 0).release().perform()
    find("undo").click()                          # the second stroke goes
    find("fill").click()
    WebDriverWait(driver, 120).until(
        lambda d: d.execute_script("return document.body.dataset.fills")
        or find("error").is_displayed())
    assert not find("error").is_displayed(), find("error").text
    assert find("status").text.startswith("filled ")

    def download(id_):
      link = find(id_)
      data = driver.execute_async_script(FETCH, link.get_attribute("href"))
      assert not data.startswith("failed"), data
      return link.get_attribute("download"), np.asarray(
          Image.open(io.BytesIO(base64.b64decode(data))))

    name, mask = download("download-mask")
    mask = np.asarray(Image.fromarray(mask).convert("L"))
    assert name == "crop_mask.png" and mask.shape == (N, N)
    assert set(np.unique(mask)) == {0, 255}
    holes = mask == 255
    rows, cols = np.nonzero(holes)
    # The first stroke (10 px brush, round caps), not the undone one.
    assert 300 < holes.sum() < 700
    assert 20 <= rows.min() and rows.max() <= 35
    assert 17 <= cols.min() <= 25 and 60 <= cols.max() <= 70
    name, fill = download("download-model")
    assert name == "crop_filled.png"
    np.testing.assert_array_equal(fill[~holes], pixels[~holes])
    assert (fill[holes] != pixels[holes]).any(-1).mean() > 0.5
    np.testing.assert_array_equal(fill, inpainter.inpaint(pixels, holes))
    name, bih = download("download-biharmonic")
    assert name == "crop_biharmonic.png"
    np.testing.assert_array_equal(bih[~holes], pixels[~holes])
    assert (bih[holes] != pixels[holes]).any(-1).mean() > 0.5
    shown = find("result-model")
    assert shown.get_attribute("src").startswith("blob:")
    assert driver.execute_script("return arguments[0].naturalWidth", shown) \
        == N
  finally:
    driver.quit()
