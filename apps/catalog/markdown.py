"""Markdown from users (model cards, descriptions, discussions) rendered to HTML safe to embed.

Raw HTML in the text is not trusted: it is shown as text. The HTML that Markdown itself produces
still goes through an allow-list sanitiser, because link URLs and `{: attr=... }` lists come from
the user too: only the tags and attributes below survive, and URLs must be http(s) or mailto.
"""

import markdown  # type: ignore[import-untyped]  # types-Markdown is not installed
import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown.extensions import Extension  # type: ignore[import-untyped]


class EscapeRawHtml(Extension):
    """Raw HTML becomes text, so `x<y and y>z` reads as written instead of losing a "tag"."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")


# "extra" brings fenced_code and tables (with footnotes, definition lists, abbreviations);
# EscapeRawHtml comes last, after "extra" has registered its own raw-HTML block handling.
MARKDOWN_EXTENSIONS = ["extra", "sane_lists", EscapeRawHtml()]
MARKDOWN_EXTENSION_CONFIGS = {
    # Column alignment as an align attribute: the sanitiser removes style attributes.
    "extra": {"tables": {"use_align_attribute": True}},
}

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "em",
    "strong",
    "sup",  # footnote markers
    "abbr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "blockquote",
    "pre",
    "code",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "a",
    "img",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}
LINK_SCHEMES = {"http", "https", "mailto"}
IMAGE_SCHEMES = ("http://", "https://")


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    # nh3 checks every URL against LINK_SCHEMES; an image must also load over http(s).
    if tag == "img" and attribute == "src" and not value.lower().startswith(IMAGE_SCHEMES):
        return None
    return value


SANITIZER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    attribute_filter=_keep_attribute,
    url_schemes=LINK_SCHEMES,
    # Relative URLs carry no scheme to check, so they are dropped like javascript: ones.
    url_relative="deny",
    link_rel="nofollow noopener",
)


def render_markdown(text: str) -> SafeString:
    html = markdown.markdown(
        text,
        extensions=MARKDOWN_EXTENSIONS,
        extension_configs=MARKDOWN_EXTENSION_CONFIGS,
        output_format="html",
    )
    return mark_safe(SANITIZER.clean(html))  # noqa: S308 - sanitised by the allow-list above
