"""Tests of wdax.sweep.analysis: each statistic of a sweep's report against
values worked out by hand from small results."""

import math

import numpy as np
import pytest

from wdax import sweep
from wdax.sweep import analysis
from wdax.sweep import errors


def _result(points, val_loss, train_loss=None, val_accuracy=None, train_accuracy=None):
  """A result of one seed and one evaluation, from per-(point, fold) values."""

  def curve(values, like):
    if values is None:
      return np.zeros_like(like)
    return np.asarray(values, np.float64)[:, :, None, None]

  val = curve(val_loss, None)
  return sweep.Result(
      points=points,
      curves={
          'train_loss': curve(train_loss, val), 'train_accuracy': curve(train_accuracy, val),
          'val_loss': val, 'val_accuracy': curve(val_accuracy, val),
      },
      epochs=np.array([3]), fold_ids=np.arange(val.shape[1]), seeds=(0,), chunk_size=4,
      chunks=1, devices=1, bytes_per_configuration=0,
  )


RATES = [{'rate': 0.0}, {'rate': 0.1}, {'rate': 1.0}]


def test_differences_from_no_decay_are_paired_over_folds():
  result = _result(RATES, [[0.5, 0.7, 0.6], [0.4, 0.5, 0.6], [0.9, 1.0, 0.8]])
  mean, se = analysis.differences(result)['val_loss']
  # Rate 0.1: differences -0.1, -0.2, 0.0: mean -0.1, sd 0.1, se 0.1/sqrt(3).
  # Rate 1: +0.4, +0.3, +0.2: mean 0.3, se 0.1/sqrt(3).
  np.testing.assert_allclose(mean, [0.0, -0.1, 0.3], atol=1e-12)
  np.testing.assert_allclose(se, [0.0, 0.1 / math.sqrt(3), 0.1 / math.sqrt(3)], atol=1e-12)
  assert set(analysis.differences(result)) == set(result.metrics)


def test_a_gain_is_a_difference_past_its_standard_error_in_the_metrics_direction():
  assert analysis.gain(-0.2, 0.1, 'min') and not analysis.gain(-0.05, 0.1, 'min')
  assert analysis.gain(0.2, 0.1, 'max') and not analysis.gain(-0.2, 0.1, 'max')
  assert not analysis.gain(math.nan, 0.1, 'min') and not analysis.gain(-1.0, math.nan, 'min')
  with pytest.raises(ValueError, match="unknown mode 'low'"):
    analysis.gain(-1.0, 0.1, 'low')


def test_the_gap_is_training_minus_validation_paired():
  result = _result(
      RATES[:1], [[0.3, 0.3]], val_accuracy=[[0.8, 0.7]], train_accuracy=[[1.0, 0.8]]
  )
  mean, se = analysis.gap(result, 'accuracy')
  # Gaps 0.2 and 0.1: mean 0.15, sd 0.0707, se 0.05.
  np.testing.assert_allclose(mean, [0.15], atol=1e-12)
  np.testing.assert_allclose(se, [0.05], atol=1e-12)


def test_a_diverged_training_is_left_out_of_the_gap():
  result = _result(RATES[:1], [[0.3, np.nan, 0.5]], val_accuracy=[[0.8, 0.1, 0.6]],
                   train_accuracy=[[0.9, 0.9, 0.9]])
  mean, se = analysis.gap(result, 'accuracy')
  # Gaps 0.1 and 0.3 (the second fold diverged): mean 0.2, se 0.1.
  np.testing.assert_allclose([mean[0], se[0]], [0.2, 0.1], atol=1e-12)


def test_mean_curves_average_over_folds_and_seeds_at_each_evaluation():
  loss = np.array([[[1.0, 0.5], [3.0, np.nan]]])[:, :, None, :]
  result = sweep.Result(
      points=RATES[:1], curves={'train_loss': loss, 'val_loss': loss},
      epochs=np.array([1, 2]), fold_ids=np.arange(2), seeds=(0,), chunk_size=2, chunks=1,
      devices=1, bytes_per_configuration=0,
  )
  np.testing.assert_allclose(analysis.mean_curves(result)['val_loss'], [[2.0, 0.5]])


