r"""The checks of the sweep's entry points, :func:`~wdax.sweep.grid`,
:func:`~wdax.sweep.fit` and :func:`~wdax.sweep.select`: every argument, in
:func:`prepare`, before anything compiles, and what follows from them (the
job, its metric names and minibatch rule, the folds' tables and the memory
estimate of one configuration).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import optax

from wdax.sweep import _cache
from wdax.sweep import _collector
from wdax.sweep import _devices
from wdax.sweep import _job
from wdax.sweep import _memory
from wdax.sweep import folds as _folds
from wdax.sweep import results
from wdax.sweep import settings as _settings
from wdax.sweep.pruning import Halving
from wdax.sweep.space import Space
from wdax.sweep.space import uses
from wdax.sweep.tasks import Task

Optimizer = Callable[..., optax.GradientTransformation]


@dataclasses.dataclass(frozen=True)
class Prepared:
  """The checked arguments of an entry point, and what follows from them."""

  settings: _settings.Settings
  data: Any
  n: int
  space: Space
  job: _job.Job
  devices: list[Any]
  per_configuration: int
  fold_ids: np.ndarray | None  # None for fit
  train_table: np.ndarray  # (folds, n): 1 where a fold trains; one row for fit
  val_table: np.ndarray
  test: Any


_DESCRIBED: dict[Any, Any] = {}


def _describe(job: _job.Job, data: Any, batch_size: int) -> tuple[_job.Job, int]:
  """``job`` with its metric names and minibatch rule, and the memory
  estimate, from tracing alone; ``ValueError`` for a loss that does not keep
  the contract."""
  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), data)
  leaves, treedef = jax.tree.flatten(shapes)
  return _cache.remember(
      _DESCRIBED, (job, treedef, tuple(leaves), batch_size),
      lambda: _trace(job, shapes, batch_size),
  )


def _trace(job: _job.Job, data: Any, batch_size: int) -> tuple[_job.Job, int]:
  key = jax.random.key(0)
  first = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype), data)
  params, state = jax.eval_shape(job.init, key, first)
  hp = {n: jax.ShapeDtypeStruct((), np.float32) for n in job.names}
  rows = jax.tree.map(lambda a: jax.ShapeDtypeStruct((batch_size, *a.shape[1:]), a.dtype), data)
  weight = jax.ShapeDtypeStruct((batch_size,), np.float32)
  forward, out = _memory.traced(job.loss, params, state, rows, key, hp, weight)
  expected = '(loss, metrics, state)' if job.task.stateful else '(loss, metrics)'
  if not (isinstance(out, tuple) and len(out) == 3 and isinstance(out[1], Mapping)):
    raise ValueError(f'the task loss must return {expected}; got {out!r}.')
  loss, metrics, new_state = out
  if loss.shape != () or not np.issubdtype(loss.dtype, np.floating):
    raise ValueError(
        f'the task loss must be a floating scalar (a mean over the batch); got '
        f'shape {loss.shape} and dtype {loss.dtype}.'
    )
  for name, value in metrics.items():
    if not isinstance(name, str) or name == 'loss' or getattr(value, 'shape', None) != ():
      raise ValueError(
          f'the task metric {name!r} must be a scalar under a name other than '
          "'loss'."
      )
  if _structure(new_state) != _structure(state):
    raise ValueError(
        'the state the task loss returns differs in structure from the one '
        f'init made: {jax.tree.structure(new_state)} vs {jax.tree.structure(state)}.'
    )
  job = dataclasses.replace(job, metrics=tuple(metrics), full_batches=_full_batches(job, state))
  opt_state = jax.eval_shape(lambda p, hp: _transformation(job, hp).init(p), params, hp)
  # An evaluation over every example, and a minibatch forward, backward and
  # spare, at the forward pass's bytes per example.
  rows_at_once = jax.tree.leaves(data)[0].shape[0] + 3 * batch_size
  return job, _memory.bytes_per_configuration(
      params, opt_state, state, forward / batch_size, rows_at_once
  )


def _transformation(job: _job.Job, hp: dict[str, Any]) -> optax.GradientTransformation:
  tx = job.tx(hp)
  if not isinstance(tx, optax.GradientTransformation):
    raise TypeError(
        'optimizer must return an optax.GradientTransformation, e.g. '
        f'lambda rate: wdax.adamw(1e-3, weight_decay=rate); it returned {tx!r}.'
    )
  return tx


def _full_batches(job: _job.Job, state: Any) -> bool:
  """Whether an epoch's partial last minibatch sits out: when the loss
  cannot weight its padding away, or the model has state (BatchNorm), whose
  forward pass over a batch would see the padding rows."""
  return not job.task.weighted or bool(jax.tree.leaves(state))


def _structure(tree: Any) -> Any:
  """``jax.tree.structure(tree)``, typed ``Any``: the type checker sees no
  comparison of jax's ``PyTreeDef``."""
  return jax.tree.structure(tree)


