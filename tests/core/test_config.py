"""load_config and render_config over real files: every check, defaults, round trips."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.config import (
    Config,
    ConfigError,
    DkimConfig,
    HostPort,
    SmtpUser,
    StoreConfig,
    TrackingPolicy,
    UpstreamConfig,
    WebhookConfig,
    load_config,
    render_config,
)
from relay.core.config.checks import format_duration, parse_duration

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "relay.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def without_source(config: Config) -> Config:
    return dataclasses.replace(config, source=Config().source)


# --- defaults and the example file ---------------------------------------------------------


def test_no_path_and_no_relay_toml_gives_embedded_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None) == Config()


def test_no_path_reads_relay_toml_in_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "relay.toml").write_text("[smtp]\nmax_recipients = 7\n", encoding="utf-8")
    config = load_config(None)
    assert config.smtp.max_recipients == 7
    assert config.source == "relay.toml"


def test_example_file_loads_and_shows_the_true_defaults() -> None:
    assert without_source(load_config(EXAMPLE)) == Config()


def test_example_file_optional_sections_load_when_uncommented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dkim.pem").write_text("key", encoding="utf-8")
    text = EXAMPLE.read_text(encoding="utf-8").replace("/etc/relay/dkim.pem", "dkim.pem")
    text = re.sub(r"(?m)^#(?=\[|[a-z_]+ = )", "", text)
    text = text.replace('#user = "alice"', "")  # a policy takes match or user, not both
    text = re.sub(r'(?m)^user = "alice".*$', "", text)
    config = load_text(tmp_path, text)
    assert config.smtp.users == (
        SmtpUser("alice", "$argon2id$v=19$...", ("alice@example.com", "*@sales.example.com")),
    )
    assert config.tracking.policy == (TrackingPolicy(match="*@sales.example.com"),)
    assert config.dkim == DkimConfig("example.com", "relay", "dkim.pem")
    assert config.webhooks == (
        WebhookConfig("https://crm.example.com/hooks/mail", "a long random string"),
    )


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    documented = set(re.findall(r"(?m)^#?([a-z_]+) = ", text))
    expected: set[str] = set()
    for cls in _section_classes():
        expected |= {f.name for f in dataclasses.fields(cls) if not _is_section(f.name)}
    assert expected <= documented, expected - documented


def _section_classes() -> list[type]:
    config = Config()
    classes: list[type] = [
        type(config.smtp),
        type(config.upstream),
        type(config.tracking),
        type(config.tracking.privacy),
        type(config.admin),
        type(config.store),
    ]
    return [*classes, SmtpUser, TrackingPolicy, DkimConfig, WebhookConfig]


def _is_section(name: str) -> bool:
    return name in {"users", "policy", "privacy", "source"}


# --- values that load --------------------------------------------------------------------


def test_full_config_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("pem", encoding="utf-8")
    config = load_text(
        tmp_path,
        """
