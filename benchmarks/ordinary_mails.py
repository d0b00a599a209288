"""Ordinary mail as the common clients compose it, for the deliverability check.

Each builder returns the bytes a client submits: the header fields, MIME
structure and HTML each client writes (Outlook's Word HTML, Gmail's
``<div dir="ltr">``, Apple Mail's WebKit body, Thunderbird's ``moz-`` markup,
a CRM's table template), short and long, with and without images. The texts
are written for this check; the shapes follow what those clients send.
"""

from __future__ import annotations

import base64
import quopri
from collections.abc import Callable

DATE = "Tue, 02 Apr 2024 09:14:27 +0200"
# A 1x1 transparent PNG: stands for the inline images clients attach (cid:).
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _qp(text: str) -> str:
    return quopri.encodestring(text.encode("utf-8")).decode("ascii")


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _alternative(head: str, plain: str, html: str, boundary: str, qp: bool = True) -> bytes:
    """head + multipart/alternative of plain and html (quoted-printable or 8bit)."""
    cte = "quoted-printable" if qp else "8bit"
    body = (
        f'{head}MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="{boundary}"\n\n'
        f'--{boundary}\nContent-Type: text/plain; charset="utf-8"\n'
        f"Content-Transfer-Encoding: {cte}\n\n{_qp(plain) if qp else plain}\n"
        f'--{boundary}\nContent-Type: text/html; charset="utf-8"\n'
        f"Content-Transfer-Encoding: {cte}\n\n{_qp(html) if qp else html}\n"
        f"--{boundary}--\n"
    )
    return _crlf(body)


def _head(sender: str, to: str, subject: str, msgid: str, extra: str = "") -> str:
    fields = f"From: {sender}\nTo: {to}\nSubject: {subject}\nDate: {DATE}\n"
    return f"{fields}Message-ID: <{msgid}>\n{extra}"


# --- Outlook (desktop, Word HTML) -----------------------------------------------------

_OUTLOOK_HEAD = (
    '<html xmlns:v="urn:schemas-microsoft-com:vml"'
    ' xmlns:o="urn:schemas-microsoft-com:office:office"'
    ' xmlns:w="urn:schemas-microsoft-com:office:word"'
    ' xmlns:m="http://schemas.microsoft.com/office/2004/12/omml"'
    ' xmlns="http://www.w3.org/TR/REC-html40"><head>'
    '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
    '<meta name="Generator" content="Microsoft Word 15 (filtered medium)">'
    '<style><!--\n/* Font Definitions */\n@font-face\n\t{font-family:"Cambria Math";\n'
    "\tpanose-1:2 4 5 3 5 4 6 3 2 4;}\n@font-face\n\t{font-family:Calibri;\n"
    "\tpanose-1:2 15 5 2 2 2 4 3 2 4;}\n/* Style Definitions */\n"
    "p.MsoNormal, li.MsoNormal, div.MsoNormal\n\t{margin:0cm;\n\tfont-size:11.0pt;\n"
    '\tfont-family:"Calibri",sans-serif;\n\tmso-ligatures:standardcontextual;\n'
    "\tmso-fareast-language:EN-US;}\na:link, span.MsoHyperlink\n\t{mso-style-priority:99;\n"
    "\tcolor:#0563C1;\n\ttext-decoration:underline;}\nspan.EmailStyle19\n"
    '\t{mso-style-type:personal-reply;\n\tfont-family:"Calibri",sans-serif;\n'
    "\tcolor:windowtext;}\n.MsoChpDefault\n\t{mso-style-type:export-only;\n\tfont-size:10.0pt;\n"
    "\tmso-ligatures:none;}\n@page WordSection1\n\t{size:612.0pt 792.0pt;\n"
    "\tmargin:72.0pt 72.0pt 72.0pt 72.0pt;}\ndiv.WordSection1\n\t{page:WordSection1;}\n"
    '--></style><!--[if gte mso 9]><xml>\n<o:shapedefaults v:ext="edit" spidmax="1026" />\n'
    '</xml><![endif]--><!--[if gte mso 9]><xml>\n<o:shapelayout v:ext="edit">\n'
    '<o:idmap v:ext="edit" data="1" />\n</o:shapelayout></xml><![endif]--></head>'
    '<body lang="EN-GB" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">'
    '<div class="WordSection1">'
)
_OUTLOOK_HEADERS = (
    "Thread-Topic: {subject}\nThread-Index: AQHahM0hV2s5Yl0pGkqzQ3m8Xq1f4w==\n"
    "Content-Language: en-GB\nX-MS-Has-Attach: \nX-MS-TNEF-Correlator: \n"
    "X-Mailer: Microsoft Outlook 16.0\n"
)


