"""Ordered ``{pattern: value}`` specs: which pattern each parameter falls under.

Internal. :func:`wdax.rates` and :func:`wdax.labels` share this rule: each
leaf takes the first pattern that matches its path; a pattern that matches no
parameter, or only parameters taken by earlier patterns, is an error naming
it.
"""

from __future__ import annotations

from collections.abc import Sequence

from wdax import _checks
from wdax import paths as _paths


def first_match(
    fn: str,
    patterns: Sequence[str],
    all_paths: Sequence[str],
    hidden: Sequence[str] = (),
) -> list[int | None]:
  """For each path, the index of the first pattern matching it, else ``None``.

  ``hidden`` are the paths of parameters the tree hides
  (:func:`wdax.paths.hidden_paths`): a pattern that matches only those is not
  an error, as for masks. ``fn`` names the caller in errors.
  """
  out: list[int | None] = [None] * len(all_paths)
  for k, pattern in enumerate(patterns):
    matched = taken = 0
    for i, path in enumerate(all_paths):
      if _paths.matches(pattern, path):
        matched += 1
        if out[i] is None:
          out[i] = k
          taken += 1
    elsewhere = any(_paths.matches(pattern, p) for p in hidden)
    if not (all_paths or hidden) or elsewhere:
      continue
    if not matched:
      raise ValueError(
          f'{fn}: pattern {pattern!r} matches no parameter; '
          f'{_checks.listing(list(all_paths))}.'
      )
    if not taken:
      raise ValueError(
          f'{fn}: pattern {pattern!r} has no effect: every parameter it '
          'matches is taken by an earlier pattern. Reorder or remove it.'
      )
  return out
