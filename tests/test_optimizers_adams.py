"""Tests for wdax.adams.

Expected values come from an independent float64 NumPy transcription of the
AdamS paper's algorithm (Algorithm 2 of arXiv:2011.11152), in float32 and
bfloat16 as well as float64, with a per-leaf variant to show that the test
would tell the whole-tree mean of the second moment from a per-leaf one.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support.optimizer_runs import SCHED
from support.optimizer_runs import grads as _grads
from support.optimizer_runs import params as _params
from support.optimizer_runs import run as _run

import wdax
from wdax import masks


def _adams_reference(params, grads_fn, steps, lr, wd, b1, b2, eps, decayed):
  """AdamS (Algorithm 2 of arXiv:2011.11152) in float64 NumPy, leaf lists."""
  theta = [np.asarray(p, np.float64) for p in params]
  m = [np.zeros_like(p) for p in theta]
  v = [np.zeros_like(p) for p in theta]
  for t in range(1, steps + 1):
    g = grads_fn(theta, t - 1)
    m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
    v = [b2 * vi + (1 - b2) * gi**2 for vi, gi in zip(v, g)]
    v_hat = [vi / (1 - b2**t) for vi in v]
    v_bar = sum(x.sum() for x in v_hat) / sum(x.size for x in v_hat)
    lr_t = lr(t - 1) if callable(lr) else lr
    theta = [
        p - lr_t * (mi / (1 - b1**t)) / (np.sqrt(vh) + eps)
        - (lr_t * wd / np.sqrt(v_bar) * p if on else 0.0)
        for p, mi, vh, on in zip(theta, m, v_hat, decayed)
    ]
  return theta


def _np_grads(theta, i):
  # Very different gradient scales per leaf: a per-leaf mean of v_hat would
  # give a visibly different decay from the whole-tree mean.
  scales = [1.0, 30.0, 0.01]
  return [s * np.sin(3 * p + i) for s, p in zip(scales, theta)]


@pytest.mark.parametrize(
    'masked', [pytest.param(False, marks=pytest.mark.slow), True]
)
def test_adams_matches_the_paper_algorithm(masked):
  leaves = jax.tree.leaves(_params())
  params = {'a': leaves[0], 'b': leaves[1], 'c': leaves[2]}
  mask = {'a': True, 'b': False, 'c': True} if masked else None
  decayed = [True, not masked, True]
  lr = lambda t: 0.05 * (1 - t / 40)  # noqa: E731
  want = _adams_reference(
      list(params.values()), _np_grads, 15, lr, 0.3, 0.9, 0.999, 1e-8, decayed
  )
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
    tx = wdax.adams(
        lambda t: 0.05 * (1 - t.astype(jnp.float64) / 40), weight_decay=0.3,
        mask=mask,
    )
    state = tx.init(p64)
    for i in range(15):
      g = dict(zip('abc', _np_grads([np.asarray(x) for x in p64.values()], i)))
      updates, state = tx.update(g, state, p64)
      p64 = optax.apply_updates(p64, updates)
    for got, w in zip(p64.values(), want):
      np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-14)
  # A per-leaf mean would have missed by far more than that tolerance.
  per_leaf = _adams_reference_per_leaf(list(params.values()), lr, decayed)
  assert max(np.max(np.abs(a - b)) for a, b in zip(per_leaf, want)) > 1e-3


def _adams_reference_per_leaf(params, lr, decayed):
  theta = [np.asarray(p, np.float64) for p in params]
  m = [np.zeros_like(p) for p in theta]
  v = [np.zeros_like(p) for p in theta]
  for t in range(1, 16):
    g = _np_grads(theta, t - 1)
    m = [0.9 * mi + 0.1 * gi for mi, gi in zip(m, g)]
    v = [0.999 * vi + 0.001 * gi**2 for vi, gi in zip(v, g)]
    v_hat = [vi / (1 - 0.999**t) for vi in v]
    theta = [
        p - lr(t - 1) * (mi / (1 - 0.9**t)) / (np.sqrt(vh) + 1e-8)
        - (lr(t - 1) * 0.3 / np.sqrt(vh.mean()) * p if on else 0.0)
        for p, mi, vh, on in zip(theta, m, v_hat, decayed)
    ]
  return theta


@pytest.mark.parametrize('dtype, tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 5e-2)])
def test_adams_float32_and_bfloat16(dtype, tol):
  params = jax.tree.map(lambda x: x.astype(dtype), _params())
  out = _run(wdax.adams(1e-2, weight_decay=0.5), params, 5)
  chex.assert_trees_all_equal_dtypes(out, params)
  leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
  want = _adams_reference(
      leaves,
      lambda th, i: [np.sin(3 * p + i) for p in th],
      5, 1e-2, 0.5, 0.9, 0.999, 1e-8, [True] * 3,
  )
  for got, w in zip(jax.tree.leaves(out), want):
    np.testing.assert_allclose(np.asarray(got, np.float64), w, rtol=tol, atol=tol)


def test_adams_zero_gradients_do_not_decay_or_nan():
  params = {'w': jnp.array([1.0, -2.0])}
  tx = wdax.adams(0.1, weight_decay=0.5)
  updates, state = tx.update({'w': jnp.zeros(2)}, tx.init(params), params)
  np.testing.assert_array_equal(updates['w'], [0.0, 0.0])
  assert isinstance(state[0], optax.ScaleByAdamState)


def test_adams_no_retrace():
  chex.clear_trace_counter()
  tx = wdax.adams(SCHED, weight_decay=0.5, mask=masks.include('kernel'))
  params = _params()
  state = tx.init(params)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, i):
    updates, state = tx.update(_grads(params, i), state, params)
    return optax.apply_updates(params, updates), state

  for i in range(4):
    params, state = step(params, state, jnp.float32(i))
  chex.assert_tree_all_finite(params)
