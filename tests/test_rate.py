"""Tests for wdax.rate: validation, per-group rates and rate trees."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdax
from wdax import rate as rates_lib

PATHS = ['Embed_0/embedding', 'block/Dense_0/bias', 'block/Dense_0/kernel', 'head/kernel']


def test_first_matching_pattern_wins():
  r = wdax.rates({'head': 0.3, 'kernel': 0.1, 'Embed_0': 0.0}, default=0.05)
  assert r.resolve(PATHS) == [0.0, 0.05, 0.1, 0.3]


def test_schedules_in_rates_are_kept():
  sched = optax.constant_schedule(0.2)
  r = wdax.rates({'kernel': sched})
  assert r.has_schedule
  assert r.resolve(PATHS)[2] is sched
  assert not wdax.rates({'kernel': 0.1}).has_schedule


def test_prefix_tree_resolves_per_leaf():
  tree = {'Embed_0': 0.0, 'block': {'Dense_0': 0.1}, 'head': 0.2}
  assert rates_lib.resolve(tree, PATHS) == [0.0, 0.1, 0.1, 0.2]


def test_scalar_rate_broadcasts():
  assert rates_lib.resolve(0.1, PATHS) == [0.1] * 4
  x = jnp.float32(0.1)
  assert all(r is x for r in rates_lib.resolve(x, PATHS))


@pytest.mark.parametrize('good', [0, 0.0, 1e-4, np.float32(0.1), jnp.array(0.2)])
def test_good_rates_pass(good):
  assert rates_lib.check_rate(good, 'rate') is good


@pytest.mark.parametrize(
    'bad, message',
    [
        (-1e-8, 'non-negative'),
        (math.nan, 'finite'),
        (math.inf, 'finite'),
        (jnp.array(-1.0), 'non-negative'),
        (jnp.ones(3), 'scalar'),
        (True, 'number'),
        ('0.1', 'number'),
        (None, 'number'),
    ],
)
def test_bad_rates_raise(bad, message):
  with pytest.raises(ValueError, match=message):
    rates_lib.check_rate(bad, 'rate')


def test_traced_rates_are_not_checked():
  def f(r):
    return rates_lib.check_rate(r, 'rate') * 2

  assert float(jax.jit(f)(jnp.float32(-1.0))) == -2.0


def test_rates_validation():
  with pytest.raises(ValueError, match='non-empty'):
    wdax.rates({})
  with pytest.raises(ValueError, match='default'):
    wdax.rates({'kernel': 0.1}, default=-1.0)
  with pytest.raises(ValueError, match='pattern'):
    wdax.rates({'': 0.1})


def test_rates_pattern_errors_list_paths():
  with pytest.raises(ValueError, match="'kernal' matches no parameter") as err:
    wdax.rates({'kernal': 0.1}).resolve(PATHS)
  assert "'head/kernel'" in str(err.value)
  with pytest.raises(ValueError, match="'head/kernel' has no effect"):
    wdax.rates({'kernel': 0.1, 'head/kernel': 0.2}).resolve(PATHS)


def test_rate_tree_that_does_not_fit_raises():
  with pytest.raises(ValueError, match="no entry for parameter path 'head/kernel'"):
    rates_lib.resolve({'Embed_0': 0.0, 'block': 0.1}, PATHS)


def test_has_schedule():
  sched = optax.constant_schedule(0.1)
  assert rates_lib.has_schedule(sched)
  assert rates_lib.has_schedule({'a': 0.1, 'b': sched})
  assert not rates_lib.has_schedule({'a': 0.1, 'b': jnp.float32(0.2)})
  assert not rates_lib.has_schedule(0.1)
