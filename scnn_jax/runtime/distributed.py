"""Multi-process start-up (Cloud TPU pods, GPU clusters, localhost tests).

On a Cloud TPU VM pod slice, ``--distributed`` is enough: JAX discovers the
coordinator itself. Elsewhere give the coordinator explicitly. On CPU the gloo
collectives are selected so that processes on one machine form a cluster.
"""

from absl import flags, logging

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_bool("distributed", False,
                    "Call jax.distributed.initialize() (auto-detected "
                    "coordinator on Cloud TPU).")
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 (implies --distributed).")
  flags.DEFINE_integer("num_processes", None, "Number of processes.")
  flags.DEFINE_integer("process_id", None, "This process's index.")
  flags.DEFINE_integer("cpu_devices", None,
                       "Number of CPU devices per process (testing).")


def initialize_from_flags():
  import jax
  if FLAGS.cpu_devices:
    jax.config.update("jax_num_cpu_devices", FLAGS.cpu_devices)
  if not (FLAGS.distributed or FLAGS.coordinator_address):
    return
  # Only the CPU client reads this; it must be set before the backend starts
  # (so no jax.default_backend() here).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = {}
  if FLAGS.coordinator_address:
    kwargs = dict(coordinator_address=FLAGS.coordinator_address,
                  num_processes=FLAGS.num_processes,
                  process_id=FLAGS.process_id)
  jax.distributed.initialize(**kwargs)
  logging.info("process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
