"""A rough model of a configuration's device memory, from its jaxpr.

A chunk's size comes from this estimate of one configuration's memory and a
budget per device (:func:`default_budget`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

# Without a device memory figure: 2 GiB. On CPU the limit is not memory: a
# configuration costs as much in a chunk of 2 as in one of 40 there, chunks
# that outgrow the cache run slower, and a small chunk pads a refit less
# (about 5 configurations per device of the default MLP; 16 MiB).
DEFAULT_BUDGET = 2 * 2**30
CPU_BUDGET = 16 * 2**20


def nbytes(tree: Any) -> int:
  """Bytes of every array (or ``ShapeDtypeStruct``) leaf of ``tree``."""
  return sum(
      math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
      for leaf in jax.tree_util.tree_leaves(tree)
      if hasattr(leaf, 'shape') and not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
  )


# Primitives whose outputs XLA writes to memory: contractions, reductions,
# data movement. Elementwise work fuses into them, so it is counted in the
# factor of :func:`bytes_per_configuration` instead.
_MATERIALISED = frozenset({
    'argmax', 'argmin', 'concatenate', 'conv_general_dilated', 'cumlogsumexp',
    'cummax', 'cummin', 'cumprod', 'cumsum', 'dot_general', 'dynamic_slice',
    'dynamic_update_slice', 'gather', 'reduce_and', 'reduce_max', 'reduce_min',
    'reduce_or', 'reduce_prod', 'reduce_sum', 'scatter', 'scatter-add',
    'scatter_add', 'sort', 'transpose',
})


def _jaxpr_bytes(jaxpr: Any) -> int:
  """Bytes of the values the materialising equations of ``jaxpr`` (and of
  its sub-jaxprs) make."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in _MATERIALISED:
      for var in eqn.outvars:
        aval = var.aval
        if not jax.dtypes.issubdtype(aval.dtype, jax.dtypes.prng_key):
          total += math.prod(aval.shape) * np.dtype(aval.dtype).itemsize
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          total += _jaxpr_bytes(inner)
  return total


def traced(fn: Callable[..., Any], *abstract: Any) -> tuple[int, Any]:
  """``(bytes, out)``: the bytes of the values ``fn`` materialises (matrix
  products, reductions, gathers), traced on ``abstract`` arguments, and the
  shapes of its outputs; nothing is computed."""
  jaxpr, out = jax.make_jaxpr(fn, return_shape=True)(*abstract)
  return _jaxpr_bytes(jaxpr.jaxpr), out


def bytes_per_configuration(
    params: Any, opt_state: Any, state: Any, per_example: float, rows: int
) -> int:
  """A rough upper estimate of one configuration's device memory.

  The parameters four times (themselves, gradients, updates, new values),
  the optimiser state, the model state twice, and twice what the forward
  pass materialises per example (``per_example``), for the elementwise
  results XLA keeps besides, over ``rows`` examples at once (an evaluation
  over all of them and a few minibatches).
  """
  activations = 2 * per_example * rows
  return int(4 * nbytes(params) + nbytes(opt_state) + 2 * nbytes(state) + activations)


def default_budget(devices: Sequence[Any]) -> int:
  """Bytes a chunk may use per device when no ``memory`` is given."""
  if devices[0].platform == 'cpu':
    return CPU_BUDGET
  try:
    stats = devices[0].memory_stats()
  except Exception:  # noqa: BLE001 - a backend without the figure
    stats = None
  if stats and 'bytes_limit' in stats:
    return int(stats['bytes_limit']) // 2
  return DEFAULT_BUDGET
