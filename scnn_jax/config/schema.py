"""The config schema: every field, its type, allowed values, default and
meaning. The one place of the defaults: configs set what differs from them
(``configs/base.py`` starts from ``defaults``), and the config reference
(docs/reference/config.md) is generated from this table.

One table (``FIELDS``) names every field a scnn_jax config may hold, section
by section, with its type, its allowed values or range (numbers must be
finite), its default, the tasks (and model names) that read it and what it
means. One call checks a whole config before anything is built or compiled:

    from scnn_jax.config import schema
    config = schema.validate(config)      # a completed copy; ConfigError

``validate`` (one pass per run; the trainer and the commands call it once)
* rejects a field the table does not know, naming its dotted path:
  ``config.model.nonexistent = 1: no such field (...)``;
* checks every field that is present, whatever the task or neuron kind reads
  (``neuron='alif'`` with ``reset='bogus'`` fails like ``neuron='lif'``);
* fills the fields a run reads but the config leaves out with their
  defaults, so the code reads ``config.data.prefetch``, never
  ``config.data.get("prefetch", ...)``; a workdir written before a field
  existed (its ``config.json``) loads with that field's default
  (``complete``);
* applies the rules that tie fields together (``RULES``), a model's own
  among them (``models.registry.CHECKS``).

A run's ``config.json`` written before a field existed is completed with
what the field's absence meant then, where that differs from today's
default (``PREDATED``: ``model.noise_resample`` was ``"step"``).

Errors are one line, ``config.<field> = <value>: <what is allowed>``
(``scnn_jax.ops.checks.ConfigError``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
from typing import Any, Callable

import ml_collections
from etils import epath
from ml_collections import config_dict

from scnn_jax import data, nn
from scnn_jax.data import augment, folder, masks, sources
from scnn_jax.metrics import losses
from scnn_jax.models import classifier, registry, resunet, scnn, vae
from scnn_jax.nn import decoders, encoders
from scnn_jax.ops import conv, neurons, smooth_fill, surrogate
from scnn_jax.ops.checks import (ConfigError, check_choice, check_int,
                                 check_number)

REQUIRED = object()      # no default: the config must set the field
ALL = registry.TASKS        # the tasks the registry has models for
SPIKING = ("inpaint", "classify", "generate")
IMAGE_NETS = ("inpaint", "classify")

# Fields whose change only alters values in the model state: a vmap ablation
# (scnn_jax.runtime.ablation) may sweep them in one compiled program.
SWEEPABLE = (
    "init_seed", "model.tau", "model.beta", "model.threshold",
    "model.surrogate_param", "model.noise_std", "model.alif_tau",
    "model.adaptation_tau", "model.adaptation_increment",
)
ABLATION_MODES = ("grid", "zip")
NAN_POLICIES = ("stop", "skip")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")
NEURON_SOLVERS = ("scan", "staircase")
DATA_SOURCES = data.SOURCES
TRAIN_CROPS = ("random", "center")
NATURAL_MAX_SIZE = 255   # shortest side of the embedded natural photos
OPENPHOTOS_MAX_SIZE = 256  # shortest side of the openphotos photos (rocket)
MNIST5K_NUM_VAL = 1000
MIN_IMAGE_SIZE = 4


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field.

  kind: ``int``, ``number``, ``bool``, ``str``, ``choice`` (one of
  ``allowed``), ``ints`` / ``numbers`` (a tuple), ``steps`` (``()`` or
  ``(start, stop)``), ``grid`` (a nested dict of value lists).
  ``tasks`` read the field (it is filled with ``default`` for them, or
  required when there is none); ``models`` narrows that to these model
  names: the registry's ``READS`` for a field of one model or a few
  (``models.registry.readers``), never written in the table. Any other
  config may still hold the field: it is checked all the same, never
  filled. ``doc``: what it means, one line
  (docs/reference/config.md).
  """
  kind: str
  default: Any = REQUIRED
  allowed: tuple = ()
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  none_ok: bool = False
  tasks: tuple = ALL
  models: tuple = ()
  doc: str = ""

  def check(self, path: str, value):
    if value is None and self.none_ok:
      return
    bounds = dict(low=self.low, high=self.high)
    if self.kind == "int":
      check_int(path, value, self.low, self.high)
    elif self.kind == "number":
      check_number(path, value, **bounds, low_open=self.low_open,
                   high_open=self.high_open)
    elif self.kind == "bool":
      if not isinstance(value, bool):
        raise ConfigError(path, value, "must be True or False")
    elif self.kind == "str":
      if not isinstance(value, str) or not value:
        raise ConfigError(path, value, "must be a non-empty string" +
                          (" or None" if self.none_ok else ""))
    elif self.kind == "choice":
      check_choice(path, value, self.allowed)
    elif self.kind in ("ints", "numbers"):
      if isinstance(value, (str, bytes)) or not isinstance(value,
                                                           (tuple, list)):
        raise ConfigError(path, value, f"must be a tuple of {self.kind[:-1]}s")
      for i, v in enumerate(value):
        Field(self.kind[:-1], low=self.low, low_open=self.low_open).check(
            f"{path}[{i}]", v)
    elif self.kind == "steps":
      v = tuple(value) if isinstance(value, (tuple, list)) else value
      if v == ():
        return
      if (not isinstance(v, tuple) or len(v) != 2 or
          any(isinstance(x, bool) or not isinstance(x, int) for x in v) or
          not 0 <= v[0] < v[1]):
        raise ConfigError(path, value, "must be () (off) or (start, stop): "
                          "integers with 0 <= start < stop")
    elif self.kind == "grid":
      if not hasattr(value, "items"):
        raise ConfigError(path, value, "must be a dict of value lists")
    else:
      raise AssertionError(self.kind)

  def applies(self, task: str, model: str | None) -> bool:
    return task in self.tasks and (not self.models or model in self.models)


