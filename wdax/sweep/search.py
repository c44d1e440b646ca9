r"""The sweep's entry points: :func:`grid`, :func:`fit` and :func:`select`.

Every argument is checked first, in :func:`wdax.sweep._validation.prepare`, before
anything compiles.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from wdax.sweep import _job
from wdax.sweep import _plan
from wdax.sweep import _runner
from wdax.sweep import _validation
from wdax.sweep import errors
from wdax.sweep import pruning
from wdax.sweep._validation import Optimizer
from wdax.sweep.pruning import Halving
from wdax.sweep.results import Fit
from wdax.sweep.results import Result
from wdax.sweep.results import Selection
from wdax.sweep.settings import Settings
from wdax.sweep.space import Space
from wdax.sweep.tasks import Task

Progress = Callable[[int, int], None] | None


def _metric_curves(job: _job.Job, values: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
  names = ('loss', *job.metrics)
  return {f'{prefix}_{m}': values[..., i] for i, m in enumerate(names)}


@errors.out_of_memory()
def _cross_validate(prep: _validation.Prepared, progress: Progress) -> Result:
  s, job = prep.settings, prep.job
  assert prep.fold_ids is not None  # made for grid and select, not for fit
  count = len(prep.val_table)
  p, k, r = np.meshgrid(
      np.arange(len(prep.space)), np.arange(count), np.arange(len(s.seeds)), indexing='ij'
  )
  columns = prep.space.columns()
  training = _runner.Training(
      job=job, data=prep.data, train_table=prep.train_table, eval_table=prep.val_table,
      hp={n: c[p.ravel()] for n, c in columns.items()},
      seed=np.asarray(s.seeds)[r.ravel()], split=k.ravel(),
      epochs=s.epochs, evals=s.evals, devices=prep.devices,
      per_configuration=prep.per_configuration, chunk_size=s.chunk_size, memory=s.memory,
      rungs=None if s.prune is None else _rungs(s.prune, prep.space, count * len(s.seeds), s.epochs),
  )
  trained = _runner.train(training, progress)
  shape = (len(prep.space), count, len(s.seeds), len(trained.epochs))
  curves = {}
  for side, prefix in ((0, 'train'), (1, 'val')):
    for name, values in _metric_curves(job, trained.metrics[:, :, side], prefix).items():
      curves[name] = values.reshape(shape)
  return Result(
      points=prep.space.points(), curves=dict(sorted(curves.items(), key=_order)),
      epochs=trained.epochs, fold_ids=prep.fold_ids, seeds=s.seeds,
      chunk_size=trained.chunk_size, chunks=trained.chunks, devices=trained.devices,
      bytes_per_configuration=trained.bytes_per_configuration,
      rungs=trained.rungs, rung=trained.rung.reshape(len(prep.space), -1)[:, 0],
      configuration_epochs=trained.configuration_epochs,
  )


def _rungs(halving: Halving, space: Space, trainings: int, epochs: int) -> _plan.Rungs:
  """The engine's schedule of ``halving``: a point's ``trainings``
  configurations (its folds and seeds, consecutive) go on or stop together."""
  spared = halving.kept(space.points())
  kept = int(spared.sum())
  sizes = halving.points(len(space), epochs, kept)
  prefer = None if halving.one_se is None else space.columns()[halving.one_se]

  def advance(r: int, alive: np.ndarray, metrics: np.ndarray) -> np.ndarray:
    groups = alive.reshape(-1, trainings)
    points = groups[:, 0] // trainings
    loss = metrics[:, :, 0].reshape(len(groups), trainings, 2)
    going = pruning.survivors(
        loss[..., 1], loss[..., 0], sizes[r + 1] - kept, spared[points],
        None if prefer is None else prefer[points],
    )
    return groups[going].ravel()

  return _plan.Rungs(halving.rungs(epochs), tuple(n * trainings for n in sizes), advance)


def _order(item: tuple[str, Any]) -> tuple[int, int]:
  side, _, metric = item[0].partition('_')
  return (side != 'train', metric != 'loss')


def grid(
    task: Task,
    data: Any,
    space: Mapping[str, Any],
    *,
    optimizer: Optimizer,
    progress: Progress = None,
    folds: int | np.ndarray = 5,
    seeds: int | Sequence[int] = 1,
    epochs: int = 20,
    batch_size: int = 32,
    fold_seed: int = 0,
    evals: int = 10,
    devices: int | Sequence[Any] | None = None,
    chunk_size: int | None = None,
    memory: int | None = None,
    prune: Halving | None = None,
) -> Result:
  r"""Cross-validates every point of ``space`` in one compiled, vmapped program.

  Every configuration (point :math:`p`, fold :math:`k`, seed :math:`s`)
  minimises the task's loss by minibatches of fold :math:`k`'s training
  examples,

  .. math::

    \theta_{t+1} = \theta_t + \mathrm{tx}_p\bigl(\nabla_\theta
    L(\theta_t; b_t, \xi_t, p)\bigr)

  where :math:`L` is ``task.loss``, :math:`b_t` the minibatch, :math:`\xi_t`
  the step's key, and :math:`\mathrm{tx}_p` is ``optimizer`` called with
  :math:`p`'s values of the names it accepts (e.g. ``lambda rate, lr:
  wdax.adamw(lr, weight_decay=rate)``, Loshchilov & Hutter, "Decoupled Weight Decay
  Regularization", 2019, arXiv:1711.05101). The configurations are not
  trained one after another: one ``jax.jit`` program vmaps the training
  over a chunk of them, sharded over the devices, with the point's values
  traced, so one compilation serves the grid.

  Seed :math:`s` initialises with ``task.init(jax.random.key(s), batch)``;
  epoch :math:`e` (from 0) visits the training examples in increasing order
  of ``np.random.default_rng([s, e]).random(n)`` in minibatches of
  ``batch_size`` (see :mod:`wdax.sweep.tasks` for the last, partial one), and
  minibatch :math:`i` of it gets the key
  ``fold_in(fold_in(key(s), e), i)``. Points and folds share a seed's
  initialisation, orders and keys, so they are compared on common random
  numbers. ``evals`` times, evenly spaced and last after the final epoch,
  each configuration is evaluated on its training and validation examples.

  With ``prune=sweep.Halving(min_epochs, reduction_factor)`` the points are
  trained by successive halving (:class:`Halving`): all of them to a first
  rung of epochs, then rung by rung only the best by mean validation loss.
  Each rung runs the same compiled program over fewer chunks, and a point
  that goes on continues its trainings where they were (parameters,
  optimiser and model state, orders of visit and keys), so the points that
  reach the last rung have the numbers an unpruned grid gives them. The
  evaluations are those of ``evals`` and the end of every rung;
  ``result.rung`` marks each point's last rung, its curves are NaN after
  it, and ``result.configuration_epochs`` counts the epochs trained.
  ``Halving(..., keep={'rate': 0.0})`` spares the points without decay:
  they train every epoch, so :meth:`Result.difference` compares every
  point with its baseline at the point's last rung. Judged early, a
  regulariser looks worse than it ends: ``Halving(..., one_se='rate')``
  lets the largest rates within one standard error of a rung's best go on
  after it, which chose the full grid's rate far more often on the built-in
  data sets (``benchmarks/RESULTS.md``).

  Args:
    task: a :class:`Task`, e.g. :func:`classifier` of a model.
    data: a pytree of arrays sharing a leading example axis (for the
      built-in tasks a dict, e.g. ``{'x': x, 'y': y}``); dtypes are kept.
    space: names to lists of values (:class:`Space`); every combination is
      one point.
    optimizer: called with the point's values for the names it accepts,
      which may be traced, once per compiled program; returns an
      ``optax.GradientTransformation``. :func:`kind` makes named ones.
    progress: called as ``progress(done, total)`` after each compiled call
      (one per chunk and evaluation).
    folds, seeds, epochs, batch_size, fold_seed, evals, devices, chunk_size, memory, prune: the settings, each described at :class:`Settings`.

  Returns:
    A :class:`Result`; ``result.best('val_loss')`` is the chosen point, of
    those that reached the last rung.

  Examples:
    >>> import numpy as np
    >>> import wdax
    >>> from wdax import sweep
    >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    >>> data = {'x': x, 'y': (x[:, 0] > 0).astype(np.int32)}
    >>> result = sweep.grid(
    ...     sweep.classifier(sweep.MLP(hidden=(8,), outputs=2)), data,
    ...     {'rate': [1e-3, 1.0], 'lr': [1e-2, 3e-2]},
    ...     optimizer=lambda rate, lr: wdax.adamw(lr, weight_decay=rate),
    ...     folds=2, epochs=2, batch_size=10)
    >>> len(result.points), result.curves['val_accuracy'].shape  # (P, F, S, E)
    (4, (4, 2, 1, 2))
    >>> result.metrics
    ('train_loss', 'train_accuracy', 'val_loss', 'val_accuracy')
    >>> pruned = sweep.grid(
    ...     sweep.classifier(sweep.MLP(hidden=(8,), outputs=2)), data,
    ...     {'rate': [1e-3, 1.0], 'lr': [1e-2, 3e-2]},
    ...     optimizer=lambda rate, lr: wdax.adamw(lr, weight_decay=rate),
    ...     folds=2, epochs=2, batch_size=10, prune=sweep.Halving(1, 2))
    >>> pruned.rungs, pruned.epochs_trained.tolist(), pruned.configuration_epochs
    (array([1, 2]), [1, 2, 1, 2], 12)
  """
  settings = Settings(
      folds=folds, seeds=seeds, epochs=epochs, batch_size=batch_size, fold_seed=fold_seed,
      evals=evals, devices=devices, chunk_size=chunk_size, memory=memory, prune=prune,
  )
  prep = _validation.prepare('grid', task, data, space, optimizer, settings)
  return _cross_validate(prep, progress)


@errors.out_of_memory()
def _refit(
    job: _job.Job, prep: _validation.Prepared, point: dict[str, float], test: Any,
    progress: Progress, *, rows: int = 1, exact_chunk: int | None = None,
) -> Fit:
  s = prep.settings
  # Every example trains. ``rows`` copies of the table give it the shape of
  # the grid's fold tables when a refit reuses the grid's program.
  table = np.ones((rows, prep.n), bool)
  seeds = np.asarray(s.seeds)
  training = _runner.Training(
      job=job, data=prep.data, train_table=table, eval_table=table,
      hp={n: np.full(len(seeds), point[n], np.float32) for n in prep.space.names},
      seed=seeds, split=np.zeros(len(seeds), int),
      epochs=s.epochs, evals=s.evals, devices=prep.devices,
      per_configuration=prep.per_configuration, keep_params=True, test=test,
      exact_chunk=exact_chunk,
  )
  trained = _runner.train(training, progress)
  curves = _metric_curves(job, trained.metrics[:, :, 0], 'train')
  if trained.test is not None:
    curves.update(_metric_curves(job, trained.test, 'test'))
  return Fit(
      point=dict(point), seeds=s.seeds, curves=curves, epochs=trained.epochs,
      params=trained.params, state=trained.state,
  )


def fit(
    task: Task,
    data: Any,
    point: Mapping[str, float],
    *,
    optimizer: Optimizer,
    test: Any = None,
    progress: Progress = None,
    seeds: int | Sequence[int] = 1,
    epochs: int = 20,
    batch_size: int = 32,
    evals: int = 10,
    devices: int | Sequence[Any] | None = None,
    chunk_size: int | None = None,
    memory: int | None = None,
) -> Fit:
  r"""Trains ``task`` at one point on all of ``data``, once per seed.

  .. math::

    \theta_{t+1} = \theta_t + \mathrm{tx}_p\bigl(\nabla_\theta
    L(\theta_t; b_t, \xi_t, p)\bigr)

  as in :func:`grid`, with every example in the training set: the same
  initialisation, orders of visit and keys for a given seed. With ``test``
  (data of the same structure) the models are also evaluated on it at every
  evaluation. Use it to refit the point :func:`grid` chose (:func:`select`
  does both).

  Args:
    task: as for :func:`grid`.
    data: as for :func:`grid`.
    point: one value per name, e.g. ``result.best('val_loss')``.
    optimizer: as for :func:`grid`.
    test: optional held-out data.
    progress: as for :func:`grid`.
    seeds, epochs, batch_size, evals, devices, chunk_size, memory: the
      settings, as for :func:`grid`.

  Returns:
    A :class:`Fit`: ``.params`` and, in ``.test``, the test metrics.

  Examples:
    >>> import numpy as np
    >>> import wdax
    >>> from wdax import sweep
    >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    >>> data = {'x': x, 'y': (x[:, 0] > 0).astype(np.int32)}
    >>> out = sweep.fit(
    ...     sweep.classifier(sweep.MLP(hidden=(8,), outputs=2)),
    ...     {'x': x[:30], 'y': data['y'][:30]}, {'rate': 1e-2},
    ...     optimizer=sweep.kind('adamw', lr=1e-2),
    ...     test={'x': x[30:], 'y': data['y'][30:]}, epochs=3, batch_size=10)
    >>> sorted(out.test), out.curves['test_accuracy'].shape  # (seeds, evaluations)
    (['accuracy', 'loss'], (1, 3))
  """
  if not isinstance(point, Mapping):
    raise ValueError(f'point must be a dict of one value per name; got {point!r}.')
  if not point:
    raise ValueError('point is empty: give one value per name, e.g. {"rate": 1e-2}.')
  for name, value in point.items():
    if isinstance(value, (list, tuple, str, bytes)) or np.ndim(value) != 0:
      raise ValueError(f'point[{name!r}] must be one number; got {value!r}.')
  settings = Settings(
      seeds=seeds, epochs=epochs, batch_size=batch_size, evals=evals, devices=devices,
      chunk_size=chunk_size, memory=memory,
  )
  space = {name: [value] for name, value in point.items()}
  prep = _validation.prepare('fit', task, data, space, optimizer, settings, test=test)
  return _refit(prep.job, prep, prep.space.points()[0], prep.test, progress)


# A refit reuses the grid's compiled program, padding its chunk with copies,
# when a chunk holds at most this many configurations per device; beyond it
# compiling a program of the refit's own size costs less than the padding.
_REUSE_PER_DEVICE = 20


def select(
    task: Task,
    data: Any,
    space: Mapping[str, Any],
    *,
    optimizer: Optimizer,
    test: Any = None,
    metric: str = 'val_loss',
    mode: str | None = None,
    one_se: bool | str = False,
    progress: Progress = None,
    refit_progress: Progress = None,
    folds: int | np.ndarray = 5,
    seeds: int | Sequence[int] = 1,
    epochs: int = 20,
    batch_size: int = 32,
    fold_seed: int = 0,
    evals: int = 10,
    devices: int | Sequence[Any] | None = None,
    chunk_size: int | None = None,
    memory: int | None = None,
    prune: Halving | None = None,
) -> Selection:
  r"""Cross-validates ``space``, chooses a point and refits it: :func:`grid`,
  :meth:`Result.choose`, then :func:`fit`.

  .. math::

    \hat p = \operatorname*{arg\,min}_{p}\; \frac{1}{F S}\sum_{k, s}
    L_{\text{val}}(p, k, s)

  where :math:`L_{\text{val}}(p, k, s)` is ``metric`` (negated for
  ``mode='max'``) of point :math:`p` on fold :math:`k` with seed :math:`s`,
  and :math:`F, S` the numbers of folds and seeds; :math:`\hat p` is then
  trained on every example of ``data``, once per seed, and evaluated on
  ``test``. The refit runs the grid's compiled program when its chunks are
  small (as on CPU), so the whole job compiles once.

  Args:
    task: as for :func:`grid`.
    data: as for :func:`grid`.
    space: as for :func:`grid`.
    optimizer: as for :func:`grid`.
    test: optional held-out data for the refit.
    metric: as for :meth:`Result.choose`.
    mode: as for :meth:`Result.choose`.
    one_se: as for :meth:`Result.choose`.
    progress: ``progress`` of the grid.
    refit_progress: ``progress`` of the refit.
    folds, seeds, epochs, batch_size, fold_seed, evals, devices, chunk_size, memory, prune: as for :func:`grid`.

  Returns:
    A :class:`Selection`.

  Examples:
    >>> import numpy as np
    >>> from wdax import sweep
    >>> x = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> found = sweep.select(
    ...     sweep.classifier(sweep.MLP(hidden=(8,), outputs=2)),
    ...     {'x': x[:40], 'y': y[:40]}, {'rate': [1e-3, 1.0]},
    ...     optimizer=sweep.kind('adamw', lr=1e-2),
    ...     test={'x': x[40:], 'y': y[40:]}, folds=2, epochs=2, batch_size=10)
    >>> found.refit.point == found.choice.point == found.result.best('val_loss')
    True
  """
  settings = Settings(
      folds=folds, seeds=seeds, epochs=epochs, batch_size=batch_size, fold_seed=fold_seed,
      evals=evals, devices=devices, chunk_size=chunk_size, memory=memory, prune=prune,
  )
  prep = _validation.prepare(
      'select', task, data, space, optimizer, settings, test=test,
      choice=(metric, mode, one_se),
  )
  result = _cross_validate(prep, progress)
  choice = result.choose(metric, mode, one_se)
  job, test = prep.job, prep.test
  reuse = result.chunk_size <= _REUSE_PER_DEVICE * len(prep.devices)
  if reuse:
    refit = _refit(
        job, prep, choice.point, test, refit_progress, rows=result.folds,
        exact_chunk=result.chunk_size,
    )
  else:
    refit_job = _validation.guarded(job, np.ones((1, prep.n), bool))
    refit = _refit(refit_job, prep, choice.point, test, refit_progress)
  return Selection(result=result, choice=choice, refit=refit)
