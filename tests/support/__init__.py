"""What the tests share: trees, reference loops, hypothesis strategies,
command-line inputs, and the worker scripts that tests start in subprocesses."""
