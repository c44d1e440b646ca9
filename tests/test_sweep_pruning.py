"""Tests of wdax.sweep.pruning: the halving schedule by hand, and pruned grids
against the unpruned grid's own numbers."""

import numpy as np
import pytest

from wdax import sweep
from wdax.sweep import pruning


def _classes(n=60, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
  return {'x': x, 'y': y}


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


def test_grid_checks_prune_before_training_and_fit_does_not_take_it():
  task = sweep.classifier(sweep.MLP(hidden=(4,), outputs=3))
  with pytest.raises(ValueError, match='min_epochs=3 exceeds epochs=2'):
    sweep.grid(task, _classes(), {'rate': [0.1]}, optimizer=sweep.kind('adamw'), epochs=2, prune=sweep.Halving(3))
  with pytest.raises(TypeError, match="unknown setting\\(s\\) 'prune'"):
    sweep.fit(task, _classes(), {'rate': 0.1}, optimizer=sweep.kind('adamw'), prune=sweep.Halving(1))


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
