"""The plan of a training: which configurations go in which chunk at which
rung, their padding, the evaluation points and the segments between them.

Everything here is pure and on the host: numbers in, numbers out, nothing
traced or compiled. :mod:`~wdax.sweep._runner` follows the plan.

The configurations (point x fold x seed) are trained in equal chunks, each
one call of one compiled program per segment; a segment is the epochs
between two evaluations. With rungs (a pruned grid), rung ``r`` trains the
configurations that went on, through its own segments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Rungs:
  """A pruned schedule.

  Rung ``i`` trains ``sizes[i]`` configurations on to epoch ``ends[i]``
  (rung 0 all of them, from the start). After each rung but the last,
  ``advance(i, alive, metrics)`` returns the sorted configuration indices
  that go on, ``sizes[i + 1]`` of ``alive`` (sorted, those rung ``i``
  trained), from their metrics at epoch ``ends[i]``, shaped
  ``(len(alive), 2, 1 + M)`` (training, validation).
  """

  ends: tuple[int, ...]
  sizes: tuple[int, ...]
  advance: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None


class Rung(NamedTuple):
  """One rung of a plan: ``size`` configurations trained through the
  segments ``segments`` (indices into :attr:`Plan.segments`), to epoch
  ``end``."""

  end: int
  size: int
  segments: range


class Chunk(NamedTuple):
  """The configurations of one chunk: ``rows`` (a chunk's size of them, the
  last ones copies of the last real one) of which the first ``real`` are
  trained for themselves, the rest only pad the chunk to its shape."""

  rows: np.ndarray
  real: int


@dataclasses.dataclass(frozen=True)
class Plan:
  """How ``configurations`` are trained: in chunks of ``chunk_size``, rung by
  rung, segment by segment.

  Attributes:
    configurations: how many there are.
    chunk_size: configurations per chunk (every rung's chunks have it).
    chunks: chunks of the first rung.
    points: the epochs after which each configuration is evaluated: those of
      ``evals`` and the end of every rung.
    segments: the epochs of each segment, from one point to the next.
    rungs: the rungs, one without pruning.
    segment_length: the epochs of the longest segment between the points of
      ``evals`` alone; every segment's orders of visit have it, so one
      compiled program runs every segment, and a refit without rungs too.
  """

  configurations: int
  chunk_size: int
  chunks: int
  points: np.ndarray
  segments: tuple[range, ...]
  rungs: tuple[Rung, ...]
  segment_length: int

  @property
  def calls(self) -> int:
    """Compiled calls in all: one per chunk and segment of every rung."""
    return sum(self.chunks_of(r.size) * len(r.segments) for r in self.rungs)

  def chunks_of(self, size: int) -> int:
    """Chunks of a rung of ``size`` configurations."""
    return -(-size // self.chunk_size)

  def chunk(self, alive: np.ndarray, c: int) -> Chunk:
    """Chunk ``c`` of the configurations ``alive`` (those of one rung)."""
    padded = np.concatenate([alive, np.repeat(alive[-1:], -len(alive) % self.chunk_size)])
    rows = padded[c * self.chunk_size : (c + 1) * self.chunk_size]
    return Chunk(rows, min(self.chunk_size, len(alive) - c * self.chunk_size))

  def configuration_epochs(self, last: np.ndarray) -> int:
    """Epochs trained in all, when configuration ``i`` trained up to the end
    of rung ``last[i]``."""
    ends = np.asarray([r.end for r in self.rungs])
    return int(np.bincount(last, minlength=len(ends)) @ ends)


def make(
    configurations: int,
    *,
    epochs: int,
    evals: int,
    chunk_size: int,
    chunks: int,
    rungs: Rungs | None = None,
) -> Plan:
  """The plan of training ``configurations`` for ``epochs``, evaluated
  ``evals`` times (and at the end of every rung), in chunks of
  ``chunk_size`` (``chunks`` of them for the first rung).

  Examples:
    >>> from wdax.sweep import _plan
    >>> plan = _plan.make(5, epochs=4, evals=2, chunk_size=2, chunks=3,
    ...                   rungs=_plan.Rungs((1, 4), (5, 2), None))
    >>> plan.points.tolist(), plan.segments
    ([1, 2, 4], (range(0, 1), range(1, 2), range(2, 4)))
    >>> [r.segments for r in plan.rungs], plan.calls
    ([range(0, 1), range(1, 3)], 5)
  """
  schedule = rungs or Rungs((epochs,), (configurations,), None)
  evaluated = evaluation_points(epochs, evals)
  points = np.union1d(evaluated, schedule.ends)
  segments = tuple(range(a, b) for a, b in zip([0, *points[:-1].tolist()], points.tolist()))
  starts = np.searchsorted(points, (0, *schedule.ends[:-1]), side='right')
  stops = np.searchsorted(points, schedule.ends, side='right')
  return Plan(
      configurations=configurations,
      chunk_size=chunk_size,
      chunks=chunks,
      points=points,
      segments=segments,
      rungs=tuple(
          Rung(int(end), int(size), range(int(a), int(b)))
          for end, size, a, b in zip(schedule.ends, schedule.sizes, starts, stops)
      ),
      segment_length=int(np.diff(evaluated, prepend=0).max()),
  )


def chunking(
    configurations: int,
    devices: int,
    per_configuration: int,
    chunk_size: int | None,
    memory: int | None,
    default_budget: int,
) -> tuple[int, int]:
  """``(chunk_size, chunks)``: equal chunks, each a multiple of ``devices``.

  The limit is ``chunk_size`` or, without it, as many configurations as the
  budget (``memory``, else ``default_budget``) holds per device. Of the
  fewest chunks under the limit and one or two more, the split that pads
  least is taken (80 in 4 chunks of 20, not 3 of 28).

  Examples:
    >>> from wdax.sweep import _plan
    >>> _plan.chunking(80, 2, 1, 38, None, 0)
    (20, 4)
  """
  if chunk_size is None:
    budget = default_budget if memory is None else memory
    per_device = max(1, budget // max(per_configuration, 1))
    limit = per_device * devices
  else:
    limit = chunk_size
  limit = max(devices, limit // devices * devices)
  fewest = -(-configurations // limit)

  def split(chunks: int) -> tuple[int, int]:
    size = -(-configurations // chunks)
    return -(-size // devices) * devices, chunks

  return min(
      (split(c) for c in range(fewest, fewest + 3)),
      key=lambda sc: (sc[0] * sc[1], sc[1]),
  )


def evaluation_points(epochs: int, evals: int) -> np.ndarray:
  """The epochs after which to evaluate: ``evals`` evenly spaced, the last
  one after the final epoch.

  Examples:
    >>> from wdax.sweep import _plan
    >>> _plan.evaluation_points(13, 5)
    array([ 3,  5,  8, 10, 13])
  """
  points = min(epochs, evals)
  return np.unique(np.round(np.linspace(0, epochs, points + 1)[1:]).astype(int))