def _int(default=REQUIRED, low=None, high=None, **kw):
  return Field("int", default, low=low, high=high, **kw)


def _num(default=REQUIRED, low=None, high=None, **kw):
  return Field("number", default, low=low, high=high, **kw)


def _bool(default=REQUIRED, **kw):
  return Field("bool", default, **kw)


def _str(default=REQUIRED, **kw):
  return Field("str", default, **kw)


def _choice(allowed, default=REQUIRED, **kw):
  return Field("choice", default, allowed=tuple(allowed), **kw)


_MODEL_NAMES = tuple(dict.fromkeys(n for t in registry.MODELS.values()
                                   for n in t))

FIELDS: dict[str, dict[str, Field]] = {
    "": {
        "task": _choice(ALL,
                        doc=("the job: inpaint | classify | generate | "
                             "fad_autoencoder")),
        "seed": _int(0, 0,
                     doc=("data order, masks, noise, and the init unless "
                          "init_seed is set")),
        "init_seed": _int(None, 0, none_ok=True,
                          doc="the init alone (None: seed)"),
    },
    "model": {
        "name": _choice(_MODEL_NAMES,
                        doc="the model, one of the task's (models.registry)"),
        # paper A's SC-NN / CNN and the other inpainting nets
        "width": _int(REQUIRED, 1, tasks=IMAGE_NETS,
                      doc="channels of every hidden conv"),
        "num_layers": _int(REQUIRED, 2, tasks=("inpaint",),
                           doc=("convs in all, the first one spiking in the "
                                "SC-NN (paper A: 6)")),
        "mask_channel": _bool(True, tasks=("inpaint",),
                              doc=("the mask as an extra input channel (paper "
                                   "A feeds the masked image only: False)")),
        "output_activation": _choice(scnn.OUTPUT_ACTIVATIONS, "sigmoid",
                                     tasks=("inpaint",),
                                     doc=("sigmoid | clip: [0, 1] images "
                                          "(paper A: ReLU)")),
        "encoder": _choice(encoders.ENCODERS, "direct", tasks=("inpaint",),
                           doc=("direct (the image at every step) | rate "
                                "(Bernoulli spikes)")),
        "decoder": _choice(decoders.DECODERS, "rate", tasks=("inpaint",),
                           doc=("spikes -> image: rate | fixed_decay | taid | "
                                "membrane")),
        "noise_std": _num(0.1, 0, tasks=("inpaint",),
                          doc=("training noise on the spiking conv's current "
                               "(paper A: 0.1); 0 disables")),
        "noise_mode": _choice(nn.NOISE_MODES, "multiplicative",
                              tasks=("inpaint",),
                              doc=("I * (1 + std N) (paper A) | additive: I + "
                                   "std N")),
        "noise_resample": _choice(nn.NOISE_RESAMPLE, "sequence",
                                  tasks=("inpaint",),
                                  doc=("sequence: one draw held over T (paper "
                                       "A: noise tau 10 ms > T dt) | step: a "
                                       "fresh draw each step")),
        "order": _choice(nn.ORDERS, "fold", tasks=IMAGE_NETS,
                         doc=("fold | step (execution order of the spiking "
                              "layer)")),
        "remat": _bool(False, tasks=("inpaint",),
                       doc="recompute the neuron scan in the backward pass"),
        "dtype": _choice(registry.DTYPES, "float32", tasks=IMAGE_NETS,
                         doc=("float32 | bfloat16 (convs; membranes stay "
                              "float32)")),
        "conv_impl": _choice(conv.IMPL_CHOICES, "auto",
                             doc="auto (= xla) | xla | matmul | taps"),
        # read by some inpainting models only: models.registry.READS says which
        "neuron_solver": _choice(NEURON_SOLVERS, "scan", tasks=("inpaint",),
                                 doc=("scan | staircase (closed-form LIF, "
                                      "constant input)")),
        "spiking_layers": _int(None, 1, none_ok=True, tasks=("inpaint",),
                               doc=("hidden layers that spike, from the input "
                                    "side (None: all)")),
        "depth": _int(3, 1, 5, tasks=("inpaint",),
                      doc="stride-2 blocks: the net works down to H / 2^depth"),
        "blocks": _int(1, 0, 8, tasks=("inpaint",),
                       doc="residual blocks per scale"),
        "norm": _choice(resunet.NORMS, "layer", tasks=("inpaint",),
                        doc=("before each activation: layer | batch (tdBN "
                             "while training, an affine map at inference)")),
        "bottleneck_layers": _int(1, 0, 8, tasks=("inpaint",),
                                  doc=("extra spiking layers at the coarsest "
                                       "scale")),
        "prior_order": _choice(smooth_fill.ORDERS, 2, tasks=("inpaint",),
                               doc="2: biharmonic, 1: harmonic"),
        "prior_iters": _int(24, 0, tasks=("inpaint",),
                            doc="CG steps per pyramid level"),
        # neurons (every spiking task; checked whatever model.neuron is)
        "T": _int(REQUIRED, 1, tasks=SPIKING,
                  doc="time steps of the spiking layers"),
        "neuron": _choice(nn.NEURONS, "lif", tasks=SPIKING, doc="lif | alif"),
        "tau": _num(40.0, 0, low_open=True, none_ok=True, tasks=SPIKING,
                    doc=("LIF membrane time constant in steps (paper A: 40 ms "
                         "at dt 1 ms)")),
        "beta": _num(None, 0, 1, low_open=True, none_ok=True, tasks=SPIKING,
                     doc="set to override tau: decay per step"),
        "threshold": _num(REQUIRED, 0, low_open=True, tasks=SPIKING,
                          doc="firing threshold of the membrane"),
        "reset": _choice(neurons.RESETS, "zero", tasks=SPIKING,
                         doc="zero (paper A's V_reset 0) | subtract"),
        "detach_reset": _bool(False, tasks=SPIKING,
                              doc="no gradient through the reset"),
        "refractory_steps": _int(0, 0, tasks=SPIKING,
                                 doc=("LIF: dead steps after a spike (paper "
                                      "A: 1 ms = 1)")),
        "surrogate": _choice(surrogate.KINDS, "fast_sigmoid", tasks=SPIKING,
                             doc=("fast_sigmoid | atan | sigmoid | triangle | "
                                  "rectangular")),
        "surrogate_param": _num(None, 0, low_open=True, none_ok=True,
                                tasks=SPIKING,
                                doc=("the surrogate's slope or width (None: "
                                     "the kind's default)")),
        "alif_tau": _num(2.0, 1, low_open=True, tasks=SPIKING,
                         doc="ALIF initial tau (paper B)"),
        "adaptation_tau": _num(20.0, 0, low_open=True, tasks=SPIKING,
                               doc=("ALIF threshold adaptation (off while "
                                    "increment = 0)")),
        "adaptation_increment": _num(0.0, 0, tasks=SPIKING,
                                     doc=("ALIF: threshold rise per spike; 0 "
                                          "= no adaptation")),
        "alif_learn_tau": _bool(True, tasks=("classify",),
                                doc="ALIF: train tau (PLIF when alone)"),
        "alif_learn_threshold": _bool(True, tasks=("classify",),
                                      doc="ALIF: train the threshold"),
        # paper B's classifiers
        "fc_width": _int(2048, 1, tasks=("classify",),
                         doc="hidden FC neurons (paper B's code: 128 * 4 * 4)"),
        "num_classes": _int(None, 2, none_ok=True, tasks=("classify",),
                            doc="classes (None: the dataset's)"),
        "vote_group": _int(10, 1, tasks=("classify",),
                           doc="output neurons per class (voting layer)"),
        "pool": _choice(classifier.POOLS, "max", tasks=("classify",),
                        doc="max | avg"),
        "dropout": _num(0.5, 0, 1, high_open=True, tasks=("classify",),
                        doc="dropout rate before each FC layer"),
        "loss": _choice(losses.CLASS_LOSSES, "mse_count", tasks=("classify",),
                        doc="mse_count (paper B) | cross_entropy"),
        "augment": _choice(augment.AUGMENTS, "none", tasks=("classify",),
                           doc=("on-device training augmentation "
                                "(data/augment.py)")),
        "augment_pad": _int(4, 0, tasks=("classify",),
                            doc=("augmentation: padding of the random crop in "
                                 "px")),
        "input_mean": Field("numbers", None, none_ok=True, tasks=("classify",),
                            doc=("per-channel input normalisation, applied "
                                 "inside the model")),
        "input_std": Field("numbers", None, low=0, low_open=True, none_ok=True,
                           tasks=("classify",),
                           doc=("per-channel input normalisation, applied "
                                "inside the model")),
        # paper B's spiking VAE and the FAD autoencoder
        "latent": _choice(vae.LATENTS, "fsvae", tasks=("generate",),
                          doc="fsvae (autoregressive Bernoulli) | esvae"),
        "latent_dim": _int(REQUIRED, 1, tasks=("generate", "fad_autoencoder"),
                           doc=("latent channels (FSVAE: 64 MNIST, Fashion; "
                                "128 CIFAR, CelebA)")),
        "hidden": Field("ints", REQUIRED, low=1,
                        tasks=("generate", "fad_autoencoder"),
                        doc=("conv widths of the stride-2 stack "
                             "(fad_autoencoder: () = FSVAE's for "
                             "data.image_size)")),
        "k": _int(20, 1, tasks=("generate",),
                  doc="FSVAE: neurons per latent channel"),
        "image_decoder": _choice(vae.IMAGE_DECODERS, "taid",
                                 tasks=("generate",),
                                 doc="taid (paper B) | fixed_decay (FSVAE)"),
        "decay": _num(0.8, 0, 1, low_open=True, tasks=("generate",),
                      doc="fixed_decay: sum_t decay^(T-1-t) X_t"),
        "scheduled_sampling": _bool(True, tasks=("generate",),
                                    doc=("FSVAE's scheduled sampling of the "
                                         "prior")),
        "esvae_lambda": _num(1e-3, 0, tasks=("generate",),
                             doc="esvae: MMD weight (ESVAE's MNIST config)"),
    },
    "data": {
        "source": _choice(DATA_SOURCES,
                          doc="embedded | tfds | folder | dead_leaves"),
        "name": _str(
                     doc=("embedded: natural | mnist5k | photos | openphotos; "
                          "tfds: dataset name; dead_leaves: any")),
        "image_size": _int(REQUIRED, MIN_IMAGE_SIZE,
                           doc="crop / resize side in px"),
        "channels": _choice((1, 3), doc="1 (grayscale) | 3 (RGB)"),
        "train_split": _str("train", doc="tfds: training split"),
        "eval_split": _str("test", doc="tfds: eval split"),
        "data_dir": _str(None, none_ok=True,
                         doc="tfds: data_dir (gs:// works)"),
        "tfds_download": _bool(False,
                               doc="tfds: download + prepare when missing"),
        "folder": _str(None, none_ok=True,
                       doc="folder: training images (PNG / JPEG)"),
        "eval_folder": _str(None, none_ok=True,
                            doc="folder: eval images (None: 10 % held out)"),
        "bad_images": _choice(folder.BAD_IMAGE_POLICIES, "skip",
                              doc=("folder: skip (reported once) | error on "
                                   "unreadable files")),
        "train_crop": _choice(TRAIN_CROPS, "random",
                              doc=("random | center (images larger than "
                                   "image_size)")),
        "num_eval": _int(REQUIRED, 1, doc="size of the fixed eval set"),
        "prefetch": _int(4, 0, doc="batches built ahead of the step"),
        "num_threads": _int(2, 0, doc="reader threads (num_workers = 0)"),
        "num_workers": _int(0, 0, doc=">0: reader processes (GPU/TPU hosts)"),
        # Procedural images (scnn_jax.data.dead_leaves): the share of another
        # source's training examples they replace, and their generator's knobs.
        "dead_leaves_mix": _num(0.0, 0, 1,
                                doc=("share of training examples replaced by "
                                     "dead-leaves images")),
        "dead_leaves_texture": _bool(True,
                                     doc=("dead leaves: gradients / sinusoids "
                                          "inside shapes")),
        "dead_leaves_blur": _bool(True,
                                  doc=("dead leaves: half the images "
                                       "defocused (Gaussian)")),
    },
    # Inpainting holes; eval_seed also fixes which items form the eval set of
    # every task (a subset of a larger split), so the section is filled for all.
    "masks": {
        "kind": _choice(masks.MASK_KINDS, "box",
                        doc=("box | center | stroke | pixels | mixed (box or "
                             "stroke)")),
        "ratio_min": _num(0.05, 0.0, 1.0, low_open=True, high_open=True,
                          doc="hole fraction of an image, drawn in [min, max]"),
        "ratio_max": _num(0.2, 0.0, 1.0, low_open=True, high_open=True,
                          doc="hole fraction of an image, drawn in [min, max]"),
        "max_boxes": _int(2, 1, doc="box: 1 to max_boxes rectangles"),
        "stroke_fraction": _num(0.5, 0, 1,
                                doc=("mixed: probability that a mask is "
                                     "strokes")),
        "eval_seed": _int(1234, 0,
                          doc=("the fixed eval masks (and eval subset, every "
                               "task)")),
    },
    "train": {
        "steps": _int(REQUIRED, 1,
                      doc="train steps in all (a resumed run continues to it)"),
        "batch_size": _int(REQUIRED, 1,
                           doc="global; per device = batch_size / devices"),
        "eval_batch_size": _int(REQUIRED, 1,
                                doc="global batch of the evaluation"),
        "optimizer": _choice(OPTIMIZERS, "adam",
                             doc="adam (paper A) | adamw | sgd"),
        "learning_rate": _num(1e-3, 0, low_open=True,
                              doc="peak learning rate (paper A: 1e-3)"),
        "schedule": _choice(SCHEDULES, "constant", doc="constant | cosine"),
        "warmup_steps": _int(0, 0, doc="linear warm-up before the schedule"),
        "grad_clip": _num(0.0, 0, doc="global-norm clipping; 0 = off"),
        "weight_decay": _num(0.0, 0, doc="adamw only"),
        "loss": _choice(losses.INPAINT_LOSSES, "mse", tasks=("inpaint",),
                        doc=("inpaint: mse (pooled) | image_mse | log_mse "
                             "(per image)")),
        "ema_decay": _num(0.0, 0, 1, high_open=True,
                          doc=("in [0, 1): > 0 evaluates, samples, exports "
                               "and loads an exponential moving average of "
                               "the weights (scnn_jax.runtime.state) over "
                               "about 1 / (1 - decay) steps; 0 = off")),
        "init_from": _str(None, none_ok=True,
                          doc="a workdir: its weights start a fresh run"),
        "log_every": _int(100, 1,
                          doc="steps between metrics.jsonl / console lines"),
        "eval_every": _int(500, 1,
                           doc="steps between evaluations (and at the end)"),
        "checkpoint_every": _int(500, 1,
                                 doc=("steps between checkpoints (and at the "
                                      "end)")),
        "keep_checkpoints": _int(3, 1, doc="newest checkpoints kept"),
        "num_sample_images": _int(8, 0,
                                  doc="eval images in each samples/ grid"),
        "nan_policy": _choice(NAN_POLICIES, "stop",
                              doc=("stop | skip (the step's update) on a "
                                   "non-finite loss")),
        "profile_steps": Field("steps", (),
                               doc=("(start, stop): a jax.profiler trace of "
                                    "steps start..stop-1 into "
                                    "<workdir>/tensorboard "
                                    "(docs/how-to/profiling.md); () = off")),
        "watchdog_s": _num(0.0,
                           doc=("no train step finished for this long: log "
                                "every thread's stack and exit 124 "
                                "(docs/how-to/reliability.md); 0 = auto (10x "
                                "the median step time, at least 300 s), -1 = "
                                "off")),
        "sigterm_grace_s": _num(60.0, 0, low_open=True,
                                doc=("after SIGTERM, a step not back by then "
                                     "exits at once")),
    },
    "ablation": {
        "grid": Field("grid", {},
                      doc=("vmap ablations: value lists under the path they "
                           "replace, e.g. {'model': {'tau': [5.0, 10.0]}}; "
                           "empty = one model")),
        "mode": _choice(ABLATION_MODES, "grid",
                        doc="grid (cartesian product) | zip"),
        "share_init": _bool(False,
                            doc="True: every point starts from seed's init"),
    },
    # The generate task's scores (FAD, IS, FID).
    "metrics": {
        "fad_workdir": _str(None, none_ok=True, tasks=("generate",),
                            doc=("a FAD autoencoder workdir (python -m "
                                 "scnn_jax.fad)")),
        "inception_weights": _str(None, none_ok=True, tasks=("generate",),
                                  doc="converted Inception .npz (IS, FID)"),
        "sample_seed": _int(0, 0, tasks=("generate",),
                            doc="eval latent draws (fixed across evals)"),
        "inception_batch_size": _int(50, 1, tasks=("generate",),
                                     doc="images per Inception call"),
        "inception_splits": _int(10, 1, tasks=("generate",),
                                 doc="IS: splits of the sample set"),
    },
}
# The registry owns which models read a field (its builders read them); the
# table takes that from it, so adding a model that reads existing fields
# leaves the schema alone.
FIELDS["model"] = {name: dataclasses.replace(field,
                                             models=registry.readers(name))
                   for name, field in FIELDS["model"].items()}
