"""Saving and restoring a whole train state with Orbax.

The state is saved leaf by leaf under its parameter paths (see
:mod:`wdax.paths`): the params, the step, every optax and wdax optimiser
state, ``batch_stats``, whatever the tree holds. Restoring reads it back into
the structure of a freshly built state, so the optimiser and the model code
come from the program, the numbers from the checkpoint, and a run resumed from
a checkpoint continues bit for bit as if it had never stopped.

A checkpoint that does not fit the state (another optimiser, another model)
is refused with a ``ValueError`` naming the paths that differ, before any
array is read.

This module imports Orbax; ``import wdax`` does not. Import it as
``from wdax import checkpoint``.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from wdax import paths as _paths

_SHOWN = 5


def _location(directory: str | os.PathLike) -> str:
  text = os.fspath(directory)
  return text if '://' in text else os.path.abspath(text)


def _is_key(leaf: Any) -> bool:
  return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(
      leaf.dtype, jax.dtypes.prng_key
  )


def _flat(state: Any, fn: str) -> tuple[list[str], list[Any], Any]:
  all_paths, leaves, treedef = _paths.leaves_with_paths(state)
  seen: set[str] = set()
  for path in all_paths:
    if not path:
      raise ValueError(f'{fn}: the state must be a tree, not a single array.')
    if path in seen:
      raise ValueError(
          f'{fn}: two leaves of the state share the path {path!r}; '
          'checkpoints are keyed on paths.'
      )
    seen.add(path)
  return all_paths, leaves, treedef


def save(directory: str | os.PathLike, state: Any, *, force: bool = False) -> None:
  """Saves every leaf of ``state`` to ``directory`` with Orbax.

  Every process of a multi-host run must call it with the same directory.
  PRNG key arrays are saved as their key data.

  Args:
    directory: where to write; must not exist unless ``force``.
    state: a ``TrainState``, an ``nnx.State`` of ``(model, optimizer)``, or any
      pytree of arrays and numbers.
    force: overwrite an existing checkpoint.

  Examples:
    >>> import tempfile, jax.numpy as jnp
    >>> from wdax import checkpoint
    >>> path = tempfile.mkdtemp() + '/step_5'
    >>> checkpoint.save(path, {'params': {'w': jnp.ones(2)}, 'step': jnp.int32(5)})
    >>> checkpoint.restore(path, {'params': {'w': jnp.zeros(2)}, 'step': jnp.int32(0)})
    {'params': {'w': Array([1., 1.], dtype=float32)}, 'step': Array(5, dtype=int32)}
  """
  all_paths, leaves, _ = _flat(state, 'save')
  arrays = {
      path: jax.random.key_data(leaf) if _is_key(leaf) else jnp.asarray(leaf)
      for path, leaf in zip(all_paths, leaves)
  }
  checkpointer = ocp.StandardCheckpointer()
  try:
    checkpointer.save(_location(directory), arrays, force=force)
    checkpointer.wait_until_finished()
  finally:
    checkpointer.close()


def _target(leaf: Any) -> jax.ShapeDtypeStruct:
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return leaf
  if _is_key(leaf):
    data = jax.random.key_data(leaf)
    return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=data.sharding)
  array = leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf)
  return jax.ShapeDtypeStruct(array.shape, array.dtype, sharding=array.sharding)


def _mismatch(directory: str, saved: dict[str, Any], wanted: dict[str, Any]) -> str:
  missing = [p for p in wanted if p not in saved]
  extra = [p for p in saved if p not in wanted]
  lines = []
  if missing:
    lines.append(
        f'the state has {len(missing)} leaves the checkpoint lacks, e.g. '
        f'{missing[:_SHOWN]}'
    )
  if extra:
    lines.append(
        f'the checkpoint has {len(extra)} leaves the state lacks, e.g. '
        f'{extra[:_SHOWN]}'
    )
  for path, want in wanted.items():
    if path in saved and len(lines) < 2 * _SHOWN:
      shape, dtype = tuple(saved[path].shape), np.dtype(saved[path].dtype)
      if (shape, dtype) != (tuple(want.shape), np.dtype(want.dtype)):
        lines.append(
            f'{path!r} is {dtype.name}{list(shape)} in the checkpoint but '
            f'{np.dtype(want.dtype).name}{list(want.shape)} in the state'
        )
  if not lines:
    return ''
  hint = (
      ' Was it saved with another optimiser or model?'
      if any('opt_state' in p for p in missing + extra)
      else ''
  )
  return (
      f'checkpoint {directory} does not fit the state: ' + '; '.join(lines) + '.'
      + hint
  )


def restore(directory: str | os.PathLike, like: Any) -> Any:
  """Reads a checkpoint of :func:`save` back into the structure of ``like``.

  ``like`` is a state built the way the saved one was (e.g. a fresh
  ``TrainState.create(...)`` or ``nnx.split((model, optimizer))[1]``); its
  values are ignored, its structure, dtypes and shardings kept. Arrays are
  read straight into ``like``'s shardings, so a sharded state restores
  sharded. PRNG keys come back with ``like``'s key implementation.

  Args:
    directory: a directory written by :func:`save`.
    like: the state to restore into; leaves may be arrays or
      ``jax.ShapeDtypeStruct``.

  Returns:
    A state with the structure of ``like`` and the checkpoint's values.

  Raises:
    ValueError: if the checkpoint's leaves differ from ``like``'s in paths,
      shapes or dtypes (e.g. it was saved with another optimiser), naming the
      differing paths, or if it holds no single tree of arrays (Orbax
      checkpoints of several items, which :func:`save` does not write).
  """
  location = _location(directory)
  all_paths, leaves, treedef = _flat(like, 'restore')
  wanted = {path: _target(leaf) for path, leaf in zip(all_paths, leaves)}
  checkpointer = ocp.StandardCheckpointer()
  try:
    # A single item's metadata holds its tree; a composite or missing one
    # (a checkpoint some other code wrote) does not.
    saved = getattr(checkpointer.metadata(location).item_metadata, 'tree', None)
    if saved is None:
      raise ValueError(
          f'checkpoint {location} holds no tree of arrays; was it written by '
          'wdax.checkpoint.save?'
      )
    message = _mismatch(location, dict(saved), wanted)
    if message:
      raise ValueError(message)
    arrays = checkpointer.restore(location, wanted)
  finally:
    checkpointer.close()
  out = []
  for path, leaf in zip(all_paths, leaves):
    value = arrays[path]
    if not getattr(leaf, 'committed', True) or not hasattr(leaf, 'shape'):
      # Orbax hands back arrays committed to a device. jit keys its cache on
      # that, so a step fed uncommitted arrays before the checkpoint would
      # compile again after it; give back what ``like`` holds.
      value = jnp.asarray(np.asarray(value))
    if _is_key(leaf):
      value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
    out.append(value)
  return jax.tree_util.tree_unflatten(treedef, out)
