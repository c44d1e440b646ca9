r"""What a sweep returns, and how a point is chosen from it.

Metric names are ``train_loss`` and ``val_loss``, and ``train_<m>`` and
``val_<m>`` for each metric ``m`` the task's loss returns (``accuracy``,
``r2``). A training whose loss is NaN or infinite at its last evaluation
has diverged: it is marked in :attr:`Result.diverged`, left out of the means,
and its point is never chosen.

In a pruned grid (:class:`~wdax.sweep.Halving`) a point stops at the end of
a rung, :attr:`Result.rung`; its curves are NaN after it. Its summary is
taken at its last evaluation, after :attr:`Result.epochs_trained` epochs, and
only the points that trained every epoch (:attr:`Result.finished`) are
chosen.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from wdax.sweep.errors import NoChoice

MODES = ('min', 'max')


def mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  r"""Mean and standard error over the last axis, ignoring NaN entries.

  The standard error is the sample standard deviation (``ddof=1``) over the
  :math:`m` finite entries divided by :math:`\sqrt{m}`; NaN where
  :math:`m < 2` (the mean is NaN where :math:`m = 0`).

  Examples:
    >>> import numpy as np
    >>> from wdax.sweep import results
    >>> results.mean_se(np.array([[1.0, 3.0, np.nan]]))
    (array([2.]), array([1.]))
  """
  values = np.asarray(values, np.float64)
  finite = np.isfinite(values)
  m = finite.sum(axis=-1)
  safe = np.where(finite, values, 0.0)
  with np.errstate(invalid='ignore', divide='ignore'):
    mean = np.where(m > 0, safe.sum(axis=-1) / np.maximum(m, 1), np.nan)
    squares = np.where(finite, (values - mean[..., None]) ** 2, 0.0).sum(axis=-1)
    se = np.where(m > 1, np.sqrt(squares / np.maximum(m - 1, 1) / np.maximum(m, 1)), np.nan)
  return mean, se


def check_choice(
    metrics: tuple[str, ...], names: tuple[str, ...], metric: str, mode: str | None,
    one_se: bool | str,
) -> str:
  """The mode to choose ``metric`` by, after checking the arguments of
  :meth:`Result.choose` against the ``metrics`` and space ``names``."""
  if metric not in metrics:
    raise ValueError(f'unknown metric {metric!r}; the metrics are {", ".join(metrics)}.')
  if mode is None:
    if not metric.endswith('_loss'):
      raise ValueError(f"give mode='min' or mode='max' to choose by {metric!r}.")
    mode = 'min'
  if mode not in MODES:
    raise ValueError(f'unknown mode {mode!r}; use {" or ".join(map(repr, MODES))}.')
  if one_se:
    name = 'rate' if one_se is True else one_se
    if name not in names:
      raise ValueError(
          f'one_se: the space has no {name!r} to take the largest of; name one '
          f'of {", ".join(map(repr, names))}.'
      )
  return mode


@dataclasses.dataclass(frozen=True)
class Choice:
  """A chosen point, with its cross-validated mean and standard error."""

  point: dict[str, float]
  index: int
  metric: str
  mode: str
  mean: float
  se: float


@dataclasses.dataclass(frozen=True, init=False)
class Result:
  """The learning curves of every training of a :func:`~wdax.sweep.grid`.

  Attributes:
    points: the points, dicts of one value per name of the space, in the
      order of the product (last name fastest); ``P`` of them.
    curves: each metric at each evaluation, shape ``(P, F, S, E)`` for ``F``
      folds, ``S`` seeds and ``E`` evaluations; ``train_*`` is measured on
      the fold's training examples, ``val_*`` on its validation examples.
    epochs: the epochs trained at each evaluation; the last is the final
      epoch.
    fold_ids: the fold of each example.
    seeds: the seeds.
    chunk_size: configurations per compiled chunk.
    chunks: the number of chunks (of the first rung, when pruned).
    devices: the number of devices the configurations were sharded over.
    bytes_per_configuration: the memory estimate that sized the chunks.
    rungs: the epoch each rung ends at, the last the final epoch; one rung
      (``[epochs]``) without pruning. Each is an evaluation.
    rung: ``(P,)`` ints, the last rung each point trained in; a point whose
      rung is not the last was pruned after it.
    configuration_epochs: the epochs trained in all, summed over every
      training (point, fold, seed); ``P * F * S * epochs`` without pruning.
  """

  points: list[dict[str, float]]
  curves: dict[str, np.ndarray]
  epochs: np.ndarray
  fold_ids: np.ndarray
  seeds: tuple[int, ...]
  chunk_size: int
  chunks: int
  devices: int
  bytes_per_configuration: int
  rungs: np.ndarray
  rung: np.ndarray
  configuration_epochs: int

  def __init__(
      self,
      points: list[dict[str, float]],
      curves: dict[str, np.ndarray],
      epochs: np.ndarray,
      fold_ids: np.ndarray,
      seeds: tuple[int, ...],
      chunk_size: int,
      chunks: int,
      devices: int,
      bytes_per_configuration: int,
      rungs: np.ndarray | None = None,
      rung: np.ndarray | None = None,
      configuration_epochs: int | None = None,
  ) -> None:
    put = functools.partial(object.__setattr__, self)
    put('points', points)
    put('curves', curves)
    put('epochs', epochs)
    put('fold_ids', fold_ids)
    put('seeds', seeds)
    put('chunk_size', chunk_size)
    put('chunks', chunks)
    put('devices', devices)
    put('bytes_per_configuration', bytes_per_configuration)
    # Without pruning: one rung, every point in it, for every epoch.
    put('rungs', np.array([int(epochs[-1])]) if rungs is None else rungs)
    put('rung', np.zeros(len(points), np.int64) if rung is None else rung)
    put('configuration_epochs', configuration_epochs)
    if configuration_epochs is None:
      trainings = math.prod(next(iter(curves.values())).shape[1:3])
      put('configuration_epochs', int(trainings * self.epochs_trained.sum()))

  @property
  def metrics(self) -> tuple[str, ...]:
    """The metric names, e.g. ``('train_loss', 'val_loss', ...)``."""
    return tuple(self.curves)

  @property
  def folds(self) -> int:
    """The number of folds."""
    return next(iter(self.curves.values())).shape[1]

  @property
  def epochs_trained(self) -> np.ndarray:
    """``(P,)`` ints: the epochs each point trained, its last rung's end."""
    return np.asarray(self.rungs)[self.rung]

  @property
  def finished(self) -> np.ndarray:
    """``(P,)`` bools: the points that reached the last rung (all of them
    without pruning); only these are chosen."""
    return np.asarray(self.rung == len(self.rungs) - 1)

  def _last(self, metric: str) -> np.ndarray:
    """``metric`` at each point's last evaluation, shape ``(P, F, S)``."""
    index = np.searchsorted(self.epochs, self.epochs_trained, side='right') - 1
    return np.take_along_axis(self.curves[metric], index[:, None, None, None], axis=-1)[..., 0]

  @property
  def diverged(self) -> np.ndarray:
    """``(P, F, S)`` bools: the trainings whose loss is not finite at their
    point's last evaluation."""
    return ~(np.isfinite(self._last('train_loss')) & np.isfinite(self._last('val_loss')))

  def final(self, metric: str) -> np.ndarray:
    """``metric`` at each point's last evaluation (after the last epoch, or
    for a pruned point after its last rung), shape ``(P, F * S)``; NaN for
    the trainings that diverged."""
    if metric not in self.curves:
      raise ValueError(
          f'unknown metric {metric!r}; the metrics are {", ".join(self.curves)}.'
      )
    values = np.where(self.diverged, np.nan, self._last(metric))
    return values.reshape(values.shape[0], -1)

  def summary(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and standard error of ``metric`` over folds and seeds, per point.

    Over the trainings that did not diverge (:func:`mean_se`), at each
    point's last evaluation (:meth:`final`): a pruned point's figures are
    after :attr:`epochs_trained` epochs, fewer than the others'. The
    standard error treats folds as independent, which they are not quite,
    so read it as a guide.
    """
    return mean_se(self.final(metric))

  def index(self, point: Any) -> int:
    """The position of ``point`` (a dict of one value per name) in
    :attr:`points`; ``ValueError`` if the grid has no such point."""
    for i, p in enumerate(self.points):
      if p == point:
        return i
    raise ValueError(f'the grid has no point {point!r}; its points are like {self.points[0]!r}.')

  def difference(
      self, metric: str, baseline: Any
  ) -> tuple[np.ndarray, np.ndarray]:
    r"""Each point's ``metric`` minus its baseline's, paired over trainings.

    .. math::

      d_p = \frac{1}{m} \sum_{k, s} \bigl(v(p, k, s) - v(b(p), k, s)\bigr),
      \qquad \mathrm{se}(d_p) = \frac{\operatorname{sd}_{k,s}\bigl(v(p, k, s)
      - v(b(p), k, s)\bigr)}{\sqrt{m}}

    where :math:`v(p, k, s)` is ``metric`` of point :math:`p` on fold
    :math:`k` with seed :math:`s` at :math:`p`'s last evaluation (after
    :attr:`epochs_trained`, for both points), :math:`b(p)` is :math:`p`
    with the names of ``baseline`` set to its values (``{'rate': 0.0}``:
    the same point without decay), and the :math:`m` pairs are those where
    neither training diverged (:func:`mean_se`). Folds and seeds share
    their data and random numbers across points, so the pairs' differences
    vary much less than either point's values, and the standard error of
    :math:`d_p` is that of a paired comparison. A point that is its own
    baseline has :math:`d_p = 0`.

    Args:
      metric: a name of :attr:`metrics`.
      baseline: a dict of names of the space to values; every point's
        baseline must be a point of the grid.

    Returns:
      ``(mean, se)``, each of shape ``(P,)``; NaN where no pair is left (or
      one, for the s.e.), e.g. when the baseline was pruned before ``p``'s
      last evaluation.

    Examples:
      >>> import numpy as np
      >>> from wdax.sweep import results
      >>> loss = np.array([[0.5, 0.7, 0.6], [0.3, 0.6, 0.3]])[:, :, None, None]
      >>> result = results.Result(
      ...     points=[{'rate': 0.0}, {'rate': 0.1}],
      ...     curves={'train_loss': loss, 'val_loss': loss}, epochs=np.array([1]),
      ...     fold_ids=np.array([0, 1, 2]), seeds=(0,), chunk_size=6, chunks=1,
      ...     devices=1, bytes_per_configuration=0)
      >>> mean, se = result.difference('val_loss', {'rate': 0.0})  # -0.2, -0.1, -0.3
      >>> mean.round(6).tolist(), se.round(6).tolist()
      ([0.0, -0.2], [0.0, 0.057735])
    """
    if metric not in self.curves:
      raise ValueError(f'unknown metric {metric!r}; the metrics are {", ".join(self.curves)}.')
    if not isinstance(baseline, dict) or not baseline:
      raise ValueError(f'baseline must be a dict of names to values; got {baseline!r}.')
    unknown = sorted(set(baseline) - set(self.points[0]))
    if unknown:
      raise ValueError(
          f'baseline names {unknown[0]!r}, which the space lacks; it has '
          f'{", ".join(map(repr, self.points[0]))}.'
      )
    bases = np.array([self.index({**p, **baseline}) for p in self.points])
    # Both points at p's last evaluation; a training that diverged there, of
    # either point, leaves its pair out.
    at = np.searchsorted(self.epochs, self.epochs_trained, side='right') - 1
    curve = self.curves[metric]
    mine = np.take_along_axis(curve, at[:, None, None, None], axis=-1)[..., 0]
    theirs = np.take_along_axis(curve[bases], at[:, None, None, None], axis=-1)[..., 0]
    loss = self.curves['val_loss'], self.curves['train_loss']
    ok = np.ones(mine.shape, bool)
    for c in loss:
      for which in (np.arange(len(self.points)), bases):
        ok &= np.isfinite(np.take_along_axis(c[which], at[:, None, None, None], axis=-1)[..., 0])
    with np.errstate(invalid='ignore'):
      pairs = np.where(ok, mine - theirs, np.nan)
    return mean_se(pairs.reshape(len(self.points), -1))

  def table(self) -> list[dict[str, Any]]:
    """One row per point: its values, then each metric's mean and s.e.
    (``<metric>`` and ``<metric>_se``, as :meth:`summary`), ``diverged``,
    the number of its trainings that diverged, ``rung``, its last rung, and
    ``epochs_trained``, fewer than the final epoch for a pruned point."""
    columns = {m: self.summary(m) for m in self.curves}
    diverged = self.diverged.reshape(len(self.points), -1).sum(axis=1)
    rows = []
    for i, point in enumerate(self.points):
      row: dict[str, Any] = dict(point)
      for name, (mean, se) in columns.items():
        row[name] = float(mean[i])
        row[f'{name}_se'] = float(se[i])
      row['diverged'] = int(diverged[i])
      row['rung'] = int(self.rung[i])
      row['epochs_trained'] = int(self.epochs_trained[i])
      rows.append(row)
    return rows

  def choose(
      self, metric: str = 'val_loss', mode: str | None = None, one_se: bool | str = False,
      *, where: dict[str, float] | None = None,
  ) -> Choice:
    """The point with the best mean ``metric``, as a :class:`Choice`.

    Args:
      metric: a name of :attr:`metrics`.
      mode: ``'min'`` or ``'max'``; by default ``'min'`` for a loss, and
        required for any other metric.
      one_se: instead take, among the points whose mean is within one
        standard error of the best one's, the one with the largest ``rate``
        (or the largest value of the name given): the strongest decay the
        data cannot tell from the best (Breiman's one-standard-error rule;
        Hastie, Tibshirani & Friedman, "The Elements of Statistical
        Learning", 2009, section 7.10).

      where: choose only among the points with these values, e.g.
        ``{'lr': 1e-3}``: the best rate at that learning rate.

    Points with a diverged training, and pruned points (not
    :attr:`finished`), are never chosen; when no point is left,
    :class:`~wdax.sweep.errors.NoChoice` is raised. Ties go to the lower mean
    ``val_loss``: accuracy moves in steps of one example, so ties on it are
    common.
    """
    mode = check_choice(self.metrics, tuple(self.points[0]), metric, mode, one_se)
    mean, se = self.summary(metric)
    diverged = self.diverged.reshape(len(self.points), -1).any(axis=1)
    ok = self.finished & ~diverged & np.isfinite(mean)
    if where is not None:
      if not isinstance(where, dict) or set(where) - set(self.points[0]):
        raise ValueError(
            f'where must be a dict of names of the space ({", ".join(self.points[0])}) '
            f'to values; got {where!r}.'
        )
      inside = np.array([all(p[n] == v for n, v in where.items()) for p in self.points])
      if not inside.any():
        raise ValueError(f'no point has the values where={where!r}.')
      ok &= inside
    if not ok.any():
      raise NoChoice(
          'every point has a diverged training or was pruned; none can be '
          f'chosen by {metric!r}.'
      )
    score = np.where(ok, mean if mode == 'max' else -mean, -np.inf)
    tied = np.flatnonzero(np.isclose(score, score.max(), rtol=0.0, atol=1e-9) & ok)
    loss = self.summary('val_loss')[0]
    index = int(tied[np.argmin(loss[tied])])
    if one_se:
      name = 'rate' if one_se is True else one_se
      threshold = score[index] - (se[index] if np.isfinite(se[index]) else 0.0)
      within = np.flatnonzero(ok & (score >= threshold))
      largest = max(self.points[i][name] for i in within)
      candidates = [i for i in within if self.points[i][name] == largest]
      index = int(max(candidates, key=lambda i: score[i]))
    return Choice(
        point=dict(self.points[index]), index=index, metric=metric, mode=mode,
        mean=float(mean[index]), se=float(se[index]),
    )

  def best(
      self, metric: str = 'val_loss', mode: str | None = None, one_se: bool | str = False
  ) -> dict[str, float]:
    """The chosen point, a dict: :meth:`choose`'s ``point``.

    Examples:
      >>> import numpy as np
      >>> from wdax.sweep import results
      >>> loss = np.array([[0.5, 0.7], [0.3, 0.5], [0.9, 0.8]])[:, :, None, None]
      >>> result = results.Result(
      ...     points=[{'rate': 0.0}, {'rate': 0.1}, {'rate': 1.0}],
      ...     curves={'train_loss': loss, 'val_loss': loss}, epochs=np.array([1]),
      ...     fold_ids=np.array([0, 1]), seeds=(0,), chunk_size=6, chunks=1,
      ...     devices=1, bytes_per_configuration=0)
      >>> result.best('val_loss')
      {'rate': 0.1}
      >>> result.summary('val_loss')[0]
      array([0.6 , 0.4 , 0.85])
    """
    return self.choose(metric, mode, one_se).point


@dataclasses.dataclass(frozen=True)
class Fit:
  """Models trained by :func:`~wdax.sweep.fit`, one per seed.

  Attributes:
    point: the hyperparameters.
    seeds: the seeds (``S`` of them).
    curves: ``train_loss``, ``train_<m>`` and, with a test set,
      ``test_loss``, ``test_<m>``, at each evaluation, shape ``(S, E)``.
    epochs: the epochs trained at each of the ``E`` evaluations.
    params: the final parameters, stacked over seeds on a leading axis.
    state: the final model state (e.g. BatchNorm statistics), stacked alike;
      empty for a task without state.
  """

  point: dict[str, float]
  seeds: tuple[int, ...]
  curves: dict[str, np.ndarray]
  epochs: np.ndarray
  params: Any
  state: Any

  def final(self, metric: str) -> np.ndarray:
    """``metric`` after the last epoch, one value per seed."""
    if metric not in self.curves:
      raise ValueError(f'unknown metric {metric!r}; the metrics are {", ".join(self.curves)}.')
    return self.curves[metric][:, -1]

  @property
  def test(self) -> dict[str, float]:
    """The test metrics after the last epoch, averaged over seeds (empty
    without a test set)."""
    return {
        m[len('test_'):]: float(np.mean(v[:, -1]))
        for m, v in self.curves.items()
        if m.startswith('test_')
    }


@dataclasses.dataclass(frozen=True)
class Selection:
  """What :func:`~wdax.sweep.select` found.

  Attributes:
    result: the cross-validation :class:`Result`.
    choice: the chosen point (:meth:`Result.choose`).
    refit: the chosen point trained on all the training examples.
  """

  result: Result
  choice: Choice
  refit: Fit