SECTIONS = tuple(s for s in FIELDS if s)

# What a field's absence from a run's config.json meant when that run was
# written, where it is not today's default: runs before
# model.noise_resample existed drew fresh noise at every step.
PREDATED = {("model", "noise_resample"): "step"}
_PLACEHOLDER_TYPES = {"int": int, "number": float, "str": str, "ints": tuple,
                      "numbers": tuple}


def defaults(task: str, model: str | None = None) -> ml_collections.ConfigDict:
  """Every field ``task`` (and ``model``) reads that has a default, at that
  default: what a config file starts from, so that it sets only what
  differs and every field can still be overridden on the command line
  (``--config.model.tau=20``). Fields without a default are left out (the
  config must set them); ``task`` and ``model.name`` are set."""
  check_choice("task", task, ALL)
  c = ml_collections.ConfigDict()
  for section, fields in FIELDS.items():
    node = ml_collections.ConfigDict() if section else c
    for name, field in fields.items():
      if field.default is REQUIRED or not field.applies(task, model):
        continue
      if field.default is None:   # typed, so an override can set it
        node[name] = config_dict.placeholder(
            _PLACEHOLDER_TYPES[field.kind])
      elif field.kind == "grid":
        node[name] = ml_collections.ConfigDict(field.default)
      else:
        node[name] = copy.deepcopy(field.default)
    if section and (node or section == "model"):   # no empty sections
      c[section] = node
  c.task = task
  if model is not None:
    c.model.name = model
  return c


