r"""Layer-wise learning-rate decay (LLRD): smaller steps for lower layers.

.. math::

  \eta_l = \eta\,\gamma^{L-1-l}, \qquad l = 0, \dots, L-1

where :math:`\eta` is the base learning rate, :math:`\gamma \in (0, 1]` the
decay factor and :math:`L` the number of layers: the top layer trains at
:math:`\eta`, each layer below at :math:`\gamma` times the one above. From
Clark, Luong, Le & Manning, "ELECTRA: Pre-training Text Encoders as
Discriminators Rather Than Generators", 2020, arXiv:2003.10555, and Bao,
Dong, Piao & Wei, "BEiT: BERT Pre-Training of Image Transformers", 2022,
arXiv:2106.08254, and most ViT fine-tuning recipes since.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import optax

from wdax import _checks
from wdax import rate as _rates

__all__ = ['layerwise_lr', 'layerwise_rates']


def _check(fn: str, lr: Any, gamma: Any, num_layers: Any) -> int:
  _checks.rate(lr, f'{fn}: lr')
  g = _checks.number(gamma, f'{fn}: gamma')
  if not 0 < g <= 1:
    raise ValueError(f'{fn}: gamma must be in (0, 1]; got {gamma!r}.')
  return _checks.count(num_layers, f'{fn}: num_layers', minimum=1)


def layerwise_lr(lr: float, gamma: float, num_layers: int) -> np.ndarray:
  r"""Per-layer learning rates for layers stacked along a leading axis.

  .. math::

    \eta_l = \eta\,\gamma^{L-1-l}, \qquad l = 0, \dots, L-1

  where :math:`\eta` is ``lr``, :math:`\gamma` is ``gamma`` and :math:`L` is
  ``num_layers``; entry :math:`l` is layer :math:`l`'s learning rate (layer
  0 at the bottom). Use it as a value of :func:`wdax.rates` for the leaves
  ``nn.scan`` or ``nnx.vmap`` stacked, then pass the rates as the learning
  rate of :func:`wdax.adamw` (or any wdax learning rate): each layer steps
  and decays at its own rate. Layer-wise decay is from Clark et al.,
  "ELECTRA", 2020, arXiv:2003.10555, and Bao et al., "BEiT", 2022,
  arXiv:2106.08254.

  Args:
    lr: :math:`\eta`, the top layer's learning rate (a number).
    gamma: :math:`\gamma \in (0, 1]`.
    num_layers: :math:`L`, the size of the stacked axis.

  Returns:
    A float64 NumPy array of shape ``(num_layers,)``.

  Examples:
    >>> import wdax
    >>> wdax.layerwise_lr(1e-3, 0.5, 3)
    array([0.00025, 0.0005 , 0.001  ])
  """
  fn = 'layerwise_lr(...)'
  if callable(lr):
    raise ValueError(
        f'{fn}: lr must be a number (per-layer values are static); for a '
        'schedule use layerwise_rates on numbered layers.'
    )
  n = _check(fn, lr, gamma, num_layers)
  return float(lr) * float(gamma) ** np.arange(n - 1, -1, -1, dtype=np.float64)


def _scaled(lr: Any, factor: float) -> Any:
  if not callable(lr):
    return float(lr) * factor

  def schedule(count: Any) -> Any:
    return lr(count) * factor

  return schedule


def layerwise_rates(
    lr: optax.ScalarOrSchedule,
    gamma: float,
    num_layers: int,
    *,
    layer: str,
    default: optax.ScalarOrSchedule | None = None,
    extra: Mapping[str, Any] | None = None,
) -> _rates.Rates:
  r"""Per-group learning rates for numbered layers (``blocks_0``, ``layers/3``).

  .. math::

    \eta_l = \eta\,\gamma^{L-1-l}, \qquad l = 0, \dots, L-1

  where :math:`\eta` is ``lr`` (a number or a schedule, then scaled),
  :math:`\gamma` is ``gamma`` and :math:`L` is ``num_layers``. Layer
  :math:`l` is the pattern ``layer.format(l)`` (see :mod:`wdax.paths`):
  ``'blocks_{}'`` matches a segment ``blocks_3``, ``'layers/{}'`` the
  subtree ``layers/3``. Pass the result as the learning rate of
  :func:`wdax.adamw` (or :func:`wdax.scale_by_learning_rate`); decay then
  follows each layer's own rate. Layer-wise decay is from Clark et al.,
  "ELECTRA", 2020, arXiv:2003.10555, and Bao et al., "BEiT", 2022,
  arXiv:2106.08254, where the embeddings sit one step below layer 0
  (``extra={'embed': lr * gamma ** L}``) and the head at :math:`\eta`.

  Args:
    lr: :math:`\eta`, the top layer's learning rate.
    gamma: :math:`\gamma \in (0, 1]`.
    num_layers: :math:`L`.
    layer: a path pattern with one ``{}``, the layer's number.
    default: the learning rate of every leaf outside the layers and
      ``extra`` (the head); ``lr`` when not given.
    extra: more ``{pattern: lr}`` groups, matched before the layers.

  Returns:
    A :func:`wdax.rates`.

  Examples:
    >>> import wdax
    >>> wdax.layerwise_rates(1e-3, 0.5, 2, layer='blocks_{}').spec
    {'blocks_0': 0.0005, 'blocks_1': 0.001}
  """
  fn = 'layerwise_rates(...)'
  n = _check(fn, lr, gamma, num_layers)
  if not isinstance(layer, str) or layer.count('{}') != 1:
    raise ValueError(f"{fn}: layer must be a pattern with one '{{}}'; got {layer!r}.")
  spec = dict(extra or {})
  for i in range(n):
    spec[layer.format(i)] = _scaled(lr, float(gamma) ** (n - 1 - i))
  return _rates.rates(spec, default=lr if default is None else default)
