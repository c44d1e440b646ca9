"""Tests for wdax.sharding: layouts, and sharded training on 8 CPU devices."""

import json
import logging
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
from support import shared

import wdax
from wdax import sharding

_WORKER = pathlib.Path(__file__).parent / 'support' / 'multidevice_worker.py'


def _run_multidevice(out: pathlib.Path) -> None:
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8')
  env['JAX_PLATFORMS'] = 'cpu'
  done = subprocess.run(
      [sys.executable, str(_WORKER)],
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
  )
  if done.returncode:
    raise AssertionError(f'the 8-device worker failed:\n{done.stderr[-4000:]}')
  (out / 'results.json').write_text(done.stdout)


@pytest.fixture(scope='module')
def multidevice(tmp_path_factory):
  """What the 8-device worker measured, run once per test run."""
  out = shared.folder(tmp_path_factory, 'multidevice', _run_multidevice)
  return json.loads((out / 'results.json').read_text())


_RUNS = [
    f'{axes}/{run}'
    for axes in ('auto', 'explicit')
    for run in ('linen/replicated', 'linen/data', 'linen/fsdp', 'nnx/data', 'nnx/fsdp')
]


@pytest.mark.slow  # an 8-device subprocess
@pytest.mark.parametrize('run', _RUNS)
def test_sharded_training_matches_one_device(multidevice, run):
  assert multidevice[run]['max_param_diff'] <= 1e-5


@pytest.mark.slow  # an 8-device subprocess
@pytest.mark.parametrize('run', _RUNS)
def test_every_output_sharding_equals_its_input_sharding(multidevice, run):
  assert multidevice[run]['mismatched_shardings'] == []


@pytest.mark.slow  # an 8-device subprocess
@pytest.mark.parametrize('run', _RUNS)
def test_sharded_step_traces_once_and_donates(multidevice, run):
  result = multidevice[run]
  assert result['retraced'] is False
  assert result['donated']


@pytest.mark.slow  # an 8-device subprocess
@pytest.mark.parametrize('axes', ['auto', 'explicit'])
@pytest.mark.parametrize('kind', ['linen', 'nnx'])
def test_fsdp_checkpoint_restores_values_and_shardings(multidevice, kind, axes):
  assert multidevice[f'{axes}/{kind}/fsdp']['restored'] is True


def _twin(path, params):
  """The parameter path an optimiser-state path ends with, if any."""
  return next((p for p in params if path.endswith('/' + p) or path == p), None)


@pytest.mark.slow  # an 8-device subprocess
@pytest.mark.parametrize('axes', ['auto', 'explicit'])
@pytest.mark.parametrize('kind', ['linen', 'nnx'])
def test_fsdp_shards_params_and_their_optimiser_twins_alike(multidevice, kind, axes):
  specs = multidevice[f'{axes}/{kind}/fsdp']['specs']
  prefix = 'params/' if kind == 'linen' else '0/'
  params = {p[len(prefix):]: s for p, s in specs.items() if p.startswith(prefix)}
  # 24x32 and 32x8 kernels, 32- and 8-element vectors: all divisible by 8.
  assert params and all('data' in s for s in params.values()), params
  for path, spec in specs.items():
    twin = _twin(path, params)
    if 'mu/' in path or 'nu/' in path:
      assert twin is not None, path
      assert spec == params[twin], (path, spec, params[twin])
    elif twin is None:
      assert spec == 'P()', (path, spec)  # step counts


@pytest.mark.slow  # an 8-device subprocess
def test_init_sharded_mirrors_the_param_shardings_under_jit(multidevice):
  layout = multidevice['init']
  params, opt_state = layout['params'], layout['opt_state']
  moments = [p for p in opt_state if '/mu/' in p or '/nu/' in p]
  assert len(moments) == 2 * len(params)
  for path in moments:
    assert opt_state[path] == params[_twin(path, params)], path
  for path, spec in opt_state.items():
    if path.endswith('count'):
      assert spec == 'P()', path


# One device: the layout rules themselves.


def test_fsdp_spec_picks_the_largest_divisible_dimension():
  assert sharding.fsdp_spec((24, 32), 8, 'd') == P(None, 'd')
  assert sharding.fsdp_spec((32, 24), 8, 'd') == P('d')
  assert sharding.fsdp_spec((16, 16), 8, 'd') == P('d')  # first on a tie
  assert sharding.fsdp_spec((12, 30), 8, 'd') == P()  # nothing divisible
  assert sharding.fsdp_spec((4, 7), 8, 'd') == P()  # smaller than the axis
  assert sharding.fsdp_spec((), 8, 'd') == P()


def _mesh():
  return jax.make_mesh((1,), ('data',))


@pytest.mark.parametrize(
    'call',
    [
        lambda mesh: sharding.shardings({'w': jnp.ones((4, 2))}, mesh, 'tensor'),
        lambda mesh: sharding.shard({'w': jnp.ones((4, 2))}, mesh, 'tensor'),
        lambda mesh: sharding.shard_batch({'x': jnp.ones((4, 2))}, mesh, 'tensor'),
        lambda mesh: sharding.create_sharded(lambda: {'w': jnp.ones(2)}, mesh, 'tensor'),
    ],
    ids=['shardings', 'shard', 'shard_batch', 'create_sharded'],
)
def test_unknown_strategy_is_an_error(call):
  with pytest.raises(
      ValueError, match="unknown strategy 'tensor'; valid strategies are 'replicated', 'data', 'fsdp'"
  ):
    call(_mesh())


