"""Sphinx configuration of the wdax docs: guides in MyST, API from docstrings.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``. Nothing
is fetched from the network (no intersphinx); the API pages are written from
``__all__`` by ``_ext/apipages.py`` when the build starts.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / '_ext'))

import wdax  # noqa: E402

project = 'wdax'
author = 'the wdax authors'
copyright = 'the wdax authors'
release = wdax.__version__
version = release

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'apipages',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build', 'README.md', 'conftest.py']
root_doc = 'index'

myst_enable_extensions = ['dollarmath', 'colon_fence']
myst_heading_anchors = 3

autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = 'alabaster'
html_title = f'wdax {release}'
html_static_path = []
html_theme_options = {
    'description': 'Weight decay done right for JAX',
    'fixed_sidebar': True,
}
