r"""Data, folds and held-out splits.

Data is a pytree of arrays sharing a leading example axis, kept in its own
dtypes. A fold assignment is an int vector, one fold id per example; fold
:math:`k` validates on the examples with id :math:`k` and trains on the rest.
All of it is made on the host with numpy, once, before anything compiles.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from wdax.sweep import _checks


def check_data(data: Any, name: str = 'data') -> tuple[Any, int]:
  """``(data, n)``: the data with numpy leaves, and its number of examples.

  Raises ``ValueError`` naming the leaf when ``data`` has no leaves, a leaf
  is not a numeric array with an example axis, the leaves disagree on the
  number of examples, or a floating leaf holds NaN or infinite values.

  Examples:
    >>> import numpy as np
    >>> from wdax import sweep
    >>> sweep.check_data({'x': np.ones((4, 2)), 'y': np.ones(3)})
    Traceback (most recent call last):
      ...
    ValueError: data['y'] has 3 examples (leading dimension); data['x'] has 4.
  """
  with_path, treedef = jax.tree_util.tree_flatten_with_path(data)
  if not with_path:
    raise ValueError(f'{name} has no arrays.')
  leaves, first = [], None
  for keypath, leaf in with_path:
    where = f'{name}{jax.tree_util.keystr(keypath)}'
    array = np.asarray(leaf)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
      raise ValueError(f'{where} must be numeric; got dtype {array.dtype}.')
    if array.ndim == 0:
      raise ValueError(f'{where} is a scalar; it needs a leading example axis.')
    if array.shape[0] == 0:
      raise ValueError(f'{name} has no examples ({where} has shape {array.shape}).')
    if first is None:
      first = (where, array.shape[0])
    elif array.shape[0] != first[1]:
      raise ValueError(
          f'{where} has {array.shape[0]} examples (leading dimension); '
          f'{first[0]} has {first[1]}.'
      )
    if np.issubdtype(array.dtype, np.inexact):
      bad = ~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
      if bad.any():
        raise ValueError(
            f'{where} has NaN or infinite values in {int(bad.sum())} rows '
            f'(first: row {int(np.argmax(bad))}).'
        )
    leaves.append(array)
  return jax.tree_util.tree_unflatten(treedef, leaves), leaves[0].shape[0]


def take(data: Any, index: Any) -> Any:
  """The examples ``index`` of every leaf of ``data``."""
  return jax.tree.map(lambda a: a[index], data)


def _count(folds: Any) -> int:
  if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
    raise ValueError(f'folds must be an int >= 2; got {folds!r}.')
  return int(folds)


def stratified_folds(labels: Any, folds: int, *, seed: int = 0) -> np.ndarray:
  r"""Stratified k-fold ids: each class dealt round-robin over the folds.

  .. math::

    \operatorname{fold}(i) = \Bigl(\sum_{c' < c} n_{c'} + \pi_c(i)\Bigr)
    \bmod K

  where example :math:`i` has class :math:`c`, :math:`n_{c'}` counts the
  examples of each earlier class, :math:`\pi_c(i) \in \{0, \dots, n_c - 1\}`
  is its place in a random permutation of its class (drawn from ``seed``)
  and :math:`K` is ``folds``. Each class's count per fold differs by at most
  one between folds, and so do the folds' sizes; stratification keeps each
  fold's class balance that of the whole (Kohavi, "A Study of
  Cross-Validation and Bootstrap for Accuracy Estimation and Model
  Selection", IJCAI 1995).

  Args:
    labels: the class labels, a vector (any sortable values).
    folds: the number of folds, at least 2.
    seed: the shuffle's seed.

  Returns:
    An int64 vector of fold ids, one per example.

  Raises:
    ValueError: if a class has fewer examples than folds.

  Examples:
    >>> from wdax import sweep
    >>> sweep.stratified_folds([0, 0, 1, 1, 1, 0], 3)
    array([1, 2, 2, 1, 0, 0])
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f'stratified_folds(): labels must be a vector; got shape {labels.shape}.')
  folds = _count(folds)
  classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
  if len(labels) and counts.min() < folds:
    c = int(np.argmin(counts))
    raise ValueError(
        f'class {classes[c]} has {counts[c]} examples, fewer than the {folds} folds.'
    )
  rng = np.random.default_rng(seed)
  ids = np.empty(len(labels), np.int64)
  dealt = 0
  for c in range(len(classes)):
    members = rng.permutation(np.flatnonzero(codes == c))
    ids[members] = (dealt + np.arange(len(members))) % folds
    dealt += len(members)
  return ids


def shuffled_folds(n: int, folds: int, *, seed: int = 0) -> np.ndarray:
  """Plain k-fold ids over ``n`` examples in a random order.

  The examples, permuted by ``np.random.default_rng(seed)``, are cut into
  ``folds`` consecutive blocks whose sizes differ by at most one (the first
  ``n mod folds`` one larger), as scikit-learn's ``KFold(shuffle=True)``.

  Examples:
    >>> import numpy as np
    >>> from wdax import sweep
    >>> np.bincount(sweep.shuffled_folds(10, 3))
    array([4, 3, 3])
  """
  n, folds = _checks.integer(n, 'n', 1), _count(folds)
  if folds > n:
    raise ValueError(f'folds ({folds}) exceeds the {n} examples.')
  ids = np.empty(n, np.int64)
  ids[np.random.default_rng(seed).permutation(n)] = contiguous_folds(n, folds)
  return ids