def _path(section: str, name: str) -> str:
  return f"{section}.{name}" if section else name


def _unknown(path: str, value, name: str, known, where: str) -> ConfigError:
  near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
  hint = f"did you mean {near[0]!r}?" if near else \
      f"{where} has no {name!r} (docs/reference/config.md lists the fields)"
  return ConfigError(path, value, f"no such field; {hint}")


def unknown_field(path: str, value=None) -> ConfigError | None:
  """The error for ``config.<path>`` if the schema has no such field (None
  if it has); also for command-line overrides (``scnn_jax.cli.common``)."""
  parts = path.split(".")
  top = list(FIELDS[""]) + list(SECTIONS)
  if parts[0] not in top:
    return _unknown(path, value, parts[0], top, "config")
  if parts[0] not in SECTIONS:
    return None if len(parts) == 1 else ConfigError(
        path, value, f"no such field; config.{parts[0]} is not a section")
  if len(parts) == 1 or parts[:2] == ["ablation", "grid"]:
    return None      # a section; the grid mirrors the config (SWEEPABLE)
  section = FIELDS[parts[0]]
  if parts[1] not in section:
    return _unknown(path, value, parts[1], section, f"config.{parts[0]}")
  if len(parts) > 2:
    return ConfigError(path, value, f"no such field; config.{parts[0]}."
                       f"{parts[1]} is not a section")
  return None


