"""One process of the multi-host checks in ``tests/test_multihost.py``.

Trains a small Linen MLP with FSDP over a mesh of all devices of all processes
(``jax.make_mesh``'s default, explicit axes) with :mod:`wdax.training`, saves
a checkpoint half way with :mod:`wdax.checkpoint` and writes the final
parameters, gathered whole, to ``<out>/params.npz`` (process 0 only).

``train --processes 2 --process-id i --port p`` is one of two processes that
meet at a coordinator on ``localhost:p``, each with its own 4 CPU devices
(set ``XLA_FLAGS`` before starting it), and gloo CPU collectives.
``train --processes 1`` is the same run in one process of 8 devices.
``resume`` restores the half-way checkpoint in one process of 8 devices and
trains the second half. The exact launch is in the README's multi-host
section.
"""

from __future__ import annotations

import argparse
import json
import pathlib

STEPS = 8
SAVED_AT = 4
BATCH = 32


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('mode', choices=('train', 'resume'))
  parser.add_argument('--processes', type=int, default=1)
  parser.add_argument('--process-id', type=int, default=0)
  parser.add_argument('--port', type=int, default=0)
  parser.add_argument('--checkpoint', required=True, help='checkpoint directory')
  parser.add_argument('--out', required=True, help='where params.npz goes')
  return parser


def main() -> None:
  args = _parser().parse_args()
  import jax

  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if args.processes > 1:
    jax.distributed.initialize(
        coordinator_address=f'localhost:{args.port}',
        num_processes=args.processes,
        process_id=args.process_id,
    )

  import flax.linen as nn
  import jax.numpy as jnp
  import numpy as np
  from jax.experimental import multihost_utils

  import wdax
  from wdax import checkpoint
  from wdax import sharding
  from wdax import training

  assert jax.device_count() == 8, jax.devices()
  assert jax.process_count() == args.processes
  mesh = jax.make_mesh((8,), ('data',))

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(8)(nn.relu(nn.Dense(32)(x)))

  model = MLP()
  mask = wdax.masks.flax_default()
  tx = wdax.adamw(1e-2, weight_decay=0.1, mask=mask)
  rng = np.random.default_rng(0)
  batches = [
      {
          'x': rng.normal(size=(BATCH, 24)).astype(np.float32),
          'y': rng.normal(size=(BATCH, 8)).astype(np.float32),
      }
      for _ in range(STEPS)
  ]

  def create():
    params = model.init(jax.random.key(0), jnp.zeros((1, 24)))['params']
    return training.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  def loss_fn(params, batch):
    return jnp.mean((model.apply({'params': params}, batch['x']) - batch['y']) ** 2)

  state = sharding.create_sharded(create, mesh, 'fsdp')
  step = training.train_step(
      loss_fn, mask=mask, shardings=sharding.shardings(state, mesh, 'fsdp')
  )
  share = BATCH // args.processes

  def local(batch):
    # Each process loads its own rows; shard_batch assembles the global batch.
    lo = args.process_id * share
    return {k: v[lo : lo + share] for k, v in batch.items()}

  first = 0
  if args.mode == 'resume':
    state = checkpoint.restore(args.checkpoint, state)
    assert int(state.step) == SAVED_AT
    first = SAVED_AT
  losses = []
  for i in range(first, STEPS):
    state, metrics = step(state, sharding.shard_batch(local(batches[i]), mesh, 'fsdp'))
    losses.append(float(metrics['loss']))
    if args.mode == 'train' and i + 1 == SAVED_AT:
      checkpoint.save(args.checkpoint, state)

  params = multihost_utils.process_allgather(state.params, tiled=True)
  if jax.process_index() == 0:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flat = dict(zip(wdax.leaf_paths(params), map(np.asarray, jax.tree.leaves(params))))
    np.savez(out / 'params.npz', **flat)
    specs = {
        wdax.paths.path_str(p): str(x.sharding.spec)
        for p, x in jax.tree_util.tree_leaves_with_path(state.params)
    }
    (out / 'run.json').write_text(
        json.dumps({'losses': losses, 'step': int(state.step), 'specs': specs})
    )


if __name__ == '__main__':
  main()
