"""The settings of a sweep, written once and checked when made."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import numpy as np

from wdax.sweep import _checks
from wdax.sweep.pruning import Halving


@dataclasses.dataclass(frozen=True, eq=False)
class Settings:
  """How :func:`~wdax.sweep.grid`, :func:`~wdax.sweep.fit` and
  :func:`~wdax.sweep.select` train; each is also a keyword argument of theirs.

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

  folds: int | np.ndarray = 5
  seeds: int | Sequence[int] = 1
  epochs: int = 20
  batch_size: int = 32
  fold_seed: int = 0
  evals: int = 10
  devices: int | Sequence[Any] | None = None
  chunk_size: int | None = None
  memory: int | None = None
  prune: Halving | None = None

  def __post_init__(self):
    def put(name, value):
      object.__setattr__(self, name, value)

    if isinstance(self.folds, (int, np.integer)) and not isinstance(self.folds, bool):
      put('folds', _checks.integer(self.folds, 'folds', 2))
    else:
      ids = np.asarray(self.folds)
      if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise ValueError(
            'folds must be a count or a vector of int fold ids, one per '
            f'example; got {_describe(self.folds)}.'
        )
      ids = ids.astype(np.int64)
      ids.setflags(write=False)
      put('folds', ids)
    put('seeds', _checks.seeds(self.seeds))
    put('epochs', _checks.integer(self.epochs, 'epochs', 1))
    put('batch_size', _checks.integer(self.batch_size, 'batch_size', 1))
    put('fold_seed', _checks.integer(self.fold_seed, 'fold_seed', 0))
    put('evals', _checks.integer(self.evals, 'evals', 1))
    if self.chunk_size is not None:
      put('chunk_size', _checks.integer(self.chunk_size, 'chunk_size', 1))
    if self.memory is not None:
      put('memory', _checks.integer(self.memory, 'memory', 1))
    if self.prune is not None:
      if not isinstance(self.prune, Halving):
        raise ValueError(
            'prune must be None or a sweep.Halving(min_epochs, reduction_factor); '
            f'got {self.prune!r}.'
        )
      self.prune.rungs(self.epochs)
    devices = self.devices
    if devices is not None and not (
        isinstance(devices, (int, np.integer)) and not isinstance(devices, bool)
    ):
      if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
        raise ValueError(
            f'devices must be None, a count or a list of devices; got {devices!r}.'
        )
      if not devices:
        raise ValueError('devices is empty.')
      put('devices', tuple(devices))
    elif devices is not None:
      put('devices', _checks.integer(devices, 'devices', 1))


# Settings that only cross-validation reads.
GRID_ONLY = ('folds', 'fold_seed', 'prune')


def _describe(value: Any) -> str:
  array = np.asarray(value)
  return f'{type(value).__name__} of shape {array.shape} and dtype {array.dtype}'


def make(fn: str, given: dict[str, Any], *, exclude: Sequence[str] = ()) -> Settings:
  """``Settings(**given)``, where ``fn`` takes every field but ``exclude``.

  An unknown name is a ``TypeError`` naming it and the known ones.
  """
  known = [f.name for f in dataclasses.fields(Settings) if f.name not in exclude]
  unknown = sorted(set(given) - set(known))
  if unknown:
    raise TypeError(
        f'{fn}() got unknown setting(s) {", ".join(map(repr, unknown))}; its '
        f'settings are {", ".join(known)}.'
    )
  return Settings(**given)


def signed(exclude: Sequence[str] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  """Gives a function taking ``**settings`` the full signature: its own
  parameters, then each setting by name with its default, so ``help`` and
  ``inspect.signature`` show the settings although they are written once."""

  def decorate(fn):
    own = inspect.signature(fn)
    params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    params += [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for f in dataclasses.fields(Settings)
        if f.name not in exclude
    ]
    fn.__signature__ = own.replace(parameters=params)
    return fn

  return decorate
