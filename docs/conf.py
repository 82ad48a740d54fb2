"""Sphinx configuration of bayesgmm's API reference (``make docs`` → docs/_build/html)."""

project = "bayesgmm"
author = "the bayesgmm developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon",
              "sphinx.ext.mathjax", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3
autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_typehints = "none"          # the numpydoc sections carry the types
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
napoleon_use_ivar = True            # "Attributes" as fields, not duplicate attribute entries
# "shape (n_samples, n_features)" in a type is prose, not a cross-reference
suppress_warnings = ["ref.python"]


def _skip_generated_sklearn_methods(app, what, name, obj, skip, options):
    """scikit-learn adds set_*_request methods (metadata routing) to every estimator."""
    return True if name.startswith("set_") and name.endswith("_request") else skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_generated_sklearn_methods)