def _outlook_paragraphs(lines: list[str]) -> str:
    return "".join(f'<p class="MsoNormal">{line}<o:p></o:p></p>\n' for line in lines)


def _outlook(to: str, subject: str, plain: str, html: str, msgid: str, extra: str = "") -> bytes:
    """Mark's Outlook mail, its boundary made of `msgid`'s local part."""
    head = _head(
        "Mark Peters <mark.peters@example.org>",
        to,
        subject,
        msgid,
        _OUTLOOK_HEADERS.format(subject=subject) + extra,
    )
    return _alternative(head, plain, html, f"_000_{msgid.partition('@')[0]}_")


def outlook_reply() -> bytes:
    """A two-line reply above Outlook's quoted header block."""
    subject = "RE: Budget review on Thursday"
    html = (
        _OUTLOOK_HEAD
        + _outlook_paragraphs(
            [
                "Hi Sarah,",
                "&nbsp;",
                "Thursday at 10 works for me.",
                "&nbsp;",
                "Thanks,",
                "Mark",
                "&nbsp;",
            ]
        )
        + '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
        '<p class="MsoNormal"><b><span lang="EN-US">From:</span></b><span lang="EN-US"> Sarah Jones'
        " &lt;sarah.jones@example.com&gt; <br><b>Sent:</b> Monday, April 1, 2024 4:02 PM<br>"
        "<b>To:</b> Mark Peters &lt;mark.peters@example.org&gt;<br><b>Subject:</b> Budget review"
        " on Thursday<o:p></o:p></span></p></div>\n"
        + _outlook_paragraphs(
            [
                "&nbsp;",
                "Hi Mark, could we go through the Q2 budget on Thursday morning?",
                "&nbsp;",
                "Sarah",
            ]
        )
        + "</div></body></html>"
    )
    plain = (
        "Hi Sarah,\n\nThursday at 10 works for me.\n\nThanks,\nMark\n\n"
        "From: Sarah Jones <sarah.jones@example.com>\nSent: Monday, April 1, 2024 4:02 PM\n"
        "To: Mark Peters <mark.peters@example.org>\nSubject: Budget review on Thursday\n\n"
        "Hi Mark, could we go through the Q2 budget on Thursday morning?\n\nSarah\n"
    )
    return _outlook(
        "Sarah Jones <sarah.jones@example.com>",
        subject,
        plain,
        html,
        "DB8PR04MB6793A1B2C3D4E5F6@DB8PR04MB6793.eurprd04.prod.outlook.com",
        "In-Reply-To: <budget-1@example.com>\n",
    )


def outlook_long() -> bytes:
    """A longer Outlook mail with a link and a signature."""
    paragraphs = [
        "Hello team,",
        "&nbsp;",
        "Following last week&#8217;s workshop, I have put together the notes and the actions we"
        " agreed on. The short version: we keep the current release train, move the database"
        " migration to the second sprint, and ask the support team for their list of the ten"
        " most frequent customer questions so we can fix the documentation first.",
        "&nbsp;",
        'The full notes are on the wiki: <a href="https://wiki.example.org/projects/atlas/'
        'workshop-2024-03">Atlas workshop notes</a>. Please add anything I missed before Friday.',
        "&nbsp;",
        "Owners for the next two weeks: Priya for the migration plan, Tom for the release"
        " checklist, and me for the support questions. If any of this clashes with your"
        " holidays, tell me and we will swap.",
        "&nbsp;",
        "Best regards,",
        "Mark Peters",
        "Programme Manager | Example Org",
        "+44 20 7946 0958",
    ]
    html = _OUTLOOK_HEAD + _outlook_paragraphs(paragraphs) + "</div></body></html>"
    plain = (
        "Hello team,\n\nFollowing last week's workshop, I have put together the notes and the"
        " actions we agreed on. The short version: we keep the current release train, move the"
        " database migration to the second sprint, and ask the support team for their list of"
        " the ten most frequent customer questions so we can fix the documentation first.\n\n"
        "The full notes are on the wiki: Atlas workshop notes"
        " <https://wiki.example.org/projects/atlas/workshop-2024-03>. Please add anything I"
        " missed before Friday.\n\nOwners for the next two weeks: Priya for the migration plan,"
        " Tom for the release checklist, and me for the support questions. If any of this"
        " clashes with your holidays, tell me and we will swap.\n\nBest regards,\nMark Peters\n"
        "Programme Manager | Example Org\n+44 20 7946 0958\n"
    )
    return _outlook(
        "atlas-team@example.org",
        "Atlas workshop: notes and actions",
        plain,
        html,
        "DB8PR04MB67931122AABB@DB8PR04MB6793.eurprd04.prod.outlook.com",
    )


