"""Writing a sweep's files: results.json (:meth:`wdax.cli.report.Report.to_json`)
and sweep.png (:mod:`~wdax.cli.plotting`), each whole or not at all."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Any

from wdax.cli import folders
from wdax.cli import plotting
from wdax.cli.errors import BadInput

FILES = ('results.json', 'sweep.png')


def _finite(value: Any) -> Any:
  """``value`` with NaN and infinities as ``None``: JSON has no such numbers."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  return value


def write(out: str, results: dict[str, Any]) -> None:
  """Writes results.json and sweep.png of ``results`` (results.json's
  content, NaN still as NaN) into ``out``, each file whole or not at all.

  Both are made in a staging folder on the same file system, then renamed
  into ``out``; NaN or infinite numbers (a diverged training) are written as
  ``null``.
  """
  folders.check('--out', out)
  try:
    staging = tempfile.mkdtemp(prefix='.wdax-', dir=folders.nearest(out))
    try:
      with open(os.path.join(staging, 'results.json'), 'w') as f:
        json.dump(_finite(results), f, indent=1, allow_nan=False)
        f.write('\n')
      plotting.plot(os.path.join(staging, 'sweep.png'), results)
      os.makedirs(out, exist_ok=True)
      for name in FILES:
        os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
      shutil.rmtree(staging, ignore_errors=True)
  except OSError as e:
    raise BadInput(f'--out {out}: cannot write the results ({e.strerror or e})') from None
