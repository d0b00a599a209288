"""Properties of rewrite_html: total, the identity when off, and undoable edit by edit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st
from support.html import rewrite_html

from relay.rewrite.markup import tracking_snippet

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "html"
OPT_OUT_NAMES = ("data-notrack", "clicktracking", "no-track", "msys-clicktrack", "disable-tracking")

FRAGMENTS = [
    "<a",
    "<A",
    " href",
    "HREF",
    "=",
    " = ",
    '"',
    "'",
    ">",
    "/>",
    "</a>",
    " ",
    "\n",
    "\t",
    "https://x.com/a",
    "http://y.org/?q=1&amp;r=2",
    "&#38;",
    "&copy=",
    "mailto:a@b.c",
    "#top",
    "//x.com",
    "x.com",
    "www.",
    "<!--",
    "-->",
    "--!>",
    "<!-->",
    "<!--[if mso]>",
    "<![endif]-->",
    "<!--[if !mso]><!-->",
    "<!--<![endif]-->",
    "<v:roundrect",
    "<area",
    "<script>",
    "</script>",
    "<style>",
    "</style>",
    "<body>",
    "</body>",
    "<html>",
    "</html>",
    "<!DOCTYPE html>",
    "<![CDATA[",
    "]]>",
    "<b>",
    "</",
    "<?",
    "<!",
    "\x00",
    "\ud800",
    "title=",
    "<textarea>",
]
html_like = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=5), max_size=60).map("".join)
any_text = st.text() | html_like
positions = st.sampled_from(["top", "bottom"])
flags = st.booleans()


def _plan(plan_factory: Any, opens: bool, clicks: bool, honeypot: bool, skip: bool) -> Any:
    return plan_factory(
        opens=opens,
        clicks=clicks,
        honeypot_url="https://t.test/c/honeypot" if honeypot else None,
        skip_bare_url_links=skip,
    )


@given(source=any_text, position=positions, opens=flags, clicks=flags, honeypot=flags)
def test_never_raises(
    plan_factory: Any, recorder_class: Any, source: str, position: Any, **switches: bool
) -> None:
    plan = _plan(plan_factory, skip=True, **switches)
    assert isinstance(rewrite_html(source, plan, position, recorder_class()), str)


@given(source=any_text, position=positions)
def test_all_off_is_identity(
    plan_factory: Any, recorder_class: Any, source: str, position: Any
) -> None:
    recorder = recorder_class()
    plan = _plan(plan_factory, opens=False, clicks=False, honeypot=False, skip=True)
    assert rewrite_html(source, plan, position, recorder) == source
    assert recorder.urls == []


@given(source=any_text, position=positions, opens=flags, honeypot=flags, skip=flags)
def test_round_trip(
    plan_factory: Any,
    recorder_class: Any,
    round_trip: Any,
    source: str,
    position: Any,
    **switches: bool,
) -> None:
    assume("t.test" not in source)
    assume(not any(name in source.lower() for name in OPT_OUT_NAMES))
    recorder = recorder_class()
    plan = _plan(plan_factory, clicks=True, **switches)
    output = rewrite_html(source, plan, position, recorder)
    round_trip(source, output, recorder, tracking_snippet(plan))


URLS = [
    ("https://x.com/a?b=1&c=2", True),
    ("http://y.org/", True),
    ("HTTPS://Z.NET/p#f", True),
    ("mailto:a@b.c", False),
    ("#top", False),
    ("/relative", False),
    ("//x.com/a", False),
    ("javascript:go()", False),
]
TEXTS = [
    ("Click", False),
    ("x.com", True),
    ("https://x.com/a", True),
    ("", False),
    ("<b>Buy</b>", False),
]
AMPERSANDS = ["&amp;", "&#38;", "&#x26;", "&"]
OPT_OUTS = ["", " data-notrack", ' clicktracking="off"', " ses:no-track", " mc:disable-tracking"]


@st.composite
def link_items(draw: st.DrawFn) -> tuple[str, str, str | None]:
    """One <a> as (source markup, expected markup with {} for the tracking href, url or None)."""
    url, trackable = draw(st.sampled_from(URLS))
    text, bare = draw(st.sampled_from(TEXTS))
    quote = draw(st.sampled_from(['"', "'", ""]))
    opt_out = draw(st.sampled_from(OPT_OUTS))
    tag, attr = draw(st.sampled_from([("a", "href"), ("A", "HREF"), ("a", "Href")]))
    encoded = url.replace("&", draw(st.sampled_from(AMPERSANDS)))
    before = f'<{tag} class="c"{opt_out} {attr}='
    after = f' title="t">{text}</{tag}>'
    source = before + quote + encoded + quote + after
    expected_before = before.replace(opt_out, "", 1) if opt_out else before
    if trackable and not opt_out and not bare:
        q = quote or '"'
        return source, expected_before + q + "{}" + q + after, url
    return source, expected_before + quote + encoded + quote + after, None


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    """A document of links, text and untouchable regions, with its expected rewrite."""
    source, expected = ["<html><body>"], ["<html><body>"]
    urls: list[str] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["link", "text", "comment", "script", "vml"]))
        if kind == "link":
            src, exp, url = draw(link_items())
            if url is not None:
                exp = exp.format(f"https://t.test/c/{len(urls)}")
                urls.append(url)
            source.append(src)
            expected.append(exp)
        elif kind == "vml":
            href = '<!--[if mso]><v:roundrect href="https://v.com/?a=1&amp;b=2"></v:roundrect>'
            source.append(href + "<![endif]-->")
            expected.append(
                href.replace("https://v.com/?a=1&amp;b=2", f"https://t.test/c/{len(urls)}")
                + "<![endif]-->"
            )
            urls.append("https://v.com/?a=1&b=2")
        else:
            chunk = {
                "text": draw(st.text(st.characters(blacklist_characters="<&"), max_size=8)),
                "comment": '<!-- <a href="https://c.com">c</a> -->',
                "script": '<script>"<a href=https://s.com>"</script>',
            }[kind]
            source.append(chunk)
            expected.append(chunk)
    return "".join(source) + "</body></html>", "".join(expected) + "</body></html>", urls


@given(document=documents())
def test_structured_documents(plan_factory: Any, recorder_class: Any, document: Any) -> None:
    source, expected, urls = document
    recorder = recorder_class()
    assert rewrite_html(source, plan_factory(), "bottom", recorder) == expected
    assert recorder.urls == urls


def _read_corpus_file(path: Path) -> str:
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    return raw.decode("utf-8", errors="surrogateescape")


def test_corpus_round_trip(plan_factory: Any, recorder_class: Any, round_trip: Any) -> None:
    files = sorted(path for path in CORPUS.rglob("*") if path.is_file())
    assert len(files) >= 50, f"HTML corpus missing at {CORPUS}"
    tracked = 0
    for path in files:
        source = _read_corpus_file(path)
        for position in ("top", "bottom"):
            recorder = recorder_class()
            plan = plan_factory(opens=True, honeypot_url="https://t.test/c/honeypot")
            output = rewrite_html(source, plan, position, recorder)
            round_trip(source, output, recorder, tracking_snippet(plan))
            tracked += len(recorder.urls)
    assert tracked > 500
