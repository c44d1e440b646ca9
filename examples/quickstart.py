"""Train a small Flax MLP on scikit-learn's digits with wdax weight decay.

Run ``python examples/quickstart.py --help`` for options. It prints which
parameters are decayed, then the held-out accuracy with and without decay.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from sklearn.datasets import load_digits

import wdax


class Mlp(nn.Module):
  hidden: int = 128

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.LayerNorm()(x)
    return nn.Dense(10)(x)


def split(seed: int):
  """Digits scaled to [0, 1]; a stratified-by-shuffle half for held-out test."""
  x, y = load_digits(return_X_y=True)
  order = np.random.default_rng(seed).permutation(len(y))
  x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)
  half = len(y) // 2
  return (x[:half], y[:half]), (x[half:], y[half:])


def train(rate: float, args) -> float:
  (x, y), (x_test, y_test) = split(args.seed)
  x, y = jnp.asarray(x), jnp.asarray(y)
  model = Mlp(args.hidden)
  params = model.init(jax.random.key(args.seed), x[:1])['params']
  steps = args.epochs * (len(y) // args.batch)
  lr = optax.cosine_decay_schedule(args.lr, steps)
  mask = wdax.masks.flax_default()
  tx = optax.chain(optax.adam(lr), wdax.decoupled(rate, lr=lr, mask=mask))
  state = tx.init(params)

  def loss_fn(params, xb, yb):
    logits = model.apply({'params': params}, xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  @jax.jit
  def epoch(params, state, key):
    order = jax.random.permutation(key, len(y))[: steps // args.epochs * args.batch]
    batches = order.reshape(-1, args.batch)

    def step(carry, idx):
      params, state = carry
      grads = jax.grad(loss_fn)(params, x[idx], y[idx])
      updates, state = tx.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(step, (params, state), batches)[0]

  key = jax.random.key(args.seed + 1)
  for _ in range(args.epochs):
    key, sub = jax.random.split(key)
    params, state = epoch(params, state, sub)
  logits = model.apply({'params': params}, x_test)
  return float(jnp.mean(jnp.argmax(logits, -1) == y_test))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--rate', type=float, default=0.1, help='decoupled decay rate')
  parser.add_argument('--lr', type=float, default=3e-3, help='peak learning rate')
  parser.add_argument('--epochs', type=int, default=30)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--hidden', type=int, default=128)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()

  (x, _), _ = split(args.seed)
  params = Mlp(args.hidden).init(jax.random.key(0), x[:1])['params']
  print(wdax.describe(params, rate=args.rate, mask=wdax.masks.flax_default()))
  print()
  for rate in (0.0, args.rate):
    print(f'decoupled decay {rate:g}: held-out accuracy {train(rate, args):.4f}')


if __name__ == '__main__':
  main()
