r"""Resuming a sweep: what the entry points and the runner ask of a checkpoint.

:func:`open_store` opens the folder of a ``checkpoint=`` argument with the
call's settings (refusing a different run); :class:`Saving` is the runner's
view of one stage of it (``grid`` or ``refit``): the parts already trained,
the rungs already decided, a save after a segment when one is due, and a
stop at the next safe point when SIGINT or SIGTERM asked for one.

What a resumed run computes is what the uninterrupted run computed: a part
is restored to the bits it was saved with, a rung's decision is read back
instead of made again, and the training programs are deterministic.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from wdax.sweep import _checkpoint
from wdax.sweep import _fingerprint
from wdax.sweep import errors

# A save between a chunk's segments at most this often, in seconds; a
# chunk's end, and a stop asked by a signal, are always saved. 0 saves after
# every segment. Each save flushes two files to disk (about 25 ms each on
# the test machine), which after every segment of the default digits job
# (0.2 s each) added about half its time; a minute loses at most a minute
# and a segment of training to a kill without notice.
DEFAULT_EVERY = 60.0


def _shape_of(data: Any) -> str:
  leaves = jax.tree_util.tree_leaves_with_path(data)
  return ', '.join(
      f'{jax.tree_util.keystr(p)} {tuple(np.shape(a))} {np.asarray(a).dtype}' for p, a in leaves
  )


def fingerprint(
    fn: str, prep: Any, *, test: Any = None, choice: Any = None,
) -> tuple[dict[str, str], dict[str, str]]:
  """``(digests, shown)`` of every setting of an entry point's call that
  changes its numbers, in the order a difference is named."""
  s = prep.settings
  devices = prep.devices
  plain: dict[str, Any] = {
      'entry point': fn,
      'processes': jax.process_count(),
      'devices': f'{len(devices)} {devices[0].platform} ({devices[0].device_kind})',
      'task': prep.job.task,
      'data': prep.data,
      'space': dict(zip(prep.space.names, prep.space.values)),
      'optimizer': prep.job.optimizer,
      'folds': s.folds,
      'seeds': s.seeds,
      'epochs': s.epochs,
      'batch_size': s.batch_size,
      'fold_seed': s.fold_seed,
      'evals': s.evals,
      'chunk_size': s.chunk_size,
      'memory': s.memory,
      'prune': s.prune,
      'test': test,
      'choice': choice,
  }
  if fn == 'fit':
    for name in ('folds', 'fold_seed', 'prune', 'choice'):
      del plain[name]
  digests = {name: _fingerprint.digest(value) for name, value in plain.items()}
  shown = {name: _show(name, value) for name, value in plain.items()}
  for package, version in _fingerprint.versions().items():
    digests[f'{package} version'] = shown[f'{package} version'] = version
  return digests, shown


def _show(name: str, value: Any) -> str:
  if name in ('data', 'test') and value is not None:
    return _shape_of(value)
  if name in ('task', 'optimizer'):
    return getattr(value, '__qualname__', type(value).__name__)
  text = repr(value)
  return text if len(text) <= 80 else f'{text[:77]}...'


def planned(fn: str, prep: Any) -> dict[str, int]:
  """The configuration-epochs of each stage of the call."""
  s = prep.settings
  out = {}
  if fn != 'fit':
    trainings = len(prep.val_table) * len(s.seeds)
    if s.prune is None:
      out['grid'] = len(prep.space) * trainings * s.epochs
    else:
      kept = int(s.prune.kept(prep.space.points()).sum())
      out['grid'] = s.prune.configuration_epochs(len(prep.space), s.epochs, trainings, kept)
  if fn != 'grid':
    out['refit'] = len(s.seeds) * s.epochs
  return out


def open_store(
    fn: str, prep: Any, checkpoint: str | os.PathLike | None, *, restart: bool,
    every: float = DEFAULT_EVERY, test: Any = None, choice: Any = None,
) -> _checkpoint.Store | None:
  """The checkpoint of an entry point's call, or ``None`` without one."""
  if checkpoint is None:
    return None
  if not isinstance(checkpoint, (str, os.PathLike)):
    raise TypeError(f'checkpoint must be a folder (a str or a path); got {checkpoint!r}.')
  if isinstance(every, bool) or not isinstance(every, (int, float)) or not every >= 0:
    raise ValueError(f'checkpoint_every must be a number of seconds >= 0; got {every!r}.')
  digests, shown = fingerprint(fn, prep, test=test, choice=choice)
  stages = {'grid': ('grid',), 'fit': ('refit',), 'select': ('grid', 'refit')}[fn]
  return _checkpoint.Store(
      checkpoint, digests, shown, planned(fn, prep), stages, restart=restart, every=float(every)
  )


@dataclasses.dataclass
class Saving:
  """One stage's saving for the runner; with ``store=None`` it saves
  nothing, restores nothing and never stops the training."""

  store: _checkpoint.Store | None
  stage: str

  @property
  def finished(self) -> bool:
    """Whether every part of the stage is saved complete."""
    return self.store is not None and self.store.finished(self.stage)

  def check(self, name: str, value: int) -> None:
    """Refuses a resumed stage whose plan (the chunk size) differs."""
    if self.store is not None:
      self.store.check(self.stage, name, value)

  def decision(self, rung: int, decide: Callable[[], np.ndarray]) -> np.ndarray:
    """The configurations that go on to ``rung``: as saved, or ``decide()``."""
    if self.store is not None:
      saved = self.store.decided(self.stage, rung)
      if saved is not None:
        return saved
    alive = np.asarray(decide())
    if self.store is not None:
      self.store.decide(self.stage, rung, alive)
    return alive

  def part(self, rung: int, chunk: int) -> _checkpoint.Part | None:
    """The saved part of ``chunk`` of ``rung``, if any."""
    return None if self.store is None else self.store.part(self.stage, rung, chunk)

  def after_segment(
      self, rung: int, chunk: int, *, segments: int, complete: bool, configuration_epochs: int,
      arrays: Callable[[], Mapping[str, Any]],
  ) -> None:
    """Saves after a segment when due (always at a chunk's end, and when a
    signal asks the sweep to stop), then raises
    :class:`~wdax.sweep.errors.Interrupted` if one did. ``arrays()``
    makes what is saved; every process calls this together."""
    if self.store is None:
      return
    stop, due = _agreed(_checkpoint.stop_requested(), complete or self.store.due())
    if due or stop:
      self.store.save(
          self.stage, rung, chunk, segments=segments, complete=complete,
          configuration_epochs=configuration_epochs, arrays=arrays(),
      )
    if stop:
      raise errors.Interrupted(stop, str(self.store.folder))

  def finish(self) -> None:
    if self.store is not None:
      self.store.finish(self.stage)


def _agreed(stop: int | None, due: bool) -> tuple[int | None, bool]:
  """Every process's stop and save, agreed: a process that saves or stops
  alone would wait forever in the next collective."""
  if jax.process_count() == 1:
    return stop, due
  from jax.experimental import multihost_utils

  flags = multihost_utils.process_allgather(np.array([stop or 0, int(due)], np.int32))
  flags = np.asarray(flags).reshape(-1, 2)
  signals = flags[:, 0][flags[:, 0] > 0]
  return (int(signals[0]) if len(signals) else None), bool(flags[:, 1].any())
