"""``scnn-inpaint --serve``: a web page on this computer that fills the hole
you paint.

    scnn-inpaint --serve                          # http://127.0.0.1:8765/
    scnn-inpaint --serve --port 9000 --workdir runs/base

Open a photo in the page, paint the hole with the brush, press "Fill": the
page posts the photo file and a PNG mask (white = hole, the size of the photo)
to ``POST /api/inpaint``, which answers with the model's composite and
scikit-image's biharmonic fill side by side
(``scnn_jax.models.baselines``), each a PNG whose known pixels are
byte-identical to the photo's (after the conversion to the model's
grayscale / RGB). The model is loaded once, when
the server starts, by the loader of the file command (``scnn-inpaint``: the
shipped model, or ``--workdir``), and runs through the same
``scnn_jax.runtime.inpainter.Inpainter``.

The server is Flask's (Werkzeug's threaded WSGI server, optional extra
``pip install 'scnn_jax[serve]'``), bound to 127.0.0.1 only: nothing is sent
anywhere else, and the page loads no script, style or font from the network
(``scnn_jax/cli/static/``). Requests whose ``Host`` is not this machine's
loopback name, or whose ``Origin`` is another site, are refused, so a web
page open in the same browser cannot use the server.

Bad uploads (not an image, a mask that is not a PNG or not the photo's size,
over ``--max-upload-mb`` or ``--max-megapixels``, over the model's memory
budget) are answered with one line of JSON, ``{"error": "..."}``, and a 4xx
status.
"""
from __future__ import annotations

import argparse
import base64
import io
import logging
import sys
import threading
import time
from typing import Callable, Sequence
from urllib.parse import urlsplit

import numpy as np
from etils import epath
from PIL import ExifTags, Image, ImageOps

from scnn_jax import __version__, pretrained
from scnn_jax.data.images import (first_line, mask_to_holes, to_model_pixels,
                                  to_uint8)
from scnn_jax.models import baselines
from scnn_jax.runtime.inpainter import (DEFAULT_MEMORY_MB, Inpainter,
                                        TilingError, WindowPlan)

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 64.0
# Pillow's own decompression-bomb threshold is 89 MP; a 48 MP phone photo
# still fits.
DEFAULT_MAX_MEGAPIXELS = 64.0
# Formats Pillow reads and browsers show (TIFF is read, shown by none).
IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF")
INSTALL_HINT = ("the web page needs Flask: pip install 'scnn_jax[serve]' "
                "(or: pip install flask)")
_SWAPS_SIDES = (5, 6, 7, 8)   # EXIF orientations that rotate by 90 degrees


class ServeError(Exception):
  """A mistake in the command line of ``--serve``: reported as one line."""


