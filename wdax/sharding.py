"""Placing a train state on a device mesh, for when one device is not enough.

A strategy names how the state's leaves are laid out over one axis of a
``jax.sharding.Mesh``:

* ``'replicated'``: every leaf, and the batch, whole on every device;
* ``'data'``: the state replicated, the batch split along its leading
  dimension (data parallelism);
* ``'fsdp'``: the batch split as for ``'data'``, and each array leaf split
  along its largest dimension divisible by the axis size (fully sharded data
  parallelism, Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training
  Trillion Parameter Models", 2020, arXiv:1910.02054). An optimiser-state
  leaf that mirrors a parameter (Adam's moments, a momentum trace) has the
  parameter's shape, so it is split exactly as its parameter is. Scalars (step
  counts) and leaves with no divisible dimension are replicated.

Any other strategy name is a ``ValueError``.

Meshes of either axis type work: ``jax.make_mesh`` with its default (explicit)
axis types, or with ``axis_types=(AxisType.Auto,)``. The steps of
:mod:`wdax.training` turn explicit axes to Auto inside the step, so a loss
written without sharding annotations compiles on both.

:func:`init_sharded` initialises an optimiser state under ``jit`` with each
leaf sharded like the parameter it mirrors, whatever the parameters'
shardings are; ``jit`` left to itself may replicate it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
from jax.sharding import Sharding

from wdax import _checks
from wdax import paths as _paths

STRATEGIES = ('replicated', 'data', 'fsdp')

_log = logging.getLogger(__name__)


def _strategy(strategy: str) -> str:
  return _checks.choice(strategy, 'strategy', STRATEGIES, 'strategies')


def _axis(mesh: Mesh, axis: str | None) -> str:
  if axis is None:
    return mesh.axis_names[0]
  if axis not in mesh.axis_names:
    raise ValueError(
        f'axis {axis!r} is not an axis of the mesh; its axes are '
        f'{list(mesh.axis_names)}.'
    )
  return axis


def fsdp_spec(shape: Sequence[int], size: int, axis: str) -> PartitionSpec:
  """Splits the largest dimension divisible by ``size``, the first on a tie.

  Examples:
    >>> from wdax import sharding
    >>> sharding.fsdp_spec((6, 16, 8), 8, 'data'), sharding.fsdp_spec((3,), 8, 'data')
    (P(None, 'data'), P())
  """
  best = None
  for i, d in enumerate(shape):
    if d >= size and d % size == 0 and (best is None or d > shape[best]):
      best = i
  if best is None:
    return PartitionSpec()
  # No trailing Nones: the compiler writes output shardings that way, and
  # jit's cache tells P('x', None) from P('x'), so the next call would compile
  # again.
  return PartitionSpec(*(None,) * best, axis)


def _is_explicit(mesh: Mesh) -> bool:
  return AxisType.Explicit in getattr(mesh, 'axis_types', ())


def _typed(mesh: Mesh, spec: PartitionSpec, ndim: int) -> PartitionSpec:
  """``spec`` as arrays on ``mesh`` come out of a compiled step.

  On an Auto mesh the compiler writes specs without trailing Nones; on an
  Explicit one the type of an array spells one entry per dimension. jit's
  cache tells the forms apart, so the state is placed in the form the step
  returns, and the second step does not compile again.
  """
  if not _is_explicit(mesh):
    return spec
  return PartitionSpec(*spec, *(None,) * (ndim - len(spec)))


def shardings(
    tree: Any, mesh: Mesh, strategy: str = 'replicated', *, axis: str | None = None
) -> Any:
  r"""The ``NamedSharding`` of each leaf of a state under ``strategy``.

  .. math::

    \mathrm{spec}(x) = \begin{cases}
      (\dots, a_k, \dots) & \text{fsdp}, \; k = \arg\max \{ d_i : n \mid d_i \}
      \\ () & \text{otherwise}
    \end{cases}

  where :math:`d_i` are the dimensions of leaf :math:`x`, :math:`n` the size
  of mesh axis :math:`a` and :math:`a_k` places that axis on dimension
  :math:`k`. The result goes to :func:`shard`, to ``jax.jit``'s
  ``in_shardings``/``out_shardings``, or to the ``shardings`` argument of
  the :mod:`wdax.training` steps so each step returns the state laid out as
  it came in. For the FSDP layout see Rajbhandari et al., "ZeRO: Memory
  Optimizations Toward Training Trillion Parameter Models", 2020,
  arXiv:1910.02054.

  Args:
    tree: the state (a ``TrainState``, an ``nnx.State``, any pytree of arrays
      or ``jax.ShapeDtypeStruct``).
    mesh: the device mesh.
    strategy: ``'replicated'``, ``'data'`` or ``'fsdp'``.
    axis: the mesh axis to shard along; by default the mesh's first.

  Returns:
    A tree of ``NamedSharding`` with the structure of ``tree``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from wdax import sharding
    >>> mesh = jax.make_mesh((1,), ('data',))
    >>> sh = sharding.shardings({'w': jnp.ones((4, 2)), 'n': jnp.zeros([])}, mesh, 'fsdp')
    >>> sh['w'].spec, sh['n'].spec  # make_mesh's default axes are Explicit
    (P('data', None), P())
    >>> auto = jax.make_mesh((1,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
    >>> sharding.shardings({'w': jnp.ones((4, 2))}, auto, 'fsdp')['w'].spec
    P('data',)
  """
  strategy = _strategy(strategy)
  axis = _axis(mesh, axis)
  size = mesh.shape[axis]

  def one(leaf):
    shape = np.shape(leaf)
    spec = fsdp_spec(shape, size, axis) if strategy == 'fsdp' else PartitionSpec()
    return NamedSharding(mesh, _typed(mesh, spec, len(shape)))

  return jax.tree_util.tree_map(one, tree)


def shard(
    tree: Any, mesh: Mesh, strategy: str = 'replicated', *, axis: str | None = None
) -> Any:
  """Places a state on ``mesh`` as :func:`shardings` lays it out.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from wdax import sharding
    >>> mesh = jax.make_mesh((1,), ('data',))
    >>> state = sharding.shard({'w': jnp.ones((4, 2))}, mesh, 'fsdp')
    >>> state['w'].sharding.spec
    P('data', None)
  """
  return jax.device_put(tree, shardings(tree, mesh, strategy, axis=axis))


def shard_batch(
    batch: Any, mesh: Mesh, strategy: str = 'data', *, axis: str | None = None
) -> Any:
  """Places a batch on ``mesh``: split along its leading dimension.

  Under ``'data'`` and ``'fsdp'`` each array's first dimension is split along
  ``axis`` and must be divisible by its size; scalars are replicated. Under
  ``'replicated'`` the batch is replicated.

  In a multi-process run (``jax.distributed.initialize``) each process passes
  its own share of the batch, and the global batch is their concatenation
  along the leading dimension (``jax.make_array_from_process_local_data``).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from wdax import sharding
    >>> mesh = jax.make_mesh((1,), ('data',))
    >>> sharding.shard_batch({'x': jnp.ones((8, 3))}, mesh)['x'].sharding.spec
    P('data',)
  """
  strategy = _strategy(strategy)
  axis = _axis(mesh, axis)
  size = mesh.shape[axis]
  processes = jax.process_count()
  all_paths, leaves, treedef = _paths.leaves_with_paths(batch)
  out = []
  for path, leaf in zip(all_paths, leaves):
    shape = np.shape(leaf)
    if strategy == 'replicated' or not shape:
      spec = PartitionSpec()
    elif (shape[0] * processes) % size:
      raise ValueError(
          f'shard_batch: the leading dimension {shape[0] * processes} of batch '
          f'leaf {path!r} is not divisible by the size {size} of mesh axis '
          f'{axis!r}.'
      )
    else:
      spec = PartitionSpec(axis)
    where = NamedSharding(mesh, spec)
    if processes > 1 and spec != PartitionSpec():
      out.append(jax.make_array_from_process_local_data(where, np.asarray(leaf)))
    else:
      out.append(jax.device_put(leaf, where))
  return jax.tree_util.tree_unflatten(treedef, out)


def create_sharded(
    fn: Callable[[], Any],
    mesh: Mesh,
    strategy: str = 'fsdp',
    *,
    axis: str | None = None,
) -> Any:
  """Runs ``fn()`` under ``jit`` with its outputs laid out by :func:`shardings`.

  The state is created directly in its sharded layout, never whole on one
  device, e.g. ``create_sharded(lambda: TrainState.create(apply_fn=...,
  params=model.init(key, x)['params'], tx=tx), mesh, 'fsdp')``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from wdax import sharding
    >>> mesh = jax.make_mesh((1,), ('data',))
    >>> state = sharding.create_sharded(lambda: {'w': jnp.ones((4, 2))}, mesh)
    >>> state['w'].sharding.spec
    P('data', None)
  """
  abstract = jax.eval_shape(fn)
  return jax.jit(fn, out_shardings=shardings(abstract, mesh, strategy, axis=axis))()


def _mirrors(state_path: str, param_path: str) -> bool:
  return state_path == param_path or state_path.endswith('/' + param_path)


def opt_state_shardings(
    tx: optax.GradientTransformation, params: Any, param_shardings: Any = None
) -> Any:
  """The sharding of each leaf of ``tx.init(params)``, mirroring the params.

  A state leaf mirrors a parameter when the parameter's path ends its path
  and their shapes agree (``0/mu/Dense_0/kernel`` mirrors ``Dense_0/kernel``);
  it takes that parameter's sharding. A leaf no path names takes the sharding
  shared by every parameter of its shape, if there is one. Scalars are
  replicated. Any other leaf is replicated with a logged warning, so no
  replication goes unnoticed.

  Args:
    tx: the gradient transformation.
    params: the params, as arrays or ``jax.ShapeDtypeStruct``.
    param_shardings: a tree of shardings with the params' structure; by
      default each leaf's own ``.sharding``.

  Returns:
    A tree of shardings with the structure of ``tx.init(params)``.
  """
  p_paths, p_leaves, p_def = _paths.leaves_with_paths(params)
  if param_shardings is None:
    p_shardings = [getattr(x, 'sharding', None) for x in p_leaves]
  else:
    p_shardings = p_def.flatten_up_to(param_shardings)
  for path, s in zip(p_paths, p_shardings):
    if s is None:
      raise ValueError(
          f'opt_state_shardings: parameter {path!r} has no sharding; place the '
          'params first or pass param_shardings.'
      )
  first = p_shardings[0] if p_shardings else None
  replicated: Sharding | None = first
  if isinstance(first, NamedSharding):
    replicated = NamedSharding(first.mesh, PartitionSpec())
  by_shape: dict[tuple[int, ...], set[Any]] = {}
  for leaf, s in zip(p_leaves, p_shardings):
    by_shape.setdefault(tuple(np.shape(leaf)), set()).add(s)

  abstract = jax.eval_shape(tx.init, params)
  s_paths, s_leaves, s_def = _paths.leaves_with_paths(abstract)
  out = []
  for path, leaf in zip(s_paths, s_leaves):
    shape = tuple(np.shape(leaf))
    matches = [
        (len(q), s)
        for q, p, s in zip(p_paths, p_leaves, p_shardings)
        if _mirrors(path, q) and tuple(np.shape(p)) == shape
    ]
    if matches:
      out.append(max(matches, key=lambda m: m[0])[1])
    elif not shape:
      out.append(replicated)
    elif len(by_shape.get(shape, ())) == 1:
      out.append(next(iter(by_shape[shape])))
    else:
      _log.warning(
          'wdax.sharding: optimiser-state leaf %r (shape %s) mirrors no '
          'parameter; it is replicated.',
          path,
          shape,
      )
      out.append(replicated)
  return jax.tree_util.tree_unflatten(s_def, out)


def init_sharded(tx: optax.GradientTransformation, params: Any) -> Any:
  """``tx.init(params)`` under ``jit``, each leaf sharded like its parameter.

  Left to itself, ``jax.jit(tx.init)`` lets the compiler choose the output
  layout, and optimiser states can come out replicated while the params are
  sharded, costing a full copy of the moments on every device. Here the
  output shardings are fixed by :func:`opt_state_shardings`.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> from wdax import sharding
    >>> mesh = jax.make_mesh((1,), ('data',))
    >>> params = sharding.shard({'w': jnp.ones((4, 2))}, mesh, 'fsdp')
    >>> state = sharding.init_sharded(optax.adam(1e-3), params)
    >>> state[0].mu['w'].sharding.spec, state[0].count.sharding.spec
    (P('data', None), P())
  """
  out = opt_state_shardings(tx, params)
  return jax.jit(tx.init, out_shardings=out)(params)