def _check_test(task: Task, data: Any, test: Any) -> Any:
  if test is None:
    return None
  test, _ = _folds.check_data(test, 'test')
  if _structure(test) != _structure(data):
    raise ValueError(
        f'test must have the structure of data: {jax.tree.structure(test)} vs '
        f'{jax.tree.structure(data)}.'
    )
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(test), jax.tree.leaves(data)):
    if a.shape[1:] != b.shape[1:]:
      raise ValueError(
          f'test{jax.tree_util.keystr(path)} has shape {a.shape[1:]} per example; '
          f'data has {b.shape[1:]}.'
      )
  if task.check is not None:
    task.check(test)
  return jax.device_put(test)


def prepare(
    fn: str,
    task: Task,
    data: Any,
    space: Any,
    optimizer: Optimizer,
    settings: _settings.Settings,
    *,
    test: Any = None,
    choice: tuple[str, str | None, bool | str] | None = None,
) -> Prepared:
  """Checks every argument of ``fn`` but the settings (checked when made);
  the one place the sweep validates, before anything compiles."""
  with _collector.collector_paused():
    return _check(fn, task, data, space, optimizer, settings, test, choice)


def _check(
    fn: str, task: Task, data: Any, space: Any, optimizer: Optimizer,
    settings: _settings.Settings, test: Any, choice: tuple[str, str | None, bool | str] | None,
) -> Prepared:
  if not isinstance(task, Task):
    raise TypeError(
        f'{fn}(): task must be a sweep.Task (e.g. sweep.classifier(model)); got '
        f'{type(task).__name__}.'
    )
  data, n = _folds.check_data(data)
  space = Space.of(space)
  to_optimizer = uses(space, optimizer, task.hyperparameters)
  if task.check is not None:
    task.check(data)
  devices = _devices.devices(settings.devices)
  job = _job.Job(
      task=task, optimizer=optimizer, to_optimizer=to_optimizer, names=space.names,
      metrics=(), batch_size=settings.batch_size, full_batches=False, guard=False,
  )
  job, per_configuration = _describe(job, data, settings.batch_size)
  if fn == 'fit':
    ids, where = None, 'the data'
    val = train = np.ones((1, n), bool)
  else:
    ids, where = _folds.fold_ids(task, data, n, settings.folds, settings.fold_seed), 'fold {}'
    val = ids[None, :] == np.arange(ids.max() + 1)[:, None]
    train = ~val
  _check_batches(job, train, where)
  if settings.prune is not None:
    _check_prune(settings.prune, space)
  if choice is not None:
    names = ('loss', *job.metrics)
    metrics = tuple(f'{side}_{m}' for side in ('train', 'val') for m in names)
    results.check_choice(metrics, space.names, *choice)
  return Prepared(
      settings, data, n, space, guarded(job, train), devices, per_configuration,
      ids, train, val, _check_test(task, data, test),
  )


def _check_prune(halving: Halving, space: Space) -> None:
  """Refuses a ``keep`` or ``one_se`` that names what the space lacks, and a
  ``keep`` that no point has."""
  named = [('keep', n) for n, _ in halving.keep]
  if halving.one_se is not None:
    named.append(('one_se', halving.one_se))
  for what, name in named:
    if name not in space.names:
      raise ValueError(
          f'prune: {what} names {name!r}, which the space lacks; it has '
          f'{", ".join(map(repr, space.names))}.'
      )
  if halving.keep and not halving.kept(space.points()).any():
    raise ValueError(f'prune: no point of the space has the values keep={dict(halving.keep)!r}.')


def _check_batches(job: _job.Job, train_table: np.ndarray, where: str) -> None:
  count = (train_table > 0).sum(axis=1)
  short = np.flatnonzero(_job.minibatches(job, train_table) == 0)
  if short.size:
    why = 'a model with state' if job.task.weighted else 'a loss without weight'
    raise ValueError(
        f'batch_size {job.batch_size} exceeds the {count[short[0]]} training '
        f'examples of {where.format(int(short[0]))}; {why} trains on full '
        'minibatches only: lower batch_size.'
    )


def guarded(job: _job.Job, train_table: np.ndarray) -> _job.Job:
  """``job``, guarding steps when its training sets differ in minibatches."""
  batches = _job.minibatches(job, train_table)
  return dataclasses.replace(job, guard=bool(len(np.unique(batches)) > 1))
