"""Tests of wdax.sweep.results: summaries and choices by hand."""

import math
import re

import numpy as np
import pytest

from wdax import sweep
from wdax.sweep import results


def _result(val_accuracy, val_loss, rates=(0.01, 0.1, 1.0), train_loss=None):
  """A result of one seed and one evaluation, from per-(point, fold) values."""
  val_accuracy = np.asarray(val_accuracy, np.float32)[:, :, None, None]
  val_loss = np.asarray(val_loss, np.float32)[:, :, None, None]
  train_loss = np.zeros_like(val_loss) if train_loss is None else (
      np.asarray(train_loss, np.float32)[:, :, None, None]
  )
  return sweep.Result(
      points=[{'rate': r} for r in rates],
      curves={
          'train_loss': train_loss,
          'train_accuracy': np.ones_like(val_accuracy),
          'val_loss': val_loss,
          'val_accuracy': val_accuracy,
      },
      epochs=np.array([5]),
      fold_ids=np.arange(val_loss.shape[1]),
      seeds=(0,),
      chunk_size=3,
      chunks=1,
      devices=1,
      bytes_per_configuration=0,
  )


def test_best_point_and_standard_error_by_hand():
  result = _result(
      val_accuracy=[[0.80, 0.90, 0.70], [0.90, 0.80, 1.00], [0.60, 0.70, 0.80]],
      val_loss=[[0.5, 0.4, 0.6], [0.3, 0.5, 0.4], [0.9, 0.8, 0.7]],
  )
  choice = result.choose('val_accuracy', 'max')
  # Rate 0.1: mean 0.9, sample sd 0.1, s.e. 0.1 / sqrt(3).
  assert choice.point == {'rate': 0.1} and choice.index == 1
  np.testing.assert_allclose(choice.mean, 0.9, rtol=1e-6)
  np.testing.assert_allclose(choice.se, 0.1 / math.sqrt(3), rtol=1e-5)
  assert result.best('val_loss') == {'rate': 0.1}
  by_loss = result.choose('val_loss')
  np.testing.assert_allclose(by_loss.mean, 0.4, rtol=1e-6)
  np.testing.assert_allclose(by_loss.se, 0.1 / math.sqrt(3), rtol=1e-5)
  mean, se = result.summary('val_accuracy')
  np.testing.assert_allclose(mean, [0.8, 0.9, 0.7], rtol=1e-6)
  np.testing.assert_allclose(se, [0.1 / math.sqrt(3)] * 3, rtol=1e-5)
  assert result.best('val_loss', mode='max') == {'rate': 1.0}


def test_accuracy_ties_go_to_the_lower_loss():
  result = _result(
      val_accuracy=[[0.9, 0.8], [0.8, 0.9], [0.5, 0.5]],
      val_loss=[[0.4, 0.4], [0.3, 0.3], [0.1, 0.1]],
  )
  assert result.best('val_accuracy', 'max') == {'rate': 0.1}
  assert result.best('val_loss') == {'rate': 1.0}
  assert result.best() == result.best('val_loss', 'min')  # the default


def test_one_standard_error_rule_takes_the_largest_rate_within_it():
  result = _result(
      val_accuracy=[[0.80, 0.90, 0.70], [0.90, 0.80, 1.00], [0.84, 0.86, 0.85]],
      val_loss=[[0.5, 0.4, 0.6], [0.3, 0.5, 0.4], [0.9, 0.8, 0.7]],
  )
  # Best is 0.1 (0.9 +- 0.0577); 1.0 has mean 0.85 >= 0.9 - 0.0577.
  assert result.best('val_accuracy', 'max', one_se=True) == {'rate': 1.0}
  assert result.best('val_accuracy', 'max') == {'rate': 0.1}
  # By loss, 1.0 (0.8) is outside 0.4 + 0.0577; 0.01 (0.5) is not, but smaller.
  assert result.best('val_loss', one_se=True) == {'rate': 0.1}


