"""One line per training workdir: its settings and the trainer's validation.

    python scripts/run_summaries.py --out docs/results/inpaint_resunet_runs.json \\
        runs/relu_bn_s0 runs/spk_ft_s0 ...

For each workdir (``config.json`` + ``results.json``, as ``train.py`` leaves
them): model name, norm, width, T, seed, steps, batch, learning rate, the run
it started from (``train.init_from``, by folder name), training seconds, and
the validation metrics of ``results.json`` (``eval``: hole PSNR, SSIM) beside
the trainer's own biharmonic baseline on the same crops. Small enough to
commit beside a study; the workdirs themselves are not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def summary(workdir: Path) -> dict:
  for name in ("config.json", "results.json"):
    if not (workdir / name).is_file():
      raise SystemExit(f"{workdir}: no {name} (not a finished training "
                       "workdir)")
  config = json.loads((workdir / "config.json").read_text())
  results = json.loads((workdir / "results.json").read_text())
  m, t = config["model"], config["train"]
  init_from = t.get("init_from") or None
  return {
      "run": workdir.name, "model": m["name"], "norm": m.get("norm", "layer"),   # older configs: layer norm only
      "width": m.get("width"), "T": m.get("T"), "seed": config.get("seed"),
      "steps": results.get("steps", t["steps"]), "batch": t["batch_size"],
      "learning_rate": t["learning_rate"],
      "init_from": Path(init_from).name if init_from else None,
      "train_time_s": results.get("train_time_s"),
      "hole_psnr": round(results["eval"]["hole_psnr"], 3),
      "ssim": round(results["eval"]["ssim"], 5),
      "biharmonic_hole_psnr": round(
          results["baselines"]["biharmonic"]["hole_psnr"], 3),
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", required=True, help="the JSON file to write")
  p.add_argument("workdirs", nargs="+", type=Path)
  args = p.parse_args(argv)
  rows = [summary(w) for w in args.workdirs]
  Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
  for r in rows:
    print(f"{r['run']:>12} {r['model']:>16} {r['norm'] or '-':>6} "
          f"steps {r['steps']:>5} lr {r['learning_rate']:.0e} "
          f"hole PSNR {r['hole_psnr']:.3f} (biharmonic "
          f"{r['biharmonic_hole_psnr']:.3f})")


if __name__ == "__main__":
  main()
