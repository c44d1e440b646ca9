"""``wdax describe``: which parameters of a built-in model a mask decays."""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp

import wdax
from wdax import masks
from wdax import sweep
from wdax.cli.errors import BadInput
from wdax.cli.requests import DescribeRequest

MASKS = {
    'flax': 'kernels only (wdax.masks.flax_default())',
    'flax+embeddings': 'kernels and embeddings',
    'matrices': 'every leaf of rank >= 2 (wdax.masks.min_ndim(2))',
    'all': 'every floating leaf',
}


def _mask(name: str) -> Any:
  return {
      'flax': masks.flax_default(),
      'flax+embeddings': masks.flax_default(embeddings=True),
      'matrices': masks.min_ndim(2),
      'all': None,
  }[name]


def describe(request: DescribeRequest) -> int:
  """``wdax describe``: prints the report; returns the exit status."""
  model: Any
  if request.model == 'mlp':
    model, example = sweep.MLP(hidden=request.hidden, outputs=10), jnp.zeros((1, 64))
  else:
    model, example = sweep.TinyTransformer(), jnp.zeros((1, 16), jnp.int32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), example))['params']
  try:
    report = wdax.describe(params, rate=request.rate, mask=_mask(request.mask))
  except ValueError as e:  # the mask names a parameter the model lacks
    raise BadInput(f'--mask {request.mask} does not fit --model {request.model}: {e}') from None
  print(f'{request.model}, mask {request.mask}: {MASKS[request.mask]}')
  if sys.stdout.isatty():
    from rich.console import Console  # rich draws only for a terminal

    Console().print(report)
  else:
    print(report)
  return 0