def _as_dict(config) -> dict:
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()     # placeholders resolved, tuples kept
  return copy.deepcopy(dict(config))


def complete(config, *, written: bool = False) -> ml_collections.ConfigDict:
  """A copy of ``config`` with every field its task reads (defaults filled).

  ``written``: ``config`` is a run's config.json, so a field it lacks
  because the run predates it gets the value its absence meant then
  (``PREDATED``). Raises ``ConfigError`` for a field the schema does not
  know, and for one the task needs that has no default and is missing.
  Checks no values (``validate`` does).
  """
  raw = _as_dict(config)
  if written:
    model = (raw.get("model") or {}).get("name")
    for (section, name), value in PREDATED.items():
      node = raw.get(section)
      if (isinstance(node, dict) and name not in node and
          FIELDS[section][name].applies(raw.get("task"), model)):
        node[name] = value
  for key, value in raw.items():
    if key in SECTIONS:
      if not isinstance(value, dict):
        raise ConfigError(key, value, "must be a config section")
    elif key not in FIELDS[""]:
      raise unknown_field(key, value)
  task = raw.get("task", REQUIRED)
  if task is REQUIRED:
    raise ConfigError("task", None, "is missing (must be set)")
  check_choice("task", task, ALL)
  model = (raw.get("model") or {}).get("name")
  for section, fields in FIELDS.items():
    node = raw if not section else raw.setdefault(section, {})
    for key in node if section else ():
      if key not in fields:
        raise unknown_field(_path(section, key), node[key])
    for name, field in fields.items():
      if name in node or not field.applies(task, model):
        continue
      if field.default is REQUIRED:
        raise ConfigError(_path(section, name), None,
                          "is missing (must be set)")
      node[name] = copy.deepcopy(field.default)
  for section in SECTIONS:       # sections no field of this task needs
    if not raw[section] and section == "metrics" and task != "generate":
      del raw[section]
  return ml_collections.ConfigDict(raw)