def test_one_se_over_a_space_of_two_names():
  points = [{'lr': lr, 'rate': r} for lr in (0.1, 0.2) for r in (0.0, 1.0)]
  loss = np.array([[0.40, 0.42], [0.30, 0.31], [0.29, 0.31], [0.60, 0.70]])
  result = sweep.Result(
      points=points,
      curves={'train_loss': loss[:, :, None, None], 'val_loss': loss[:, :, None, None]},
      epochs=np.array([1]), fold_ids=np.arange(2), seeds=(0,), chunk_size=4,
      chunks=1, devices=1, bytes_per_configuration=0,
  )
  # Best: lr 0.2, rate 0 (0.30 +- 0.01); within one s.e. of it also lr 0.1,
  # rate 1 (0.305), whose rate is the largest.
  assert result.best() == {'lr': 0.2, 'rate': 0.0}
  assert result.best(one_se=True) == {'lr': 0.1, 'rate': 1.0}
  assert result.best(one_se='lr') == {'lr': 0.2, 'rate': 0.0}


def test_table_by_hand():
  result = _result(
      val_accuracy=[[0.8, 0.9], [0.9, 0.9], [0.6, 0.7]],
      val_loss=[[0.5, 0.4], [0.3, 0.5], [0.9, 0.8]],
  )
  rows = result.table()
  assert [r['rate'] for r in rows] == [0.01, 0.1, 1.0]
  np.testing.assert_allclose(rows[0]['val_accuracy'], 0.85, atol=1e-6)
  np.testing.assert_allclose(rows[0]['val_accuracy_se'], 0.05, atol=1e-6)
  np.testing.assert_allclose(rows[1]['val_loss'], 0.4, atol=1e-6)
  assert rows[2]['diverged'] == 0


def test_diverged_trainings_leave_the_means_and_the_choice():
  result = _result(
      val_accuracy=[[0.8, 0.9], [0.99, 0.99], [0.6, 0.7]],
      val_loss=[[0.5, 0.4], [0.1, np.nan], [0.9, 0.8]],
      train_loss=[[0.1, 0.1], [0.1, np.inf], [0.1, 0.1]],
  )
  np.testing.assert_array_equal(result.diverged[:, :, 0], [[False, False], [False, True], [False, False]])
  mean, se = result.summary('val_accuracy')
  # The diverged training is left out: 0.99 over one fold, no s.e.
  np.testing.assert_allclose(mean, [0.85, 0.99, 0.65], rtol=1e-6)
  assert np.isnan(se[1])
  # Its point is never chosen, though its mean is the best.
  assert result.best('val_accuracy', 'max') == {'rate': 0.01}
  assert result.best('val_loss') == {'rate': 0.01}
  assert [row['diverged'] for row in result.table()] == [0, 1, 0]


def test_every_point_diverged():
  result = _result([[0.5, 0.5]], [[np.nan, 0.3]], rates=(0.1,))
  with pytest.raises(ValueError, match='every point has a diverged training'):
    result.best()


@pytest.mark.parametrize(
    ('call', 'match'),
    [
        (lambda r: r.best('f1'), "unknown metric 'f1'"),
        (lambda r: r.best('val_accuracy'), "give mode='min' or mode='max'"),
        (lambda r: r.best('val_loss', mode='smallest'), "unknown mode 'smallest'"),
        (lambda r: r.best(one_se='lr'), "no 'lr'"),
        (lambda r: r.final('gap'), "unknown metric 'gap'"),
    ],
)
def test_unknown_metric_mode_and_name(call, match):
  result = _result([[0.8, 0.9]] * 3, [[0.5, 0.4]] * 3)
  with pytest.raises(ValueError, match=match):
    call(result)


def test_mean_se_ignores_nan():
  mean, se = results.mean_se(np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]]))
  np.testing.assert_allclose(mean[0], 2.0)
  np.testing.assert_allclose(se[0], 1 / math.sqrt(3))
  assert np.isnan(mean[1]) and np.isnan(se[1])


def test_fit_final_and_test_metrics():
  fit = sweep.Fit(
      point={'rate': 0.1}, seeds=(0, 1),
      curves={'train_loss': np.array([[2.0, 1.0], [3.0, 2.0]]), 'test_loss': np.array([[2.0, 1.5], [2.0, 0.5]])},
      epochs=np.array([1, 2]), params=None, state=None,
  )
  np.testing.assert_array_equal(fit.final('train_loss'), [1.0, 2.0])
  assert fit.test == {'loss': 1.0}