def contiguous_folds(n: int, folds: int) -> np.ndarray:
  """K-fold ids of blocks in order: fold 0 is the first examples, and so on.

  For ordered data (text, time series), so that a fold's validation examples
  are a stretch the training set does not surround example by example. Block
  sizes differ by at most one, the first ``n mod folds`` one larger.

  Examples:
    >>> from wdax import sweep
    >>> sweep.contiguous_folds(7, 3)
    array([0, 0, 0, 1, 1, 2, 2])
  """
  n, folds = _checks.integer(n, 'n', 1), _count(folds)
  if folds > n:
    raise ValueError(f'folds ({folds}) exceeds the {n} examples.')
  sizes = np.full(folds, n // folds)
  sizes[: n % folds] += 1
  return np.repeat(np.arange(folds), sizes)


def check_fold_ids(ids: Any, n: int) -> np.ndarray:
  """User-given fold ids as int64, or ``ValueError`` naming what is wrong."""
  ids = np.asarray(ids)
  if ids.shape != (n,):
    raise ValueError(f'folds must hold one fold id per example ({n}); got shape {ids.shape}.')
  if not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f'folds must hold integer fold ids; got dtype {ids.dtype}.')
  if ids.min() < 0:
    raise ValueError(f'folds: fold ids must be 0, 1, ...; got {int(ids.min())}.')
  count = int(ids.max()) + 1
  if count < 2:
    raise ValueError('folds: the fold ids name a single fold; give at least 2.')
  empty = np.flatnonzero(np.bincount(ids, minlength=count) == 0)
  if empty.size:
    raise ValueError(
        f'folds: fold {int(empty[0])} is empty (the ids run 0 .. {count - 1}, '
        f'each fold needs examples).'
    )
  return ids.astype(np.int64)


def fold_ids(task: Any, data: Any, n: int, folds: Any, seed: int) -> np.ndarray:
  """The fold ids of a sweep: ``folds`` as given, or made by ``task``'s rule."""
  if not isinstance(folds, (int, np.integer)):
    return check_fold_ids(folds, n)
  count = int(folds)
  if task.folds == 'stratified':
    return stratified_folds(task.labels(data), count, seed=seed)
  if task.folds == 'contiguous':
    return contiguous_folds(n, count)
  return shuffled_folds(n, count, seed=seed)


def stratified_split(labels: Any, test_size: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Indices ``(train, test)`` holding out about ``test_size`` of each class.

  Each class is permuted by ``np.random.default_rng(seed)`` (one generator,
  the classes in sorted order) and its first ``round(test_size * n_c)``
  examples are held out, at least one and at most ``n_c - 1`` of a class of
  two or more; a class of one stays in training.

  Examples:
    >>> from wdax import sweep
    >>> train, test = sweep.stratified_split([0, 0, 0, 0, 1, 1], 0.5)
    >>> len(train), len(test)
    (3, 3)
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f'stratified_split(): labels must be a vector; got shape {labels.shape}.')
  _fraction(test_size)
  rng = np.random.default_rng(seed)
  held = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    k = int(round(test_size * len(members)))
    k = min(max(k, 1), len(members) - 1) if len(members) > 1 else 0
    held[members[:k]] = True
  return np.flatnonzero(~held), np.flatnonzero(held)


def shuffled_split(n: int, test_size: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Indices ``(train, test)``: ``round(test_size * n)`` examples drawn at
  random held out (at least one, and one left to train), for a regression.

  The first ones of the permutation ``np.random.default_rng(seed).permutation(n)``
  are held out; both index arrays are returned sorted.

  Examples:
    >>> from wdax import sweep
    >>> train, test = sweep.shuffled_split(10, 0.3, seed=0)
    >>> len(train), len(test), sorted([*train, *test]) == list(range(10))
    (7, 3, True)
  """
  n = _checks.integer(n, 'n', 2)
  _fraction(test_size)
  k = min(max(int(round(test_size * n)), 1), n - 1)
  order = np.random.default_rng(seed).permutation(n)
  return np.sort(order[k:]), np.sort(order[:k])


def contiguous_split(n: int, test_size: float) -> tuple[np.ndarray, np.ndarray]:
  """Indices ``(train, test)``: the last ``round(test_size * n)`` examples
  held out (at least one, and one left to train), for ordered data.

  Examples:
    >>> from wdax import sweep
    >>> sweep.contiguous_split(5, 0.4)
    (array([0, 1, 2]), array([3, 4]))
  """
  n = _checks.integer(n, 'n', 2)
  _fraction(test_size)
  k = min(max(int(round(test_size * n)), 1), n - 1)
  return np.arange(n - k), np.arange(n - k, n)


def _fraction(value: float) -> None:
  if not isinstance(value, (int, float, np.floating)) or not 0 < value < 1:
    raise ValueError(f'test_size must be a fraction in (0, 1); got {value!r}.')
