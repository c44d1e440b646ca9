"""Tests for wdax.diagnostics.equilibrium_norm against its formula and a simulation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import wdax
from wdax import diagnostics


def test_equilibrium_norm_formula(strict_dtypes):
  got = diagnostics.equilibrium_norm(1e-3, 0.1, 512)
  assert got.dtype == jnp.float32 and got.shape == ()
  assert float(got) == pytest.approx(math.sqrt(1e-3 * 512 / 0.2), rel=1e-6)
  # size from an array: its number of elements.
  from_array = diagnostics.equilibrium_norm(2e-3, 0.05, jnp.zeros((16, 8)))
  assert float(from_array) == pytest.approx(math.sqrt(2e-3 * 128 / 0.1), rel=1e-6)


def test_equilibrium_norm_under_jit_and_vmap(strict_dtypes):
  f = jax.jit(lambda lr, wd: diagnostics.equilibrium_norm(lr, wd, 100))
  assert float(f(jnp.float32(0.02), jnp.float32(0.1))) == pytest.approx(
      math.sqrt(10.0), rel=1e-6
  )
  lrs = jnp.array([1e-3, 4e-3, 9e-3], jnp.float32)
  got = jax.vmap(lambda lr: diagnostics.equilibrium_norm(lr, 0.5, 50))(lrs)
  np.testing.assert_allclose(got, np.sqrt(np.asarray(lrs) * 50 / 1.0), rtol=1e-6)


def _simulate(size, lr, wd, steps, starts):
  """Norms of scale-invariant weights trained by wdax.adamw on random gradients.

  The loss is taken to depend on w only through w / ||w||, so its gradient is
  orthogonal to w and scales as 1 / ||w||: a fresh Gaussian vector, projected
  onto the plane orthogonal to w and divided by ||w||, stands in for it.
  """
  tx = wdax.adamw(lr, weight_decay=wd)

  def run(w0, key):
    def step(carry, k):
      w, state = carry
      n2 = jnp.sum(w * w)
      z = jax.random.normal(k, w.shape)
      g = (z - (jnp.dot(z, w) / n2) * w) / jnp.sqrt(n2)
      u, state = tx.update(g, state, w)
      w = w + u
      return (w, state), jnp.linalg.norm(w)

    _, norms = jax.lax.scan(step, (w0, tx.init(w0)), jax.random.split(key, steps))
    return norms

  keys = jax.random.split(jax.random.key(0), len(starts) + 1)
  direction = jax.random.normal(keys[0], (size,))
  direction = direction / jnp.linalg.norm(direction)
  w0 = jnp.stack([s * direction for s in starts])
  return jax.jit(jax.vmap(run))(w0, keys[1:])


def test_equilibrium_norm_matches_simulated_adamw():
  size, lr, wd = 128, 0.02, 0.1  # eta * lambda = 2e-3: ~500-step timescale
  predicted = float(diagnostics.equilibrium_norm(lr, wd, size))
  # Start far below and far above the prediction: both must settle there.
  # Adam's second moment lags the drifting gradient scale, so the approach is
  # slower than the 1 / (2 eta lambda) timescale alone; after 8000 steps both
  # runs sit within 2% of the prediction (-1.5% and +0.4% seen).
  norms = np.asarray(
      _simulate(size, lr, wd, 8000, [0.25 * predicted, 3 * predicted])
  )
  for run in norms:
    assert abs(run[0] - predicted) > 0.5 * predicted
    settled = run[-1000:].mean()
    assert abs(settled - predicted) < 0.1 * predicted, (settled, predicted)


def test_equilibrium_norm_errors():
  with pytest.raises(ValueError, match='rate must be finite and positive; got 0.0'):
    diagnostics.equilibrium_norm(1e-3, 0.0, 10)
  with pytest.raises(ValueError, match='lr must be finite and positive; got 0.0'):
    diagnostics.equilibrium_norm(0.0, 0.1, 10)
  with pytest.raises(ValueError, match='rate must be finite and positive; got -0.1'):
    diagnostics.equilibrium_norm(1e-3, -0.1, 10)
  with pytest.raises(ValueError, match='finite'):
    diagnostics.equilibrium_norm(float('nan'), 0.1, 10)
  with pytest.raises(ValueError, match='schedule'):
    diagnostics.equilibrium_norm(lambda t: 1e-3, 0.1, 10)
  with pytest.raises(ValueError, match='size'):
    diagnostics.equilibrium_norm(1e-3, 0.1, 0)
  with pytest.raises(ValueError, match='size'):
    diagnostics.equilibrium_norm(1e-3, 0.1, 2.5)
