"""Deliverability: does a tracked copy score worse with SpamAssassin than the same mail untracked?

Two `relay serve` processes with the same config but for `opens`/`clicks` (both
with `tracking.base_url = "https://t.example.com"`) relay the same messages to
one aiosmtpd sink; both delivered copies of each message are scored with
SpamAssassin's shipped rules and local tests only (what `spamassassin -L -t`
runs), all in one Perl process (one rule load for every message). Printed per
message: the score untracked and tracked, the delta, the rules that fire on only
one of the two copies, and whether the tracked copy still has its pixel (opens
tracked) or why not (the copy's rewrite_note, from the admin API). Then the totals.

Messages: the HTML messages of the shared corpus (every MIME message with an HTML
body the relay may rewrite, and every HTML template as a multipart/alternative
mail), and ordinary mails as the common clients compose them (ordinary_mails.py).
Your own: `--messages DIR` takes every .eml (a whole message) and .html (a
template, sent as multipart/alternative) file under DIR instead.

    .venv/bin/python benchmarks/deliverability.py [--messages DIR] [--sample N]
        [--only ordinary|corpus] [--check] [--quiet]

--check exits 1 unless the mean delta is <= +0.05 and no message is above +0.5.
Needs Debian's spamassassin package (`make sysdeps` installs it).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import http.client
import json
import quopri
import shutil
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ordinary_mails import ordinary_mails

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
from support.processes import (  # noqa: E402
    RelayProcess,
    free_port,
    running_sink,
    spawn_relay,
    wait_for_port,
)

from relay.rewrite import mime  # noqa: E402
from relay.smtp.message import header_block_clean  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
BASE_URL = "https://t.example.com"
MEAN_LIMIT = 0.05
MESSAGE_LIMIT = 0.5
ADMIN_TOKEN = "deliverability"

RELAY_TOML = """
[smtp]
listen = "127.0.0.1:{{smtp}}"
hostname = "relay.example.com"

[upstream]
url = "smtp://127.0.0.1:{sink}"
max_connections = 4

[tracking]
base_url = "{base}"
listen = "127.0.0.1:{{tracking}}"
opens = {on}
clicks = {on}

[admin]
listen = "127.0.0.1:{{admin}}"
token = "{token}"

[store]
path = "relay.db"

