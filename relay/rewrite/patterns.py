"""The HTML scanner's regexes: the tokenizer's tag and attribute grammar, and its fast paths.

Every quantifier is possessive (or the pattern is a literal search), so a
failed match never backtracks and each pattern is linear in what it reads.
The fast paths match a subset of what the general path would tokenize the same
way, so falling back from them never changes the outcome.
"""

from __future__ import annotations

import re

_WS = r"[\t\n\f\r ]"
_VALUE = r"(?:\"[^\"]*+\"?+|'[^']*+'?+|[^\t\n\f\r >]*+)"
_NAME = r"[^\t\n\f\r />][^\t\n\f\r />=]*+"
# The attributes of a tag, as the tokenizer reads them (names, values, separators).
_ATTRS = rf"(?:[\t\n\f\r /]++|{_NAME}(?:{_WS}*+={_WS}*+{_VALUE})?+)*+"

ATTR = re.compile(rf"({_NAME})(?:{_WS}*+={_WS}*+({_VALUE}))?+")
# One tag: name, then attributes; group 4 is None when the input ends inside the tag.
TAG = re.compile(rf"<(/?)([A-Za-z][^\t\n\f\r />]*+)({_ATTRS})(>)?")

# Tags the scanner acts on: links, body/html (pixel places), raw-text elements, VML,
# and img (a part with no image of its own may get no pixel: RewritePlan.guard_image_only).
_INTERESTING = (
    r"(?:a(?:rea)?|body|html|img|s(?:cript|tyle)|t(?:extarea|itle)|xmp|iframe|no(?:embed|frames)"
    r"|plaintext)[\t\n\f\r />]|v:"
)
# Text and whole tags the scanner has no business with, consumed in one C call. ASCII
# case folding only: the tokenizer's tag names are ASCII letters (the default Unicode
# folding would also take "ſ" or "K" for a letter and skip "<ſpan title='<a ...>'>").
_SKIP = rf"[^<]*+(?:</?+(?!{_INTERESTING})[A-Za-z][^\t\n\f\r />]*+(?:>|{_ATTRS}>)[^<]*+)*+"
SKIP = re.compile(_SKIP, re.IGNORECASE | re.ASCII)
# The same, then (group 1) the commonest link whole: <a href="value" ...>text</a>, with
# the value in group 2, the other attributes in group 3 and the text in group 4.
SKIP_TO_LINK = re.compile(
    _SKIP + rf"(<a{_WS}++href{_WS}*+={_WS}*+\"([^\"]*+)\"({_ATTRS})>([^<]*+)</a>)?+",
    re.IGNORECASE | re.ASCII,
)

CC_OPEN = re.compile(r"<!--\[if\b[^>]*?\]>", re.IGNORECASE)
COMMENT_END = re.compile(r"--!?>")
