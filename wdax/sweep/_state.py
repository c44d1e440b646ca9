r"""Where a training stands between two segments, and how it moves past a chunk.

Everything that changes between two segments of
:func:`~wdax.sweep._runner.train` is the :class:`State`, one record of named
fields (the position: rung, chunk, segment; the current chunk's
:class:`~wdax.sweep._job.Carry`; the host copies of the rung's finished
chunks and of the rung before; the metrics so far).
:func:`~wdax.sweep._runner.step` runs a segment and advances it;
:func:`next_chunk` moves it past a finished chunk, to the next chunk or the
next rung, whether the chunk was trained or restored from a checkpoint
(:mod:`~wdax.sweep._saving`).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import NamedTuple

import jax
import numpy as np

from wdax.sweep import _placement
from wdax.sweep import _plan
from wdax.sweep import _resume
from wdax.sweep._job import Carry


class Carried(NamedTuple):
  """The training states at the end of a rung, on the host: row ``i`` of
  ``carry`` is configuration ``rows[i]`` (sorted; then the padding)."""

  rows: np.ndarray
  carry: Carry


@dataclasses.dataclass
class State:
  """Where a training stands between two segments; :func:`~wdax.sweep._runner.step`
  advances it.

  Attributes:
    rung: the rung in training (``len(plan.rungs)`` once done).
    chunk: the chunk in training, of the rung's.
    segment: the next segment to run, an index into ``plan.segments``.
    alive: the configurations of the rung, sorted.
    carry: the chunk's training state, ``None`` before its first segment.
    finished: host copies of the rung's finished chunks' states, in order,
      when a rung follows.
    previous: the states of the rung before, when there was one.
    kept: host copies of the finished chunks' ``(params, state)``, when the
      training keeps them.
    metrics: ``(configurations, points, 2, 1 + M)``; NaN where not trained.
    tested: ``(configurations, points, 1 + M)`` on the test data, or None.
    last: the last rung each configuration trained in, so far.
    done: segments run, of ``plan.calls``.
  """

  rung: int
  chunk: int
  segment: int
  alive: np.ndarray
  carry: Carry | None
  finished: list[Carry]
  previous: Carried | None
  kept: list[tuple[Any, Any]]
  metrics: np.ndarray
  tested: np.ndarray | None
  last: np.ndarray
  done: int

  @classmethod
  def start(cls, plan: _plan.Plan, metrics: int, tested: bool) -> State:
    """Nothing trained yet, for ``metrics`` metrics besides the loss."""
    total, points = plan.configurations, len(plan.points)
    return cls(
        rung=0, chunk=0, segment=plan.rungs[0].segments.start, alive=np.arange(total),
        carry=None, finished=[], previous=None, kept=[],
        metrics=np.full((total, points, 2, 1 + metrics), np.nan, np.float32),
        tested=np.full((total, points, 1 + metrics), np.nan, np.float32) if tested else None,
        last=np.zeros(total, np.int64), done=0,
    )

  def finished_all(self, plan: _plan.Plan) -> bool:
    return self.rung == len(plan.rungs)

  def on_host(self) -> State:
    """A copy whose arrays are all on the host (numpy, but random keys)."""
    carry = None if self.carry is None else _placement.host(self.carry)
    return dataclasses.replace(
        self, carry=carry, finished=list(self.finished), kept=list(self.kept),
        alive=self.alive.copy(), metrics=self.metrics.copy(), last=self.last.copy(),
        tested=None if self.tested is None else self.tested.copy(),
    )


def next_chunk(
    rungs: _plan.Rungs | None, plan: _plan.Plan, state: State, saving: _resume.Saving,
    finished: Carry | None, kept: tuple[Any, Any] | None,
) -> None:
  """Moves ``state`` past its chunk, whose host states are ``finished``
  (for the next rung) or ``kept`` (the final parameters): to the next chunk,
  or, after the rung's last, to the next rung with those that go on, as
  ``saving`` holds them or as ``rungs.advance`` decides."""
  more = state.rung + 1 < len(plan.rungs)
  if finished is not None:
    state.finished.append(finished)
  if kept is not None:
    state.kept.append(kept)
  state.carry, state.chunk = None, state.chunk + 1
  if state.chunk < plan.chunks_of(len(state.alive)):
    state.segment = plan.rungs[state.rung].segments.start
    return
  if more:
    assert rungs is not None and rungs.advance is not None
    ended, advance = plan.rungs[state.rung].segments.stop - 1, rungs.advance
    going = saving.decision(
        state.rung + 1, lambda: advance(state.rung, state.alive, state.metrics[state.alive, ended])
    )
    # Host copies of the state of ``alive`` (in order; then the padding).
    state.previous = Carried(
        state.alive, jax.tree.map(lambda *a: _placement.concatenate(a), *state.finished)
    )
    state.finished, state.alive = [], going
    state.last[going] = state.rung + 1
    state.segment = plan.rungs[state.rung + 1].segments.start
  state.rung, state.chunk = state.rung + 1, 0
