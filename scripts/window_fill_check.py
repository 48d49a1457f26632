"""Windowed against whole-image fill on a photo (docs/how-to/inpaint.md).

    python scripts/window_fill_check.py           # table -> docs/results/*.json
    python scripts/window_fill_check.py --print   # the markdown table from the JSON
    python scripts/window_fill_check.py --timing  # the 4000 x 3000 CLI case (heavy)

Table ("Large photos: windows around the holes"): scikit-image's ``chelsea``
(300 x 451 px, never trained on) with the holes of ``HOLES`` (3 rows) or the
middle one alone (``ONE_HOLE``), filled by ``inpainter.Inpainter`` once with a
budget that holds the whole image and once with one of ``WINDOW_PIXELS`` px
per model call, which does not, so ``plan_windows`` fills windows around the
holes. Per row, on the hole pixels (all channels, values on [0, 1]): max and
mean of |windowed - whole| (and the same in 8-bit levels of the composites),
and the mean |fill - exact| for both, ``exact`` being the direct sparse
solve of the discrete biharmonic system ``smooth_fill`` approximates (5-point
graph Laplacian, zero flux at the border; ``exact_biharmonic``). Models: the
shipped spiking U-Net (``scnn_jax.pretrained``); a ReLU residual U-Net
(``configs/relu_resunet.py`` at width 4, depth 2, layer norm) with random weights (its
initial parameters plus 0.1 N(0, 1), key ``RANDOM_KEY``), so that the net
and not only its prior shapes the fill, as ``tests/test_inpainter.py`` builds
it; and the same net with its contrast normalisation (``resunet.contrast``,
global by design) fixed to the whole photo's known pixels, which leaves the
prior as the one thing a window changes.

The table takes ~5 min on 2 shared cores (niced), most of it compiling.

Timing (``--timing``, off by default: ~1 min of 2 cores, 1 GB): a 4000 x 3000
photo (chelsea upscaled, bicubic) with the three holes at the same relative
places, filled by ``python -m scnn_jax.inpaint`` with the default flags, as a
subprocess, twice on one fresh compilation cache (first call: compiles;
second: warm). Recorded under the JSON's ``"timing"`` key: wall time, peak
resident memory (the child's own, not its parent's), the CLI's notes, CPU model,
niceness and ``os.getloadavg()`` before and after each call. Run it on a quiet
machine; the two modes keep each other's key in the file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(1, str(REPO))

OUT = REPO / "docs" / "results" / "window_fill.json"
# (x, y, width, height) in px: three small holes far from each other and
# from the border, of 20 x 12, 16 x 16 and 8 x 25 px.
HOLES = ((50, 40, 20, 12), (200, 150, 16, 16), (380, 60, 8, 25))
ONE_HOLE = (HOLES[1],)
WINDOW_PIXELS = 120_000   # per model call; the photo has 135,300
RANDOM_KEY = 3
RANDOM_SCALE = 0.1
TIMING_SIZE = (3000, 4000)   # (height, width)


def hole_mask(shape, boxes) -> np.ndarray:
  holes = np.zeros(shape, bool)
  for x, y, w, h in boxes:
    holes[y:y + h, x:x + w] = True
  return holes


def exact_biharmonic(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
  """Direct sparse solve of ``L L u = 0`` on the holes of ``image [H, W, C]``
  (float, known pixels as boundary values; ``L`` the 5-point graph
  Laplacian with zero flux at the border, the operator of ``smooth_fill``),
  float64, known pixels unchanged."""
  import scipy.sparse
  import scipy.sparse.linalg
  h, w = holes.shape
  idx = np.arange(h * w).reshape(h, w)
  pairs = [(idx[:, :-1], idx[:, 1:]), (idx[:-1], idx[1:])]   # grid edges
  a = np.concatenate([p.ravel() for p, _ in pairs])
  b = np.concatenate([q.ravel() for _, q in pairs])
  adj = scipy.sparse.coo_matrix(
      (np.ones(2 * a.size), (np.r_[a, b], np.r_[b, a])),
      shape=(h * w, h * w)).tocsr()
  lap = adj - scipy.sparse.diags(np.asarray(adj.sum(1)).ravel())
  hole_i, known_i = np.flatnonzero(holes), np.flatnonzero(~holes)
  rows = (lap[hole_i] @ lap).tocsc()   # only the holes' equations are needed
  solve = scipy.sparse.linalg.factorized(rows[:, hole_i])
  out = image.reshape(h * w, -1).astype(np.float64).copy()
  for c in range(out.shape[1]):
    out[hole_i, c] = solve(-(rows[:, known_i] @ out[known_i, c]))
  return out.reshape(image.shape)


def random_resunet():
  """``configs/relu_resunet.py`` at width 4, depth 2, layer norm, with every
  parameter moved by ``RANDOM_SCALE`` N(0, 1) (eval mode). Layer norm: at
  inference a batch norm applies its running statistics, which an untrained
  net does not have, so random weights would scale every layer freely."""
  import jax
  from flax import nnx

  from configs import relu_resunet
  from scnn_jax.config import builders, schema
  c = relu_resunet.get_config()
  c.model.width, c.model.depth = 4, 2
  c.model.norm = "layer"
  c = schema.validate(c)
  graphdef, state = nnx.split(builders.model(c))
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(RANDOM_KEY), len(leaves))
  leaves = [x + RANDOM_SCALE * jax.random.normal(k, x.shape, x.dtype)
            for x, k in zip(leaves, keys)]
  model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
  model.eval()
  return model, c


@contextlib.contextmanager
def fixed_contrast(pixels: np.ndarray, holes: np.ndarray):
  """``resunet.contrast`` returns the whole photo's (mean, contrast) of the
  known pixels, whatever window it is given. Yields them."""
  import jax.numpy as jnp

  from scnn_jax.models import resunet
  image = jnp.asarray(pixels[None], jnp.float32) / 255.0
  mu, scale = (float(v.squeeze()) for v in resunet.contrast(
      image, jnp.asarray(holes[None, ..., None], jnp.float32)))
  original = resunet.contrast
  resunet.contrast = lambda image, mask, **kw: (
      jnp.full((image.shape[0], 1, 1, 1), mu, jnp.float32),
      jnp.full((image.shape[0], 1, 1, 1), scale, jnp.float32))
  try:
    yield mu, scale
  finally:
    resunet.contrast = original


def compare(model, config, pixels, holes, exact) -> dict:
  """Whole-image and windowed fill of ``holes``: differences and errors."""
  from scnn_jax.runtime import inpainter
  from scnn_jax.data.images import to_uint8
  whole = inpainter.Inpainter(model, config, memory_mb=1e4)
  memory_mb = WINDOW_PIXELS * whole.bytes_per_pixel / 2**20
  win = inpainter.Inpainter(model, config, memory_mb=memory_mb)
  h, w = holes.shape
  assert not whole.plan(h, w).tiled
  plan = win.plan(h, w, holes)
  assert isinstance(plan, inpainter.WindowPlan), plan
  got_whole = whole.predict(pixels, holes)
  got_win = win.predict(pixels, holes, plan=plan)
  d = np.abs(got_win - got_whole)[holes]
  levels = np.abs(to_uint8(got_win).astype(int)
                  - to_uint8(got_whole).astype(int))[holes]
  return {
      "memory_mb": round(memory_mb, 3), "max_pixels": win.max_pixels,
      "reach": win.radius, "grid": win.grid,
      "windows": {f"{s[0]}x{s[1]}": len(v) for s, v in plan.windows.items()},
      "calls": plan.calls,
      "diff_max": sig(d.max()), "diff_mean": sig(d.mean()),
      "levels_max": int(levels.max()), "levels_mean": sig(levels.mean()),
      "exact_err_whole": sig(np.abs(got_whole - exact)[holes].mean()),
      "exact_err_windows": sig(np.abs(got_win - exact)[holes].mean()),
  }


def run_table() -> dict:
  import jax
  import skimage.data

  import scnn_jax
  from scnn_jax import pretrained
  pixels = skimage.data.chelsea()
  masks = {3: hole_mask(pixels.shape[:2], HOLES),
           1: hole_mask(pixels.shape[:2], ONE_HOLE)}
  exact = {n: exact_biharmonic(pixels / 255.0, m) for n, m in masks.items()}
  rows = []

  def add(label, model, config, n, **extra):
    r = compare(model, config, pixels, masks[n], exact[n])
    rows.append({"model": label, "holes": n, **extra, **r})
    print(f"{label}, {n} hole(s): {r}", file=sys.stderr, flush=True)

  shipped = pretrained.load()
  for n in (3, 1):
    add("shipped spiking residual U-Net", shipped.model, shipped.config, n)
  model, config = random_resunet()
  for n in (3, 1):
    add("residual U-Net (ReLU, width 4, depth 2, random weights)", model,
        config, n)
  for n in (3, 1):
    with fixed_contrast(pixels, masks[n]) as (mu, scale):
      add("the same, contrast fixed to the photo's", model, config, n,
          contrast=[round(mu, 6), round(scale, 6)])
  return {
      "photo": "skimage.data.chelsea", "shape": list(pixels.shape),
      "holes_xywh": {"3": [list(b) for b in HOLES],
                     "1": [list(b) for b in ONE_HOLE]},
      "window_pixels": WINDOW_PIXELS,
      "exact": "direct sparse solve of L L u = 0 on the holes (5-point graph "
               "Laplacian, zero flux at the border)",
      "values": "on the hole pixels, all channels, on [0, 1]; levels: the "
                "8-bit composites",
      "rows": rows,
      "jax": jax.__version__, "scnn_jax": scnn_jax.__version__,
      "backend": jax.default_backend(), "git": git_commit(),
      "date": datetime.date.today().isoformat(),
  }


# --------------------------------------------------------------------------
# Timing of the command on a 12-megapixel photo
# --------------------------------------------------------------------------


def timing_photo(folder: Path) -> tuple[Path, Path, list]:
  """Chelsea upscaled to ``TIMING_SIZE`` and a mask with ``HOLES`` at the
  same relative places; returns the two PNGs and the holes (x, y, w, h)."""
  import skimage.data
  from PIL import Image
  small = skimage.data.chelsea()
  (sh, sw), (h, w) = small.shape[:2], TIMING_SIZE
  big = Image.fromarray(small).resize((w, h), Image.BICUBIC)
  big.save(folder / "photo.png")
  boxes = [(x * w // sw, y * h // sh, bw, bh) for x, y, bw, bh in HOLES]
  mask = hole_mask((h, w), boxes)
  Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "mask.png")
  return folder / "photo.png", folder / "mask.png", [list(b) for b in boxes]


def timed(cmd: list[str], log: Path) -> dict:
  """Runs ``cmd`` as a child: exit status, wall seconds, the child's peak
  resident memory and CPU time, its stderr lines and the load average before
  and after."""
  import seed_runs
  load_before = os.getloadavg()
  t0 = time.perf_counter()
  with open(log, "wb") as err:
    rc, usage = seed_runs.run_measured(cmd, stdout=subprocess.DEVNULL,
                                       stderr=err)
  wall = time.perf_counter() - t0
  return {"rc": rc, "wall_s": round(wall, 2), **usage,
          "stderr": log.read_text(errors="replace").splitlines(),
          "load_before": [round(v, 2) for v in load_before],
          "load_after": [round(v, 2) for v in os.getloadavg()]}


def run_timing() -> dict:
  import seed_runs
  with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp)
    photo, mask, boxes = timing_photo(folder)
    cmd = [sys.executable, "-m", "scnn_jax.inpaint", "--image", str(photo),
           "--mask", str(mask), "--out", str(folder / "out.png"),
           "--compilation-cache", str(folder / "cache")]
    calls = {}
    for name in ("first", "warm"):
      r = timed(cmd, folder / f"{name}.log")
      # Only the file names: the folders are this machine's.
      r["stderr"] = [s.replace(str(folder) + os.sep, "")
                     .replace(str(REPO) + os.sep, "") for s in r["stderr"]]
      calls[name] = r
      print(f"{name}: {r}", file=sys.stderr, flush=True)
      if r["rc"] != 0:
        raise SystemExit(f"scnn_jax.inpaint failed ({r['rc']}): "
                         + " | ".join(r["stderr"][-3:]))
  return {"photo": f"chelsea upscaled (bicubic) to {TIMING_SIZE[1]}x"
                   f"{TIMING_SIZE[0]} px", "holes_xywh": boxes,
          "command": "python -m scnn_jax.inpaint --image photo.png --mask "
                     "mask.png --out out.png --compilation-cache DIR "
                     "(a fresh DIR: the first call compiles)",
          **calls, **seed_runs.cpu_info(), "nice": os.nice(0),
          "git": git_commit(), "date": datetime.date.today().isoformat()}


# --------------------------------------------------------------------------
# File and table
# --------------------------------------------------------------------------


def git_commit() -> str:
  r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                     capture_output=True, text=True)
  return r.stdout.strip() or "?"


def sig(x, digits: int = 4) -> float:
  return float(f"{float(x):.{digits}g}")


def fmt(x: float) -> str:
  """Two significant digits; tiny values as ``6e-6``, below 1e-6 ``< 1e-6``."""
  if x < 1e-6:
    return "< 1e-6"
  if x < 1e-3:
    mant, exp = f"{x:.0e}".split("e")
    return f"{mant}e{int(exp)}"
  return f"{x:#.2g}"


def table(result: dict) -> str:
  lines = ["| model | holes | windowed vs whole: max | mean | mean error vs "
           "the exact biharmonic fill (whole / windows) |",
           "|---|---|---|---|---|"]
  for r in result["rows"]:
    lines.append(
        f"| {r['model']} | {r['holes']} | {fmt(r['diff_max'])} "
        f"({r['levels_max']} of 255) | {fmt(r['diff_mean'])} | "
        f"{r['exact_err_whole']:.4f} / {r['exact_err_windows']:.4f} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  mode = p.add_mutually_exclusive_group()
  mode.add_argument("--timing", action="store_true",
                    help="time the 4000x3000 CLI case instead (heavy)")
  mode.add_argument("--print", action="store_true", dest="print_only",
                    help="print the table from --out, run nothing")
  p.add_argument("--out", type=Path, default=OUT, help="result file (JSON)")
  args = p.parse_args(argv)
  result = json.loads(args.out.read_text()) if args.out.exists() else {}
  if not args.print_only:
    if args.timing:
      result["timing"] = run_timing()
    else:
      result["table"] = run_table()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
  if "table" in result:
    print(table(result["table"]))
  if "timing" in result:
    t = result["timing"]
    print(f"\ntiming: first {t['first']['wall_s']} s, warm "
          f"{t['warm']['wall_s']} s, peak {t['first']['peak_rss_mb']} / "
          f"{t['warm']['peak_rss_mb']} MB resident; {t['cpu_model']} "
          f"({t['cores']} cores), load {t['first']['load_before'][0]}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
