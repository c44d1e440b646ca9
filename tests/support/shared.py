"""Work done once per test run, whichever pytest-xdist worker asks for it first.

A module fixture runs once per worker, and on two workers a slow one (a
subprocess of 8 devices, two processes, the docs build) ran twice. Here the
first worker to ask builds a folder under a file lock; the others wait for
it and read the same folder.
"""

import os
import pathlib
import shutil
from collections.abc import Callable

import filelock


def folder(tmp_path_factory, name: str, build: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """A folder that ``build(folder)`` fills once per test run.

  Under pytest-xdist it lies in the run's own temporary folder, which its
  workers share; without it, in the session's. A build that raised is
  started again by the next worker that asks (and fails there too).
  """
  if os.environ.get('PYTEST_XDIST_WORKER') is None:
    path = tmp_path_factory.mktemp(name)
    build(path)
    return path
  root = tmp_path_factory.getbasetemp().parent  # this run's, not the last run's
  path = root / name
  with filelock.FileLock(str(root / f'{name}.lock')):
    built = path / '.built'
    if not built.exists():
      shutil.rmtree(path, ignore_errors=True)
      path.mkdir()
      build(path)
      built.touch()
  return path
