"""python train.py --config configs/base.py    (3.5 min on 2 quiet CPU cores)

Paper A's SC-NN (one SpikingConv2d with LIF neurons, then five Conv2d; all
3x3, stride 1) inpainting 32x32 natural-image patches from the embedded
dataset shipped with the repo: no download, CPU is enough. Masks are 1-2
boxes covering 5-20 % of the patch. Every field can be overridden, e.g.
``--config.model.name=cnn`` for the baseline or ``--config.train.steps=200``.

Choices paper A leaves open, made here: width 32 (paper: not given), T = 8
steps with direct encoding, rate decoding of the spikes (mean over T), the
mask as an extra input channel, a sigmoid output for [0, 1] images, LIF with
tau 40 steps (paper: tau_m 40 ms at dt 1 ms, i.e. beta = exp(-1/40)),
threshold 1 and reset to zero (paper's V_reset 0), multiplicative training
noise N(1, 0.1) drawn once per image and held over the T steps (paper A lists
a noise time constant of 10 ms, longer than T steps of 1 ms), fast-sigmoid
surrogate of slope 25 (paper names none), and no refractory period (paper A
lists 1 ms: ``--config.model.refractory_steps=1``, which caps the rate at
1/2). With a current constant over T the spiking layer's rate is a fixed
5-level staircase of the conv output (docs/studies/quantiser.md).
"""

from ml_collections import config_dict


