"""rewrite_html rule by rule: which hrefs change, how they are written, where the pixel goes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from support.html import rewrite_html

from relay.rewrite import RewritePlan
from relay.rewrite.markup import HONEYPOT_TEMPLATE, PIXEL_TEMPLATE, escape_attribute

T0 = "https://t.test/c/0"
T1 = "https://t.test/c/1"
PIXEL = PIXEL_TEMPLATE.format(url="https://t.test/o/pixel.gif")

PlanFactory = Callable[..., RewritePlan]

REWRITTEN = [
    # quoting styles, case, whitespace around '=', lines inside tags
    ('<a href="https://x.com/a">x</a>', f'<a href="{T0}">x</a>'),
    ("<a href='https://x.com/a'>x</a>", f"<a href='{T0}'>x</a>"),
    ("<a href=https://x.com/a>x</a>", f'<a href="{T0}">x</a>'),
    ('<A HREF="https://x.com/a">x</A>', f'<A HREF="{T0}">x</A>'),
    (
        '<a\n  class="b"\n  href = "https://x.com/a"\n>x</a>',
        f'<a\n  class="b"\n  href = "{T0}"\n>x</a>',
    ),
    ('<a href\t=\n"https://x.com/a" >x</a>', f'<a href\t=\n"{T0}" >x</a>'),
    ('<a title="a > b" href="https://x.com/a">x</a>', f'<a title="a > b" href="{T0}">x</a>'),
    ("<a title='it\"s' href=https://x.com/a>x</a>", f'<a title=\'it"s\' href="{T0}">x</a>'),
    ('<a/href="https://x.com/a">x</a>', f'<a/href="{T0}">x</a>'),
    ('<a href="https://x.com/a"/>x', f'<a href="{T0}"/>x'),
    ('<area shape="rect" href="https://x.com/a">', f'<area shape="rect" href="{T0}">'),
    # the first href wins, as in the HTML tokenizer
    (
        '<a href="https://x.com/1" href="https://x.com/2">x</a>',
        f'<a href="{T0}" href="https://x.com/2">x</a>',
    ),
    # entities, whitespace and newlines inside the value
    ('<a href="https://x.com/?a=1&amp;b=2">x</a>', f'<a href="{T0}">x</a>'),
    ('<a href="  https://x.com/a\n ">x</a>', f'<a href="{T0}">x</a>'),
    ('<a href="https://x.com/\na">x</a>', f'<a href="{T0}">x</a>'),
    ('<a href="&#104;ttps://x.com/a">x</a>', f'<a href="{T0}">x</a>'),
    # inside Outlook conditional comments: VML and <a>
    (
        '<!--[if mso]><v:roundrect href="https://x.com/a">B</v:roundrect><![endif]-->',
        f'<!--[if mso]><v:roundrect href="{T0}">B</v:roundrect><![endif]-->',
    ),
    (
        '<!--[if gte mso 9]><a href="https://x.com/a">B</a><![endif]-->',
        f'<!--[if gte mso 9]><a href="{T0}">B</a><![endif]-->',
    ),
    (
        '<!--[if !mso]><!--><a href="https://x.com/a">B</a><!--<![endif]-->',
        f'<!--[if !mso]><!--><a href="{T0}">B</a><!--<![endif]-->',
    ),
    # an image link has no text: tracked
    (
        '<a href="https://x.com/a"><img src="b.png" alt=""></a>',
        f'<a href="{T0}"><img src="b.png" alt=""></a>',
    ),
    # text that merely contains a domain is not a bare URL
    ('<a href="https://x.com/a">Visit x.com today</a>', f'<a href="{T0}">Visit x.com today</a>'),
    # a link not closed before the next one, or before the end
    (
        '<a href="https://x.com/a">one<a href="https://y.com">two',
        f'<a href="{T0}">one<a href="{T1}">two',
    ),
]

UNCHANGED = [
    '<a href="mailto:bob@example.com">mail</a>',
    '<a href="tel:+491234">call</a>',
    '<a href="sms:+491234">text</a>',
    '<a href="javascript:void(0)">js</a>',
    '<a href="data:text/html,hi">data</a>',
    '<a href="#top">top</a>',
    '<a href="/relative">rel</a>',
    '<a href="relative.html">rel</a>',
    '<a href="//x.com/a">protocol-relative</a>',
    '<base href="https://x.com/"><a href="page.html">rel</a>',
    '<a name="anchor">no href</a>',
    "<a href>empty</a>",
    '<a href="">empty</a>',
    '<a href="http://">placeholder</a>',
    '<!-- <a href="https://x.com/a">commented</a> -->',
    '<!--<a href="https://x.com/a">x</a>--!><p>',
    "<script>var s = \"<a href='https://x.com/a'>\";</script>",
    '<SCRIPT type="x">"</a><a href=https://x.com/a>"</SCRIPT>',
    "<style>a[href='https://x.com/a']{}</style>",
    '<textarea><a href="https://x.com/a">x</a></textarea>',
    '<title><a href="https://x.com/a"></title>',
    '<![CDATA[<a href="https://x.com/a">x</a>]]>',
    '<link href="https://x.com/style.css" rel="stylesheet">',
    '<img src="https://x.com/a.png">',
    '<v:roundrect href="https://x.com/a">outside a conditional comment</v:roundrect>',
    '<!--[if mso]><![endif]--><v:rect href="https://x.com/a">after endif</v:rect>',
    '<!--[if mso]><![endif]><v:rect href="https://x.com/a">after endif</v:rect>',
    '<!--[if !mso]><!--><!--<![endif]--><v:rect href="https://x.com/a"></v:rect>',
    '<div href="https://x.com/a">not a link element</div>',
    '<a data-href="https://x.com/a">x</a>',
    # unterminated constructs swallow the rest, as in browsers
    '<!-- <a href="https://x.com/a">x</a>',
    '<a title="unclosed href="https://x.com/a">x</a>',
    '<a href="https://x.com/a"',
    '<script><a href="https://x.com/a">x</a>',
    # visible text is a URL or bare domain
    '<a href="https://x.com/a">https://x.com/a</a>',
    '<a href="https://x.com/a">www.x.com</a>',
    '<a href="https://x.com/a"> <b>X.COM</b> </a>',
    '<a href="https://x.com/a">x.com/a</a>',
    '<a href="https://x.com/a">x&#46;com</a>',
    '<a href="https://x.com/a">x.com<!-- comment -->/a</a>',
    '<a href="https://x.com/a">x.com<a href="mailto:z@x.com">z</a>',
]


@pytest.mark.parametrize(("source", "expected"), REWRITTEN)
def test_rewritten(source: str, expected: str, plan_factory: PlanFactory, recorder: Any) -> None:
    assert rewrite_html(source, plan_factory(), "bottom", recorder) == expected


@pytest.mark.parametrize("source", UNCHANGED)
def test_unchanged(source: str, plan_factory: PlanFactory, recorder: Any) -> None:
    assert rewrite_html(source, plan_factory(), "bottom", recorder) == source
    assert recorder.urls == []


def test_track_link_gets_the_decoded_trimmed_url(plan_factory: PlanFactory, recorder: Any) -> None:
    source = (
        '<a href=" https://x.com/r?a=1&amp;b=%20&#x27;c&#39;&copy=3\n">x</a>'
        "<A HREF='HTTP://Y.COM/@!,*'>y</A>"
    )
    rewrite_html(source, plan_factory(), "bottom", recorder)
    assert recorder.urls == ["https://x.com/r?a=1&b=%20'c'&copy=3", "HTTP://Y.COM/@!,*"]


def test_vml_and_anchor_share_the_url(plan_factory: PlanFactory, recorder: Any) -> None:
    source = (
        '<!--[if mso]><v:roundrect href="https://x.com/b?a=1&amp;c=2" arcsize="10%">'
        "<center>Buy</center></v:roundrect><![endif]-->"
        '<!--[if !mso]><!--><a href="https://x.com/b?a=1&c=2">Buy</a><!--<![endif]-->'
    )
    output = rewrite_html(source, plan_factory(), "bottom", recorder)
    assert recorder.urls == ["https://x.com/b?a=1&c=2"] * 2
    assert f'<v:roundrect href="{T0}" arcsize="10%">' in output
    assert f'<a href="{T1}">Buy</a>' in output


def test_tracking_url_is_escaped_in_its_quote_style(plan_factory: PlanFactory) -> None:
    def track(url: str) -> str:
        return "https://t.test/c?a=1&b=\"2\"&c='3'"

    plan = plan_factory()
    double = rewrite_html('<a href="https://x.com">x</a>', plan, "bottom", track)
    single = rewrite_html("<a href='https://x.com'>x</a>", plan, "bottom", track)
    bare = rewrite_html("<a href=https://x.com>x</a>", plan, "bottom", track)
    assert double == "<a href=\"https://t.test/c?a=1&amp;b=&quot;2&quot;&c='3'\">x</a>".replace(
        "&c", "&amp;c"
    )
    assert single == "<a href='https://t.test/c?a=1&amp;b=&quot;2&quot;&amp;c=&#39;3&#39;'>x</a>"
    assert bare == double


def test_escape_attribute() -> None:
    assert escape_attribute("a&b\"c'd") == "a&amp;b&quot;c'd"
    assert escape_attribute("a&b\"c'd", "'") == "a&amp;b&quot;c&#39;d"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('<a data-notrack href="https://x.com">x</a>', '<a href="https://x.com">x</a>'),
        ('<a href="https://x.com" data-notrack>x</a>', '<a href="https://x.com">x</a>'),
        ('<a href="https://x.com" DATA-NOTRACK="">x</a>', '<a href="https://x.com">x</a>'),
        ('<a href="https://x.com"\n  clicktracking=off>x</a>', '<a href="https://x.com">x</a>'),
        ("<a clicktracking = 'OFF' href='https://x.com'>x</a>", "<a href='https://x.com'>x</a>"),
        ('<a href="https://x.com" clicktracking="off">x</a>', '<a href="https://x.com">x</a>'),
        ('<a data-pm-no-track href="https://x.com">x</a>', '<a href="https://x.com">x</a>'),
        ('<a ses:no-track href="https://x.com">x</a>', '<a href="https://x.com">x</a>'),
        ('<a data-msys-clicktrack="0" href="https://x.com">x</a>', '<a href="https://x.com">x</a>'),
        ('<a mc:disable-tracking href="https://x.com">x</a>', '<a href="https://x.com">x</a>'),
        ('<area href="https://x.com" data-notrack>', '<area href="https://x.com">'),
        ("<a href=https://x.com data-notrack/>x", "<a href=https://x.com />x"),
        ('<a data-notrack ses:no-track href="#">x</a>', '<a href="#">x</a>'),
        (
            '<!--[if mso]><v:rect href="https://x.com" data-notrack></v:rect><![endif]-->',
            '<!--[if mso]><v:rect href="https://x.com"></v:rect><![endif]-->',
        ),
    ],
)
def test_opt_out_attribute_removed_link_untouched(
    source: str, expected: str, plan_factory: PlanFactory, recorder: Any
) -> None:
    assert rewrite_html(source, plan_factory(), "bottom", recorder) == expected
    assert recorder.urls == []


@pytest.mark.parametrize(
    "source",
    [
        '<a href="https://x.com" clicktracking="on">x</a>',
        '<a href="https://x.com" data-msys-clicktrack="1">x</a>',
    ],
)
def test_non_opt_out_values_are_kept(source: str, plan_factory: PlanFactory, recorder: Any) -> None:
    output = rewrite_html(source, plan_factory(), "bottom", recorder)
    assert output == source.replace("https://x.com", T0)


def test_skip_bare_url_links_off_tracks_them(plan_factory: PlanFactory, recorder: Any) -> None:
    source = '<a href="https://x.com/a">https://x.com/a</a>'
    plan = plan_factory(skip_bare_url_links=False)
    assert rewrite_html(source, plan, "bottom", recorder) == f'<a href="{T0}">https://x.com/a</a>'


def test_exclude_links_and_own_urls(plan_factory: PlanFactory, recorder: Any) -> None:
    source = (
        '<a href="https://x.com/unsubscribe?id=1">u</a>'
        '<a href="https://T.EXAMPLE.com/c/abc">own</a>'
        '<a href="https://x.com/news">n</a>'
    )
    plan = plan_factory(
        exclude_links=(re.compile("unsubscribe"),), own_base_urls=("https://t.example.com",)
    )
    output = rewrite_html(source, plan, "bottom", recorder)
    assert output == source.replace("https://x.com/news", T0)
    assert recorder.urls == ["https://x.com/news"]


def test_exclude_links_sees_the_decoded_url(plan_factory: PlanFactory, recorder: Any) -> None:
    plan = plan_factory(exclude_links=(re.compile(r"\?a=1&b=2$"),))
    source = '<a href="https://x.com/?a=1&amp;b=2">x</a>'
    assert rewrite_html(source, plan, "bottom", recorder) == source


def test_clicks_off_leaves_links_and_opt_outs(plan_factory: PlanFactory, recorder: Any) -> None:
    source = '<a href="https://x.com" data-notrack>x</a><a href="https://y.com">y</a>'
    assert rewrite_html(source, plan_factory(clicks=False), "bottom", recorder) == source
    assert recorder.urls == []


PIXEL_CASES = [
    # (source, position, expected with § for the pixel)
    ("<html><body><p>hi</p></body></html>", "bottom", "<html><body><p>hi</p>§</body></html>"),
    (
        "<html><BODY class='x'><p>hi</p></BODY></html>",
        "top",
        "<html><BODY class='x'>§<p>hi</p></BODY></html>",
    ),
    ("<body>a</body>b</body><!-- </body> -->", "bottom", "<body>a</body>b§</body><!-- </body> -->"),
    ("<body>a<script>'</body>'</script>", "bottom", "<body>a<script>'</body>'</script>§"),
    (
        "<body>a<!--[if mso]></body><![endif]-->",
        "bottom",
        "<body>a<!--[if mso]></body><![endif]-->§",
    ),
    (
        "<body>a<!--[if mso]>x<![endif]--></body>",
        "bottom",
        "<body>a<!--[if mso]>x<![endif]-->§</body>",
    ),
    ("<html><p>no body</p></html>\n", "bottom", "<html><p>no body</p>§</html>\n"),
    ("<p>fragment</p>", "bottom", "<p>fragment</p>§"),
    ("<p>a</p><!-- unterminated", "bottom", "<p>a</p>§<!-- unterminated"),
    ("<p>a</p><script>unterminated", "bottom", "<p>a</p>§<script>unterminated"),
    ("<html lang=en><head></head><p>x</p>", "top", "<html lang=en>§<head></head><p>x</p>"),
    ("<!DOCTYPE html>\n<p>x</p>", "top", "<!DOCTYPE html>§\n<p>x</p>"),
    ("<p>x</p>", "top", "§<p>x</p>"),
    ("\ufeff<p>x</p>", "top", "\ufeff§<p>x</p>"),
    ("<!-- <body> --><body>x", "top", "<!-- <body> --><body>§x"),
    ("", "bottom", "§"),
    ("", "top", "§"),
]


@pytest.mark.parametrize(("source", "position", "expected"), PIXEL_CASES)
def test_pixel_position(
    source: str, position: Any, expected: str, plan_factory: PlanFactory
) -> None:
    plan = plan_factory(opens=True, clicks=False)
    output = rewrite_html(source, plan, position, lambda url: url)
    assert output == expected.replace("§", PIXEL, 1) if "§" in expected else output == expected


def test_pixel_markup(plan_factory: PlanFactory) -> None:
    plan = plan_factory(opens=True, pixel_url="https://t.test/o/a.gif?x=1&y=2")
    output = rewrite_html("<body></body>", plan, "bottom", lambda url: url)
    assert output == (
        '<body><img src="https://t.test/o/a.gif?x=1&amp;y=2" width="1" height="1" alt="" '
        'border="0" style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;" />'
        "</body>"
    )


def test_honeypot_next_to_pixel(plan_factory: PlanFactory) -> None:
    plan = plan_factory(opens=True, honeypot_url="https://t.test/c/trap")
    output = rewrite_html("<body>x</body>", plan, "bottom", lambda url: url)
    honeypot = HONEYPOT_TEMPLATE.format(url="https://t.test/c/trap")
    assert output == f"<body>x{PIXEL}{honeypot}</body>"
    assert 'style="display:none' in honeypot and 'tabindex="-1"' in honeypot


def test_honeypot_without_opens(plan_factory: PlanFactory) -> None:
    plan = plan_factory(opens=False, clicks=False, honeypot_url="https://t.test/c/trap")
    output = rewrite_html("<body>x</body>", plan, "top", lambda url: url)
    assert output == "<body>" + HONEYPOT_TEMPLATE.format(url="https://t.test/c/trap") + "x</body>"


def test_all_off_returns_input(plan_factory: PlanFactory, recorder: Any) -> None:
    source = '<body><a href="https://x.com" data-notrack>x</a></body>'
    assert rewrite_html(source, plan_factory(clicks=False), "top", recorder) == source


@pytest.mark.parametrize(
    "source",
    [
        "\ud800<a href='https://x.com/\udfff'>\x00</a>",
        "<" * 50 + '<a href="https://x.com"\x00>',
        '<a href="https://x.com/\ud83d">\x00x</a>',
        "</\x00><!\x00><?<![CDATA[",
    ],
)
def test_garbage_never_raises(source: str, plan_factory: PlanFactory, recorder: Any) -> None:
    output = rewrite_html(source, plan_factory(opens=True), "bottom", recorder)
    assert PIXEL in output


ADVERSARIAL = {
    "many <a without >": "<a " * 1_700_000,
    "many <a without space": "<a" * 2_500_000,
    "huge attribute count": "<a " + "x=1 " * 1_250_000 + 'href="https://x.com">t</a>',
    "unclosed quotes": "<a href=\"https://x.com/ title='x' " * 170_000,
    "unclosed comments": "<!-- <a href=https://x.com>" * 190_000,
    "conditional openers": "<!--[if mso " * 420_000,
    "endif openers": "<![endif" * 600_000,
    "many short links": '<a href="https://x.com/a">x</a>' * 160_000,
    "many bare url links": '<a href="https://x.com">x.com/</a>' * 150_000,
    "long anchor text": '<a href="https://x.com">' + "x.com " * 800_000,
    "scripts without end": "<script>" * 600_000,
    "end tags": "</a " * 1_250_000,
    "whitespace before =": "<a href" + " " * 5_000_000,
    "many attributes without =": "<a" + " b" * 2_500_000 + ">",
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_five_megabytes_of_adversarial_input(
    name: str, plan_factory: PlanFactory, recorder: Any, time_guard: Any
) -> None:
    source = ADVERSARIAL[name]
    assert len(source) >= 4_500_000
    with time_guard(60):
        output = rewrite_html(source, plan_factory(opens=True), "bottom", recorder)
    assert PIXEL in output
