"""A Linen MLP on scikit-learn's digits, trained with and without weight decay.

Uses ``wdax.adamw`` with Flax's usual mask (decay kernels, not biases or
LayerNorm scales) and the jit-compiled step of ``wdax.training``, whose
metrics show the decayed and undecayed parameter norms. Prints which
parameters are decayed, then train and test accuracy for each decay.

    python examples/mlp_digits.py --help
"""

from __future__ import annotations

import argparse
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import wdax
from wdax import training


class MLP(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm()(nn.relu(nn.Dense(self.hidden)(x)))
    return nn.Dense(10)(x)


def digits(seed: int):
  """Digits scaled to [0, 1], shuffled, split in half for train and test."""
  x, y = load_digits(return_X_y=True)
  order = np.random.default_rng(seed).permutation(len(y))
  x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)
  half = len(y) // 2
  return (x[:half], y[:half]), (x[half:], y[half:])


def accuracy(model, params, x, y) -> float:
  return float(_accuracy(model, params, jnp.asarray(x), jnp.asarray(y)))


@functools.partial(jax.jit, static_argnums=0)
def _accuracy(model, params, x, y):
  logits = model.apply({'params': params}, x)
  return jnp.mean(jnp.argmax(logits, -1) == y)


def train(weight_decay: float, args: argparse.Namespace):
  (x, y), (x_test, y_test) = digits(args.seed)
  model = MLP(args.hidden)
  params = jax.jit(model.init)(jax.random.key(args.seed), x[:1])['params']
  mask = wdax.masks.flax_default()
  lr = optax.cosine_decay_schedule(args.lr, args.steps)
  tx = wdax.adamw(lr, weight_decay=weight_decay, mask=mask)
  state = training.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  def loss_fn(params, batch):
    logits = model.apply({'params': params}, batch['x'])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['y']
    ).mean()

  step = training.train_step(loss_fn, mask=mask)
  rng = np.random.default_rng(args.seed + 1)
  for _ in range(args.steps):
    idx = rng.integers(0, len(y), args.batch)
    state, metrics = step(state, {'x': x[idx], 'y': y[idx]})
  return (
      accuracy(model, state.params, x, y),
      accuracy(model, state.params, x_test, y_test),
      float(metrics['param_norm_decayed']),
      float(metrics['param_norm_not_decayed']),
  )


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--weight-decay', type=float, default=0.5,
                      help='AdamW weight decay (decay per step is lr * this)')
  parser.add_argument('--lr', type=float, default=3e-3, help='peak learning rate')
  parser.add_argument('--steps', type=int, default=600, help='training steps')
  parser.add_argument('--batch', type=int, default=64, help='batch size')
  parser.add_argument('--hidden', type=int, default=128, help='hidden width')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()

  (x, _), _ = digits(args.seed)
  # Shapes are all describe needs: nothing is computed.
  shapes = jax.eval_shape(MLP(args.hidden).init, jax.random.key(0), x[:1])
  params = shapes['params']
  print(wdax.describe(params, rate=args.weight_decay, mask=wdax.masks.flax_default()))
  print()
  for weight_decay in (0.0, args.weight_decay):
    train_acc, test_acc, decayed, not_decayed = train(weight_decay, args)
    print(
        f'weight_decay={weight_decay:<6g} train_acc={train_acc:.4f} '
        f'test_acc={test_acc:.4f} kernel_norm={decayed:.2f} '
        f'other_norm={not_decayed:.2f}'
    )


if __name__ == '__main__':
  main()