def _pruned():
  """Three points, two folds, evaluations after epochs 1, 3 and 9; point 0
  stopped after rung 0 (epoch 1), point 1 after rung 1 (epoch 3)."""
  nan = np.nan
  val_loss = np.array([
      [[0.2, nan, nan], [0.4, nan, nan]],  # the lowest loss, after one epoch
      [[0.9, 0.7, nan], [0.9, 0.5, nan]],
      [[0.8, 0.6, 0.5], [0.8, 0.6, 0.7]],
  ])[:, :, None, :]
  return sweep.Result(
      points=[{'rate': r} for r in (0.0, 0.1, 1.0)],
      curves={'train_loss': np.where(np.isnan(val_loss), nan, 0.0), 'val_loss': val_loss},
      epochs=np.array([1, 3, 9]), fold_ids=np.arange(2), seeds=(0,), chunk_size=6,
      chunks=1, devices=1, bytes_per_configuration=0, rungs=np.array([1, 3, 9]),
      rung=np.array([0, 1, 2]), configuration_epochs=2 * (3 * 1 + 2 * 2 + 1 * 6),
  )


def test_a_pruned_point_is_summarised_at_its_last_rung_and_never_chosen():
  result = _pruned()
  np.testing.assert_array_equal(result.epochs_trained, [1, 3, 9])
  np.testing.assert_array_equal(result.finished, [False, False, True])
  # Not diverged though its later evaluations are NaN: it was pruned.
  assert not result.diverged.any()
  mean, se = result.summary('val_loss')
  np.testing.assert_allclose(mean, [0.3, 0.6, 0.6])
  np.testing.assert_allclose(se, [0.1, 0.1, 0.1])
  # Point 0 has the lowest mean, after one epoch; only point 2 trained every epoch.
  assert result.best() == {'rate': 1.0}
  assert result.best(one_se=True) == {'rate': 1.0}
  rows = result.table()
  assert [(r['rung'], r['epochs_trained']) for r in rows] == [(0, 1), (1, 3), (2, 9)]
  assert result.configuration_epochs == 26


def test_a_pruned_point_that_diverged_before_its_last_rung():
  result = _pruned()
  result.curves['val_loss'][1, 0, 0, 1] = np.nan
  np.testing.assert_array_equal(result.diverged[:, :, 0], [[False, False], [True, False], [False, False]])
  np.testing.assert_allclose(result.summary('val_loss')[0], [0.3, 0.5, 0.6])
  result.curves['val_loss'][2, 1, 0, 2] = np.inf
  with pytest.raises(ValueError, match='every point has a diverged training or was pruned'):
    result.best()


def test_an_unpruned_result_has_one_rung():
  result = _result([[0.8, 0.9]] * 3, [[0.5, 0.4]] * 3)
  np.testing.assert_array_equal(result.rungs, [5])
  np.testing.assert_array_equal(result.rung, [0, 0, 0])
  assert result.finished.all() and result.configuration_epochs == 3 * 2 * 5


def _two_names():
  """Points (rate, lr) over rates 0, 0.1, 1 and lrs 1e-3, 1e-2: four folds
  and two seeds, one evaluation; the values drawn, the differences by hand."""
  rng = np.random.default_rng(3)
  val_loss = rng.uniform(0.1, 1.0, size=(6, 4, 2, 1))
  points = [{'rate': r, 'lr': lr} for r in (0.0, 0.1, 1.0) for lr in (1e-3, 1e-2)]
  result = sweep.Result(
      points=points, curves={'train_loss': np.zeros_like(val_loss), 'val_loss': val_loss},
      epochs=np.array([4]), fold_ids=np.arange(4), seeds=(0, 1), chunk_size=8, chunks=6,
      devices=1, bytes_per_configuration=0,
  )
  return result, val_loss[..., 0].reshape(6, 8)