def validate(config, *, devices: int | None = None,
             check_files: bool = True) -> ml_collections.ConfigDict:
  """``complete(config)`` with every field and rule checked (see the module
  docstring). ``devices``: the device count the batch sizes must divide
  (default ``jax.device_count()``); ``check_files=False`` skips the checks
  that read the disk (folders, FAD workdir, Inception weights): for a
  config read back from a workdir."""
  c = complete(config)
  for section, fields in FIELDS.items():
    node = c if not section else c.get(section)
    if node is None:
      continue
    for name, field in fields.items():
      if name in node:
        field.check(_path(section, name), node[name])
  for rule in RULES:
    rule(c)
  if check_files:
    for rule in FILE_RULES:
      rule(c)
  if devices is None:
    import jax  # the device count is only known once JAX is up
    devices = jax.device_count()
  for field in ("batch_size", "eval_batch_size"):
    if c.train[field] % devices:
      raise ConfigError(f"train.{field}", c.train[field],
                        f"must be divisible by the number of devices "
                        f"({devices})")
  return c


# -----------------------------------------------------------------------------
# Rules between fields
# -----------------------------------------------------------------------------


def _model_name(c):
  check_choice("model.name", c.model.name, registry.MODELS[c.task])


def _neuron(c):
  m = c.model
  if c.task not in SPIKING:
    return
  if m.neuron == "lif" and m.beta is None and m.tau is None:
    raise ConfigError("model.tau", None,
                      "must be set (or model.beta) for neuron='lif'")
  if m.neuron == "alif" and m.refractory_steps:
    raise ConfigError("model.refractory_steps", m.refractory_steps,
                      "must be 0 for neuron='alif' (LIF only)")


