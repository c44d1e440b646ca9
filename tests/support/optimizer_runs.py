"""The tree, gradients and step loop that the optimiser tests share.

The tree is ``decay_trees``' linen-style tree without its integer leaf, so
that optax's optimisers, which step every leaf, can run on it beside wdax's;
the gradients are a smooth function of the parameters and the step. The
decay tests run their chains with the same loop and their own gradients.
"""

import jax
import jax.numpy as jnp
import optax

from support import decay_trees

SCHED = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 25, end_value=1e-4)
KERNEL_ONLY = {'Dense_0': {'kernel': True, 'bias': False}, 'LayerNorm_0': False}


def params(dtype=jnp.float32):
  tree = decay_trees.params(dtype)
  del tree['step']
  return tree


def grads(params, i):
  return jax.tree.map(
      lambda p: jnp.sin(3 * p.astype(jnp.float32) + i).astype(p.dtype), params
  )


def run(tx, params, steps, update=None, *, gradients=grads):
  """``steps`` updates of ``tx``; ``update``, a variant of ``tx.update``, replaces it.

  Step ``i`` is fed ``gradients(params, i)`` at the parameters reached so far.
  """
  update = update or tx.update
  state = tx.init(params)
  for i in range(steps):
    updates, state = update(gradients(params, jnp.float32(i)), state, params)
    params = optax.apply_updates(params, updates)
  return params
