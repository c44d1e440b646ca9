"""Tests of wdax.sweep.kinds: the named kinds as optimiser factories."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import wdax
from wdax import sweep

LR = 1e-2
PARAMS = {'Dense_0': {'kernel': jnp.array([[0.5, -1.0], [2.0, 0.25]]), 'bias': jnp.array([0.1, -0.2])}}
GRADS = {'Dense_0': {'kernel': jnp.array([[0.3, 0.1], [-0.2, 0.4]]), 'bias': jnp.array([0.5, 0.5])}}


def _updates(tx, steps=2):
  state = tx.init(PARAMS)
  for _ in range(steps):
    updates, state = tx.update(GRADS, state, PARAMS)
  return updates


@pytest.mark.parametrize('name', sorted(sweep.KINDS))
def test_every_kind_takes_a_traced_rate_and_lr(name):
  """vmap over (rate, lr) equals a loop of Python floats."""
  mask = wdax.masks.flax_default()
  kind = sweep.kind(name, mask=mask)
  rates = jnp.array([0.0, 0.3, 2.0])
  lrs = jnp.array([1e-2, 3e-2, 1e-1])
  batched = jax.jit(jax.vmap(lambda r, lr: _updates(kind(rate=r, lr=lr))))(rates, lrs)
  for i in range(3):
    expected = _updates(sweep.kind(name, lr=float(lrs[i]), mask=mask)(rate=float(rates[i])))
    chex.assert_trees_all_close(
        jax.tree.map(lambda a, i=i: a[i], batched), expected, rtol=1e-5, atol=1e-8
    )


def test_kinds_are_the_optimisers_they_name():
  chex.assert_trees_all_close(
      _updates(sweep.kind('l2', lr=LR)(rate=0.1)),
      _updates(optax.chain(wdax.l2(0.1), optax.adam(LR))),
  )
  chex.assert_trees_all_close(
      _updates(sweep.kind('adamw', lr=LR, rate=0.1)()), _updates(wdax.adamw(LR, weight_decay=0.1))
  )
  chex.assert_trees_all_close(
      _updates(sweep.kind('cautious', lr=LR)(rate=0.1)),
      _updates(optax.chain(optax.adam(LR), wdax.cautious(0.1, lr=LR))),
  )


def test_equal_kinds_are_equal():
  mask = wdax.masks.flax_default()
  assert sweep.kind('l1', mask=mask) == sweep.kind('l1', mask=mask)
  assert hash(sweep.kind('l1', lr=0.1)) == hash(sweep.kind('l1', lr=0.1))


def test_kind_errors():
  with pytest.raises(ValueError, match="unknown kind 'adamx'"):
    sweep.kind('adamx')
  with pytest.raises(ValueError, match='lr must be finite and non-negative'):
    sweep.kind('l2', lr=-1.0)
  with pytest.raises(ValueError, match="kind 'l2' has no rate"):
    sweep.kind('l2')()
