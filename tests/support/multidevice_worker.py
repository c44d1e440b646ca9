"""Runs the sharded training checks on 8 simulated CPU devices; prints JSON.

``tests/test_sharding.py`` starts this in a subprocess with ``XLA_FLAGS``
asking for 8 host devices, which must be set before JAX starts, so the main
pytest process keeps its single device. Every run is done twice: on a mesh
with Auto axes and on ``jax.make_mesh``'s default, Explicit axes; results are
keyed ``'<axis type>/<api>/<strategy>'``.
"""

import json
import sys
import tempfile


def main() -> None:
  import chex
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax import nnx
  from jax.sharding import AxisType

  import wdax
  from wdax import checkpoint
  from wdax import sharding
  from wdax import training

  jax.config.update('jax_numpy_rank_promotion', 'raise')
  assert jax.device_count() == 8, jax.devices()
  meshes = {
      'auto': jax.make_mesh((8,), ('data',), axis_types=(AxisType.Auto,)),
      'explicit': jax.make_mesh((8,), ('data',)),  # the default: Explicit
  }
  assert meshes['explicit'].axis_types == (AxisType.Explicit,)
  mask = wdax.masks.flax_default()
  one_device = jax.devices()[0]
  out = {}

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(32)(x))
      return nn.Dense(8)(x)

  class NnxMLP(nnx.Module):
    def __init__(self, rngs):
      self.hidden = nnx.Linear(24, 32, rngs=rngs)
      self.norm = nnx.LayerNorm(32, rngs=rngs)
      self.out = nnx.Linear(32, 8, rngs=rngs)

    def __call__(self, x):
      return self.out(nnx.relu(self.norm(self.hidden(x))))

  model = MLP()
  rng = np.random.default_rng(0)
  batches = [
      {
          'x': jnp.asarray(rng.normal(size=(32, 24)), jnp.float32),
          'y': jnp.asarray(rng.normal(size=(32, 8)), jnp.float32),
      }
      for _ in range(10)
  ]

  def make_tx():
    return optax.chain(
        optax.adam(1e-2), wdax.decoupled(0.1, lr=1e-2, mask=mask)
    )

  def linen_state():
    params = model.init(jax.random.key(0), batches[0]['x'])['params']
    return training.TrainState.create(
        apply_fn=model.apply, params=params, tx=make_tx()
    )

  def nnx_state():
    module = NnxMLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(module, make_tx(), wrt=nnx.Param)
    return nnx.split((module, optimizer))

  def linen_loss(params, batch):
    pred = model.apply({'params': params}, batch['x'])
    return jnp.mean((pred - batch['y']) ** 2)

  def nnx_loss(module, batch):
    return jnp.mean((module(batch['x']) - batch['y']) ** 2)

  def run(mesh, kind, strategy):
    # Two independent copies: donation must not free the other run's arrays.
    if kind == 'linen':
      state, ref_state, graphdef = linen_state(), linen_state(), None
    else:
      graphdef, state = nnx_state()
      ref_state = nnx_state()[1]
    ref_state = jax.device_put(ref_state, one_device)
    if strategy == 'fsdp' and kind == 'linen':
      # Created under jit straight into its layout, never whole on one device.
      state = sharding.create_sharded(linen_state, mesh, 'fsdp')
    else:
      state = sharding.shard(state, mesh, strategy)
    state_shardings = sharding.shardings(state, mesh, strategy)
    chex.clear_trace_counter()
    loss = chex.assert_max_traces(
        linen_loss if kind == 'linen' else nnx_loss, n=1
    )
    retraced = False
    if kind == 'linen':
      step = training.train_step(loss, mask=mask, shardings=state_shardings)
      ref_step = training.train_step(linen_loss, mask=mask)
    else:
      step = training.nnx_train_step(
          graphdef, loss, mask=mask, shardings=state_shardings
      )
      ref_step = training.nnx_train_step(graphdef, nnx_loss, mask=mask)

    mismatched, donated = [], True
    for batch in batches:
      before = state
      in_shardings = [x.sharding for x in jax.tree.leaves(before)]
      try:
        state, _ = step(state, sharding.shard_batch(batch, mesh, strategy))
      except AssertionError as e:  # chex: the step was traced a second time
        retraced = str(e)
        break
      donated &= all(x.is_deleted() for x in jax.tree.leaves(before))
      for (path, x), s in zip(
          jax.tree_util.tree_leaves_with_path(state), in_shardings
      ):
        if x.sharding != s:
          mismatched.append(f'{jax.tree_util.keystr(path)}: {x.sharding} != {s}')
      ref_state, _ = ref_step(ref_state, jax.device_put(batch, one_device))

    params = state.params if kind == 'linen' else state[0]
    ref_params = ref_state.params if kind == 'linen' else ref_state[0]
    diff = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params))
    )
    specs = {
        wdax.paths.path_str(p): str(x.sharding.spec)
        for p, x in jax.tree_util.tree_leaves_with_path(state)
    }
    if strategy == 'fsdp':
      # A sharded checkpoint restores straight into a fresh sharded state.
      with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(f'{tmp}/ckpt', state)
        like = (
            sharding.create_sharded(linen_state, mesh, 'fsdp')
            if kind == 'linen'
            else sharding.shard(nnx_state()[1], mesh, 'fsdp')
        )
        restored = checkpoint.restore(f'{tmp}/ckpt', like)
      restored_ok = all(
          a.sharding == b.sharding and np.array_equal(a, b)
          for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state))
      )
    else:
      restored_ok = None
    return {
        'restored': restored_ok,
        'max_param_diff': diff,
        'mismatched_shardings': mismatched[:10],
        'retraced': retraced,
        'donated': donated,
        'specs': specs,
    }

  for axes, mesh in meshes.items():
    for kind, strategy in [
        ('linen', 'replicated'),
        ('linen', 'data'),
        ('linen', 'fsdp'),
        ('nnx', 'data'),
        ('nnx', 'fsdp'),
    ]:
      out[f'{axes}/{kind}/{strategy}'] = run(mesh, kind, strategy)

  # An optimiser state initialised under jit, sharded like the params.
  mesh = meshes['auto']
  params = sharding.shard(linen_state().params, mesh, 'fsdp')
  opt_state = sharding.init_sharded(optax.adamw(1e-3, mask=mask), params)
  out['init'] = {
      'params': {
          wdax.paths.path_str(p): str(x.sharding.spec)
          for p, x in jax.tree_util.tree_leaves_with_path(params)
      },
      'opt_state': {
          wdax.paths.path_str(p): str(getattr(x.sharding, 'spec', x.sharding))
          for p, x in jax.tree_util.tree_leaves_with_path(opt_state)
      },
  }
  json.dump(out, sys.stdout)


if __name__ == '__main__':
  main()