# --- Gmail ----------------------------------------------------------------------------


def _gmail(subject: str, plain: str, html: str, msgid: str, extra: str = "") -> bytes:
    head = _head(
        "Anna Schmidt <anna.schmidt@gmail.com>",
        "Tom Becker <tom.becker@example.de>",
        subject,
        msgid,
        extra,
    )
    return _alternative(head, plain, html, "0000000000004f1a2b06150c3d9e", qp=False)


def gmail_one_liner() -> bytes:
    return _gmail(
        "Re: Saturday",
        "Sounds good, see you then!\n",
        '<div dir="ltr">Sounds good, see you then!</div>\n',
        "CAJx9kQ1mXr2vB7yH4dPz8cN0sT6eW3uL5aF@mail.gmail.com",
        "In-Reply-To: <sat-1@example.de>\n",
    )


def gmail_link() -> bytes:
    plain = (
        "Hi Tom,\n\nHere is the flat I told you about:\n"
        "https://www.immobilien.example.de/expose/148239\n\nWhat do you think?\nAnna\n"
    )
    html = (
        '<div dir="ltr">Hi Tom,<div><br></div><div>Here is <a href="https://www.immobilien.'
        'example.de/expose/148239">the flat I told you about</a>.</div><div><br></div>'
        "<div>What do you think?</div><div>Anna</div></div>\n"
    )
    return _gmail("The flat", plain, html, "CAJx9kQ3pLm0Zt5nRq2wXv8yB1cD7eF4gH@mail.gmail.com")


def gmail_reply_quoted() -> bytes:
    plain = (
        "Thanks, I'll bring the cake.\n\nOn Mon, 1 Apr 2024 at 18:20, Tom Becker"
        " <tom.becker@example.de> wrote:\n\n> Don't forget Lena's birthday on Friday, we meet at"
        " 7 at the usual place.\n>\n"
    )
    html = (
        '<div dir="ltr">Thanks, I&#39;ll bring the cake.</div><br><div class="gmail_quote">'
        '<div dir="ltr" class="gmail_attr">On Mon, 1 Apr 2024 at 18:20, Tom Becker &lt;<a href='
        '"mailto:tom.becker@example.de">tom.becker@example.de</a>&gt; wrote:<br></div>'
        '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid'
        ' rgb(204,204,204);padding-left:1ex"><div dir="ltr">Don&#39;t forget Lena&#39;s birthday'
        " on Friday, we meet at 7 at the usual place.</div>\n</blockquote></div>\n"
    )
    return _gmail(
        "Re: Friday",
        plain,
        html,
        "CAJx9kQ5aB6cD7eF8gH9iJ0kL1mN2oP3qR@mail.gmail.com",
        "In-Reply-To: <fri-1@example.de>\n",
    )


def gmail_inline_image() -> bytes:
    """A Gmail mail with a pasted picture: multipart/related, the image by cid."""
    html = (
        '<div dir="ltr">Look what arrived this morning!<div><br></div><div><img src="cid:ii_lu8'
        'k2m3n0" alt="IMG_2041.jpg" width="540" height="405"><br></div><div><br></div>'
        "<div>Anna</div></div>\n"
    )
    plain = "Look what arrived this morning!\n\n[image: IMG_2041.jpg]\n\nAnna\n"
    image = base64.encodebytes(TINY_PNG).decode("ascii")
    body = (
        _head(
            "Anna Schmidt <anna.schmidt@gmail.com>",
            "Tom Becker <tom.becker@example.de>",
            "Parcel",
            "CAJx9kQ7sT8uV9wX0yZ1aB2cD3eF4gH5iJ@mail.gmail.com",
        )
        + 'MIME-Version: 1.0\nContent-Type: multipart/related; boundary="000000000000a1b2c3"\n\n'
        '--000000000000a1b2c3\nContent-Type: multipart/alternative; boundary="000000000000d4e5f6"'
        '\n\n--000000000000d4e5f6\nContent-Type: text/plain; charset="UTF-8"\n\n'
        f'{plain}\n--000000000000d4e5f6\nContent-Type: text/html; charset="UTF-8"\n\n{html}\n'
        "--000000000000d4e5f6--\n--000000000000a1b2c3\n"
        'Content-Type: image/png; name="IMG_2041.jpg"\nContent-Disposition: inline;'
        ' filename="IMG_2041.jpg"\nContent-Transfer-Encoding: base64\n'
        "Content-ID: <ii_lu8k2m3n0>\nX-Attachment-Id: ii_lu8k2m3n0\n\n"
        f"{image}--000000000000a1b2c3--\n"
    )
    return _crlf(body)