def test_unknown_axis_is_an_error_naming_the_mesh_axes():
  with pytest.raises(ValueError, match=r"'model'.*\['data'\]"):
    sharding.shardings({'w': jnp.ones(2)}, _mesh(), 'fsdp', axis='model')


def test_shard_batch_splits_the_leading_dimension():
  mesh = _mesh()
  batch = sharding.shard_batch({'x': jnp.ones((6, 3)), 'n': jnp.ones([])}, mesh)
  assert batch['x'].sharding.spec == P('data')
  assert batch['n'].sharding.spec == P()
  replicated = sharding.shard_batch({'x': jnp.ones((6, 3))}, mesh, 'replicated')
  assert replicated['x'].sharding.spec == P()


def test_shard_batch_names_a_leaf_that_does_not_divide():
  mesh = jax.sharding.Mesh(jax.devices()[:1], ('data',))
  assert sharding.shard_batch({'x': jnp.ones((3, 2))}, mesh)['x'].shape == (3, 2)
  abstract = jax.sharding.AbstractMesh((4,), ('data',))
  with pytest.raises(ValueError, match=r"'inputs/x'.*size 4"):
    sharding.shard_batch({'inputs': {'x': jnp.ones((6, 2))}}, abstract)


def test_opt_state_shardings_follow_paths_through_masks_and_wdax_states():
  mesh = _mesh()
  # Two kernels of one shape, sharded differently: only a path tells which
  # sharding an optimiser-state leaf of that shape takes.
  params = {
      'Dense_0': {'kernel': jnp.ones((4, 6)), 'bias': jnp.ones(6)},
      'Dense_1': {'kernel': jnp.ones((4, 6))},
      'LayerNorm_0': {'scale': jnp.ones(5)},
  }
  specs = {
      'Dense_0': {'kernel': P(None, 'data'), 'bias': P('data')},
      'Dense_1': {'kernel': P('data')},
      'LayerNorm_0': {'scale': P()},
  }
  placed = jax.device_put(
      params, jax.tree.map(lambda s: jax.sharding.NamedSharding(mesh, s), specs)
  )
  mask = wdax.masks.flax_default()
  tx = optax.chain(
      optax.adamw(1e-3, mask=mask),
      wdax.decoupled(optax.linear_schedule(0.1, 0.0, 10), mask=mask),
      wdax.toward('init', 0.1, mask=mask),
  )
  out = sharding.opt_state_shardings(tx, placed)
  flat = dict(zip(wdax.leaf_paths(out), jax.tree.leaves(out)))
  assert flat['0/0/mu/Dense_0/kernel'].spec == P(None, 'data')
  assert flat['0/0/mu/Dense_1/kernel'].spec == P('data')
  assert flat['0/0/nu/Dense_0/bias'].spec == P('data')
  assert flat['0/0/mu/LayerNorm_0/scale'].spec == P()
  assert flat['1/count'].spec == P()
  # toward() keeps its reference under the params' own paths, so each
  # reference leaf is placed by path like its parameter; the masked-out
  # leaves hold nothing.
  assert flat['2/reference/Dense_0/kernel'].spec == P(None, 'data')
  assert flat['2/reference/Dense_1/kernel'].spec == P('data')
  assert [p for p in flat if p.startswith('2/reference/')] == [
      '2/reference/Dense_0/kernel',
      '2/reference/Dense_1/kernel',
  ]
  state = sharding.init_sharded(tx, placed)
  for path, leaf in zip(wdax.leaf_paths(state), jax.tree.leaves(state)):
    assert leaf.sharding == flat[path], path


def test_opt_state_leaf_without_a_twin_is_replicated_with_a_warning(caplog):
  mesh = _mesh()
  params = sharding.shard(
      {'a': jnp.ones((4, 2)), 'b': jnp.ones((4, 2))}, mesh, 'fsdp'
  )
  other = jax.device_put(params['b'], jax.sharding.NamedSharding(mesh, P()))
  params = {'a': params['a'], 'b': other}

  def init(p):
    # A leaf under no parameter's path, shaped like two differently
    # sharded parameters.
    return {'extra': jnp.zeros_like(p['a'])}

  tx = optax.GradientTransformation(init, lambda u, s, p=None: (u, s))
  with caplog.at_level(logging.WARNING, logger='wdax.sharding'):
    out = sharding.opt_state_shardings(tx, params)
  assert out['extra'].spec == P()
  assert "'extra'" in caplog.text


@pytest.mark.parametrize(
    'axis_types, spec',
    [((AxisType.Auto,), P('data')), ((AxisType.Explicit,), P('data', None))],
    ids=['auto', 'explicit'],
)
def test_create_sharded_builds_the_state_in_its_layout(axis_types, spec):
  # On an Explicit mesh the spec spells every dimension, as a compiled step's
  # output types do; on an Auto mesh it has no trailing None, as the
  # compiler writes them.
  mesh = jax.make_mesh((1,), ('data',), axis_types=axis_types)
  state = sharding.create_sharded(
      lambda: {'w': jnp.ones((8, 2)), 'count': jnp.zeros([], jnp.int32)}, mesh
  )
  assert state['w'].sharding.spec == spec
  assert state['count'].sharding.spec == P()
