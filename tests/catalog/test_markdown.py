import re

from django.utils.safestring import SafeString

from apps.catalog.markdown import render_markdown


def tags(html: str) -> list[str]:
    return re.findall(r"<[^>]*>", html)


def test_rendered_markdown_is_marked_safe_for_templates():
    assert isinstance(render_markdown("*hello*"), SafeString)
    assert render_markdown("*hello*") == "<p><em>hello</em></p>"


def test_headings_and_emphasis_render():
    html = render_markdown("# Model card\n\n## Training data\n\nTrained on **ImageNet**.")

    assert "<h1>Model card</h1>" in html
    assert "<h2>Training data</h2>" in html
    assert "<strong>ImageNet</strong>" in html


def test_a_script_tag_is_shown_as_text_not_run():
    html = render_markdown("Before <script>alert('pwned')</script> after")

    assert "<script" not in html
    assert html == "<p>Before &lt;script&gt;alert('pwned')&lt;/script&gt; after</p>"


def test_event_handler_attributes_are_removed():
    html = render_markdown(
        '<img src="https://example.org/plot.png" onerror="alert(1)">\n\n'
        '![plot](https://example.org/plot.png){: onerror="alert(2)" onload="alert(3)" }'
    )

    assert tags(html) == [
        "<p>",
        "</p>",
        "<p>",
        '<img alt="plot" src="https://example.org/plot.png">',
        "</p>",
    ]


def test_a_javascript_link_loses_its_href():
    html = render_markdown("[click me](javascript:alert(1)) and [this](JaVaScRiPt:alert(2))")

    assert "href" not in html
    assert "click me" in html and "this" in html


def test_web_and_mail_links_keep_their_href_and_get_nofollow():
    html = render_markdown("[paper](https://arxiv.org/abs/1706.03762) [mail](mailto:a@example.org)")

    assert '<a href="https://arxiv.org/abs/1706.03762" rel="nofollow noopener">paper</a>' in html
    assert '<a href="mailto:a@example.org" rel="nofollow noopener">mail</a>' in html


def test_images_keep_only_http_sources():
    html = render_markdown(
        "![a](https://example.org/a.png) ![b](data:image/png;base64,AAAA) ![c](mailto:a@b.org)"
    )

    assert html.count("src=") == 1
    assert 'src="https://example.org/a.png"' in html


def test_style_attributes_and_iframes_are_removed():
    html = render_markdown(
        'A paragraph.\n{: style="position:fixed" class="admin" }\n\n'
        '<iframe src="https://example.org"></iframe>'
    )

    assert tags(html) == ["<p>", "</p>", "<p>", "</p>"]
    assert "A paragraph." in html


def test_a_table_renders_with_alignment_but_no_style():
    html = render_markdown("| Model | Top-1 |\n|:------|------:|\n| ResNet-50 | 76.1 |")

    assert "<table>" in html
    assert '<th align="left">Model</th>' in html
    assert '<td align="right">76.1</td>' in html
    assert "style" not in html


def test_a_fenced_code_block_renders_with_its_content_escaped():
    html = render_markdown('```python\nif a < b:\n    print("<ok>")\n```')

    assert "<pre><code>" in html
    assert "if a &lt; b:" in html
    assert "&lt;ok&gt;" in html


def test_lists_and_blockquotes_render():
    html = render_markdown("1. one\n2. two\n\n- a\n- b\n\n> quoted")

    assert "<ol>\n<li>one</li>" in html
    assert "<ul>\n<li>a</li>" in html
    assert "<blockquote>" in html


def test_a_less_than_sign_in_text_is_escaped_and_kept():
    html = render_markdown("Accuracy < 90% when x<y and y>z, and <b>a tag</b> stays text")

    assert html == (
        "<p>Accuracy &lt; 90% when x&lt;y and y&gt;z, and &lt;b&gt;a tag&lt;/b&gt; stays text</p>"
    )