class UploadError(ValueError):
  """A request that cannot be filled: answered as one line of JSON."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


# --------------------------------------------------------------------------
# One fill: uploaded bytes in, PNG bytes out (no Flask here)
# --------------------------------------------------------------------------


def _open(data: bytes, what: str, formats: Sequence[str]) -> Image.Image:
  """The header of an upload (no pixels decoded yet)."""
  if not data:
    raise UploadError(f"{what}: the file is empty")
  try:
    img = Image.open(io.BytesIO(data))
  except Image.UnidentifiedImageError:
    raise UploadError(f"{what}: not an image Pillow can decode (unknown file "
                      f"format; use {', '.join(formats)})") from None
  except Image.DecompressionBombError as e:
    raise UploadError(f"{what}: {first_line(e)}", 413) from None
  except (OSError, ValueError, SyntaxError) as e:
    raise UploadError(f"{what}: not an image Pillow can decode "
                      f"({first_line(e)})") from None
  if img.format not in formats:
    allowed = " or ".join(formats) if len(formats) < 3 else ", ".join(formats)
    raise UploadError(f"{what}: {img.format} files are not accepted here "
                      f"(use {allowed})")
  return img


def _decode(img: Image.Image, what: str) -> None:
  try:
    img.load()
  except (OSError, ValueError, SyntaxError) as e:
    raise UploadError(f"{what}: cannot decode its pixels "
                      f"({first_line(e)})") from None


def _orientation(img: Image.Image) -> int:
  try:
    return int(img.getexif().get(ExifTags.Base.Orientation, 1) or 1)
  except (ValueError, TypeError, SyntaxError):
    return 1


def png_bytes(pixels: np.ndarray) -> bytes:
  """uint8 ``[H, W, C]`` (C 1 or 3) as a PNG file."""
  arr = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
  buf = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
  return buf.getvalue()


def fill(inpainter: Inpainter, image: bytes, mask: bytes, *,
         max_pixels: int) -> dict:
  """Fills the holes of ``mask`` (a PNG, white = hole) in the photo file
  ``image``; returns the model's and biharmonic's composites as PNG bytes
  (``fill``, ``biharmonic``), the size, the seconds each took and notes on
  conversions. Raises ``UploadError`` for uploads it cannot fill.

  The photo is turned as its EXIF orientation says, as browsers show it (so
  the mask painted over it fits); the composites keep that orientation.
  """
  img = _open(image, "image", IMAGE_FORMATS)
  mimg = _open(mask, "mask", ("PNG",))
  orientation = _orientation(img)
  w, h = img.size
  if orientation in _SWAPS_SIDES:
    w, h = h, w
  if w * h > max_pixels:
    raise UploadError(
        f"image: {w}x{h} px ({w * h / 1e6:.1f} MP) is over the "
        f"{max_pixels / 1e6:g} MP limit of this server (--max-megapixels)",
        413)
  if mimg.size != (w, h):
    raise UploadError(f"mask is {mimg.size[0]}x{mimg.size[1]} px but the "
                      f"image is {w}x{h} px: they must be the same size")
  _decode(mimg, "mask")
  try:
    holes = mask_to_holes(mimg)
  except ValueError as e:
    raise UploadError(f"mask (mode {mimg.mode}): {e}") from None
  if not holes.any():
    raise UploadError("the mask has no hole (no pixel >= 50 % white): paint "
                      "over the part to fill first")
  try:
    # The model's memory budget (whole image, tiles or windows around the
    # holes), before the photo is decoded.
    plan = inpainter.plan(h, w, holes)
  except TilingError as e:
    raise UploadError(f"image: {e}", 413) from None
  _decode(img, "image")
  notes = []
  if orientation != 1:
    img = ImageOps.exif_transpose(img)
    notes.append(f"turned by its EXIF orientation ({orientation}), as the "
                 "browser shows it")
  try:
    pixels, conversions = to_model_pixels(img, inpainter.channels)
  except ValueError as e:
    raise UploadError(f"image (mode {img.mode}): {e}") from None
  notes += conversions
  if isinstance(plan, WindowPlan):
    notes.append(f"over the --memory-mb budget: the model ran on "
                 f"{plan.count} window(s) around the holes")
  elif plan.tiled:
    notes.append(f"over the --memory-mb budget: {len(plan.tiles)} tiles of "
                 f"{plan.tile_w}x{plan.tile_h} px")
  t0 = time.perf_counter()
  try:
    out = inpainter.inpaint(pixels, holes, plan=plan)
  except FloatingPointError as e:
    raise UploadError(str(e), 500) from None
  t1 = time.perf_counter()
  smooth = baselines.biharmonic(pixels.astype(np.float32) / 255.0, holes)
  bih = np.where(holes[..., None], to_uint8(smooth), pixels)
  t2 = time.perf_counter()
  return {"fill": png_bytes(out), "biharmonic": png_bytes(bih),
          "width": w, "height": h, "channels": int(pixels.shape[-1]),
          "hole_fraction": float(holes.mean()),
          "seconds": {"model": round(t1 - t0, 3),
                      "biharmonic": round(t2 - t1, 3)},
          "notes": notes}


# --------------------------------------------------------------------------
# The web app
# --------------------------------------------------------------------------


def _flask():
  try:
    import flask
  except ImportError:
    raise ServeError(INSTALL_HINT) from None
  return flask


def static_file(name: str) -> bytes:
  """A file of the page (``scnn_jax/cli/static``), from the package."""
  return (epath.resource_path("scnn_jax") / "cli" / "static" / name
          ).read_bytes()


def create_app(inpainter: Inpainter, *, model_name: str,
               max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_megapixels: float = DEFAULT_MAX_MEGAPIXELS):
  """The Flask app of the page and its ``/api/inpaint`` endpoint."""
  flask = _flask()
  from werkzeug.exceptions import HTTPException

  app = flask.Flask(__name__, static_folder=None)
  max_bytes = int(max_upload_mb * 2**20)
  max_pixels = int(max_megapixels * 1e6)
  # Requests for another host name (DNS rebinding) are refused by Flask.
  app.config.update(MAX_CONTENT_LENGTH=max_bytes,
                    TRUSTED_HOSTS=[HOST, "localhost"])
  # One fill at a time: each holds the model's activations (--memory-mb).
  lock = threading.Lock()
  types = {".html": "text/html", ".js": "text/javascript"}  # Flask: utf-8

  def error(message: str, status: int):
    return flask.jsonify(error=" ".join(str(message).split())), status

  def page(name: str):
    response = flask.Response(static_file(name),
                              mimetype=types[epath.Path(name).suffix])
    response.headers["Cache-Control"] = "no-cache"
    # The page's own files only: no script, style or image from elsewhere.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self' blob: data:; style-src 'self' 'unsafe-inline'")
    return response

  @app.get("/")
  def index():
    return page("index.html")

  @app.get("/inpaint.js")
  def script():
    return page("inpaint.js")

  @app.get("/api/info")
  def info():
    return flask.jsonify(
        version=__version__, model=model_name, channels=inpainter.channels,
        max_upload_bytes=max_bytes, max_pixels=max_pixels)

  @app.post("/api/inpaint")
  def api_inpaint():
    request = flask.request
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
      return error(f"requests from {origin} are refused: use the page this "
                   "server shows", 403)
    files = request.files
    for key in ("image", "mask"):
      if key not in files:
        return error(f"no {key!r} file in the request: POST multipart/"
                     "form-data with the files 'image' (the photo) and "
                     "'mask' (a PNG of its size, white = hole)", 400)
    image, mask = files["image"].read(), files["mask"].read()
    with lock:
      t0 = time.perf_counter()
      result = fill(inpainter, image, mask, max_pixels=max_pixels)
    for key in ("fill", "biharmonic"):
      result[key] = base64.b64encode(result[key]).decode("ascii")
    print(f"filled {result['width']}x{result['height']} px "
          f"({result['hole_fraction']:.1%} hole) in "
          f"{time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
    return flask.jsonify(result)

  @app.errorhandler(UploadError)
  def upload_error(e: UploadError):
    print(f"refused: {e}", file=sys.stderr, flush=True)
    return error(str(e), e.status)

  @app.errorhandler(413)
  def too_large(e):
    return error(f"the upload is over the {max_upload_mb:g} MB limit of this "
                 "server (--max-upload-mb)", 413)

  @app.errorhandler(HTTPException)
  def http_error(e: HTTPException):
    return error(f"{e.code} {e.name}: {e.description}", e.code or 500)

  @app.errorhandler(Exception)
  def internal_error(e: Exception):
    app.logger.exception("fill failed")
    return error(f"internal error ({type(e).__name__}: {first_line(e)})", 500)

  return app


def _loading(environ, start_response):
  """The WSGI app while the model loads (the port is already bound)."""
  body = b'{"error": "the model is still loading: try again in a moment"}\n'
  start_response("503 Service Unavailable",
                 [("Content-Type", "application/json"),
                  ("Content-Length", str(len(body))), ("Retry-After", "5")])
  return [body]


def make_server(app, port: int):
  """A threaded Werkzeug server on 127.0.0.1:``port`` (0: a free port; its
  number is ``.port``)."""
  import socket
  from werkzeug.serving import make_server as werkzeug_server
  # Bound here, not by Werkzeug, which prints several lines and exits when
  # the port is taken.
  sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  try:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(64)
  except OSError as e:
    sock.close()
    raise ServeError(f"cannot listen on {HOST}:{port} "
                     f"({e.strerror or first_line(e)}): is another server "
                     "running there? Pick another --port") from None
  try:
    return werkzeug_server(HOST, sock.getsockname()[1], app, threaded=True,
                           fd=sock.fileno())
  finally:
    sock.close()   # Werkzeug holds its own duplicate


# --------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="scnn-inpaint --serve",
      description="A web page on this computer (127.0.0.1 only) that fills "
                  "the hole you paint in a photo, beside biharmonic "
                  "inpainting's fill. Needs Flask: pip install "
                  "'scnn_jax[serve]'.")
  p.add_argument("--port", type=int, default=DEFAULT_PORT,
                 help="port on 127.0.0.1 (default %(default)s; 0: any free "
                      "one)")
  p.add_argument("--workdir",
                 help="training workdir (config.json + checkpoints/); "
                      "default: the pretrained model shipped in the package")
  p.add_argument("--pretrained", choices=pretrained.SHIPPED,
                 default=pretrained.DEFAULT,
                 help="which shipped model, without --workdir (default "
                      "%(default)s; relu_resunet is its non-spiking twin)")
  p.add_argument("--point", type=int,
                 help="ablation checkpoints: which model (index k)")
  p.add_argument("--memory-mb", "--memory_mb", type=float,
                 default=DEFAULT_MEMORY_MB,
                 help="activation memory budget per model call; larger "
                      "photos are tiled or refused (default %(default)s)")
  p.add_argument("--overlap", type=int,
                 help="tile overlap radius in px (default: the model's "
                      "receptive-field radius)")
  p.add_argument("--max-upload-mb", "--max_upload_mb", type=float,
                 default=DEFAULT_MAX_UPLOAD_MB,
                 help="largest request (photo + mask) accepted, MB "
                      "(default %(default)g)")
  p.add_argument("--max-megapixels", "--max_megapixels", type=float,
                 default=DEFAULT_MAX_MEGAPIXELS,
                 help="largest photo accepted, megapixels (default "
                      "%(default)g)")
  p.add_argument("--compilation-cache", "--compilation_cache", default="auto",
                 metavar="auto|off|DIR",
                 help="JAX persistent compilation cache, as for files "
                      "(default auto: ~/.cache/scnn_jax/jax_compilation_cache "
                      "or $JAX_COMPILATION_CACHE_DIR)")
  return p


def run(argv: Sequence[str] | None, load: Callable) -> int:
  """``scnn-inpaint --serve``; ``load(workdir, point, name)`` -> ``(loaded,
  model)`` is the file command's loader (its errors are its own). Serves
  until Ctrl+C."""
  args = build_parser().parse_args(argv)
  try:
    if not 0 <= args.port <= 65535:
      raise ServeError(f"--port {args.port}: must be in 0..65535")
    for flag, value in (("--memory-mb", args.memory_mb),
                        ("--max-upload-mb", args.max_upload_mb),
                        ("--max-megapixels", args.max_megapixels)):
      if not value > 0:
        raise ServeError(f"{flag} {value:g}: must be > 0")
    if args.overlap is not None and args.overlap < 0:
      raise ServeError(f"--overlap {args.overlap}: must be >= 0")
    _flask()
    server = make_server(_loading, args.port)
  except ServeError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  # Werkzeug logs every request; the app prints one line per fill instead.
  logging.getLogger("werkzeug").setLevel(logging.WARNING)
  try:
    from scnn_jax.cli import common
    common.setup_compilation_cache(args.compilation_cache)
    loaded, model = load(args.workdir, args.point, args.pretrained)
    inpainter = Inpainter(model, loaded.config, memory_mb=args.memory_mb,
                          overlap=args.overlap)
    server.app = create_app(inpainter, model_name=loaded.config.model.name,
                            max_upload_mb=args.max_upload_mb,
                            max_megapixels=args.max_megapixels)
    print(f"scnn_jax inpainting page: http://{HOST}:{server.port}/ "
          "(Ctrl+C stops it)", flush=True)
    server.serve_forever()
  except KeyboardInterrupt:
    print("stopped", file=sys.stderr)
  finally:
    server.server_close()
  return 0
