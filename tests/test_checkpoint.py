"""Tests for wdax.checkpoint: a resumed run equals an uninterrupted one."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import wdax
from wdax import checkpoint
from wdax import training

_RNG = np.random.default_rng(0)
_BATCHES = [
    {
        'x': jnp.asarray(_RNG.normal(size=(8, 4)), jnp.float32),
        'y': jnp.asarray(_RNG.normal(size=(8, 2)), jnp.float32),
    }
    for _ in range(10)
]
_MASK = wdax.masks.flax_default()


def _tx():
  # Every kind of state: Adam's moments and count, a schedule's step count,
  # toward()'s stored reference with masked-out leaves.
  lr = optax.linear_schedule(1e-2, 1e-3, 10)
  return optax.chain(
      optax.adam(lr),
      wdax.decoupled(optax.linear_schedule(0.1, 0.0, 10), lr=lr, mask=_MASK),
      wdax.toward('init', 0.05, mask=_MASK),
  )


class _BN(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(6)(x))
    return nn.Dense(2)(nn.relu(x))


_MODEL = _BN()
_INIT = jax.jit(lambda key, x: _MODEL.init(key, x, train=False))


def _linen_state(tx):
  variables = _INIT(jax.random.key(0), _BATCHES[0]['x'])
  return training.TrainState.create(
      apply_fn=_MODEL.apply,
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      tx=tx,
  )


def _linen_loss(params, batch_stats, batch):
  pred, changed = _MODEL.apply(
      {'params': params, 'batch_stats': batch_stats},
      batch['x'],
      train=True,
      mutable=['batch_stats'],
  )
  return jnp.mean((pred - batch['y']) ** 2), (None, changed['batch_stats'])


def _assert_bitwise_equal(a, b):
  a_paths, b_paths = wdax.leaf_paths(a), wdax.leaf_paths(b)
  assert a_paths == b_paths
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for path, x, y in zip(a_paths, jax.tree.leaves(a), jax.tree.leaves(b)):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype, path
    assert x.tobytes() == y.tobytes(), path


def test_linen_run_resumed_from_a_checkpoint_is_bitwise_equal(tmp_path):
  # One tx object: it is static in the TrainState, part of the jit cache key.
  tx = _tx()
  chex.clear_trace_counter()
  # Traced once for the whole test: the restored state reuses the program.
  step = training.train_step(chex.assert_max_traces(_linen_loss, n=1), mask=_MASK)
  straight = _linen_state(tx)
  for batch in _BATCHES:
    straight, _ = step(straight, batch)

  resumed = _linen_state(tx)
  for batch in _BATCHES[:5]:
    resumed, _ = step(resumed, batch)
  checkpoint.save(tmp_path / 'step_5', resumed)
  del resumed
  resumed = checkpoint.restore(tmp_path / 'step_5', _linen_state(tx))
  assert int(resumed.step) == 5
  for batch in _BATCHES[5:]:
    resumed, _ = step(resumed, batch)

  _assert_bitwise_equal(straight, resumed)


class _Dropout(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(4, 6, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)
    self.out = nnx.Linear(6, 2, rngs=rngs)

  def __call__(self, x):
    return self.out(self.drop(nnx.relu(self.hidden(x))))


def _nnx_state():
  model = _Dropout(nnx.Rngs(params=0, dropout=1))
  return nnx.split((model, nnx.Optimizer(model, _tx(), wrt=nnx.Param)))


def _nnx_loss(model, batch):
  return jnp.mean((model(batch['x']) - batch['y']) ** 2)


@pytest.mark.slow  # NNX twin of the Linen resume test, which stays in the fast loop (3.5 CPU-s)
def test_nnx_run_resumed_from_a_checkpoint_is_bitwise_equal(tmp_path):
  # Dropout draws from the model's RNG stream: its key and counter must come
  # back too, or the resumed run drops other units.
  graphdef, straight = _nnx_state()
  chex.clear_trace_counter()
  step = training.nnx_train_step(
      graphdef, chex.assert_max_traces(_nnx_loss, n=1), mask=_MASK
  )
  for batch in _BATCHES:
    straight, _ = step(straight, batch)

  resumed = _nnx_state()[1]
  for batch in _BATCHES[:5]:
    resumed, _ = step(resumed, batch)
  checkpoint.save(tmp_path / 'step_5', resumed)
  resumed = checkpoint.restore(tmp_path / 'step_5', _nnx_state()[1])
  for batch in _BATCHES[5:]:
    resumed, _ = step(resumed, batch)

  _assert_bitwise_equal(straight, resumed)
  _, optimizer = nnx.merge(graphdef, resumed)
  assert int(optimizer.step[...]) == 10


def test_restoring_into_another_optimiser_names_what_differs(tmp_path):
  checkpoint.save(tmp_path / 'adam', _linen_state(optax.adam(1e-3)))
  like = _linen_state(optax.sgd(1e-3, momentum=0.9))
  with pytest.raises(ValueError) as info:
    checkpoint.restore(tmp_path / 'adam', like)
  message = str(info.value)
  assert 'opt_state/0/trace/Dense_0/kernel' in message  # the state has, not saved
  assert 'opt_state/0/mu/Dense_0/kernel' in message  # saved, not in the state
  assert 'another optimiser' in message


def test_restoring_another_model_names_the_shapes(tmp_path):
  state = {'params': {'w': jnp.zeros((3, 2))}, 'step': jnp.zeros([], jnp.int32)}
  checkpoint.save(tmp_path / 'ckpt', state)
  like = {'params': {'w': jnp.zeros((4, 2))}, 'step': jnp.zeros([], jnp.int32)}
  with pytest.raises(ValueError, match=r"'params/w' is float32\[3, 2\].*float32\[4, 2\]"):
    checkpoint.restore(tmp_path / 'ckpt', like)
  like['params']['w'] = jnp.zeros((3, 2), jnp.bfloat16)
  with pytest.raises(ValueError, match=r"'params/w' is float32\[3, 2\].*bfloat16"):
    checkpoint.restore(tmp_path / 'ckpt', like)


def test_restoring_a_checkpoint_of_several_items_says_save_did_not_write_it(tmp_path):
  # Orbax's composite checkpoints keep no tree of their own: their metadata
  # reads as None, which restore once dereferenced.
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as composite:
    composite.save(
        tmp_path / 'ckpt',
        ocp.args.Composite(state=ocp.args.StandardSave({'w': jnp.ones(2)})),
    )
  with pytest.raises(ValueError, match='holds no tree of arrays.*checkpoint.save'):
    checkpoint.restore(tmp_path / 'ckpt', {'w': jnp.zeros(2)})


def test_save_refuses_to_overwrite_unless_forced(tmp_path):
  checkpoint.save(tmp_path / 'ckpt', {'w': jnp.zeros(2)})
  with pytest.raises(Exception, match='exists'):
    checkpoint.save(tmp_path / 'ckpt', {'w': jnp.ones(2)})
  checkpoint.save(tmp_path / 'ckpt', {'w': jnp.ones(2)}, force=True)
  restored = checkpoint.restore(tmp_path / 'ckpt', {'w': jnp.zeros(2)})
  np.testing.assert_array_equal(restored['w'], np.ones(2))


def test_abstract_like_and_prng_keys_round_trip(tmp_path):
  key = jax.random.key(7)
  checkpoint.save(tmp_path / 'ckpt', {'key': key, 'w': jnp.arange(3.0)})
  like = {'key': jax.random.key(0), 'w': jax.ShapeDtypeStruct((3,), jnp.float32)}
  restored = checkpoint.restore(tmp_path / 'ckpt', like)
  np.testing.assert_array_equal(
      jax.random.key_data(restored['key']), jax.random.key_data(key)
  )
  np.testing.assert_array_equal(restored['w'], np.arange(3.0))