def _staircase(c):
  """The closed form (``scnn_jax.nn.neurons``) is exact only for a current
  constant over T, from rest, reset to zero; only the models that read
  ``model.neuron_solver`` (paper A's SC-NN) offer it."""
  m = c.model
  if c.task != "inpaint" or m.get("neuron_solver", "scan") == "scan":
    return
  need = ("for model.neuron_solver='staircase' (closed form: input constant "
          "over T)")
  solvers = registry.readers("neuron_solver")
  if m.name not in solvers:
    raise ConfigError("model.name", m.name,
                      f"must be {' or '.join(map(repr, solvers))} {need}")
  for field, want in (("neuron", "lif"), ("reset", "zero"),
                      ("encoder", "direct")):
    if m[field] != want:
      raise ConfigError(f"model.{field}", m[field], f"must be {want!r} {need}")
  if m.noise_std > 0 and m.noise_resample != "sequence":
    raise ConfigError("model.noise_resample", m.noise_resample,
                      f"must be 'sequence' (or model.noise_std 0) {need}")


def _model_rules(c):
  registry.check(c.model)


def _classify(c):
  m = c.model
  if c.task != "classify":
    return
  if m.get("noise_std", 0.0):   # inherited from base.py; must stay 0
    raise ConfigError("model.noise_std", m.noise_std,
                      "must be 0 for task=classify (paper B adds no noise)")
  if m.order != "fold":
    raise ConfigError("model.order", m.order, "must be 'fold' for "
                      "task=classify")
  for field in ("input_mean", "input_std"):
    value = m[field]
    if value is not None and len(value) not in (1, c.data.channels):
      raise ConfigError(f"model.{field}", value, f"must be a tuple of 1 or "
                        f"{c.data.channels} numbers")


def _stride2_size(c):
  """The VAE and the FAD autoencoder halve the image down to 2x2."""
  if c.task not in ("generate", "fad_autoencoder"):
    return
  hidden = tuple(c.model.hidden)
  if c.task == "generate" and not hidden:
    raise ConfigError("model.hidden", c.model.hidden,
                      "must list at least one conv width")
  if c.task == "fad_autoencoder":
    hidden = registry.fad_hidden(c)
  size = 2 * 2 ** len(hidden)
  if c.data.image_size != size:
    raise ConfigError("data.image_size", c.data.image_size,
                      f"must be {size}: model.hidden={hidden} has "
                      f"{len(hidden)} stride-2 layers down to 2x2")


def _data(c):
  d = c.data
  if d.source == "embedded":
    check_choice("data.name", d.name, sources.EMBEDDED_NAMES)
    if d.name == "natural" and d.image_size > NATURAL_MAX_SIZE:
      raise ConfigError("data.image_size", d.image_size, f"must be <= "
                        f"{NATURAL_MAX_SIZE} for the embedded natural photos")
    if d.name == "openphotos" and d.image_size > OPENPHOTOS_MAX_SIZE:
      raise ConfigError("data.image_size", d.image_size, f"must be <= "
                        f"{OPENPHOTOS_MAX_SIZE} for the openphotos photos")
    if d.name == "mnist5k" and d.num_eval > MNIST5K_NUM_VAL:
      raise ConfigError("data.num_eval", d.num_eval,
                        f"must be <= {MNIST5K_NUM_VAL} for mnist5k")
  if d.dead_leaves_mix > 0 and d.source == "dead_leaves":
    raise ConfigError("data.dead_leaves_mix", d.dead_leaves_mix,
                      "must be 0 for data.source='dead_leaves' (every image "
                      "already is one)")
  if d.dead_leaves_mix > 0 and c.task == "classify":
    raise ConfigError("data.dead_leaves_mix", d.dead_leaves_mix,
                      "must be 0 for task=classify (dead-leaves images have "
                      "no class)")


