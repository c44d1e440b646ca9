"""Where the modules of given types sit in a Flax model: their paths.

Internal; :func:`wdax.masks.modules` builds on it. Flax is imported here
only, when called, so that ``import wdax`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax


def _nnx_paths(model: Any, types: tuple[type, ...]) -> list[str]:
  from flax import nnx  # only for an NNX model

  return [
      '/'.join(str(k) for k in path)
      for path, node in nnx.iter_graph(model)
      if isinstance(node, types)
  ]


def _linen_paths(
    module: Any, types: tuple[type, ...], init_args: Sequence[Any]
) -> list[str]:
  import flax.linen as nn  # only for a linen module

  found: list[str] = []

  def record(next_fun, args, kwargs, context):
    owner = context.module
    if isinstance(owner, types) and owner.scope is not None:
      path = '/'.join(owner.scope.path)
      if path not in found:
        found.append(path)
    return next_fun(*args, **kwargs)

  # Abstractly: only the calls are wanted, not the arrays.
  with nn.intercept_methods(record):
    jax.eval_shape(lambda: module.init(jax.random.key(0), *init_args))
  return found


def is_nnx(model: Any) -> bool:
  try:
    from flax import nnx
  except ImportError:  # pragma: no cover - flax is a dependency of training
    return False
  return isinstance(model, nnx.Module)


def is_linen(model: Any) -> bool:
  try:
    import flax.linen as nn
  except ImportError:  # pragma: no cover
    return False
  return isinstance(model, nn.Module)


def paths_of(
    model: Any, types: tuple[type, ...], init_args: Sequence[Any] | None
) -> list[str]:
  """The paths of the modules of ``types`` in ``model`` (NNX or linen)."""
  if is_nnx(model):
    return _nnx_paths(model, types)
  if is_linen(model):
    if init_args is None:
      raise ValueError(
          'masks.modules(): a linen module needs init_args, the inputs its '
          'init takes, to find its submodules.'
      )
    return _linen_paths(model, types, init_args)
  raise ValueError(
      f'masks.modules(): model must be an nnx.Module or a linen Module; got '
      f'{type(model).__name__}.'
  )
