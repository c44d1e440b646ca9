"""The folders ``wdax sweep`` writes in, ``--out`` and ``--cache``, checked
before anything runs."""

from __future__ import annotations

import os
import tempfile

from wdax.cli.errors import BadInput


def nearest(path: str) -> str:
  """The closest ancestor of ``path`` (or ``path`` itself) that exists."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return path


def check(option: str, path: str) -> None:
  """Refuses a ``path`` given to ``option`` that cannot become a folder to
  write in.

  It creates nothing under ``path``: writing is tried in a folder made and
  removed at once in the closest existing ancestor.
  """
  if not path:
    raise BadInput(f'{option}: give a folder')
  if '\0' in path:
    raise BadInput(f'{option} {path!r}: a path cannot hold a NUL character')
  if os.path.exists(path) and not os.path.isdir(path):
    raise BadInput(f'{option} {path}: exists and is not a folder')
  parent = nearest(path)
  if not os.path.isdir(parent):
    raise BadInput(f'{option} {path}: {parent} is not a folder')
  longest = os.pathconf(parent, 'PC_NAME_MAX') if hasattr(os, 'pathconf') else 255
  for name in os.path.abspath(path).split(os.sep):
    if len(os.fsencode(name)) > longest:
      raise BadInput(f'{option} {path}: a name in it is longer than {longest} bytes')
  try:
    os.rmdir(tempfile.mkdtemp(prefix='.wdax-', dir=parent))
  except OSError as e:
    raise BadInput(f'{option} {path}: cannot write in {parent} ({e.strerror or e})') from None