def get_config():
  c = config_dict.ConfigDict()
  c.task = "inpaint"              # inpaint | classify | generate | fad_autoencoder
  c.seed = 0                      # data order, masks, noise, and the init unless init_seed is set
  c.init_seed = config_dict.placeholder(int)  # the init alone (None: seed)

  c.model = m = config_dict.ConfigDict()
  m.name = "scnn"                 # scnn | cnn (same net, spiking layer -> Conv2d+ReLU)
  m.width = 32                    # channels of every hidden conv
  m.num_layers = 6                # 1 spiking + 5 ordinary convs (paper A)
  m.T = 8                         # time steps of the spiking layer
  m.neuron = "lif"                # lif | alif
  m.tau = 40.0                    # LIF membrane time constant in steps
  m.beta = config_dict.placeholder(float)  # set to override tau: decay per step
  m.threshold = 1.0               # firing threshold of the membrane
  m.reset = "zero"                # zero | subtract
  m.detach_reset = False          # no gradient through the reset
  m.refractory_steps = 0          # LIF: dead steps after a spike (paper A: 1 ms = 1)
  m.neuron_solver = "scan"        # scan | staircase (closed-form LIF, constant input)
  m.surrogate = "fast_sigmoid"    # fast_sigmoid | atan | sigmoid | triangle | rectangular
  m.surrogate_param = config_dict.placeholder(float)  # None: the kind's default
  m.alif_tau = 2.0                # ALIF initial tau (paper B)
  m.adaptation_tau = 20.0         # ALIF threshold adaptation (off while increment = 0)
  m.adaptation_increment = 0.0
  m.noise_std = 0.1               # paper A; 0 disables
  m.noise_mode = "multiplicative" # I * (1 + std N) (paper A) | additive: I + std N
  m.noise_resample = "sequence"   # one draw held over T (paper A: noise tau 10 ms > T dt); or "step"
  m.encoder = "direct"            # direct | rate
  m.decoder = "rate"              # rate | fixed_decay | taid | membrane
  m.mask_channel = True           # paper A feeds the masked image only (False)
  m.output_activation = "sigmoid" # sigmoid | clip: [0, 1] images (paper A: ReLU)
  m.order = "fold"                # fold | step (execution order of the spiking layer)
  m.conv_impl = "auto"            # auto (= xla) | xla | matmul | taps
  m.remat = False                 # recompute the neuron scan in the backward pass
  m.dtype = "float32"             # float32 | bfloat16 (convs; membranes stay float32)

  c.data = d = config_dict.ConfigDict()
  d.source = "embedded"           # embedded | tfds | folder | dead_leaves
  d.name = "natural"              # embedded: natural | mnist5k; tfds: dataset name; dead_leaves: any
  d.image_size = 32               # crop / resize side in px
  d.channels = 3                  # 1 (grayscale) | 3 (RGB)
  d.train_split = "train"
  d.eval_split = "test"
  d.data_dir = config_dict.placeholder(str)  # tfds: data_dir (gs:// works)
  d.tfds_download = False         # tfds: download + prepare when missing
  d.train_crop = "random"         # random | center (images larger than image_size)
  d.folder = config_dict.placeholder(str)  # folder: training images (PNG / JPEG)
  d.eval_folder = config_dict.placeholder(str)  # folder: eval images (None: 10 % held out)
  d.num_eval = 256                # size of the fixed eval set
  d.prefetch = 4                  # batches built ahead of the step
  d.num_threads = 2               # reader threads (num_workers = 0)
  d.num_workers = 0               # >0: reader processes (GPU/TPU hosts)
  d.bad_images = "skip"           # folder: skip (reported once) | error on unreadable files
  d.dead_leaves_mix = 0.0         # share of training examples replaced by dead-leaves images
  d.dead_leaves_texture = True    # dead leaves: gradients / sinusoids inside shapes
  d.dead_leaves_blur = True       # dead leaves: half the images defocused (Gaussian)

  c.masks = k = config_dict.ConfigDict()
  k.kind = "box"                  # box | center | stroke | pixels | mixed (box or stroke)
  k.ratio_min = 0.05              # hole fraction of an image, drawn in [min, max]
  k.ratio_max = 0.2
  k.max_boxes = 2                 # box: 1 to max_boxes rectangles
  k.stroke_fraction = 0.5         # mixed: probability that a mask is strokes
  k.eval_seed = 1234              # the fixed eval masks (and eval subset)

  c.train = t = config_dict.ConfigDict()
  t.steps = 1500                  # train steps in all (a resumed run continues to it)
  t.batch_size = 32               # global; per device = batch_size / devices
  t.optimizer = "adam"            # paper A: Adam, lr 1e-3
  t.learning_rate = 1e-3          # peak learning rate
  t.schedule = "constant"         # constant | cosine
  t.warmup_steps = 0              # linear warm-up before the schedule
  t.grad_clip = 0.0               # global-norm clipping; 0 = off
  t.weight_decay = 0.0            # adamw only
  t.log_every = 100               # steps between metrics.jsonl / console lines
  t.eval_every = 500              # steps between evaluations (and at the end)
  t.eval_batch_size = 64          # global batch of the evaluation
  t.checkpoint_every = 500        # steps between checkpoints (and at the end)
  t.keep_checkpoints = 3          # newest checkpoints kept
  t.num_sample_images = 8         # eval images in each samples/ grid
  t.nan_policy = "stop"           # stop | skip
  t.loss = "mse"                  # inpaint: mse (pooled) | image_mse | log_mse (per image)
  # In [0, 1): > 0 evaluates, samples, exports and loads an exponential moving
  # average of the weights (scnn_jax.runtime.state), which averages over about
  # 1 / (1 - decay) steps; 0 = off (the raw weights).
  t.ema_decay = 0.0
  t.init_from = config_dict.placeholder(str)  # a workdir: its weights start a fresh run
  # (start, stop): a jax.profiler trace of steps start..stop-1 into
  # <workdir>/tensorboard (docs/how-to/profiling.md); () = off.
  t.profile_steps = ()
  # No train step finished for watchdog_s seconds: log every thread's stack and
  # exit 124 (docs/how-to/reliability.md). 0 = auto (10x the median step time, at
  # least 300 s), -1 = off.
  t.watchdog_s = 0.0
  t.sigterm_grace_s = 60.0        # after SIGTERM, a step not back by then exits at once

  # vmap ablations (configs/ablation.py): lists of values under the config
  # path they replace, e.g. {"model": {"tau": [5.0, 10.0]}}; empty = one model.
  c.ablation = config_dict.ConfigDict()
  c.ablation.grid = config_dict.ConfigDict()
  c.ablation.mode = "grid"        # grid (cartesian product) | zip
  c.ablation.share_init = False   # True: every point starts from seed's init
  return c
