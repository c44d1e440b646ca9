"""Bad input: what the user can fix, reported as one line with exit status 2."""

from __future__ import annotations


class BadInput(Exception):
  """Input the user can fix; reported as one line with exit status 2."""


# Every character str.splitlines() breaks a line at.
_BREAKS = frozenset('\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029')


def one_line(message: str) -> str:
  r"""``message`` with its line breaks escaped, so it prints as one line.

  Examples:
    >>> print(one_line('--data a\nb.csv: no such file'))
    --data a\nb.csv: no such file
  """
  return ''.join(
      c.encode('unicode_escape').decode('ascii') if c in _BREAKS else c for c in message
  )