# --- Apple Mail -----------------------------------------------------------------------

_APPLE_BODY = (
    '<html aria-label="message body"><head><meta http-equiv="content-type" content="text/html;'
    ' charset=utf-8"></head><body style="overflow-wrap: break-word; -webkit-nbsp-mode: space;'
    ' line-break: after-white-space;">'
)


def _apple(subject: str, plain: str, inner: str, msgid: str) -> bytes:
    head = _head(
        "Claire Dubois <claire@example.fr>",
        "Julien Martin <julien@example.fr>",
        subject,
        msgid,
        "X-Mailer: Apple Mail (2.3774.500.171.1.1)\n",
    )
    html = _APPLE_BODY + inner + "</body></html>"
    return _alternative(head, plain, html, "Apple-Mail=_6F1C2B9E-4D3A-4B8E-9C1D-2E3F4A5B6C7D")


def apple_note() -> bytes:
    return _apple(
        "Keys",
        "Hi Julien,\n\nThe keys are with the neighbour at number 12.\n\nClaire\n",
        "Hi Julien,<div><br></div><div>The keys are with the neighbour at number 12.</div>"
        "<div><br></div><div>Claire</div>",
        "8E2F4A1C-7B3D-4E5F-9A0B-1C2D3E4F5A6B@example.fr",
    )


def apple_signature_link() -> bytes:
    plain = (
        "Hello Julien,\n\nAttached is the signed lease. The agency wants the deposit by the 15th;"
        " their details are on their site (Agence du Port <https://www.agence-du-port.example.fr/"
        "contact>).\n\nBonne journée,\nClaire\n\n--\nClaire Dubois\nArchitecte DPLG\n"
    )
    inner = (
        "Hello Julien,<div><br></div><div>Attached is the signed lease. The agency wants the"
        ' deposit by the 15th; their details are on their site (<a href="https://www.agence-du-'
        'port.example.fr/contact">Agence du Port</a>).</div><div><br></div><div>Bonne journée,'
        "</div><div>Claire</div><div><br><div>\n<div>--&nbsp;</div><div>Claire Dubois</div><div>"
        "Architecte DPLG</div>\n</div>\n<br></div>"
    )
    return _apple("Lease", plain, inner, "0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D@example.fr")


# --- Thunderbird ----------------------------------------------------------------------


def _thunderbird(subject: str, plain: str, inner: str, msgid: str) -> bytes:
    head = _head(
        "Pavel Novak <pavel@example.cz>",
        "dev-list@example.org",
        subject,
        msgid,
        "User-Agent: Mozilla Thunderbird\nContent-Language: en-US\n",
    )
    html = (
        '<!DOCTYPE html>\n<html>\n  <head>\n\n    <meta http-equiv="content-type"'
        ' content="text/html; charset=UTF-8">\n  </head>\n  <body>\n'
        + inner
        + '    <div class="moz-signature">-- <br>\n      Pavel Novak</div>\n  </body>\n</html>\n'
    )
    return _alternative(head, plain, html, "------------1f2E3d4C5b6A7z8Y9x0W", qp=False)


def thunderbird_short() -> bytes:
    return _thunderbird(
        "Build is green again",
        "Hi all,\n\nthe nightly build is green again.\n\n-- \nPavel Novak\n",
        "    <p>Hi all,</p>\n    <p>the nightly build is green again.</p>\n",
        "5c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f@example.cz",
    )


