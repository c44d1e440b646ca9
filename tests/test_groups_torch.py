"""Per-group learning rates against PyTorch optimisers with param groups.

``tests/fixtures/torch_groups.npz`` holds float64 trajectories of
``torch.optim.AdamW`` and ``torch.optim.SGD(momentum)`` with four param
groups each, written by ``tests/fixtures/make_torch_group_fixtures.py`` (its
docstring gives the groups). They are replayed here in float32.
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from support.torch_replay import ADAM_TOL
from support.torch_replay import SGD_TOL

import wdax

FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'torch_groups.npz'
LEAVES = ('embed', 'body/kernel', 'body/bias', 'head/kernel')


@functools.cache
def _fixture():
  with np.load(FIXTURE, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def _params():
  fx = _fixture()
  flat = {leaf: jnp.asarray(fx['init/' + leaf.replace('/', '.')], jnp.float32) for leaf in LEAVES}
  return {
      'embed': flat['embed'],
      'body': {'kernel': flat['body/kernel'], 'bias': flat['body/bias']},
      'head': {'kernel': flat['head/kernel']},
  }


def _loss(p, x, y):
  hidden = jnp.tanh(jnp.tanh(x @ p['embed']) @ p['body']['kernel'] + p['body']['bias'][None, :])
  return jnp.mean((hidden @ p['head']['kernel'] - y) ** 2)


def _replay(tx):
  fx = _fixture()
  x, y = (jnp.asarray(fx[k], jnp.float32) for k in ('X', 'Y'))

  def step(carry, _):
    params, state = carry
    updates, state = tx.update(jax.grad(_loss)(params, x, y), state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), params

  params = _params()
  _, traj = jax.lax.scan(step, (params, tx.init(params)), length=int(fx['steps']))
  both = jax.tree.map(lambda a, b: np.concatenate([np.asarray(a)[None], np.asarray(b)]), params, traj)
  return dict(zip(wdax.leaf_paths(both), jax.tree.leaves(both)))


def _hyper(case, what):
  fx = _fixture()
  return {leaf: float(fx[f'{case}/{what}/{leaf.replace("/", ".")}']) for leaf in LEAVES}


def _assert_matches(case, got, tol):
  fx = _fixture()
  for leaf in LEAVES:
    np.testing.assert_allclose(got[leaf], fx[f'{case}/{leaf.replace("/", ".")}'], **tol, err_msg=leaf)


def test_adamw_with_four_param_groups_one_frozen_matches_torch_adamw():
  lr, wd = _hyper('adamw_groups', 'lr'), _hyper('adamw_groups', 'weight_decay')
  assert lr['embed'] == 0.0 and len({*lr.values()}) == 3 and len({*wd.values()}) == 4
  tx = wdax.adamw(
      wdax.rates({'head': lr['head/kernel'], 'embed': 0.0}, default=lr['body/kernel']),
      weight_decay=wdax.rates(
          {'bias': 0.0, 'head': wd['head/kernel']}, default=wd['body/kernel']
      ),
  )
  got = _replay(tx)
  _assert_matches('adamw_groups', got, ADAM_TOL)
  # Frozen: bitwise the initial embedding at every step, as in torch.
  assert np.array_equal(got['embed'], np.broadcast_to(got['embed'][0], got['embed'].shape))


def test_sgd_momentum_with_param_groups_matches_torch_through_scale_by_learning_rate():
  lr, wd = _hyper('sgd_groups', 'lr'), _hyper('sgd_groups', 'weight_decay')
  by_leaf = lambda h: wdax.rates({leaf: h[leaf] for leaf in LEAVES})  # noqa: E731
  tx = optax.chain(
      wdax.l2(by_leaf(wd)),
      optax.trace(0.9),
      wdax.scale_by_learning_rate(by_leaf(lr)),
  )
  _assert_matches('sgd_groups', _replay(tx), SGD_TOL)


def test_a_single_learning_rate_would_not_match_the_grouped_torch_run():
  # Without this, matching adamw_groups could not tell groups from one lr.
  got = _replay(wdax.adamw(1e-2, weight_decay=0.5))
  want = _fixture()['adamw_groups/head.kernel']
  assert np.max(np.abs(got['head/kernel'] - want)) > 100 * ADAM_TOL['atol']
