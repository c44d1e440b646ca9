"""Tests of wdax.sweep.models: the built-in models and the traced dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wdax import sweep


def test_dropout_keeps_the_mean_and_zeroes_a_fraction():
  x = jnp.ones(20000)
  y = jax.jit(sweep.dropout)(x, jnp.float32(0.25), jax.random.key(0))
  kept = np.asarray(y) > 0
  np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75, rtol=1e-6)
  assert abs(kept.mean() - 0.75) < 0.02
  # A traced rate of 0 keeps everything; no key is evaluation.
  np.testing.assert_array_equal(jax.jit(sweep.dropout)(x[:5], jnp.float32(0.0), jax.random.key(0)), x[:5])
  np.testing.assert_array_equal(sweep.dropout(x[:5], 0.9, None), x[:5])


def test_mlp_flattens_and_drops_out_only_when_training():
  model = sweep.MLP(hidden=(16, 8), outputs=3)
  x = jnp.ones((2, 4, 2))
  params = model.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, params['params']['Dense_0']['kernel']) == (8, 16)
  plain = model.apply(params, x)
  np.testing.assert_array_equal(model.apply(params, x, dropout=0.5), plain)
  dropped = model.apply(params, x, dropout=0.5, train=True, rngs={'dropout': jax.random.key(1)})
  assert dropped.shape == (2, 3) and not np.allclose(dropped, plain)


@pytest.mark.slow  # the transformer, both heads (8 CPU-s); its doctest stays in the fast loop
def test_tiny_transformer_classifies_or_predicts_causally():
  tokens = jnp.array([[1, 2, 3, 4], [4, 3, 2, 1]])
  classifier = sweep.TinyTransformer(vocab=5, width=8, heads=2, blocks=1, classes=3)
  variables = classifier.init(jax.random.key(0), tokens)
  assert classifier.apply(variables, tokens).shape == (2, 3)
  assert 'Embed_0' in variables['params'] and 'position' not in variables['params']
  lm = sweep.TinyTransformer(vocab=5, width=8, heads=2, blocks=1, classes=None, positions=4)
  variables = lm.init(jax.random.key(0), tokens)
  logits = lm.apply(variables, tokens)
  assert logits.shape == (2, 4, 5)
  # Causal: a later token does not change earlier positions' logits.
  changed = lm.apply(variables, tokens.at[:, 3].set(0))
  np.testing.assert_allclose(changed[:, :3], logits[:, :3], rtol=1e-5, atol=1e-6)
  assert not np.allclose(changed[:, 3], logits[:, 3])
