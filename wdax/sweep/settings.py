"""The settings of a sweep, written once and checked when made."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from wdax.sweep import _checks
from wdax.sweep.pruning import Halving


@dataclasses.dataclass(frozen=True, eq=False, init=False)
class Settings:
  """How :func:`~wdax.sweep.grid`, :func:`~wdax.sweep.fit` and
  :func:`~wdax.sweep.select` train; each is also a keyword-only argument of
  theirs, with the same default (``tests/test_sweep_settings.py`` checks
  that they agree). Made once and checked when made, in normal forms:
  ``seeds`` a tuple, ``folds`` a count or a read-only int64 vector,
  ``devices`` a count or a tuple.

  Attributes:
    folds: the number of folds (at least 2), made by the task's rule
      (stratified by label for :func:`~wdax.sweep.classifier`, shuffled for
      :func:`~wdax.sweep.regressor`, contiguous for
      :func:`~wdax.sweep.language_model`), or an int array of fold ids, one per
      example, ``0 .. K-1``. Not a setting of :func:`~wdax.sweep.fit`.
    seeds: a count ``S`` (seeds ``0 .. S-1``) or a list of distinct seeds.
      Seed ``s`` initialises the parameters with ``jax.random.key(s)`` and
      draws the orders of visit and the dropout keys.
    epochs: passes over each training set.
    batch_size: examples per minibatch.
    fold_seed: the seed of the fold assignment when ``folds`` is a count.
      Not a setting of :func:`~wdax.sweep.fit`.
    evals: how many times each training is evaluated, evenly spaced, the last
      after the final epoch (at most once an epoch).
    devices: what the configurations are sharded over: ``None`` for every
      device of every process (``jax.devices()``), a count (the first ones),
      or a list of devices.
    chunk_size: configurations per compiled chunk; by default as many as
      ``memory`` allows.
    memory: the memory budget per device, in bytes, that sets the chunk size
      from an estimate of one configuration's needs; by default half the
      device's memory where it reports it, else 2 GiB, and 16 MiB on CPU,
      where larger chunks run no faster per configuration.
    prune: ``None`` to train every point for every epoch, or a
      :class:`~wdax.sweep.Halving` schedule: successive halving of the
      points by validation loss, rung by rung. Its ``min_epochs`` may not
      exceed ``epochs``. Not a setting of :func:`~wdax.sweep.fit`.

  Examples:
    >>> from wdax import sweep
    >>> sweep.Settings(epochs=3).seeds
    (0,)
    >>> sweep.Settings(batch_size=0)
    Traceback (most recent call last):
      ...
    ValueError: batch_size must be an int >= 1; got 0.
  """

  folds: int | np.ndarray
  seeds: tuple[int, ...]
  epochs: int
  batch_size: int
  fold_seed: int
  evals: int
  devices: int | tuple[Any, ...] | None
  chunk_size: int | None
  memory: int | None
  prune: Halving | None

  def __init__(
      self,
      *,
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
  ) -> None:
    put = functools.partial(object.__setattr__, self)
    put('folds', _fold_setting(folds))
    put('seeds', _checks.seeds(seeds))
    put('epochs', _checks.integer(epochs, 'epochs', 1))
    put('batch_size', _checks.integer(batch_size, 'batch_size', 1))
    put('fold_seed', _checks.integer(fold_seed, 'fold_seed', 0))
    put('evals', _checks.integer(evals, 'evals', 1))
    put('chunk_size', None if chunk_size is None else _checks.integer(chunk_size, 'chunk_size', 1))
    put('memory', None if memory is None else _checks.integer(memory, 'memory', 1))
    if prune is not None:
      if not isinstance(prune, Halving):
        raise ValueError(
            'prune must be None or a sweep.Halving(min_epochs, reduction_factor); '
            f'got {prune!r}.'
        )
      prune.rungs(self.epochs)
    put('prune', prune)
    put('devices', _device_setting(devices))


# Settings that only cross-validation reads: not keywords of fit.
GRID_ONLY = ('folds', 'fold_seed', 'prune')


def _fold_setting(folds: Any) -> int | np.ndarray:
  if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
    return _checks.integer(folds, 'folds', 2)
  ids = np.asarray(folds)
  if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
    raise ValueError(
        'folds must be a count or a vector of int fold ids, one per '
        f'example; got {_describe(folds)}.'
    )
  ids = ids.astype(np.int64)
  ids.setflags(write=False)
  return ids


def _device_setting(devices: Any) -> int | tuple[Any, ...] | None:
  if devices is None:
    return None
  if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
    return _checks.integer(devices, 'devices', 1)
  if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
    raise ValueError(f'devices must be None, a count or a list of devices; got {devices!r}.')
  if not devices:
    raise ValueError('devices is empty.')
  return tuple(devices)


def _describe(value: Any) -> str:
  array = np.asarray(value)
  return f'{type(value).__name__} of shape {array.shape} and dtype {array.dtype}'
