"""Bad input: what the user can fix, reported as one line with exit status 2."""

from __future__ import annotations


class BadInput(Exception):
  """Input the user can fix; reported as one line with exit status 2."""
