r"""The runner's checkpoint hooks: what a chunk's save holds, and a restore.

:func:`~wdax.sweep._runner.train` calls :func:`restore` before it trains,
to move a fresh :class:`~wdax.sweep._state.State` to where the saved parts
of a :class:`~wdax.sweep._resume.Saving` leave it, and
:func:`~wdax.sweep._runner.step` calls :func:`after_segment` after each
segment, which saves the chunk when a save is due. A state is restored to
the bits it was saved with, so a resumed run gives the numbers of a run that
never stopped (``tests/test_sweep_checkpoint.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from wdax.sweep import _checkpoint
from wdax.sweep import _placement
from wdax.sweep import _plan
from wdax.sweep import _resume
from wdax.sweep import _state
from wdax.sweep._job import Carry


def after_segment(
    saving: _resume.Saving, plan: _plan.Plan, state: _state.State, chunk: _plan.Chunk,
    carry: Carry | None,
) -> None:
  """Saves ``state``'s chunk ``chunk`` after the segment it just ran, when
  due (:meth:`~wdax.sweep._resume.Saving.after_segment`): its metrics over
  the rung so far, and its state ``carry`` unless None."""
  rung = plan.rungs[state.rung]
  begun = plan.rungs[state.rung - 1].end if state.rung else 0
  real = chunk.rows[: chunk.real]
  saving.after_segment(
      state.rung, state.chunk, segments=state.segment - rung.segments.start,
      complete=state.segment == rung.segments.stop,
      configuration_epochs=chunk.real * (int(plan.points[state.segment - 1]) - begun),
      arrays=_saved(state, real, slice(rung.segments.start, state.segment), carry),
  )


def _saved(
    state: _state.State, real: np.ndarray, segments: slice, carry: Carry | None
) -> Callable[[], dict[str, Any]]:
  """What a chunk's save holds, made when a save is due: its metrics over
  the rung's ``segments`` so far, and its state unless ``carry`` is None."""

  def arrays() -> dict[str, Any]:
    out = {'metrics': state.metrics[real, segments]}
    if state.tested is not None:
      out['tested'] = state.tested[real, segments]
    if carry is not None:
      out.update(_checkpoint.flatten(_placement.host(carry), 'carry'))
    return out

  return arrays


def restore(
    saving: _resume.Saving, rungs: _plan.Rungs | None, plan: _plan.Plan, state: _state.State,
    like: Callable[[], Carry],
) -> None:
  """Moves a fresh ``state`` to where the saved parts leave it: their
  metrics, the states of finished chunks and of the chunk in progress, the
  rungs as decided. ``like()`` gives the shapes of a chunk's
  :class:`~wdax.sweep._job.Carry`, asked once, for the first saved state."""
  shape = None
  while not state.finished_all(plan):
    part = saving.part(state.rung, state.chunk)
    if part is None:
      return
    rung, chunk = plan.rungs[state.rung], plan.chunk(state.alive, state.chunk)
    real, span = chunk.rows[: chunk.real], slice(rung.segments.start, rung.segments.start + part.segments)
    state.metrics[real, span] = part.arrays['metrics']
    if state.tested is not None:
      state.tested[real, span] = part.arrays['tested']
    state.done += part.segments
    carry = None
    if 'carry/0' in part.arrays:
      shape = shape or like()
      carry = _checkpoint.unflatten(shape, part.arrays, 'carry')
    if not part.complete:
      state.carry, state.segment = carry, span.stop
      return
    more = state.rung + 1 < len(plan.rungs)
    kept = None if more or carry is None else (carry.params, carry.state)
    _state.next_chunk(rungs, plan, state, saving, carry if more else None, kept)
