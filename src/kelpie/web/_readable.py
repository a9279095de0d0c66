"""A response body as text a model can read: HTML becomes markdown of the page's main content
(trafilatura, as Letta's fetch_webpage used: it drops navigation, scripts, styles and
boilerplate), text and JSON pass as they are, and anything else is refused rather than handed
to the model as mojibake.

The conversion runs on the event loop: it is CPU work on at most FETCH_BYTES_MAX bytes
(tens of milliseconds for a typical page), and core code starts no threads. trafilatura is
imported on the first conversion, not at start-up: its imports (lxml, dateparser, ...) take
about 0.16 s, which every server start would pay for a tool few agents call."""

import codecs
from typing import Final

from kelpie.web._types import WebRefused

HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
# Text that is not under text/*: read as it is.
TEXT_TYPES: Final = frozenset(
    {
        "application/json",
        "application/ld+json",
        "application/x-ndjson",
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/sql",
        "application/graphql",
    }
)
TEXT_SUFFIXES: Final = ("+json", "+xml", "+yaml")
# A body without a declared type is sniffed from its first bytes.
SNIFF_BYTES: Final = 1024
HTML_MARKERS: Final = (b"<!doctype html", b"<html", b"<head", b"<body")
FALLBACK_CHARSET: Final = "utf-8"


def media_type(content_type: str) -> tuple[str, str | None]:
    """The media type of a Content-Type header, lowercased, and its charset if it names a
    codec Python knows."""
    kind, _, params = content_type.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'").lower() or None
    if charset is not None:
        try:
            codecs.lookup(charset)
        except LookupError:
            charset = None
    return kind.strip().lower(), charset


def sniffed_type(body: bytes) -> str:
    """What an undeclared body looks like: HTML, text (decodes as UTF-8, no NUL), or bytes."""
    head = body[:SNIFF_BYTES].lstrip().lower()
    if head.startswith(HTML_MARKERS):
        return "text/html"
    if b"\x00" in head:
        return "application/octet-stream"
    try:
        # A body cut at the byte limit may end inside a character: judge the head only.
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:
            return "application/octet-stream"
    return "text/plain"


def is_text(kind: str) -> bool:
    return kind.startswith("text/") or kind in TEXT_TYPES or kind.endswith(TEXT_SUFFIXES)


def html_to_markdown(html: str | bytes, url: str) -> str:
    """The page's main content as markdown; all of its visible text when the extractor finds
    no main content (a short or unusual page); "" for a page without text."""
    import trafilatura  # here, not at start-up: see the module docstring

    markdown = trafilatura.extract(
        html,
        url=url,
        output_format="markdown",
        include_formatting=True,
        include_links=True,
        include_tables=True,
        include_comments=False,
        with_metadata=False,
    )
    if markdown:
        return markdown
    # Scripts, styles and markup are dropped here too.
    return trafilatura.html2txt(html).strip()


def readable_text(body: bytes, content_type: str, url: str) -> tuple[str, str]:
    """(text, media type) of a body. Raises WebRefused for content that is not text."""
    kind, charset = media_type(content_type)
    if not kind:
        kind = sniffed_type(body)
    if kind in HTML_TYPES:
        # Without a declared charset, trafilatura reads the page's own <meta charset>.
        html = body.decode(charset, errors="replace") if charset else body
        return html_to_markdown(html, url), kind
    if is_text(kind):
        return body.decode(charset or FALLBACK_CHARSET, errors="replace"), kind
    raise WebRefused(
        f"'{url}' is {kind} content, not a web page: fetch_webpage reads HTML and text "
        "(plain text, markdown, JSON, XML) only"
    )