[log]
level = "warning"
"""

# One process scores every file named on stdin: `spamassassin -L -t` with the rules loaded once.
SCORER = r"""
use strict; use warnings;
use Mail::SpamAssassin; use JSON::PP; use File::Temp qw(tempdir);
my $state = tempdir(CLEANUP => 1);
my $sa = Mail::SpamAssassin->new({
  local_tests_only => 1, dont_copy_prefs => 1, userstate_dir => $state,
  userprefs_filename => "$state/user_prefs",
  post_config_text => "use_bayes 0\nbayes_auto_learn 0\n",
});
$sa->compile_now(0);
$| = 1;
my $json = JSON::PP->new->canonical;
while (my $path = <STDIN>) {
  chomp $path;
  open(my $fh, '<:raw', $path) or die "$path: $!";
  my @lines = <$fh>; close $fh;
  my $msg = $sa->parse(\@lines);
  my $status = $sa->check($msg);
  my $hits = $status->get_names_of_tests_hit_with_scores_hash();
  print $json->encode({path => $path, score => $status->get_score() + 0, rules => $hits}), "\n";
  $status->finish(); $msg->finish();
}
"""


@dataclass
class Result:
    name: str
    plain: float
    tracked: float
    only_plain: dict[str, float] = field(default_factory=dict)
    only_tracked: dict[str, float] = field(default_factory=dict)
    opens_tracked: bool = False
    note: str = ""

    @property
    def delta(self) -> float:
        return round(self.tracked - self.plain, 3)


def on_the_wire(raw: bytes) -> bytes:
    """Every line ending CRLF, as SMTP carries it."""
    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return (lines if lines.endswith(b"\n") else lines + b"\n").replace(b"\n", b"\r\n")


def wrap_html(html: bytes, subject: str) -> bytes:
    """An HTML template as a sender's multipart/alternative mail (quoted-printable)."""
    head = (
        f"From: Newsletter <news@example.com>\r\nTo: reader@example.net\r\nSubject: {subject}\r\n"
        "Date: Tue, 02 Apr 2024 09:00:00 +0000\r\nMessage-ID: <tmpl@example.com>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="tmpl-b"\r\n\r\n'
        "--tmpl-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe text version.\r\n"
        "--tmpl-b\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    return head.encode() + quopri.encodestring(html) + b"\r\n--tmpl-b--\r\n"


def rewritable(raw: bytes) -> bool:
    """A message the relay accepts and would track: an HTML body, neither signed nor encrypted."""
    if not header_block_clean(raw):
        return False
    try:
        found = mime.survey(raw)
    except mime.MalformedMime:
        return False
    return bool(found.html_bodies) and not (found.content_types & mime.SIGNED_OR_ENCRYPTED)


def files_of(folder: Path) -> dict[str, bytes]:
    """.eml files as messages, .html files as multipart/alternative mails."""
    found: dict[str, bytes] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if path.suffix == ".html":
            found[name] = on_the_wire(wrap_html(path.read_bytes(), path.stem))
        elif path.suffix == ".eml":
            raw = path.read_bytes()
            found[name] = on_the_wire(raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw)
    return found


def corpus_messages() -> dict[str, bytes]:
    """The corpus's HTML messages: MIME messages with a rewritable HTML body, and templates."""
    found = {f"mime/{k}": v for k, v in files_of(CORPUS / "mime").items()}
    found.update({f"html/{k}": v for k, v in files_of(CORPUS / "html").items()})
    return {name: raw for name, raw in found.items() if rewritable(raw)}


def sample(messages: dict[str, bytes], size: int) -> dict[str, bytes]:
    """size messages spread evenly over the sorted names (the same ones every run)."""
    names = sorted(messages)
    if size >= len(names):
        return messages
    step = len(names) / size
    return {names[int(i * step)]: messages[names[int(i * step)]] for i in range(size)}


def start_relay(workdir: Path, sink_port: int, tracked: bool) -> RelayProcess:
    workdir.mkdir()
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
    toml = RELAY_TOML.format(
        sink=sink_port, base=BASE_URL, on="true" if tracked else "false", token=ADMIN_TOKEN
    )
    config = workdir / "relay.toml"
    config.write_text(toml.format(**ports), encoding="utf-8")
    proc = spawn_relay(config, log=workdir / "relay.log")
    for port in ports.values():
        wait_for_port(port, proc)
    return RelayProcess(
        proc, ports["smtp"], ports["tracking"], ports["admin"], ADMIN_TOKEN, workdir
    )


def stop_relay(relay: RelayProcess) -> None:
    relay.proc.terminate()
    try:
        relay.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        relay.proc.kill()
        relay.proc.wait()


def send_all(relay: RelayProcess, messages: dict[str, bytes], prefix: str) -> dict[str, str]:
    """Each message to its own recipient; name -> recipient, for the messages accepted."""
    recipients: dict[str, str] = {}
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=60) as client:
        for number, (name, raw) in enumerate(sorted(messages.items())):
            recipient = f"{prefix}{number}@example.net"
            try:
                client.sendmail("sender@example.com", [recipient], raw)
            except smtplib.SMTPDataError:
                continue  # refused by the relay: not a copy to compare
            recipients[name] = recipient
    return recipients


def rewrite_notes(relay: RelayProcess) -> dict[str, str]:
    """recipient -> its copy's rewrite_note, from the admin API."""
    conn = http.client.HTTPConnection("127.0.0.1", relay.admin_port, timeout=30)

    def get(path: str) -> dict[str, Any]:
        conn.request("GET", path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"admin API {path}: {answer.status} {body[:200]!r}")
        parsed: dict[str, Any] = json.loads(body)
        return parsed

    notes: dict[str, str] = {}
    cursor: str | None = ""
    while cursor is not None:
        page = get("/api/messages?limit=500" + (f"&cursor={cursor}" if cursor else ""))
        for summary in page["messages"]:
            for recipient in get(f"/api/messages/{summary['id']}")["recipients"]:
                notes[recipient["address"]] = recipient["rewrite_note"]
        cursor = page["next"]
    return notes


def relay_both(
    messages: dict[str, bytes], workdir: Path
) -> tuple[dict[str, tuple[bytes, bytes]], dict[str, str]]:
    """name -> (untracked copy, tracked copy) as delivered, and name -> tracked copy's note."""
    with running_sink() as (sink, sink_port):
        plain_relay = start_relay(workdir / "untracked", sink_port, tracked=False)
        tracked_relay = start_relay(workdir / "tracked", sink_port, tracked=True)
        try:
            plain_to = send_all(plain_relay, messages, "u")
            tracked_to = send_all(tracked_relay, messages, "t")
            wanted = set(plain_to.values()) | set(tracked_to.values())
            with sink.arrived:
                sink.arrived.wait_for(
                    lambda: wanted <= {m.rcpt_tos[0] for m in sink.messages}, timeout=300
                )
                delivered = {m.rcpt_tos[0]: m.data for m in sink.messages}
            notes = rewrite_notes(tracked_relay)
        finally:
            stop_relay(plain_relay)
            stop_relay(tracked_relay)
    pairs = {
        name: (delivered[plain_to[name]], delivered[tracked_to[name]])
        for name in messages
        if name in plain_to
        and name in tracked_to
        and plain_to[name] in delivered
        and tracked_to[name] in delivered
    }
    return pairs, {name: notes.get(to, "") for name, to in tracked_to.items()}