LR_POINTS = [{'rate': r, 'lr': lr} for r in (0.0, 1.0) for lr in (0.1, 0.2)]


def test_best_per_learning_rate_and_its_one_standard_error_choice():
  # At lr 0.1: rate 0 has 0.50 +- 0.1, rate 1 has 0.45 +- 0.05: rate 1 is
  # best. At lr 0.2: rate 0 has 0.30 +- 0.1, rate 1 0.35 +- 0.05: rate 0 is
  # best, and rate 1 lies within its standard error (0.35 <= 0.40).
  result = _result(LR_POINTS, [[0.4, 0.6], [0.2, 0.4], [0.4, 0.5], [0.3, 0.4]])
  best = analysis.best_per(result, 'lr')
  assert {lr: c.point['rate'] for lr, c in best.items()} == {0.1: 1.0, 0.2: 0.0}
  assert best[0.2].mean == pytest.approx(0.3) and best[0.2].se == pytest.approx(0.1)
  one_se = analysis.best_per(result, 'lr', one_se=True)
  assert {lr: c.point['rate'] for lr, c in one_se.items()} == {0.1: 1.0, 0.2: 1.0}


def test_best_per_is_none_where_every_point_diverged():
  result = _result(LR_POINTS, [[0.4, 0.6], [np.nan, 0.4], [0.4, 0.5], [0.3, np.inf]])
  best = analysis.best_per(result, 'lr')
  assert best[0.2] is None and best[0.1].point == {'rate': 1.0, 'lr': 0.1}
  with pytest.raises(ValueError, match="name 'dropout' is not in the space"):
    analysis.best_per(result, 'dropout')


def test_stability_of_the_product_by_hand():
  # Two learning rates chose decay; their products differ x3 < the grid's x10.
  s = analysis.stability({1e-3: 1.0, 3e-3: 1.0, 1e-2: 0.0}, [0.0, 0.1, 1.0, 10.0])
  assert s == analysis.Stability(
      grid_step=pytest.approx(10.0), with_decay=2, learning_rates=3,
      products_span=pytest.approx(3.0), rates_span=1.0, stable=True,
  )
  # A grid of steps x2 resolves the x3: not stable.
  s = analysis.stability({1e-3: 1.0, 3e-3: 1.0}, [0.0, 1.0, 2.0])
  assert s.stable is False and s.grid_step == 2.0
  # A learning rate where every rate diverged (None) or no decay won does
  # not count.
  s = analysis.stability({1e-2: 0.0, 1e-1: None, 1.0: 1.0}, [0.0, 1.0])
  assert (s.stable, s.with_decay, s.learning_rates, s.products_span) == (None, 1, 3, None)


def test_the_best_of_several_choices_by_mode_and_first_on_a_tie():
  def choice(mean, mode='min'):
    return sweep.Choice({'rate': 0.1}, 1, 'val_loss', mode, mean, 0.01)

  assert analysis.best_of({'a': choice(0.3), 'b': choice(0.2), 'c': choice(0.2)}) == 'b'
  assert analysis.best_of({'a': choice(0.3, 'max'), 'b': choice(0.2, 'max')}) == 'a'
  with pytest.raises(ValueError, match='different modes'):
    analysis.best_of({'a': choice(0.3, 'max'), 'b': choice(0.2)})


def test_perplexity_is_exp_of_the_loss_and_its_se_by_the_delta_method():
  assert analysis.perplexity(math.log(7.0)) == pytest.approx(7.0, rel=1e-12)
  assert analysis.perplexity(701.0) == math.inf and math.isnan(analysis.perplexity(math.nan))
  # d/dL e^L = e^L: se(PPL) = e^L se(L).
  assert analysis.perplexity_se(math.log(7.0), 0.1) == pytest.approx(0.7, rel=1e-12)


def test_no_choice_when_every_point_diverged_is_a_value_error_of_its_own():
  result = _result(RATES, [[np.nan, 0.1], [0.2, np.inf], [np.nan, np.nan]])
  with pytest.raises(errors.NoChoice, match='every point has a diverged training'):
    result.choose('val_loss')
  assert issubclass(errors.NoChoice, ValueError)