def thunderbird_links() -> bytes:
    plain = (
        "Hi all,\n\nthe fix for the flaky upload test is in review:\n"
        "https://git.example.org/core/merge_requests/4821\n\nIt turns out the test server closed"
        " the connection before the last chunk was acknowledged, so the client retried and"
        " uploaded the file twice. The patch waits for the final acknowledgement and adds a"
        " regression test. Background in the issue tracker (Issue 1177"
        " <https://bugs.example.org/show_bug.cgi?id=1177>).\n\nReviews welcome.\n\n-- \n"
        "Pavel Novak\n"
    )
    inner = (
        "    <p>Hi all,</p>\n    <p>the fix for the flaky upload test is in review:<br>\n"
        '      <a class="moz-txt-link-freetext" href="https://git.example.org/core/merge_requests'
        '/4821">https://git.example.org/core/merge_requests/4821</a></p>\n'
        "    <p>It turns out the test server closed the connection before the last chunk was"
        " acknowledged, so the client retried and uploaded the file twice. The patch waits for"
        " the final acknowledgement and adds a regression test. Background in the issue tracker"
        ' (<a href="https://bugs.example.org/show_bug.cgi?id=1177">Issue 1177</a>).</p>\n'
        "    <p>Reviews welcome.</p>\n"
    )
    return _thunderbird(
        "Flaky upload test", plain, inner, "9f8e7d6c-5b4a-3c2d-1e0f-a9b8c7d6e5f4@example.cz"
    )


# --- A CRM's templates ----------------------------------------------------------------


def _crm_html(title: str, rows: str) -> str:
    return (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/'
        'xhtml1/DTD/xhtml1-transitional.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml">\n'
        '<head>\n<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0" />\n'
        f'<title>{title}</title>\n<style type="text/css">\nbody {{ margin:0; padding:0; }}\n'
        "table td { border-collapse:collapse; }\n@media only screen and (max-width:600px) {\n"
        "  .container { width:100% !important; }\n}\n</style>\n</head>\n"
        '<body style="margin:0;padding:0;background-color:#f4f4f4;">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"'
        ' bgcolor="#f4f4f4">\n<tr><td align="center" style="padding:24px 12px;">\n'
        '<table role="presentation" class="container" width="600" cellpadding="0" cellspacing="0"'
        ' border="0" bgcolor="#ffffff">\n'
        + rows
        + "</table>\n</td></tr>\n</table>\n</body>\n</html>\n"
    )


_CRM_FOOTER = (
    '<tr><td style="padding:16px 32px;font-family:Arial,sans-serif;font-size:11px;color:#888888;">'
    "Northwind Software Ltd, 12 Harbour Street, Bristol BS1 4QA, United Kingdom<br />\n"
    "You receive this because you are a Northwind customer. "
    '<a href="https://www.northwind.example.com/preferences?c=8812" style="color:#888888;">'
    "Manage preferences</a> or "
    '<a href="https://www.northwind.example.com/unsubscribe?c=8812" style="color:#888888;">'
    "unsubscribe</a>.</td></tr>\n"
)
_CRM_HEAD = "List-Unsubscribe: <https://www.northwind.example.com/unsubscribe?c=8812>\n"


def _crm(sender: str, to: str, subject: str, msgid: str, plain: str, html: str, part: str) -> bytes:
    """A CRM's multipart/alternative mail with its List-Unsubscribe field."""
    head = _head(sender, to, subject, msgid, _CRM_HEAD)
    return _alternative(head, plain, html, f"----=_CRM_Part_{part}_0")


def crm_newsletter() -> bytes:
    """A CRM newsletter: logo, hero image, three articles with buttons, footer."""
    article = (
        '<tr><td style="padding:8px 32px 24px;font-family:Arial,sans-serif;font-size:15px;'
        'line-height:22px;color:#333333;">\n<h2 style="font-size:19px;margin:0 0 8px;">{title}</h2>'
        '\n<p style="margin:0 0 12px;">{text}</p>\n'
        '<a href="https://www.northwind.example.com/blog/{slug}?utm_source=newsletter&amp;'
        'utm_medium=email&amp;utm_campaign=april" style="background-color:#1a73e8;color:#ffffff;'
        'padding:10px 18px;text-decoration:none;border-radius:4px;display:inline-block;">'
        "Read more</a>\n</td></tr>\n"
    )
    articles = [
        (
            "Faster reports in version 8.2",
            "Reports that took a minute now open in seconds:"
            " we rewrote the query planner and cache every chart you open twice.",
            "reports-8-2",
        ),
        (
            "Single sign-on for every plan",
            "From this month, SSO with your own identity provider"
            " is included in every plan at no extra cost. Setting it up takes ten minutes.",
            "sso",
        ),
        (
            "Meet us in Manchester",
            "Our user day is back on 14 May, with talks from three"
            " customers and the roadmap for the second half of the year.",
            "user-day-2024",
        ),
    ]
    rows = (
        '<tr><td style="padding:24px 32px;"><img src="https://cdn.northwind.example.com/mail/'
        'logo.png" width="160" height="40" alt="Northwind" style="display:block;border:0;" />'
        "</td></tr>\n"
        '<tr><td><img src="https://cdn.northwind.example.com/mail/april-hero.jpg" width="600"'
        ' height="240" alt="April news from Northwind" style="display:block;border:0;width:100%;'
        'height:auto;" /></td></tr>\n'
        + "".join(article.format(title=t, text=x, slug=s) for t, x, s in articles)
        + _CRM_FOOTER
    )
    plain = (
        "April news from Northwind\n\n"
        + "\n\n".join(
            f"{t}\n{x}\nRead more: https://www.northwind.example.com/blog/{s}"
            for t, x, s in articles
        )
        + "\n\nManage preferences: https://www.northwind.example.com/preferences?c=8812\n"
    )
    return _crm(
        "Northwind <news@northwind.example.com>",
        "jane.doe@example.net",
        "April news: faster reports, SSO for everyone",
        "crm.8812.20240402@northwind.example.com",
        plain,
        _crm_html("April news", rows),
        "8812",
    )


