"""Runs one sweep job on many devices, or as one of several processes; prints JSON.

``tests/test_sweep_engine.py`` starts it in subprocesses: with ``XLA_FLAGS``
asking for host devices (which must be set before JAX starts), and, for
several processes, ``jax.distributed.initialize`` on a localhost
coordinator with gloo collectives.

  python tests/support/sweep_worker.py devices              # 8 devices against 1
  python tests/support/sweep_worker.py process PORT I N     # process I of N
"""

import json
import sys


def job(sweep, optax, devices):
  """The same small select for every caller: its curves and refit."""
  import numpy as np

  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 4)).astype(np.float32)
  y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
  found = sweep.select(
      sweep.classifier(sweep.MLP(hidden=(8,), outputs=3)),
      {'x': x[:45], 'y': y[:45]},
      {'rate': [0.0, 0.1, 1.0], 'dropout': [0.0, 0.3]},
      optimizer=sweep.kind('l2', lr=1e-2),
      test={'x': x[45:], 'y': y[45:]},
      folds=3, seeds=2, epochs=2, batch_size=8, devices=devices,
  )
  return {
      'devices': found.result.devices,
      'chunk_size': found.result.chunk_size,
      'curves': {k: v.tolist() for k, v in found.result.curves.items()},
      'choice': found.choice.point,
      'refit_test': found.refit.test,
      'refit_params': [np.asarray(a).tolist() for a in __import__('jax').tree.leaves(found.refit.params)],
  }


def main() -> None:
  import jax

  if sys.argv[1] == 'process':
    port, index, count = map(int, sys.argv[2:5])
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
        coordinator_address=f'localhost:{port}', num_processes=count, process_id=index
    )
  import optax

  from wdax import sweep

  if sys.argv[1] == 'devices':
    assert jax.device_count() == 8, jax.devices()
    out = {'eight': job(sweep, optax, 8), 'one': job(sweep, optax, 1)}
  else:
    assert jax.process_count() == count and jax.device_count() == 4 * count
    out = job(sweep, optax, None)
    out['process'] = jax.process_index()
  print(json.dumps(out))


if __name__ == '__main__':
  main()
