"""A griffe extension for the API reference: the docstrings' Sphinx roles as Markdown code.

The docstrings cross-reference with ``:class:`~kithara_io.x.Name``` (reStructuredText), which
mkdocstrings would print as it is. This turns each into ``Name`` as code (the full path
without the ``~``); the source stays as it is. Listed under mkdocstrings' ``extensions`` in
mkdocs.yml; excluded from the site by ``exclude_docs``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")


def _code(match: "re.Match[str]") -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def plain_roles(text: str) -> str:
    return ROLE.sub(_code, text)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
