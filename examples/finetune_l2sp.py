"""Fine-tuning with decay toward the pre-trained weights (L2-SP) vs toward zero.

An MLP is pre-trained on scikit-learn's digits 0-4, then fine-tuned on a few
examples of digits 5-9. Two fine-tunings start from the same pre-trained
weights with the same Adam and the same rate; they differ in where the decay
pulls:

* L2-SP: ``wdax.toward('init', rate)`` on the body, toward the weights
  fine-tuning started from, and plain decay on the new classifier head (Li,
  Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with
  Convolutional Networks", 2018, arXiv:1802.01483);
* ``wdax.decoupled(rate)`` everywhere: toward zero, wearing away what
  pre-training found.

It reports test accuracy on 5-9 and how far each moved from the pre-trained
weights.

    python examples/finetune_l2sp.py --help
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
    x = nn.relu(nn.Dense(self.hidden)(x))
    x = nn.LayerNorm()(nn.relu(nn.Dense(self.hidden)(x)))
    return nn.Dense(10, name='head')(x)


def tasks(seed: int, shots: int):
  """Pre-training data (digits 0-4); few-shot train and test data for 5-9."""
  x, y = load_digits(return_X_y=True)
  x, y = (x / 16.0).astype(np.float32), y.astype(np.int32)
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(y))
  x, y = x[order], y[order]
  old = y < 5
  new_x, new_y = x[~old], y[~old]
  few = np.concatenate([np.flatnonzero(new_y == c)[:shots] for c in range(5, 10)])
  rest = np.setdiff1d(np.arange(len(new_y)), few)
  return (x[old], y[old]), (new_x[few], new_y[few]), (new_x[rest], new_y[rest])


def fit(model, params, tx, data, steps: int, batch: int, seed: int):
  x, y = data
  mask = wdax.masks.flax_default()
  state = training.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  def loss_fn(params, batch):
    logits = model.apply({'params': params}, batch['x'])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['y']
    ).mean()

  step = training.train_step(loss_fn, mask=mask)
  rng = np.random.default_rng(seed)
  for _ in range(steps):
    idx = rng.integers(0, len(y), batch)
    state, _ = step(state, {'x': x[idx], 'y': y[idx]})
  return state.params


def accuracy(model, params, data) -> float:
  x, y = data
  return float(_accuracy(model, params, jnp.asarray(x), jnp.asarray(y)))


@functools.partial(jax.jit, static_argnums=0)
def _accuracy(model, params, x, y):
  logits = model.apply({'params': params}, x)
  return jnp.mean(jnp.argmax(logits, -1) == y)


def distance(a, b) -> float:
  return float(optax.tree.norm(optax.tree.sub(a, b)))


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--rate', type=float, default=1.0,
                      help='decay rate of both fine-tunings (per step: lr * rate)')
  parser.add_argument('--lr', type=float, default=1e-3, help='learning rate')
  parser.add_argument('--pretrain-steps', type=int, default=400)
  parser.add_argument('--finetune-steps', type=int, default=300)
  parser.add_argument('--shots', type=int, default=10,
                      help='fine-tuning examples per new class')
  parser.add_argument('--batch', type=int, default=32, help='batch size')
  parser.add_argument('--hidden', type=int, default=64, help='hidden width')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()

  old, few, test = tasks(args.seed, args.shots)
  model = MLP(args.hidden)
  params = jax.jit(model.init)(jax.random.key(args.seed), old[0][:1])['params']
  mask = wdax.masks.flax_default()
  pretrained = fit(
      model, params, optax.adam(args.lr), old, args.pretrain_steps, args.batch,
      args.seed,
  )
  print(f'pre-trained on digits 0-4: accuracy {accuracy(model, pretrained, old):.4f}')
  print(f'fine-tuning on {len(few[1])} examples of digits 5-9, testing on '
        f'{len(test[1])}\n')

  lr = args.lr
  # As in the L2-SP paper, the shared body decays toward its pre-trained
  # weights and the classifier head, which pre-training never fitted for the
  # new classes, toward zero.
  body = mask & wdax.masks.exclude('head')
  head = mask & wdax.masks.include('head')
  decays = {
      'L2-SP': optax.chain(
          wdax.toward('init', args.rate, lr=lr, mask=body),
          wdax.decoupled(args.rate, lr=lr, mask=head),
      ),
      'toward zero': wdax.decoupled(args.rate, lr=lr, mask=mask),
  }
  for name, decay in decays.items():
    tx = optax.chain(optax.adam(lr), decay)
    # Copies: the step donates its state, and both runs start from here.
    start = jax.tree.map(jnp.copy, pretrained)
    tuned = fit(
        model, start, tx, few, args.finetune_steps, args.batch, args.seed + 1
    )
    print(
        f'{name:<15} test_acc={accuracy(model, tuned, test):.4f} '
        f'distance_from_pretrained={distance(tuned, pretrained):.3f}'
    )


if __name__ == '__main__':
  main()