def test_difference_from_the_baseline_is_paired_over_folds_and_seeds():
  result, v = _two_names()
  mean, se = result.difference('val_loss', {'rate': 0.0})
  for p, point in enumerate(result.points):
    base = 0 if point['lr'] == 1e-3 else 1  # (0, 1e-3) and (0, 1e-2)
    d = v[p] - v[base]
    np.testing.assert_allclose(mean[p], d.mean(), rtol=1e-12)
    np.testing.assert_allclose(se[p], d.std(ddof=1) / math.sqrt(8), rtol=1e-12)
  # A point is its own baseline: exactly zero.
  assert mean[0] == mean[1] == se[0] == se[1] == 0.0
  # Paired is not the difference of the two standard errors' worth: the
  # unpaired s.e. is a different number.
  unpaired = math.sqrt(v[2].var(ddof=1) / 8 + v[0].var(ddof=1) / 8)
  assert not math.isclose(se[2], unpaired, rel_tol=1e-3)


def test_difference_leaves_out_a_pair_with_a_diverged_training():
  result, v = _two_names()
  result.curves['val_loss'][0, 1, 0, 0] = np.nan  # the baseline at lr 1e-3, fold 1, seed 0
  result.curves['train_loss'][4, 3, 1, 0] = np.inf  # point (1, 1e-3), fold 3, seed 1
  mean, se = result.difference('val_loss', {'rate': 0.0})
  keep = np.ones(8, bool)
  keep[2] = False  # fold 1, seed 0
  d = (v[2] - v[0])[keep]
  np.testing.assert_allclose([mean[2], se[2]], [d.mean(), d.std(ddof=1) / math.sqrt(7)], rtol=1e-12)
  keep[7] = False  # fold 3, seed 1
  d = (v[4] - v[0])[keep]
  np.testing.assert_allclose([mean[4], se[4]], [d.mean(), d.std(ddof=1) / math.sqrt(6)], rtol=1e-12)
  assert mean[0] == 0.0  # its own pairs: one left out, the other seven are 0
  np.testing.assert_allclose(mean[[1, 3, 5]], [0.0, (v[3] - v[1]).mean(), (v[5] - v[1]).mean()])


def test_difference_of_a_pruned_point_is_at_its_last_rung():
  # Point 1 stopped after epoch 3: its difference from rate 0 (stopped after
  # epoch 1) has no pairs; point 2 trained on, its baseline did not.
  result = _pruned()
  mean, _ = result.difference('val_loss', {'rate': 1.0})
  # Against rate 1.0, which trained every epoch: at epoch 1 for point 0, 3 for point 1.
  np.testing.assert_allclose(mean, [(0.2 - 0.8 + 0.4 - 0.8) / 2, (0.7 - 0.6 + 0.5 - 0.6) / 2, 0.0])
  mean, _ = result.difference('val_loss', {'rate': 0.0})
  assert mean[0] == 0.0 and np.isnan(mean[1:]).all()


@pytest.mark.parametrize(
    ('baseline', 'match'),
    [
        ({'rate': 0.5}, "the grid has no point {'rate': 0.5, 'lr': 0.001}"),
        ({'dropout': 0.0}, "baseline names 'dropout', which the space lacks"),
        ({}, 'baseline must be a dict'),
    ],
)
def test_difference_refuses_a_baseline_outside_the_grid(baseline, match):
  result, _ = _two_names()
  with pytest.raises(ValueError, match=re.escape(match)):
    result.difference('val_loss', baseline)


def test_choose_where_restricts_to_the_points_with_those_values():
  result, v = _two_names()
  means = v.mean(axis=1)
  for lr, rows in ((1e-3, [0, 2, 4]), (1e-2, [1, 3, 5])):
    best = rows[int(np.argmin(means[rows]))]
    choice = result.choose('val_loss', where={'lr': lr})
    assert choice.index == best and choice.point['lr'] == lr
  assert result.choose('val_loss').index == int(np.argmin(means))
  with pytest.raises(ValueError, match='no point has the values'):
    result.choose('val_loss', where={'lr': 0.5})
  with pytest.raises(ValueError, match='where must be a dict of names of the space'):
    result.choose('val_loss', where={'momentum': 0.9})
