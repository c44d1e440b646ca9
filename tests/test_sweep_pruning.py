"""Tests of wdax.sweep.pruning: the halving schedule and the survivors of a
rung, by hand."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wdax import sweep
from wdax.sweep import pruning

# --- the schedule -----------------------------------------------------------------


@pytest.mark.parametrize(
    ('min_epochs', 'factor', 'epochs', 'points', 'rungs', 'sizes'),
    [
        # 2, 6, 18, then capped at 20; 16 -> ceil(16/3) = 6 -> 2 -> 1.
        (2, 3, 20, 16, (2, 6, 18, 20), (16, 6, 2, 1)),
        # Powers of 2 up to 8 exactly; 5 -> 3 -> 2 -> 1.
        (1, 2, 8, 5, (1, 2, 4, 8), (5, 3, 2, 1)),
        # 3 * 3 = 9 is the last epoch: two rungs; 9 -> 3.
        (3, 3, 9, 9, (3, 9), (9, 3)),
        # The first rung is the last epoch: one rung, nothing pruned.
        (7, 2, 7, 4, (7,), (4,)),
        # One point stays one point.
        (1, 4, 20, 1, (1, 4, 16, 20), (1, 1, 1, 1)),
    ],
)
def test_rungs_and_points_by_hand(min_epochs, factor, epochs, points, rungs, sizes):
  halving = sweep.Halving(min_epochs=min_epochs, reduction_factor=factor)
  assert halving.rungs(epochs) == rungs
  assert halving.points(points, epochs) == sizes
  # The epochs each rung adds, times the points it trains, times 5 trainings.
  added = np.diff((0, *rungs))
  assert halving.configuration_epochs(points, epochs, 5) == 5 * sum(
      n * a for n, a in zip(sizes, added)
  )


@given(
    min_epochs=st.integers(1, 30), factor=st.integers(2, 6), extra=st.integers(0, 200),
    count=st.integers(1, 100),
)
def test_laws_of_the_schedule(min_epochs, factor, extra, count):
  halving = sweep.Halving(min_epochs, factor)
  epochs = min_epochs + extra
  rungs, sizes = halving.rungs(epochs), halving.points(count, epochs)
  # Rungs at r, r eta, r eta^2, ... below the last epoch, then the last epoch.
  assert rungs == tuple(min_epochs * factor**i for i in range(len(rungs) - 1)) + (epochs,)
  assert len(rungs) == 1 or rungs[-2] < epochs <= rungs[-2] * factor
  assert sizes[0] == count and len(sizes) == len(rungs)
  assert all(b == max(1, math.ceil(a / factor)) for a, b in zip(sizes, sizes[1:]))
  assert halving.configuration_epochs(count, epochs, 3) <= 3 * count * epochs


def test_configuration_epochs_of_the_default_job_by_hand():
  # 16 rates, 5 folds, 20 epochs: 16*2 + 6*4 + 2*12 + 1*2 = 82 epochs a fold.
  assert sweep.Halving(2, 3).configuration_epochs(16, 20, 5) == 410
  assert sweep.Halving(20).configuration_epochs(16, 20, 5) == 16 * 5 * 20


@pytest.mark.parametrize(
    ('make', 'match'),
    [
        (lambda: sweep.Halving(0), 'min_epochs must be an int >= 1; got 0'),
        (lambda: sweep.Halving(2.0), 'min_epochs must be an int >= 1; got 2.0'),
        (lambda: sweep.Halving(True), 'min_epochs must be an int >= 1; got True'),
        (lambda: sweep.Halving(2, 1), 'reduction_factor must be an int >= 2; got 1'),
        (lambda: sweep.Halving(2, 0.5), 'reduction_factor must be an int >= 2; got 0.5'),
        (lambda: sweep.Halving(2, 2.5), 'reduction_factor must be an int >= 2; got 2.5'),
        (lambda: sweep.Settings(epochs=5, prune=sweep.Halving(6)), 'prune: min_epochs=6 exceeds epochs=5'),
        (lambda: sweep.Settings(prune=(2, 3)), r'prune must be None or a sweep.Halving.*got \(2, 3\)'),
        (lambda: sweep.Settings(prune=2), 'prune must be None or a sweep.Halving'),
    ],
)
def test_bad_prune_values_are_named(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_survivors_by_hand():
  val = np.array([[0.5, 0.7], [0.2, np.nan], [0.4, 0.4], [0.9, 0.1], [0.3, 0.3]])
  train = np.zeros_like(val)
  # Means 0.6, diverged, 0.4, 0.5, 0.3.
  np.testing.assert_array_equal(pruning.survivors(val, train, 1), [4])
  np.testing.assert_array_equal(pruning.survivors(val, train, 3), [2, 3, 4])
  # A diverged point goes on only when every finite one has.
  np.testing.assert_array_equal(pruning.survivors(val, train, 5), [0, 1, 2, 3, 4])
  # A non-finite training loss is a divergence too, and a tie goes to the earlier point.
  train[4, 0] = np.inf
  np.testing.assert_array_equal(pruning.survivors(val, train, 1), [2])
  tied = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
  np.testing.assert_array_equal(pruning.survivors(tied, np.zeros((3, 2)), 2), [0, 1])


def test_survivors_by_the_one_standard_error_rule_by_hand():
  val = np.array([[0.30, 0.34], [0.33, 0.34], [0.36, 0.36], [0.33, 0.33], [0.50, np.nan]])
  rates = np.array([0.0, 1.0, 10.0, 0.1, 100.0])
  train = np.zeros_like(val)
  # Means 0.32, 0.335, 0.36, 0.33, diverged. The best, point 0, has the
  # standard error std([0.30, 0.34], ddof=1) / sqrt(2) = 0.02: points 1 and
  # 3 are within it, point 2 is not, and a diverged point never is.
  for keep, expected in [(1, [0]), (2, [0, 1]), (3, [0, 1, 3]), (4, [0, 1, 2, 3]), (5, [0, 1, 2, 3, 4])]:
    np.testing.assert_array_equal(pruning.survivors(val, train, keep, prefer=rates), expected)
  # By the mean alone, point 3 is second.
  np.testing.assert_array_equal(pruning.survivors(val, train, 2), [0, 3])
  # The best is spared: the window is still its, and the best of the others,
  # point 3, goes on before the larger rate within it.
  spared = np.array([True, False, False, False, False])
  np.testing.assert_array_equal(pruning.survivors(val, train, 1, spared, rates), [0, 3])
  np.testing.assert_array_equal(pruning.survivors(val, train, 2, spared, rates), [0, 1, 3])
  # One training a point has no standard error: only equal means tie.
  np.testing.assert_array_equal(pruning.survivors(val[:, :1], train[:, :1], 2, prefer=rates), [0, 1])
  np.testing.assert_array_equal(
      pruning.survivors(np.array([[0.3], [0.3], [0.4]]), np.zeros((3, 1)), 2, prefer=np.array([0.0, 2.0, 9.0])),
      [0, 1],
  )


@pytest.mark.parametrize(
    ('one_se', 'held'), [(None, None), (False, None), (True, 'rate'), ('dropout', 'dropout')]
)
def test_one_se_is_held_as_a_name(one_se, held):
  assert sweep.Halving(2, one_se=one_se).one_se == held


@pytest.mark.parametrize('one_se', ['', 3, ('rate',)])
def test_a_bad_one_se_is_named(one_se):
  with pytest.raises(ValueError, match='one_se must be None, True'):
    sweep.Halving(2, one_se=one_se)


def test_survivors_spare_the_kept_points():
  val = np.array([[0.9, 0.9], [0.2, 0.2], [0.4, 0.4], [0.3, 0.3]])
  spared = np.array([True, False, False, False])
  # Point 0 is the worst but spared; the best one of the others goes on.
  np.testing.assert_array_equal(pruning.survivors(val, np.zeros_like(val), 1, spared), [0, 1])
  np.testing.assert_array_equal(pruning.survivors(val, np.zeros_like(val), 0, spared), [0])


@given(
    min_epochs=st.integers(1, 10), factor=st.integers(2, 5), extra=st.integers(0, 60),
    count=st.integers(1, 40), data=st.data(),
)
def test_laws_of_the_schedule_with_kept_points(min_epochs, factor, extra, count, data):
  kept = data.draw(st.integers(0, count))
  halving = sweep.Halving(min_epochs, factor)
  epochs = min_epochs + extra
  sizes = halving.points(count, epochs, kept)
  assert sizes[0] == count and all(n >= kept for n in sizes)
  if kept < count:
    assert tuple(n - kept for n in sizes) == halving.points(count - kept, epochs)
  else:
    assert set(sizes) == {kept}
