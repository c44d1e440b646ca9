"""Tests of wdax.sweep.folds: data checks, fold rules, splits."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from wdax import sweep
from wdax.sweep import folds


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(5, 40), min_size=2, max_size=6),
    k=st.integers(2, 5),
    seed=st.integers(0, 100),
)
def test_stratified_folds_partition_and_balance(counts, k, seed):
  y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
  ids = sweep.stratified_folds(y, k, seed=seed)
  assert ids.shape == (len(y),) and set(ids.tolist()) == set(range(k))
  # Each class is spread evenly: its per-fold counts differ by at most one.
  for c in range(len(counts)):
    per_fold = np.bincount(ids[y == c], minlength=k)
    assert per_fold.max() - per_fold.min() <= 1
  sizes = np.bincount(ids, minlength=k)
  assert sizes.max() - sizes.min() <= 1


def test_stratified_folds_depend_on_the_seed_only():
  y = np.repeat([0, 1, 2], [10, 11, 12])
  a = sweep.stratified_folds(y, 3, seed=1)
  np.testing.assert_array_equal(a, sweep.stratified_folds(y, 3, seed=1))
  assert (a != sweep.stratified_folds(y, 3, seed=2)).any()
  # String labels stratify alike.
  np.testing.assert_array_equal(a, sweep.stratified_folds(np.array(['a', 'b', 'c'])[y], 3, seed=1))


@pytest.mark.parametrize(
    ('y', 'k', 'match'),
    [
        ([0, 0, 1, 1, 1], 3, 'class 0 has 2 examples, fewer than the 3 folds'),
        ([0, 1, 0, 1], 1, 'folds must be an int >= 2'),
        ([[0, 1]], 2, 'labels must be a vector'),
    ],
)
def test_stratified_folds_errors(y, k, match):
  with pytest.raises(ValueError, match=match):
    sweep.stratified_folds(y, k)


@pytest.mark.parametrize('n', [10, 11, 12])
def test_shuffled_and_contiguous_folds_are_blocks_of_near_equal_size(n):
  contiguous = sweep.contiguous_folds(n, 3)
  np.testing.assert_array_equal(contiguous, np.sort(contiguous))
  sizes = np.bincount(contiguous)
  assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n
  shuffled = sweep.shuffled_folds(n, 3, seed=4)
  np.testing.assert_array_equal(np.bincount(shuffled), sizes)
  # The same blocks, over a permutation drawn from the seed.
  order = np.random.default_rng(4).permutation(n)
  np.testing.assert_array_equal(shuffled[order], contiguous)
  with pytest.raises(ValueError, match='folds \\(20\\) exceeds the'):
    sweep.contiguous_folds(n, 20)


@pytest.mark.parametrize(
    ('ids', 'match'),
    [
        ([0, 0, 2, 2], 'fold 1 is empty'),
        ([0, 0, 0, 0], 'a single fold'),
        ([0, 1, -1, 1], 'must be 0, 1, ...'),
        ([0.0, 1.0, 0.0, 1.0], 'integer fold ids'),
        ([0, 1, 0], r'one fold id per example \(4\)'),
    ],
)
def test_user_fold_ids_errors(ids, match):
  with pytest.raises(ValueError, match=match):
    folds.check_fold_ids(np.asarray(ids), 4)


@pytest.mark.parametrize(
    ('data', 'match'),
    [
        ({'x': np.array([[0.0, np.nan], [1.0, 1.0]]), 'y': np.zeros(2)}, r"data\['x'\] has NaN or infinite values in 1 rows \(first: row 0\)"),
        ({'x': np.ones((3, 2)), 'y': np.ones(2)}, r"data\['y'\] has 2 examples \(leading dimension\); data\['x'\] has 3"),
        ({'x': np.array(['a', 'b'])}, r"data\['x'\] must be numeric"),
        ({'x': np.float32(1.0)}, 'is a scalar'),
        ({}, 'has no arrays'),
        ({'x': np.ones((0, 2))}, 'has no examples'),
    ],
)
def test_check_data_errors(data, match):
  with pytest.raises(ValueError, match=match):
    sweep.check_data(data)


def test_check_data_keeps_dtypes():
  data, n = sweep.check_data({'tokens': np.ones((3, 4), np.int32), 'x': np.ones((3, 2), np.float16)})
  assert n == 3 and data['tokens'].dtype == np.int32 and data['x'].dtype == np.float16


def test_stratified_split_holds_out_each_class():
  y = np.repeat([0, 1, 2], [10, 20, 1])
  train, test = sweep.stratified_split(y, 0.3, seed=0)
  assert sorted(np.concatenate([train, test]).tolist()) == list(range(31))
  assert np.bincount(y[test], minlength=3).tolist() == [3, 6, 0]
  again = sweep.stratified_split(y, 0.3, seed=0)
  np.testing.assert_array_equal(again[1], test)
  with pytest.raises(ValueError, match='test_size must be a fraction'):
    sweep.stratified_split(y, 1.5)


def test_contiguous_split_holds_out_the_end():
  train, test = sweep.contiguous_split(10, 0.3)
  np.testing.assert_array_equal(train, np.arange(7))
  np.testing.assert_array_equal(test, [7, 8, 9])
  # At least one example on each side.
  assert [len(a) for a in sweep.contiguous_split(3, 0.01)] == [2, 1]


def test_shuffled_split_holds_out_a_seeded_random_part():
  train, test = sweep.shuffled_split(20, 0.25, seed=3)
  order = np.random.default_rng(3).permutation(20)
  np.testing.assert_array_equal(test, np.sort(order[:5]))
  np.testing.assert_array_equal(train, np.sort(order[5:]))
  assert [len(a) for a in sweep.shuffled_split(3, 0.01)] == [2, 1]
  with pytest.raises(ValueError, match='test_size must be a fraction'):
    sweep.shuffled_split(10, 1.0)