def _masks(c):
  k = c.masks
  if k.ratio_max < k.ratio_min:
    raise ConfigError("masks.ratio_max", k.ratio_max,
                      f"must be >= masks.ratio_min ({k.ratio_min})")


def _train(c):
  w = c.train.watchdog_s
  if w < 0 and w != -1:
    raise ConfigError("train.watchdog_s", w,
                      "must be -1 (off), 0 (auto: 10x the median step time, "
                      "at least 300 s) or a number of seconds > 0")


def _ablation(c):
  """Every swept field changes values only, with a non-empty list each."""
  grid = flatten_grid(c.ablation.grid)
  for field, values in grid.items():
    if field not in SWEEPABLE:
      raise ConfigError(
          f"ablation.grid.{field}", values,
          "cannot be swept in one compiled program (it changes the model's "
          f"shapes or static settings); sweepable: {', '.join(SWEEPABLE)}")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") \
        or not len(values):
      raise ConfigError(f"ablation.grid.{field}", values,
                        "must be a non-empty list of values")
  if c.ablation.mode == "zip" and len({len(v) for v in grid.values()}) > 1:
    raise ConfigError("ablation.grid", {f: len(v) for f, v in grid.items()},
                      "mode='zip' needs lists of equal length")


def _folders(c):
  d = c.data
  if d.source == "folder" and d.folder is None:
    raise ConfigError("data.folder", None, "must be set for "
                      "data.source='folder'")
  for field in ("folder", "eval_folder"):
    if d.source == "folder" and d[field] is not None and \
        not epath.Path(d[field]).is_dir():
      raise ConfigError(f"data.{field}", d[field], "folder does not exist")


def _generate_files(c):
  if c.task != "generate":
    return
  met = c.metrics
  if met.fad_workdir is not None:
    check_fad_workdir(met.fad_workdir, image_size=c.data.image_size,
                      channels=c.data.channels)
  if met.inception_weights is not None and \
      not epath.Path(met.inception_weights).exists():
    raise ConfigError("metrics.inception_weights", met.inception_weights,
                      "file not found; convert a checkpoint with "
                      "scripts/convert_inception_weights.py "
                      "(docs/studies/paper_b_generation.md)")


def _init_from(c):
  src = c.train.init_from
  if src is None:
    return
  if c.ablation.grid:
    raise ConfigError("train.init_from", src, "is not supported with an "
                      "ablation grid (each point would start from one model)")
  root = epath.Path(src)
  if not (root / "config.json").exists() or \
      not (root / "checkpoints").exists():
    raise ConfigError("train.init_from", src, "must be a training workdir "
                      "(config.json and checkpoints/)")
  cfg = json.loads((root / "config.json").read_text())
  if cfg.get("task") != c.task:
    raise ConfigError("train.init_from", src, f"holds a {cfg.get('task')!r} "
                      f"run; this run's task is {c.task!r}")


def check_fad_workdir(workdir, field="metrics.fad_workdir", image_size=None,
                      channels=None):
  """Raises ``ConfigError`` unless ``workdir`` holds a FAD autoencoder run
  for images of the given size and channels."""
  path = epath.Path(workdir) / "config.json"
  if not path.exists():
    raise ConfigError(field, workdir, "is not a FAD autoencoder workdir (no "
                      "config.json): train one with python -m scnn_jax.fad "
                      "--config configs/fad_<dataset>.py --workdir DIR")
  cfg = json.loads(path.read_text())
  if cfg.get("task") != "fad_autoencoder":
    raise ConfigError(field, workdir, f"holds a {cfg.get('task')!r} run, not "
                      "a FAD autoencoder")
  d = cfg.get("data", {})
  for key, want in (("image_size", image_size), ("channels", channels)):
    if want is not None and d.get(key) != want:
      raise ConfigError(field, workdir, f"its autoencoder was trained on "
                        f"data.{key} = {d.get(key)}, this run uses {want}")
  if not (epath.Path(workdir) / "checkpoints").exists():
    raise ConfigError(field, workdir, "has no checkpoints: train it first")


RULES: tuple[Callable, ...] = (_model_name, _neuron, _staircase,
                               _model_rules, _classify, _stride2_size,
                               _data, _masks, _train, _ablation)
FILE_RULES: tuple[Callable, ...] = (_folders, _generate_files, _init_from)


def flatten_grid(tree, prefix="") -> dict:
  """``ablation.grid`` as ``{"model.tau": [...], ...}``."""
  out = {}
  for k, v in (tree.items() if hasattr(tree, "items") else []):
    key = f"{prefix}{k}"
    if hasattr(v, "items"):
      out.update(flatten_grid(v, key + "."))
    else:
      out[key] = v
  return out
