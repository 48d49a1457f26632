"""Wall time of the inpainting command as a user runs it, call after call.

    python benchmarks/inpaint_cli.py [--calls 3] [--size 512] [--out FILE]

Runs the installed command (``scnn-inpaint``, else ``python -m
scnn_jax.inpaint``) from a scratch directory outside the clone, with the
shipped model and default flags, on a ``size x size`` photo (scikit-image's
``astronaut``, 512 x 512; resized for other sizes) with two holes: a first
call with an empty compilation cache, then ``--calls`` more (the cache warm,
as a user's second photo finds it). Then a mask of the wrong size, which must
be refused before any JAX work. Each call is a fresh process; wall time is
measured around it, and the 1-minute load is recorded before and after, so a
figure taken on a busy machine shows as such. Writes a JSON record (``--out``,
default ``benchmarks/results/inpaint_cli.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def load_average() -> float:
  return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_model() -> str:
  for line in Path("/proc/cpuinfo").read_text().splitlines():
    if line.startswith("model name"):
      return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown"


def command() -> list[str]:
  exe = shutil.which("scnn-inpaint")
  return [exe] if exe else [sys.executable, "-m", "scnn_jax.inpaint"]


def write_inputs(folder: Path, size: int) -> None:
  import skimage.data
  photo = Image.fromarray(skimage.data.astronaut())
  if photo.size != (size, size):
    photo = photo.resize((size, size), Image.Resampling.LANCZOS)
  photo.save(folder / "photo.png")
  mask = np.zeros((size, size), np.uint8)
  s = size // 512 or 1
  mask[60 * s:110 * s, 300 * s:380 * s] = 255          # a box
  mask[300 * s:312 * s, 100 * s:260 * s] = 255         # a stroke-like bar
  Image.fromarray(mask).save(folder / "mask.png")
  Image.fromarray(mask[: size // 2]).save(folder / "mask_wrong.png")


def timed(argv: list[str], cwd: Path, env: dict) -> dict:
  before = load_average()
  start = time.perf_counter()
  p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - start
  return {"wall_s": round(wall, 2), "rc": p.returncode,
          "load_before": before, "load_after": load_average(),
          # The package's folder is this machine's: shown from the clone.
          "stderr_tail": [line.replace(str(REPO) + os.sep, "")
                          for line in p.stderr.strip().splitlines()[-2:]]}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--calls", type=int, default=3)
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                      "inpaint_cli.json"))
  args = p.parse_args(argv)
  scratch = Path(tempfile.mkdtemp(prefix="inpaint_cli_"))
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(scratch / "cache"))
  write_inputs(scratch, args.size)
  base = command() + ["--image", "photo.png", "--mask", "mask.png"]
  calls = []
  for i in range(args.calls + 1):
    r = timed(base + ["--out", f"out{i}.png"], scratch, env)
    r["call"] = "first (cache empty)" if i == 0 else f"again ({i})"
    calls.append(r)
    print(f"{r['call']:<20} {r['wall_s']:6.2f} s  rc {r['rc']}  load "
          f"{r['load_before']:.2f} -> {r['load_after']:.2f}", flush=True)
  wrong = timed(command() + ["--image", "photo.png", "--mask",
                             "mask_wrong.png", "--out", "never.png"],
                scratch, env)
  wrong["call"] = "wrong-size mask"
  print(f"{wrong['call']:<20} {wrong['wall_s']:6.2f} s  rc {wrong['rc']}  "
        f"{wrong['stderr_tail'][-1] if wrong['stderr_tail'] else ''}")
  assert not (scratch / "never.png").exists()
  again = [c["wall_s"] for c in calls[1:]]
  record = {
      "command": " ".join(Path(a).name if i == 0 else a
                          for i, a in enumerate(base)) + " --out OUT",
      "size": args.size, "cpu": cpu_model(), "cores": os.cpu_count(),
      "date": time.strftime("%Y-%m-%d"), "calls": calls, "wrong_mask": wrong,
      "median_after_first_s": float(np.median(again)) if again else None}
  Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
  print(f"median after the first call: {record['median_after_first_s']} s "
        f"({cpu_model()}, {os.cpu_count()} cores); wrote {args.out}")
  shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  main()
