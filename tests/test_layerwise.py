"""Layer-wise learning-rate decay: lr * gamma ** (L - 1 - l)."""

import chex
import jax
import numpy as np
import optax
import pytest
from support.optimizer_runs import run

import wdax


def test_per_layer_values_are_the_closed_form():
  np.testing.assert_array_equal(
      wdax.layerwise_lr(1e-3, 0.75, 4), 1e-3 * 0.75 ** np.array([3.0, 2.0, 1.0, 0.0])
  )


def test_numbered_layers_match_their_own_segment_only():
  r = wdax.layerwise_rates(1.0, 0.5, 12, layer='blocks_{}', default=7.0)
  paths = [f'blocks_{i}/kernel' for i in range(12)] + ['head/kernel']
  got = dict(zip(paths, r.resolve(paths)))
  assert [got['blocks_1/kernel'], got['blocks_10/kernel'], got['blocks_11/kernel']] == [
      0.5**10, 0.5**1, 1.0
  ]
  assert got['head/kernel'] == 7.0


def test_numbered_layers_equal_a_stacked_axis_with_layerwise_lr():
  k = jax.random.split(jax.random.key(0), 3)
  stacked = {'layers': jax.random.normal(k[0], (3, 2, 2)), 'head': jax.random.normal(k[1], (2,))}
  numbered = {'layers': {str(i): stacked['layers'][i] for i in range(3)}, 'head': stacked['head']}
  by_name = wdax.adamw(wdax.layerwise_rates(1e-2, 0.5, 3, layer='layers/{}'), weight_decay=0.1)
  by_axis = wdax.adamw(
      wdax.rates({'layers': wdax.layerwise_lr(1e-2, 0.5, 3)}, default=1e-2), weight_decay=0.1
  )
  got, want = run(by_axis, stacked, 5), run(by_name, numbered, 5)
  for i in range(3):
    np.testing.assert_array_equal(got['layers'][i], want['layers'][str(i)])
  np.testing.assert_array_equal(got['head'], want['head'])


def test_a_schedule_is_scaled_per_layer():
  sched = optax.linear_schedule(1.0, 0.0, 10)
  r = wdax.layerwise_rates(sched, 0.5, 2, layer='blocks_{}', extra={'embed': 0.0})
  low = r.resolve(['embed', 'blocks_0/w', 'blocks_1/w'])
  assert low[0] == 0.0
  chex.assert_trees_all_close([low[1](4), low[2](4)], [0.5 * sched(4), sched(4)])


@pytest.mark.parametrize('gamma', [0.0, 1.5, -0.1])
def test_gamma_outside_zero_one_is_an_error(gamma):
  with pytest.raises(ValueError, match='gamma'):
    wdax.layerwise_lr(1e-3, gamma, 3)


def test_layer_without_placeholder_is_an_error():
  with pytest.raises(ValueError, match="one '\\{\\}'"):
    wdax.layerwise_rates(1e-3, 0.5, 3, layer='blocks')
