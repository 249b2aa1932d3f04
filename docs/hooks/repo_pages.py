"""MkDocs hook: pages whose text lives outside ``docs/``, and the tutorial notebook's links.

``docs/index.md`` is the repository's ``README.md`` (the quick start) and ``docs/benchmarks.md``
is ``benchmarks/README.md``: each stub is replaced by its source file when the site is built,
so the text is written once. Relative links of the source file are rewritten for the page: a
link into ``docs/`` points at that page or image of the site, a link to another included file
at its page; any other relative link is left as it is, so ``mkdocs build --strict`` reports it
as a link to a file that is not in the site.

A notebook page (``docs/*.ipynb``, rendered by mkdocs-jupyter) reaches MkDocs as HTML, whose
links MkDocs neither rewrites nor checks. Its relative links to Markdown files (written for
Jupyter: ``howto/map-a-scene.md``, ``../README.md``) are rewritten here to the pages' URLs; a
link to a file the site does not have is a warning, so ``--strict`` fails on it.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any

PAGES: dict[str, str] = {"index.md": "README.md", "benchmarks.md": "benchmarks/README.md"}
"""Site page (under ``docs/``) -> its source file (relative to the repository root)."""

_LOG = logging.getLogger("mkdocs.hooks.repo_pages")
"""Under ``mkdocs``: its warnings count in ``--strict``."""

_HREF = re.compile(r'href="([^"#:]+\.(?:md|ipynb))(#[^"]*)?"')
"""A relative link to a Markdown file or notebook in a notebook page's HTML."""

_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
"""A Markdown link or image whose target holds no spaces: ``[text](target)``."""


def _relative_target(target: str, source: str) -> str | None:
    """Return ``target`` (a link in ``source``) as a path relative to ``docs/``, or None.

    None for a link the page keeps as it is: absolute URLs, anchors within the page, and
    files that are neither under ``docs/`` nor the source of an included page.
    """
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return None
    path, _, anchor = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
    included = {src: page for page, src in PAGES.items()}
    if resolved in included:
        page = included[resolved]
    elif resolved.startswith("docs/"):
        page = resolved.removeprefix("docs/")
    else:
        return None
    return f"{page}#{anchor}" if anchor else page


def rewrite_links(markdown: str, source: str) -> str:
    """Rewrite the relative links of ``source``'s text for a page at the root of ``docs/``."""

    def replace(match: re.Match[str]) -> str:
        target = _relative_target(match.group(2), source)
        return match.group(0) if target is None else f"{match.group(1)}{target}{match.group(3)}"

    return _LINK.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace an included page's stub with its source file's text (links rewritten)."""
    source = PAGES.get(page.file.src_uri)
    if source is None:
        return markdown
    root = Path(config["config_file_path"]).resolve().parent
    return rewrite_links((root / source).read_text(encoding="utf-8"), source)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Point a notebook page's links to Markdown files at the site's pages (or warn)."""
    src_uri: str = page.file.src_uri
    if not src_uri.endswith(".ipynb"):
        return html

    def replace(match: re.Match[str]) -> str:
        target = _relative_target(match.group(1), f"docs/{src_uri}")
        linked = files.get_file_from_path(target) if target is not None else None
        if linked is None:
            _LOG.warning("notebook '%s' links to '%s', not in the site", src_uri, match.group(1))
            return match.group(0)
        return f'href="{linked.url_relative_to(page.file)}{match.group(2) or ""}"'

    return _HREF.sub(replace, html)
