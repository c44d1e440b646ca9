"""Any argv, fuzzed (issue 12): a command, or none or a wrong one, followed
by tokens drawn from the options, their good and bad values and any text.
The contract every run must keep is in tests/support/cli_fuzzing.py."""

import os
import tempfile

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from support.cli_fuzzing import BAD
from support.cli_fuzzing import CHEAP
from support.cli_fuzzing import DESCRIBE
from support.cli_fuzzing import GOOD
from support.cli_fuzzing import SETTINGS
from support.cli_fuzzing import check
from support.examples import examples

pytestmark = pytest.mark.usefixtures('devices_started')

_FLAGS = [*GOOD, *DESCRIBE, '--data', '--out', '--one-se', '--quiet', '--help', '-h',
          '--', '--ep', '--se', '--s', '-', '--no-such']
_TOKENS = (
    st.sampled_from(_FLAGS)
    | st.sampled_from(sorted({v for values in BAD.values() for v in values}))
    | st.sampled_from(sorted({v for values in GOOD.values() for v in values}))
    | st.text(max_size=8)
)


@settings(max_examples=examples(150), **SETTINGS)
@given(
    command=st.sampled_from(['sweep', 'describe', '', 'sweeps', '--help', '-x']),
    tokens=st.lists(_TOKENS, max_size=8),
)
def test_any_argv(command, tokens, data_file):
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'out')
    argv = [command, *tokens] if command else tokens
    if command == 'sweep':
      # Last, so these win over the same options among the tokens: a sweep
      # that runs stays small.
      argv += ['--data', data_file, '--out', out]
      for flag, value in CHEAP.items():
        argv += [flag, value]
    check(argv, out, names=[*_FLAGS, 'argument', *(t for t in argv if t)])