def score_files(paths: list[Path]) -> dict[Path, tuple[float, dict[str, float]]]:
    """path -> (score, {rule: score}) from one Perl process with SpamAssassin's rules."""
    perl = shutil.which("perl")
    if perl is None or subprocess.run([perl, "-MMail::SpamAssassin", "-e", "1"]).returncode:
        raise SystemExit("needs SpamAssassin (Debian: apt-get install spamassassin; make sysdeps)")
    done = subprocess.run(
        [perl, "-e", SCORER],
        input="".join(f"{path}\n" for path in paths),
        capture_output=True,
        text=True,
        check=True,
    )
    scores: dict[Path, tuple[float, dict[str, float]]] = {}
    for line in done.stdout.splitlines():
        row = json.loads(line)
        scores[Path(row["path"])] = (float(row["score"]), dict(row["rules"]))
    return scores


def has_pixel(raw: bytes) -> bool:
    """Whether any HTML part of the copy loads our pixel."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and f"{BASE_URL}/o/".encode() in payload:
                return True
    return False


def compare(messages: dict[str, bytes], workdir: Path) -> list[Result]:
    pairs, notes = relay_both(messages, workdir)
    copies = workdir / "copies"
    copies.mkdir()
    files: dict[str, tuple[Path, Path]] = {}
    for number, (name, (plain, tracked)) in enumerate(sorted(pairs.items())):
        files[name] = (copies / f"{number}-untracked.eml", copies / f"{number}-tracked.eml")
        files[name][0].write_bytes(plain)
        files[name][1].write_bytes(tracked)
    scores = score_files([path for both in files.values() for path in both])
    results: list[Result] = []
    for name, (plain_path, tracked_path) in files.items():
        plain_score, plain_rules = scores[plain_path]
        tracked_score, tracked_rules = scores[tracked_path]
        results.append(
            Result(
                name,
                plain_score,
                tracked_score,
                {k: v for k, v in plain_rules.items() if k not in tracked_rules},
                {k: v for k, v in tracked_rules.items() if k not in plain_rules},
                has_pixel(pairs[name][1]),
                notes.get(name, ""),
            )
        )
    return results


def _rules(rules: dict[str, float]) -> str:
    return " ".join(f"{name}({score:+g})" for name, score in sorted(rules.items()))


def report(results: list[Result], quiet: bool) -> Iterator[str]:
    for r in results:
        if quiet and not (r.delta or r.only_plain or r.only_tracked or not r.opens_tracked):
            continue
        opens = "opens tracked" if r.opens_tracked else f"opens NOT tracked ({r.note or 'no note'})"
        scores = f"untracked {r.plain:.2f}, tracked {r.tracked:.2f}, delta {r.delta:+.2f}"
        yield f"{r.name}: {scores}; {opens}"
        if r.only_tracked:
            yield f"    only tracked: {_rules(r.only_tracked)}"
        if r.only_plain:
            yield f"    only untracked: {_rules(r.only_plain)}"
    for group in ("ordinary/", ""):
        chosen = [r for r in results if r.name.startswith(group)]
        if not chosen:
            continue
        deltas = [r.delta for r in chosen]
        label = "ordinary mails" if group else "all messages"
        yield (
            f"{label}: {len(chosen)}, mean delta {sum(deltas) / len(deltas):+.3f},"
            f" max delta {max(deltas):+.2f}, worse {sum(d > 0 for d in deltas)},"
            f" better {sum(d < 0 for d in deltas)},"
            f" opens tracked {sum(r.opens_tracked for r in chosen)}"
        )


def within_limits(results: list[Result]) -> bool:
    deltas = [r.delta for r in results]
    return bool(deltas) and sum(deltas) / len(deltas) <= MEAN_LIMIT and max(deltas) <= MESSAGE_LIMIT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=Path, help="your own .eml/.html files instead")
    parser.add_argument("--only", choices=("ordinary", "corpus"))
    parser.add_argument("--sample", type=int, default=0, help="this many corpus messages")
    parser.add_argument("--check", action="store_true", help="exit 1 beyond the limits")
    parser.add_argument("--quiet", action="store_true", help="only messages that differ")
    args = parser.parse_args()
    if args.messages:
        messages = files_of(args.messages)
    else:
        messages = {} if args.only == "corpus" else ordinary_mails()
        if args.only != "ordinary":
            corpus = corpus_messages()
            messages.update(sample(corpus, args.sample) if args.sample else corpus)
    with tempfile.TemporaryDirectory(prefix="deliverability-") as tmp:
        results = compare(messages, Path(tmp))
    for line in report(results, args.quiet):
        print(line)
    if args.check:
        ok = within_limits(results)
        print(
            f"limits (mean <= +{MEAN_LIMIT}, each <= +{MESSAGE_LIMIT}):",
            "met" if ok else "NOT met",
        )
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