[smtp]
listen = ["0.0.0.0:587", "[::1]:2525"]
implicit_tls_listen = "0.0.0.0:465"
hostname = "relay.example.com"
tls_cert = "cert.pem"
tls_key = "key.pem"
allowed_networks = ["10.1.2.3/8"]
[upstream]
url = "smtp+starttls://user:pw@mail.example.com:587"
retry_schedule = ["500ms", "3s", "1.5m"]
max_queue_age = "2d"
ca_file = "ca.pem"
tls_verify = false
[tracking]
base_url = "https://t.example.com/"
exclude_links = ["unsubscribe", "^https://login\\\\."]
trusted_proxies = ["127.0.0.1/32", "::1"]
scanner_networks = ["198.51.100.7/24"]
classify = false
[tracking.privacy]
retention = "365d"
[admin]
listen = "0.0.0.0:8081"
token = "s3cret"
""",
    )
    assert config.smtp.listen == (HostPort("0.0.0.0", 587), HostPort("::1", 2525))
    assert config.smtp.implicit_tls_listen == (HostPort("0.0.0.0", 465),)
    assert config.smtp.allowed_networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert config.upstream.retry_schedule == (0.5, 3.0, 90.0)
    assert config.upstream.max_queue_age == 2 * 86400
    assert config.tracking.base_url == "https://t.example.com"
    assert config.tracking.exclude_links[1].search("https://login.example.com/x")
    assert config.tracking.trusted_proxies[1] == ipaddress.ip_network("::1/128")
    assert config.tracking.scanner_networks == (ipaddress.ip_network("198.51.100.0/24"),)
    assert config.tracking.classify is False
    assert Config().tracking.classify is True
    assert config.tracking.privacy.retention == 365 * 86400
    assert config.admin.token == "s3cret"
    assert str(config.smtp.listen[1]) == "[::1]:2525"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("0s", 0), ("3s", 3), ("1m", 60), ("5m", 300), ("1h", 3600), ("4d", 345600),
     ("365d", 365 * 86400), ("250ms", 0.25), (" 2h ", 7200)],
)  # fmt: skip
def test_durations(tmp_path: Path, text: str, seconds: float) -> None:
    config = load_text(tmp_path, f'[tracking]\nbot_click_window = "{text}"\n')
    assert config.tracking.bot_click_window == seconds


@pytest.mark.parametrize(
    "address", ["127.0.0.1:8081", "127.0.0.2:8081", "[::1]:8081", "localhost:1"]
)
def test_admin_on_loopback_needs_no_token(tmp_path: Path, address: str) -> None:
    assert load_text(tmp_path, f'[admin]\nlisten = "{address}"\n').admin.token == ""


# --- every check: one line naming the key ------------------------------------------------

BAD = [
    # unknown keys, at every depth
    ("[smtp]\nmax_recipents = 5\n", "smtp.max_recipents: unknown key"),
    ("colour = 1\n", "colour: unknown key"),
    ("[tracking.privacy]\nenable = true\n", "tracking.privacy.enable: unknown key"),
    (
        '[[smtp.users]]\nname = "a"\npassword_hash = "h"\npass = "x"\n',
        "smtp.users[1].pass: unknown key",
    ),
    ("[tracking]\nsource = 'x'\n", "tracking.source: unknown key"),
    ("source = 'x'\n", "source: unknown key"),
    # wrong types; booleans are not integers
    ('[tracking]\nopens = "yes"\n', "tracking.opens: expected a boolean, got string"),
    ("[smtp]\nmax_recipients = true\n", "smtp.max_recipients: expected an integer, got boolean"),
    ("[smtp]\nmax_message_size = 1.5\n", "smtp.max_message_size: expected an integer, got float"),
    ("[smtp]\nhostname = 5\n", "smtp.hostname: expected a string, got integer"),
    ("smtp = 1\n", "smtp: expected a table, got integer"),
    ("[smtp]\nlisten = [2525]\n", "smtp.listen: item 1: expected a string, got integer"),
    ("[smtp]\nusers = 1\n", "smtp.users: expected an array, got integer"),
    ("[smtp]\nusers = [1]\n", "smtp.users[1]: expected a table, got integer"),
    (
        "[tracking]\nsecrets = 'k'\nbot_click_window = 3\n",
        'tracking.bot_click_window: expected a duration like "3s", got integer 3',
    ),
    ("[smtp]\ncommand_timeout = 30\n", 'smtp.command_timeout: expected a duration like "3s"'),
    (
        "[upstream]\nretry_schedule = [60]\n",
        'upstream.retry_schedule: item 1: expected a duration like "3s", got integer 60',
    ),
    # unknown keys: the closest known key, in the same table or elsewhere
    (
        '[tracking.privacy]\nretension = "1d"\n',
        "tracking.privacy.retension: unknown key; did you mean `tracking.privacy.retention`?",
    ),
    (
        '[tracking]\nretention = "1d"\n',
        "tracking.retention: unknown key; did you mean `tracking.privacy.retention`?",
    ),
    ("[smtp]\nmax_recipents = 5\n", "did you mean `smtp.max_recipients`?"),
    ('[trackin]\nbase_url = "x"\n', "trackin: unknown key; did you mean `tracking`?"),
    ('[smtp]\nbase_url = "x"\n', "smtp.base_url: unknown key; did you mean `tracking.base_url`?"),
    (
        '[[smtp.users]]\nnme = "a"\npassword_hash = "h"\n',
        "smtp.users[1].nme: unknown key; did you mean `smtp.users[1].name`?",
    ),
    ("[store]\npath = 1979-05-27\n", "store.path: expected a string, got date/time"),
    # positive integers
    ("[smtp]\nmax_recipients = 0\n", "smtp.max_recipients: must be a positive integer"),
    ("[smtp]\nmax_message_size = -1\n", "smtp.max_message_size: must be a positive integer"),
    ("[upstream]\nmax_connections = 0\n", "upstream.max_connections: must be a positive integer"),
    ("[smtp]\nmax_queued_copies = 0\n", "smtp.max_queued_copies: must be a positive integer"),
    # listen addresses
    ('[smtp]\nlisten = "127.0.0.1:99999"\n', "smtp.listen: bad port"),
    ('[smtp]\nlisten = "127.0.0.1:0"\n', "smtp.listen: bad port"),
    ('[smtp]\nlisten = "127.0.0.1"\n', "smtp.listen: bad address"),
    ('[smtp]\nlisten = ":25"\n', "smtp.listen: bad address"),
    ('[smtp]\nlisten = "::1:25"\n', "smtp.listen: bad address"),
    ('[smtp]\nlisten = "[::1]25"\n', "smtp.listen: bad address"),
    ('[smtp]\nlisten = "[127.0.0.1]:25"\n', "smtp.listen: bad IP address"),
    ('[smtp]\nlisten = "[nope]:25"\n', "smtp.listen: bad IP address"),
    ('[tracking]\nlisten = ["127.0.0.1:8080", "bad host:1"]\n', "tracking.listen: bad host"),
    ('[admin]\nlisten = "127.0.0.1:x"\n', "admin.listen: bad port"),
    (
        '[smtp]\nimplicit_tls_listen = "0.0.0.0:465"\n',
        "smtp.implicit_tls_listen: needs smtp.tls_cert",
    ),
    # networks
    ('[smtp]\nallowed_networks = ["10.0.0.0/33"]\n', "smtp.allowed_networks: bad network"),
    ('[tracking]\nignore_networks = ["office"]\n', "tracking.ignore_networks: bad network"),
    ('[tracking]\nscanner_networks = ["x/8"]\n', "tracking.scanner_networks: bad network"),
    ('[tracking]\nclassify = "yes"\n', "tracking.classify"),
    ('[tracking]\ntrusted_proxies = ["::1/129"]\n', "tracking.trusted_proxies: bad network"),
    # durations
    (
        '[upstream]\nretry_schedule = ["1m", "5"]\n',
        "upstream.retry_schedule: duration '5' needs a unit",
    ),
    ('[upstream]\nretry_schedule = ["1w"]\n', "upstream.retry_schedule: bad duration"),
    ('[upstream]\nretry_schedule = ["0"]\n', "upstream.retry_schedule: must be longer than 0"),
    ("[upstream]\nretry_schedule = []\n", "upstream.retry_schedule: needs at least one interval"),
    ('[upstream]\nmax_queue_age = "-1d"\n', "upstream.max_queue_age: bad duration"),
    ('[upstream]\ntimeout = "0s"\n', "upstream.timeout: must be longer than 0"),
    ('[tracking.privacy]\nretention = "forever"\n', "tracking.privacy.retention: bad duration"),
    # regexes and choices
    ('[tracking]\nexclude_links = ["unsub(("]\n', "tracking.exclude_links: bad regular expression"),
    (
        '[tracking]\npixel_position = "middle"\n',
        "tracking.pixel_position: 'middle' is not one of auto, top, bottom",
    ),
    # upstream url
    ('[upstream]\nurl = "lmtp://x:24"\n', "upstream.url: unknown scheme"),
    ('[upstream]\nurl = "smtp://u:hunter2@x:24"\nusername="u"\n[x]\n', "x: unknown key"),
    (
        '[upstream]\nurl = "http://u:hunter2@x"\n',
        "upstream.url: unknown scheme in 'http://u:***@x'",
    ),
    ('[upstream]\nurl = "smtp://:25"\n', "upstream.url: no host"),
    ('[upstream]\nurl = "smtp://mx.example.com:70000"\n', "upstream.url: bad port"),
    ('[upstream]\nurl = "smtps://mx.example.com:x"\n', "upstream.url: bad port"),
    (
        '[upstream]\nurl = "smtp://mx.example.com:25/path"\n',
        "upstream.url: only scheme://host:port",
    ),
    ('[upstream]\nurl = "maildir:"\n', "upstream.url: maildir: needs a path"),
    ('[upstream]\nurl = "mx.example.com"\n', "upstream.url: unknown scheme"),
    # base URLs
    (
        '[tracking]\nbase_url = "t.example.com"\n',
        "tracking.base_url: expected an absolute http(s) URL",
    ),
    (
        '[tracking]\nbase_url = "ftp://t.example.com"\n',
        "tracking.base_url: expected an absolute http(s) URL",
    ),
    (
        '[tracking]\nbase_url = "https://t.example.com/?a=1"\n',
        "tracking.base_url: URL 'https://t.example.com/?a=1' may not",
    ),
    ('[tracking]\nbase_url = "https://t.example.com:99999"\n', "tracking.base_url: bad URL"),
    (
        '[[tracking.policy]]\nmatch = "*@x.com"\nbase_url = "x.com"\n',
        "tracking.policy[1].base_url: expected an absolute",
    ),
    # policies, users, secrets
    ("[[tracking.policy]]\nopens = false\n", "tracking.policy[1]: needs exactly one of match"),
    (
        '[[tracking.policy]]\nmatch = "*@x.com"\nuser = "a"\n',
        "tracking.policy[1]: needs exactly one of match",
    ),
    ('[[tracking.policy]]\nmatch = "sales"\n', "tracking.policy[1].match: bad address pattern"),
    ('[[tracking.policy]]\nuser = ""\n', "tracking.policy[1]: needs exactly one of match"),
    ('[[smtp.users]]\npassword_hash = "h"\n', "smtp.users[1].name: required"),
    ('[[smtp.users]]\nname = "a"\n', "smtp.users[1].password_hash: required"),
    (
        '[[smtp.users]]\nname = "a"\npassword_hash = ""\n',
        "smtp.users[1].password_hash: may not be empty",
    ),
    (
        '[[smtp.users]]\nname = "a"\npassword_hash = "h"\nallowed_senders = ["a b@x"]\n',
        "smtp.users[1].allowed_senders: bad address pattern",
    ),
    (
        '[[smtp.users]]\nname = "a"\npassword_hash = "h"\n' * 2,
        "smtp.users: two users have the same name",
    ),
    ('[tracking]\nsecrets = ["new", ""]\n', "tracking.secrets: a secret may not be empty"),
    (
        '[tracking.privacy]\nlegal_basis = ["example.com"]\n',
        "tracking.privacy.legal_basis: bad address pattern",
    ),
    ('[store]\npath = ""\n', "store.path: may not be empty"),
    ('[smtp]\nhostname = "relay example"\n', "smtp.hostname: bad host name"),
    # admin token
    (
        '[admin]\nlisten = "0.0.0.0:8081"\n',
        "admin.token: required when admin.listen is not loopback",
    ),
    (
        '[admin]\nlisten = ["127.0.0.1:8081", "[::]:8081"]\n',
        "admin.token: required when admin.listen is not loopback",
    ),
    (
        '[admin]\nlisten = "admin.example.com:8081"\n',
        "admin.token: required when admin.listen is not loopback",
    ),
    # dkim and webhooks
    ('[dkim]\nselector = "s"\nprivate_key = "k.pem"\n', "dkim.domain: required"),
    ('[dkim]\ndomain = "example.com"\nprivate_key = "k.pem"\n', "dkim.selector: required"),
    ('[dkim]\ndomain = "example.com"\nselector = "s"\n', "dkim.private_key: required"),
    (
        '[dkim]\ndomain = "example.com"\nselector = "s"\nprivate_key = "missing.pem"\n',
        "dkim.private_key: cannot read missing.pem",
    ),
    ("[[webhooks]]\nsecret = 's'\n", "webhooks[1].url: required"),
    ("[[webhooks]]\nurl = 'https://h.example/x'\n", "webhooks[1].secret: required"),
    (
        "[[webhooks]]\nurl = 'h.example/x'\nsecret = 's'\n",
        "webhooks[1].url: expected an absolute http(s) URL",
    ),
    (
        "[[webhooks]]\nurl = 'https://h.example/'\nsecret = 's'\nevents = ['open', 'sent']\n",
        "webhooks[1].events: 'sent' is not one of open, click",
    ),
    (
        "[[webhooks]]\nurl = 'https://h.example/'\nsecret = 's'\nevents = []\n",
        "webhooks[1].events: needs at least one",
    ),
    # TLS files
    ('[smtp]\ntls_cert = "cert.pem"\n', "smtp.tls_key: required when smtp.tls_cert is set"),
    ('[smtp]\ntls_key = "cert.pem"\n', "smtp.tls_cert: required when smtp.tls_key is set"),
    (
        '[smtp]\ntls_cert = "nope.pem"\ntls_key = "cert.pem"\n',
        "smtp.tls_cert: cannot read nope.pem",
    ),
    ('[smtp]\ntls_cert = "cert.pem"\ntls_key = "."\n', "smtp.tls_key: cannot read ."),
    ('[upstream]\nca_file = "nope.pem"\n', "upstream.ca_file: cannot read nope.pem"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_config_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cert.pem").write_text("pem", encoding="utf-8")
    assert message in error_of(tmp_path, text)


def test_password_in_upstream_url_never_appears_in_errors(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[upstream]\nurl = "lmtp://u:hunter2@x:24"\n')
    assert "hunter2" not in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read config file"):
        load_config(tmp_path / "nope.toml")


def test_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[smtp]\nhostname = "a"\nlisten = \n')
    assert "relay.toml: not valid TOML" in message
    assert "line 3" in message


def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[smtp]\nhostname = "r\xe9lais"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml: not valid TOML"):
        load_config(path)


# --- render_config -----------------------------------------------------------------------

FULL = """
[smtp]
listen = ["0.0.0.0:587", "[::]:587"]
hostname = "relay.example.com"
allowed_networks = ["10.0.0.0/8", "2001:db8::/32"]
max_recipients = 50
max_queued_copies = 2000
pass_through_tracking_headers = true
[[smtp.users]]
name = "alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
allowed_senders = ["alice@example.com", "*@sales.example.com"]
[[smtp.users]]
name = "bob \\"the\\" builder\\u0007"
password_hash = "h"
[upstream]
url = "smtps://relay:pa55@mx.example.com:465"
password = "upstream-secret"
retry_schedule = ["500ms", "1.5s", "90s", "2h"]
max_queue_age = "5d"
timeout = "30s"
[tracking]
base_url = "https://t.example.com"
secrets = ["new-key", "old-key"]
pixel_position = "top"
bot_click_window = "0"
exclude_links = ["unsubscribe", "\\\\.pdf$", "ü"]
ignore_networks = ["203.0.113.0/24"]
scanner_networks = ["198.51.100.0/24", "2001:db8::/32"]
classify = false
[[tracking.policy]]
match = "*@sales.example.com"
clicks = false
log_copy = true
base_url = "https://links.sales.example.com"
[[tracking.policy]]
user = "alice"
opens = false
[tracking.privacy]
enabled = true
legal_basis = ["*@customer.example"]
retention = "365d"
[admin]
listen = "0.0.0.0:8081"
token = "admin-token"
[dkim]
domain = "example.com"
selector = "relay"
private_key = "dkim.pem"
headers = ["from", "subject"]
[[webhooks]]
url = "https://crm.example.com/hooks?x=1"
secret = "hook-secret"
events = ["open", "reply"]
"""
SECRETS = ("hunter", "pa55", "upstream-secret", "new-key", "old-key", "admin-token", "hook-secret")


@pytest.fixture
def full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dkim.pem").write_text("key", encoding="utf-8")
    return load_text(tmp_path, FULL)


def test_render_round_trips_without_redaction(tmp_path: Path, full_config: Config) -> None:
    again = load_text(tmp_path, render_config(full_config, redact=False))
    assert again == full_config
    assert again.upstream.retry_schedule == (0.5, 1.5, 90, 7200)


@pytest.mark.parametrize("config", [Config(), load_config(EXAMPLE)])
def test_render_round_trips_defaults(tmp_path: Path, config: Config) -> None:
    assert without_source(load_text(tmp_path, render_config(config))) == without_source(config)


def test_render_redacts_secrets_and_still_loads(tmp_path: Path, full_config: Config) -> None:
    text = render_config(full_config)
    for secret in (*SECRETS, "aGFzaA"):
        assert secret not in text
    again = load_text(tmp_path, text)
    assert again.admin.token == "<redacted>"
    assert again.tracking.secrets == ("<redacted>", "<redacted>")
    assert again.smtp.users[0].password_hash == "<redacted>"
    assert again.upstream.password == "<redacted>"
    assert again.upstream.url == "smtps://relay:<redacted>@mx.example.com:465"
    assert again.webhooks[0].secret == "<redacted>"
    assert again.smtp.users[0].allowed_senders == full_config.smtp.users[0].allowed_senders
    assert again.tracking.policy == full_config.tracking.policy


def test_render_leaves_empty_secrets_empty() -> None:
    text = render_config(Config())
    assert 'token = ""' in text
    assert "secrets = []" in text
    assert "<redacted>" not in text


def test_render_writes_durations_with_units(full_config: Config) -> None:
    text = render_config(full_config)
    assert 'retry_schedule = ["0.5s", "1.5s", "90s", "2h"]' in text
    assert 'max_queue_age = "5d"' in text
    assert 'bot_click_window = "0"' in text
    assert 'retention = "365d"' in text


# --- properties --------------------------------------------------------------------------


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_duration_format_parses_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


UNICODE = st.characters(exclude_categories=["Cs"])  # TOML files are UTF-8: no lone surrogates
TOML_TEXT = st.text(UNICODE, min_size=1).filter(str.strip)


@given(path=TOML_TEXT, username=st.text(UNICODE))
def test_render_quotes_any_string(path: str, username: str) -> None:
    config = Config(store=StoreConfig(path=path), upstream=UpstreamConfig(username=username))
    parsed = tomllib.loads(render_config(config, redact=False))
    assert parsed["store"]["path"] == path
    assert parsed["upstream"]["username"] == username


def test_unknown_key_without_a_close_one_suggests_nothing(tmp_path: Path) -> None:
    assert error_of(tmp_path, "colour = 1\n").endswith("colour: unknown key")


@pytest.mark.parametrize("value", ["0", "257", "true", '"2"'])
def test_a_worker_count_outside_1_to_256_is_refused_by_name(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"upstream\.delivery_workers"):
        load_text(tmp_path, f"[upstream]\ndelivery_workers = {value}\n")


def test_delivery_workers_default_to_one_and_take_a_count(tmp_path: Path) -> None:
    assert load_text(tmp_path, "").upstream.delivery_workers == 1
    assert load_text(tmp_path, "[upstream]\ndelivery_workers = 8\n").upstream.delivery_workers == 8


def test_a_postgresql_url_wins_over_the_path_and_its_password_never_shows(
    tmp_path: Path,
) -> None:
    from relay.core.store import open_store
    from relay.core.store.postgres import PostgresStore
    from relay.core.store.sqlite import SQLiteStore

    url = "postgresql://relay:hunter2@db.example.com:5433/relay"
    config = load_text(tmp_path, f'[store]\npath = "x.db"\nurl = "{url}"\n')
    assert (config.store.url, config.store.path) == (url, "x.db")
    store = open_store(config.store)
    assert isinstance(store, PostgresStore) and "hunter2" not in repr(store)
    text = render_config(config)
    assert "hunter2" not in text
    assert 'url = "postgresql://relay:<redacted>@db.example.com:5433/relay"' in text
    assert isinstance(open_store(StoreConfig()), SQLiteStore)


@pytest.mark.parametrize(
    "url", ["mysql://u:hunter2@db/relay", "sqlite:///relay.db", "postgresql://u:hunter2@db:99999/r"]
)
def test_a_store_url_of_another_kind_is_refused_by_name(tmp_path: Path, url: str) -> None:
    message = error_of(tmp_path, f'[store]\nurl = "{url}"\n')
    assert message.startswith("store.url: ") and "hunter2" not in message


def test_messages_name_the_store_without_a_password() -> None:
    from relay.core.store import store_location

    assert store_location(StoreConfig(path="x.db")) == ("store.path", "x.db")
    url = "postgresql://relay:hunter2@db.example.com/relay"
    assert store_location(StoreConfig(url=url)) == (
        "store.url",
        "postgresql://relay:***@db.example.com/relay",
    )


def test_a_lease_time_below_three_seconds_is_refused(tmp_path: Path) -> None:
    assert load_text(tmp_path, "").upstream.lease_time == 60.0
    assert load_text(tmp_path, '[upstream]\nlease_time = "5s"\n').upstream.lease_time == 5.0
    with pytest.raises(ConfigError, match=r"upstream\.lease_time.*at least 3s"):
        load_text(tmp_path, '[upstream]\nlease_time = "1s"\n')
