"""Tests of wdax.sweep._plan: chunks, rungs, segments and evaluation points,
worked out by hand."""

import numpy as np
import pytest

from wdax.sweep import _plan


def test_an_unpruned_plan_has_one_rung_through_every_segment():
  plan = _plan.make(7, epochs=6, evals=3, chunk_size=4, chunks=2)
  assert plan.points.tolist() == [2, 4, 6]
  assert plan.segments == (range(0, 2), range(2, 4), range(4, 6))
  assert plan.rungs == (_plan.Rung(end=6, size=7, segments=range(0, 3)),)
  assert plan.segment_length == 2
  assert plan.calls == 2 * 3  # two chunks, three segments each
  assert plan.configuration_epochs(np.zeros(7, int)) == 7 * 6


def test_rung_ends_add_evaluation_points_and_split_segments():
  # Evaluations after 2, 4, 6; rungs end at 3 and 6: a segment 2-3 and 3-4.
  plan = _plan.make(6, epochs=6, evals=3, chunk_size=2, chunks=3,
                    rungs=_plan.Rungs((3, 6), (6, 2), None))
  assert plan.points.tolist() == [2, 3, 4, 6]
  assert plan.segments == (range(0, 2), range(2, 3), range(3, 4), range(4, 6))
  assert [r.segments for r in plan.rungs] == [range(0, 2), range(2, 4)]
  assert [(r.end, r.size) for r in plan.rungs] == [(3, 6), (6, 2)]
  # The orders of every segment have the length of the longest between the
  # evaluations alone, so a refit without the rungs runs the same program.
  assert plan.segment_length == 2
  assert plan.calls == 3 * 2 + 1 * 2
  # Four configurations stopped after rung 0 (3 epochs), two went on to 6.
  assert plan.configuration_epochs(np.array([0, 1, 0, 0, 1, 0])) == 4 * 3 + 2 * 6


def test_chunks_are_padded_with_copies_of_the_last_configuration():
  plan = _plan.make(5, epochs=1, evals=1, chunk_size=2, chunks=3)
  alive = np.arange(5)
  chunks = [plan.chunk(alive, c) for c in range(plan.chunks_of(len(alive)))]
  assert [(c.rows.tolist(), c.real) for c in chunks] == [([0, 1], 2), ([2, 3], 2), ([4, 4], 1)]
  # A later rung's survivors, three of them, in chunks of the same size.
  going = np.array([1, 3, 4])
  assert plan.chunks_of(3) == 2
  assert [(plan.chunk(going, c).rows.tolist(), plan.chunk(going, c).real) for c in range(2)] == [
      ([1, 3], 2),
      ([4, 4], 1),
  ]


@pytest.mark.parametrize(
    ('configurations', 'devices', 'limit', 'expected'),
    [
        (80, 1, 80, (80, 1)),
        (80, 1, 18, (16, 5)),  # 5 chunks of 16 pad nothing; 5 of 18 would
        (80, 2, 38, (20, 4)),  # 4 of 20 pad nothing; 3 of 28 would pad 4
        (7, 2, 100, (8, 1)),  # a multiple of the device count
        (3, 8, 1, (8, 1)),  # never fewer than one per device
    ],
)
def test_chunk_sizes(configurations, devices, limit, expected):
  assert _plan.chunking(configurations, devices, 1, limit, None, 0) == expected


def test_memory_budget_sets_the_chunk_size():
  # 3 configurations fit the budget: 4 chunks of 3 would pad 2; 5 of 2 pad none.
  assert _plan.chunking(10, 1, 1000, None, 3000, 0) == (2, 5)
  # Without a budget argument, the default one applies; 2 per device fit.
  assert _plan.chunking(10, 2, 1000, None, None, 2000) == (2, 5)


def test_evaluation_points():
  np.testing.assert_array_equal(_plan.evaluation_points(20, 10), np.arange(2, 21, 2))
  np.testing.assert_array_equal(_plan.evaluation_points(7, 10), np.arange(1, 8))
  np.testing.assert_array_equal(_plan.evaluation_points(13, 5), [3, 5, 8, 10, 13])
