"""Runs one checkpointed sweep.select, killing itself with SIGKILL after a
number of compiled calls; prints the selection's numbers as JSON.

``tests/test_sweep_checkpoint_kills.py`` starts it in subprocesses:

  python tests/support/checkpoint_worker.py FOLDER KILL_AFTER PRUNE [PORT I N]

FOLDER is the checkpoint (``-`` for none), KILL_AFTER the compiled call
after whose save the process kills itself (0: never), PRUNE ``0`` or
``MIN:FACTOR``; with PORT I N it is process I of N (jax.distributed on a
localhost coordinator, gloo collectives, 2 host devices each).
"""

import hashlib
import json
import os
import signal
import sys


def numbers(found):
  """Every number of a Selection, as hex digests of their bytes."""
  import jax
  import numpy as np

  def sha(a):
    a = np.ascontiguousarray(np.asarray(a))
    return f'{a.dtype} {a.shape} {hashlib.sha256(a.tobytes()).hexdigest()}'

  r = found.result
  return {
      'curves': {k: sha(v) for k, v in r.curves.items()},
      'rung': sha(r.rung), 'configuration_epochs': r.configuration_epochs,
      'choice': found.choice.point,
      'refit': {k: sha(v) for k, v in found.refit.curves.items()},
      'params': [sha(a) for a in jax.tree.leaves(found.refit.params)],
  }


def main() -> None:
  folder, kill_after, prune = sys.argv[1], int(sys.argv[2]), sys.argv[3]
  if len(sys.argv) > 4:
    port, index, count = map(int, sys.argv[4:7])
    import jax

    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
        coordinator_address=f'localhost:{port}', num_processes=count, process_id=index
    )
  import numpy as np

  from wdax import sweep
  from wdax.sweep import _resume

  calls = []
  after = _resume.Saving.after_segment

  def after_segment(self, *args, **kwargs):
    # Killed just after a save: the harness's view of "after k segments".
    after(self, *args, **kwargs)
    calls.append(1)
    if len(calls) == kill_after:
      os.kill(os.getpid(), signal.SIGKILL)

  _resume.Saving.after_segment = after_segment
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 4)).astype(np.float32)
  y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
  halving = None if prune == '0' else sweep.Halving(*map(int, prune.split(':')))
  found = sweep.select(
      sweep.classifier(sweep.MLP(hidden=(8,), outputs=3)),
      {'x': x[:45], 'y': y[:45]},
      {'rate': [0.0, 0.1, 1.0], 'lr': [1e-2, 3e-2]},
      optimizer=sweep.kind('l2', lr=1e-2),
      test={'x': x[45:], 'y': y[45:]},
      folds=3, seeds=1, epochs=8, evals=4, batch_size=8, chunk_size=4, prune=halving,
      checkpoint=None if folder == '-' else folder, checkpoint_every=0,
  )
  print(json.dumps(numbers(found), sort_keys=True))


if __name__ == '__main__':
  main()
