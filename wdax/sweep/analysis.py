r"""Reading a sweep's :class:`~wdax.sweep.Result`: the statistics a report of
it needs, beside :meth:`~wdax.sweep.Result.summary` (mean and standard
error), :meth:`~wdax.sweep.Result.difference` (paired with a baseline) and
:meth:`~wdax.sweep.Result.choose` (the best point, or the one-standard-error
choice).

- :func:`differences`: every metric's paired difference from no decay;
- :func:`gain`: whether such a difference is a gain by more than its
  standard error;
- :func:`gap`: the generalisation gap, training minus validation, paired;
- :func:`mean_curves`: the learning curves averaged over folds and seeds;
- :func:`best_per`: the best point at each value of another name (the best
  rate at each learning rate);
- :func:`stability`: whether the product of the learning rate and the best
  rate is stable across learning rates;
- :func:`best_of`: the best of several choices (one per decay kind);
- :func:`perplexity`, :func:`perplexity_se`: a language model's perplexity
  from its loss.

The command line (``wdax sweep``) reports these; it computes none itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from collections.abc import Sequence

import numpy as np

from wdax.sweep.errors import NoChoice
from wdax.sweep.results import MODES
from wdax.sweep.results import Choice
from wdax.sweep.results import Result
from wdax.sweep.results import mean_se

NO_DECAY = {'rate': 0.0}

# exp(loss) past this overflows a float64: the perplexity is infinite.
_LARGEST_EXPONENT = 700.0


def differences(
    result: Result, baseline: Mapping[str, float] = NO_DECAY
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  r"""Every metric's :meth:`~wdax.sweep.Result.difference` from ``baseline``
  (by default no decay, the same point with ``rate`` 0), paired over folds
  and seeds.

  .. math::

    d_p(m) = \frac{1}{n} \sum_{k, s} \bigl(m(p, k, s) - m(b(p), k, s)\bigr)

  for each metric :math:`m`, with its standard error, as
  :meth:`~wdax.sweep.Result.difference`.

  Examples:
    >>> import numpy as np
    >>> from wdax.sweep import analysis, results
    >>> loss = np.array([[0.5, 0.7], [0.3, 0.6]])[:, :, None, None]
    >>> result = results.Result(
    ...     points=[{'rate': 0.0}, {'rate': 0.1}],
    ...     curves={'train_loss': loss, 'val_loss': loss}, epochs=np.array([1]),
    ...     fold_ids=np.array([0, 1]), seeds=(0,), chunk_size=4, chunks=1,
    ...     devices=1, bytes_per_configuration=0)
    >>> mean, se = analysis.differences(result)['val_loss']
    >>> mean.round(6).tolist(), se.round(6).tolist()
    ([0.0, -0.15], [0.0, 0.05])
  """
  return {m: result.difference(m, dict(baseline)) for m in result.metrics}


def gain(mean: float, se: float, mode: str) -> bool:
  r"""Whether a difference from the baseline is a gain by more than its
  standard error: :math:`d < -\mathrm{se}` for ``mode='min'`` (a loss),
  :math:`d > \mathrm{se}` for ``mode='max'``; never when either is NaN.

  Examples:
    >>> from wdax.sweep import analysis
    >>> analysis.gain(-0.03, 0.01, 'min'), analysis.gain(-0.03, 0.05, 'min')
    (True, False)
  """
  if mode not in MODES:
    raise ValueError(f'unknown mode {mode!r}; use {" or ".join(map(repr, MODES))}.')
  if not (math.isfinite(mean) and math.isfinite(se)):
    return False
  return mean < -se if mode == 'min' else mean > se


def gap(result: Result, metric: str) -> tuple[np.ndarray, np.ndarray]:
  r"""The generalisation gap of ``metric`` (``'loss'``, ``'accuracy'``,
  ...): training minus validation, paired over trainings.

  .. math::

    g_p = \frac{1}{n} \sum_{k, s} \bigl(m_{\text{train}}(p, k, s) -
    m_{\text{val}}(p, k, s)\bigr)

  over the :math:`n` trainings (fold :math:`k`, seed :math:`s`) of point
  :math:`p` that did not diverge, at its last evaluation, with its standard
  error (:func:`~wdax.sweep.results.mean_se`). Returns ``(mean, se)``, each
  of shape ``(P,)``.

  Examples:
    >>> import numpy as np
    >>> from wdax.sweep import analysis, results
    >>> train = np.array([[0.9, 1.0]])[:, :, None, None]
    >>> val = np.array([[0.7, 0.6]])[:, :, None, None]
    >>> result = results.Result(
    ...     points=[{'rate': 0.0}],
    ...     curves={'train_loss': val, 'val_loss': val, 'train_accuracy': train,
    ...             'val_accuracy': val},
    ...     epochs=np.array([1]), fold_ids=np.array([0, 1]), seeds=(0,),
    ...     chunk_size=2, chunks=1, devices=1, bytes_per_configuration=0)
    >>> [v.round(6).tolist() for v in analysis.gap(result, 'accuracy')]
    [[0.3], [0.1]]
  """
  return mean_se(result.final(f'train_{metric}') - result.final(f'val_{metric}'))


def mean_curves(result: Result) -> dict[str, np.ndarray]:
  r"""Each metric's learning curve averaged over folds and seeds.

  .. math::

    \bar m(p, e) = \frac{1}{n_{p,e}} \sum_{k, s} m(p, k, s, e)

  over the trainings whose value at evaluation :math:`e` is finite; shape
  ``(P, E)``, NaN where none is.

  Examples:
    >>> import numpy as np
    >>> from wdax.sweep import analysis, results
    >>> loss = np.array([[[1.0, 0.5], [3.0, np.nan]]])[:, :, None, :]  # (1, 2, 1, 2)
    >>> result = results.Result(
    ...     points=[{'rate': 0.0}], curves={'train_loss': loss, 'val_loss': loss},
    ...     epochs=np.array([1, 2]), fold_ids=np.array([0, 1]), seeds=(0,),
    ...     chunk_size=2, chunks=1, devices=1, bytes_per_configuration=0)
    >>> analysis.mean_curves(result)['val_loss'].tolist()
    [[2.0, 0.5]]
  """
  out = {}
  for name, values in result.curves.items():
    p, f, s, e = values.shape
    out[name] = mean_se(np.moveaxis(values, -1, 1).reshape(p, e, f * s))[0]
  return out


def best_per(
    result: Result, name: str, metric: str = 'val_loss', mode: str | None = None,
    one_se: bool | str = False,
) -> dict[float, Choice | None]:
  """The choice (:meth:`~wdax.sweep.Result.choose`) among the points with
  each value of ``name``, e.g. the best rate at each learning rate, by
  increasing value; ``None`` where every point with that value diverged.

  Examples:
    >>> import numpy as np
    >>> from wdax.sweep import analysis, results
    >>> loss = np.array([[0.5, 0.5], [0.4, 0.4], [0.3, 0.3], [0.6, 0.6]])
    >>> loss = loss[:, :, None, None]
    >>> result = results.Result(
    ...     points=[{'rate': r, 'lr': lr} for r in (0.0, 1.0) for lr in (0.1, 0.2)],
    ...     curves={'train_loss': loss, 'val_loss': loss}, epochs=np.array([1]),
    ...     fold_ids=np.array([0, 1]), seeds=(0,), chunk_size=8, chunks=1,
    ...     devices=1, bytes_per_configuration=0)
    >>> {lr: c.point['rate'] for lr, c in analysis.best_per(result, 'lr').items()}
    {0.1: 1.0, 0.2: 0.0}
  """
  if name not in result.points[0]:
    raise ValueError(
        f'name {name!r} is not in the space; it has {", ".join(map(repr, result.points[0]))}.'
    )
  out: dict[float, Choice | None] = {}
  for value in sorted({p[name] for p in result.points}):
    try:
      out[value] = result.choose(metric, mode, one_se, where={name: value})
    except NoChoice:
      out[value] = None
  return out


@dataclasses.dataclass(frozen=True)
class Stability:
  """Whether the best ``lr * rate`` is the same across learning rates.

  Attributes:
    grid_step: the largest ratio of neighbouring positive rates of the grid,
      the resolution at which it can show a rate.
    with_decay: the learning rates whose best rate is above 0.
    learning_rates: the learning rates.
    products_span: the largest over the smallest product ``lr * rate``
      among those with decay; None with fewer than two.
    rates_span: the same of the best rates.
    stable: whether ``products_span`` is at most ``grid_step``; None with
      fewer than two learning rates with decay.
  """

  grid_step: float
  with_decay: int
  learning_rates: int
  products_span: float | None
  rates_span: float | None
  stable: bool | None


def stability(best: Mapping[float, float | None], grid: Sequence[float]) -> Stability:
  r"""Whether the best ``lr * rate`` is stable across learning rates.

  AdamW decays by :math:`\eta\lambda` a step (Loshchilov & Hutter,
  "Decoupled Weight Decay Regularization", 2019, arXiv:1711.05101), so if
  the product is what matters the best rate :math:`\lambda^*(\eta)` moves as
  :math:`1/\eta`, and the products agree:

  .. math::

    \frac{\max_\eta \eta\lambda^*(\eta)}{\min_\eta \eta\lambda^*(\eta)}
    \le \max_i \frac{\lambda_{i+1}}{\lambda_i}

  over the learning rates whose best rate is above 0, the right side the
  largest step between neighbouring positive rates :math:`\lambda_i` of
  the ``grid`` (the resolution the grid can show).

  Args:
    best: each learning rate's best rate (:func:`best_per`), None where
      none could be chosen.
    grid: the rates swept.

  Examples:
    >>> from wdax.sweep import analysis
    >>> s = analysis.stability({1e-3: 1.0, 1e-2: 0.1}, [0.0, 0.1, 1.0])
    >>> s.stable, round(s.products_span, 6), round(s.rates_span, 6)
    (True, 1.0, 10.0)
  """
  positive = sorted(r for r in grid if r > 0)
  step = max((b / a for a, b in zip(positive, positive[1:])), default=math.inf)
  decayed = {lr: rate for lr, rate in best.items() if rate}
  if len(decayed) < 2:
    return Stability(step, len(decayed), len(best), None, None, None)
  products = [lr * rate for lr, rate in decayed.items()]
  rates = list(decayed.values())
  products_span = max(products) / min(products)
  return Stability(
      step, len(decayed), len(best), products_span, max(rates) / min(rates),
      bool(products_span <= step * (1 + 1e-9)),
  )


def best_of(choices: Mapping[str, Choice]) -> str:
  """The key of the best of ``choices`` (e.g. one per decay kind) by mean,
  in their common mode; the first on a tie.

  Examples:
    >>> from wdax.sweep import analysis, results
    >>> def c(mean):
    ...   return results.Choice({'rate': 0.1}, 1, 'val_loss', 'min', mean, 0.0)
    >>> analysis.best_of({'adamw': c(0.3), 'l2': c(0.2), 'l1': c(0.2)})
    'l2'
  """
  if not choices:
    raise ValueError('choices is empty.')
  modes = {c.mode for c in choices.values()}
  if len(modes) > 1:
    raise ValueError(f'the choices have different modes, {sorted(modes)}.')
  sign = 1.0 if modes.pop() == 'max' else -1.0
  order = list(choices)
  return max(order, key=lambda k: (sign * choices[k].mean, -order.index(k)))


def perplexity(loss: float) -> float:
  r"""A language model's perplexity from its mean cross-entropy ``loss``
  (nats per token):

  .. math::

    \mathrm{PPL} = e^{L}

  Infinite past :math:`L = 700` (a float64 overflows), NaN for a NaN loss.

  Examples:
    >>> import math
    >>> from wdax.sweep import analysis
    >>> round(analysis.perplexity(math.log(4.0)), 9), analysis.perplexity(800.0)
    (4.0, inf)
  """
  if math.isnan(loss):
    return math.nan
  return math.exp(loss) if loss < _LARGEST_EXPONENT else math.inf


def perplexity_se(loss: float, se: float) -> float:
  r"""The standard error of :func:`perplexity` from the loss's, by the delta
  method:

  .. math::

    \mathrm{se}(e^{L}) \approx e^{L}\, \mathrm{se}(L)

  Examples:
    >>> import math
    >>> from wdax.sweep import analysis
    >>> round(analysis.perplexity_se(math.log(4.0), 0.5), 9)
    2.0
  """
  return perplexity(loss) * se


__all__ = [
    'NO_DECAY',
    'Stability',
    'best_of',
    'best_per',
    'differences',
    'gain',
    'gap',
    'mean_curves',
    'perplexity',
    'perplexity_se',
    'stability',
]