def crm_follow_up() -> bytes:
    """A CRM's one-to-one sales follow-up: short text, a booking link, no image."""
    rows = (
        '<tr><td style="padding:24px 32px;font-family:Arial,sans-serif;font-size:15px;'
        'line-height:22px;color:#333333;">\n<p>Hi Jane,</p>\n<p>Thanks for your time on the call'
        " today. As promised, here is the link to book the onboarding session with our team:"
        ' <a href="https://meet.northwind.example.com/book/onboarding?rep=lisa">book a slot</a>.'
        "</p>\n<p>Best,<br />Lisa Grant<br />Account Executive, Northwind</p>\n</td></tr>\n"
        + _CRM_FOOTER
    )
    plain = (
        "Hi Jane,\n\nThanks for your time on the call today. As promised, here is the link to book"
        " the onboarding session with our team: https://meet.northwind.example.com/book/onboarding"
        "?rep=lisa\n\nBest,\nLisa Grant\nAccount Executive, Northwind\n"
    )
    return _crm(
        "Lisa Grant <lisa.grant@northwind.example.com>",
        "Jane Doe <jane.doe@example.net>",
        "Your onboarding session",
        "crm.9120.20240402@northwind.example.com",
        plain,
        _crm_html("Onboarding", rows),
        "9120",
    )


def crm_html_only_notice() -> bytes:
    """A CRM's short transactional notice sent as HTML only, with its logo."""
    html = _crm_html(
        "Invoice",
        (
            '<tr><td style="padding:24px 32px;"><img src="https://cdn.northwind.example.com/mail/'
            'logo.png" width="160" height="40" alt="Northwind" style="display:block;border:0;" />'
            "</td></tr>\n"
            '<tr><td style="padding:8px 32px 24px;font-family:Arial,sans-serif;font-size:15px;">'
            "<p>Your invoice INV-2024-0412 for April is ready. You can download it from"
            ' <a href="https://app.northwind.example.com/billing/invoices">your billing page</a>.'
            "</p>"
            "</td></tr>\n"
        ),
    )
    head = _head(
        "Northwind Billing <billing@northwind.example.com>",
        "jane.doe@example.net",
        "Your April invoice",
        "crm.inv.0412@northwind.example.com",
    )
    body = (
        f'{head}MIME-Version: 1.0\nContent-Type: text/html; charset="UTF-8"\n'
        f"Content-Transfer-Encoding: quoted-printable\n\n{_qp(html)}\n"
    )
    return _crlf(body)


ORDINARY: dict[str, Callable[[], bytes]] = {
    "outlook-two-line-reply": outlook_reply,
    "outlook-long-with-link": outlook_long,
    "gmail-one-liner": gmail_one_liner,
    "gmail-link": gmail_link,
    "gmail-reply-quoted": gmail_reply_quoted,
    "gmail-inline-image": gmail_inline_image,
    "apple-mail-note": apple_note,
    "apple-mail-signature-link": apple_signature_link,
    "thunderbird-short": thunderbird_short,
    "thunderbird-links": thunderbird_links,
    "crm-newsletter": crm_newsletter,
    "crm-follow-up": crm_follow_up,
    "crm-html-only-notice": crm_html_only_notice,
}


def ordinary_mails() -> dict[str, bytes]:
    """Name -> the bytes the client submits, for every ordinary mail above."""
    return {f"ordinary/{name}": build() for name, build in ORDINARY.items()}
