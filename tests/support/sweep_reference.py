"""Hand-written training loops the sweep's tests compare against.

Each follows the schedule ``wdax.sweep.grid`` documents, written plainly: one
jitted step per minibatch called from Python, the orders of visit from
``np.random.default_rng([seed, epoch])``, the key of minibatch ``i`` of epoch
``e`` ``fold_in(fold_in(key(seed), e), i)``.
"""

import jax
import numpy as np
import optax

_STEPS = {}


def order(seed, epoch, members, n):
  """Epoch ``epoch``'s order of the training examples ``members``."""
  noise = np.random.default_rng([seed, epoch]).random(n)
  return members[np.argsort(noise[members], kind='stable')]


def take(data, index):
  return jax.tree.map(lambda a: a[index], data)


def _step(loss, make_tx):
  """One jitted step per (loss, optimiser): the hyperparameters are traced
  arguments, so trainings at different points share its compilation."""
  if (loss, make_tx) not in _STEPS:

    @jax.jit
    def step(params, opt_state, state, batch, key, hp):
      (_, state), grads = jax.value_and_grad(loss, has_aux=True)(params, state, batch, key, hp)
      updates, opt_state = make_tx(hp).update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, state

    _STEPS[(loss, make_tx)] = step
  return _STEPS[(loss, make_tx)]


def loop(init, loss, make_tx, hp, data, members, *, seed, epochs, batch_size, full_batches=False):
  """Trains once at the hyperparameters ``hp`` (a dict); returns ``(params,
  state)``.

  ``init(key) -> (params, state)``; ``loss(params, state, batch, key, hp) ->
  (loss, new_state)``; ``make_tx(hp)`` an optax optimiser. With
  ``full_batches`` an epoch's partial last minibatch is skipped.
  """
  params, state = init(jax.random.key(seed))
  opt_state = make_tx(hp).init(params)
  step = _step(loss, make_tx)
  hp = {k: np.float32(v) for k, v in hp.items()}
  n = len(jax.tree.leaves(data)[0])
  members = np.flatnonzero(members)
  for e in range(epochs):
    visit = order(seed, e, members, n)
    epoch_key = jax.random.fold_in(jax.random.key(seed), e)
    for i, start in enumerate(range(0, len(visit), batch_size)):
      index = visit[start : start + batch_size]
      if full_batches and len(index) < batch_size:
        break
      params, opt_state, state = step(
          params, opt_state, state, take(data, index), jax.random.fold_in(epoch_key, i), hp
      )
  return params, state


def folds_of(result):
  """The validation masks of a result's folds, one row per fold."""
  ids = result.fold_ids
  return ids[None, :] == np.arange(ids.max() + 1)[:, None]
