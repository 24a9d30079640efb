"""One settings object (issue 13): every CLOUDFILM_* variable is read once, by
`Settings.load`, checked there, and documented in the README's "Settings" table.

The cluster part: two `cloudfilm serve` processes given the same CLOUDFILM_SECRET_KEY and
the same database agree on every key-derived value (a film's link and its slip code), so
either node opens what the other issued; a node with another key does not.
"""

from __future__ import annotations

import ast
import base64
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import cloudfilm
from cloudfilm.config import (
    HttpSettings,
    NotifySettings,
    OidcSettings,
    SettingError,
    Settings,
    SmtpSettings,
    SyslogTarget,
)
from conftest import ROOT, Server, database_url_for
from test_films import path_of, type_code
from test_people import HOSPITAL_A, make_account, store_study, unique

PACKAGE = Path(cloudfilm.__file__).parent
NAME = re.compile(r"\bCLOUDFILM_[A-Z0-9_]+")


def readme_settings() -> list[str]:
    """The variables of the README's "Settings" table, in order (first column)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `CLOUDFILM_")]
    return [re.match(r"\| `(CLOUDFILM_[A-Z0-9_]+)`", row).group(1) for row in rows]  # type: ignore[union-attr]


def source_files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "static" not in p.parts]


class RecordingEnv(dict[str, str]):
    """An environment that notes every variable asked for."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        super().__init__(values or {})
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def load(tmp_path: Path, **values: str) -> Settings:
    return Settings.load(tmp_path, environ=values)


# -- the README documents exactly what is read ----------------------------------------------


def test_the_readme_table_lists_each_variable_once() -> None:
    names = readme_settings()
    assert len(names) >= 30 and len(names) == len(set(names))


def test_every_variable_named_in_the_code_is_in_the_readme_table() -> None:
    documented = set(readme_settings())
    named = {m for p in source_files() for m in NAME.findall(p.read_text())}
    families = {n for n in named if n.endswith("_")}  # "CLOUDFILM_SMTP_*" in prose
    assert sorted(named - families - documented) == []
    assert [f for f in families if not any(d.startswith(f) for d in documented)] == []


def test_settings_load_reads_exactly_the_documented_variables(tmp_path: Path) -> None:
    env = RecordingEnv()
    Settings.load(environ=env)
    assert sorted(env.asked) == sorted(readme_settings())


def _os_environment(node: ast.AST) -> bool:
    """``os.environ`` or ``os.getenv``."""
    return isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
        isinstance(node.value, ast.Name) and node.value.id == "os"


def _aws_read(node: ast.Call) -> bool:
    """``os.environ.get("AWS_…")`` / ``os.getenv("AWS_…")``: boto3's own variables."""
    func = node.func
    reads = _os_environment(func) or (isinstance(func, ast.Attribute) and func.attr == "get"
                                      and _os_environment(func.value))
    first = node.args[0] if node.args else None
    return reads and isinstance(first, ast.Constant) and str(first.value).startswith("AWS_")


def test_no_module_but_config_reads_the_environment() -> None:
    """os.environ / os.getenv anywhere else would be a second, unchecked way in (the
    standard AWS_* variables of boto3 aside)."""
    readers = []
    for path in source_files():
        if path == PACKAGE / "config.py":
            continue
        tree = ast.parse(path.read_text())
        aws = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call) and _aws_read(n)]
        allowed = {id(f) for f in aws} | {id(getattr(f, "value", None)) for f in aws}
        for node in ast.walk(tree):
            if _os_environment(node) and id(node) not in allowed:
                readers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")  # type: ignore[attr-defined]
            if isinstance(node, ast.ImportFrom) and node.module == "os" and \
                    {a.name for a in node.names} & {"environ", "getenv"}:
                readers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert readers == []


# -- values -----------------------------------------------------------------------------------


def test_unset_means_the_documented_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings == Settings(data_dir=tmp_path.resolve(),
                                database_url=f"sqlite:///{tmp_path.resolve() / 'index.sqlite3'}",
                                blob_url=f"file://{tmp_path.resolve()}")
    assert (settings.http, settings.notify) == (HttpSettings(15, 60, 30), NotifySettings(30, 3600, 14, 30))
    assert (settings.dimse.allow, settings.dimse.max_per_address) == ("loopback", 10)
    assert (settings.remote_timeout, settings.stable_age) == (10, 60)
    assert [settings.secret_key, settings.smtp, settings.oidc, settings.syslog] == [None] * 4


def test_arguments_win_over_the_environment(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "arg", "postgresql://db.example/cf", environ={
        "CLOUDFILM_DATA": str(tmp_path / "env"), "CLOUDFILM_DATABASE_URL": "sqlite:///x.db"})
    assert settings.data_dir == (tmp_path / "arg").resolve()
    assert settings.database_url == "postgresql://db.example/cf"


def test_each_value_is_read_into_its_typed_field(tmp_path: Path) -> None:
    settings = load(
        tmp_path, CLOUDFILM_OVERWRITE="Yes", CLOUDFILM_PUBLIC_URL="https://films.example.org",
        CLOUDFILM_BLOB_URL="s3://films/prefix?endpoint_url=http://127.0.0.1:9000",
        CLOUDFILM_QUEUE_URL="amqp://guest@127.0.0.1//", CLOUDFILM_HTTP_KEEPALIVE="2.5",
        CLOUDFILM_DIMSE_ALLOW=" KNOWN ", CLOUDFILM_DIMSE_MAX_PER_ADDRESS="3",
        CLOUDFILM_REMOTE_TIMEOUT="0.5", CLOUDFILM_STABLE_AGE="1", CLOUDFILM_IMPORT_MAX_FILES="20",
        CLOUDFILM_NOTIFY_INTERVAL="0.2", CLOUDFILM_FOLLOWUP_DAYS="3650",
        CLOUDFILM_SMTP_HOST="mail.example.org", CLOUDFILM_SMTP_PORT="587",
        CLOUDFILM_SMTP_STARTTLS="on", CLOUDFILM_SMTP_USER="films", CLOUDFILM_SMTP_PASSWORD=" pw ",
        CLOUDFILM_OIDC_ISSUER="https://idp.example.org/realms/h/", CLOUDFILM_OIDC_CLIENT_ID="cf",
        CLOUDFILM_OIDC_CLIENT_SECRET="s3cret", CLOUDFILM_SYSLOG="tcp://logs.example.org:6514",
        CLOUDFILM_TRUSTED_PROXIES=" 10.0.0.5, 10.0.1.0/24,fd00::/64 ")
    assert settings.overwrite and settings.public_url == "https://films.example.org"
    assert settings.blob_url.startswith("s3://films/") and settings.queue_url.startswith("amqp://")
    assert settings.http.keepalive == 2.5 and settings.dimse.allow == "known"
    assert (settings.dimse.max_per_address, settings.remote_timeout, settings.stable_age) == (3, 0.5, 1)
    assert settings.imports.max_files == 20 and settings.imports.max_member_bytes == 4 << 30
    assert (settings.notify.interval, settings.notify.followup_days) == (0.2, 3650)
    assert settings.smtp == SmtpSettings("mail.example.org", 587, "cloudfilm@localhost", True,
                                         "films", " pw ")
    assert settings.oidc == OidcSettings("https://idp.example.org/realms/h", "cf", "s3cret")
    assert settings.oidc.metadata_url.endswith("/realms/h/.well-known/openid-configuration")
    assert settings.syslog == SyslogTarget("tcp", "logs.example.org", 6514)
    assert settings.trusted_proxies == ("10.0.0.5", "10.0.1.0/24", "fd00::/64")


@pytest.mark.parametrize(("variable", "value", "reason"), [
    ("CLOUDFILM_OVERWRITE", "sometimes", "use true or false"),
    ("CLOUDFILM_SMTP_STARTTLS", "2", "use true or false"),
    ("CLOUDFILM_OIDC_LINK_BY_USERNAME", "y", "use true or false"),
    ("CLOUDFILM_HTTP_HEADER_TIMEOUT", "0.5", "use a number of at least 1"),
    ("CLOUDFILM_HTTP_BODY_TIMEOUT", "nan", "use a number of at least 1"),
    ("CLOUDFILM_HTTP_KEEPALIVE", "inf", "use a number of at least 1"),
    ("CLOUDFILM_REMOTE_TIMEOUT", "-1", "use a number of at least 0.1"),
    ("CLOUDFILM_NOTIFY_INTERVAL", "0", "use a number of at least 0.1"),
    ("CLOUDFILM_REMINDER_INTERVAL", "hourly", "use a number of at least 0.1"),
    ("CLOUDFILM_REMINDER_DAYS", "1.5", "use a whole number of at least 1"),
    ("CLOUDFILM_FOLLOWUP_DAYS", "0", "use a whole number of at least 1"),
    ("CLOUDFILM_STABLE_AGE", "60s", "use a whole number of at least 1"),
    ("CLOUDFILM_DIMSE_MAX_PER_ADDRESS", "-2", "use a whole number of at least 1"),
    ("CLOUDFILM_IMPORT_MAX_MEMBER_BYTES", "4G", "use a whole number of at least 1"),
    ("CLOUDFILM_IMPORT_MAX_TOTAL_BYTES", "0", "use a whole number of at least 1"),
    ("CLOUDFILM_IMPORT_MAX_FILES", "1e5", "use a whole number of at least 1"),
    ("CLOUDFILM_SMTP_PORT", "0", "use a whole number from 1 to 65535"),
    ("CLOUDFILM_DIMSE_ALLOW", "all", "use loopback, known or any"),
    ("CLOUDFILM_PUBLIC_URL", "ftp://films.example.org", "use an http:// or https:// URL with a host"),
    ("CLOUDFILM_OIDC_ISSUER", "idp.example.org", "use an http:// or https:// URL with a host"),
    ("CLOUDFILM_BLOB_URL", "/srv/blobs", "use file:///path or s3://bucket/prefix[?endpoint_url=…]"),
    ("CLOUDFILM_BLOB_URL", "s3:///no-bucket", "use file:///path or s3://bucket/prefix[?endpoint_url=…]"),
    ("CLOUDFILM_SYSLOG", "udp://collector", "use udp://host:port or tcp://host:port"),
    ("CLOUDFILM_SYSLOG", "tcp://collector:port", "use udp://host:port or tcp://host:port"),
    ("CLOUDFILM_TRUSTED_PROXIES", "balancer.local", "use IP addresses or networks separated by "
     "commas, e.g. 127.0.0.1,10.0.0.0/24"),
    ("CLOUDFILM_TRUSTED_PROXIES", ",,", "use IP addresses or networks separated by commas, "
     "e.g. 127.0.0.1,10.0.0.0/24"),
])
def test_a_bad_value_is_an_error_naming_the_variable_and_what_it_takes(
        tmp_path: Path, variable: str, value: str, reason: str) -> None:
    with pytest.raises(SettingError) as caught:
        load(tmp_path, **{variable: value})
    assert str(caught.value) == f"{variable}={value!r}: {reason}"


@pytest.mark.parametrize(("variable", "value"), [
    ("CLOUDFILM_DATABASE_URL", "mysql://db/cf"),
    ("CLOUDFILM_QUEUE_URL", "rabbitmq-host:5672"),
])
def test_a_bad_url_names_its_variable_without_echoing_credentials(
        tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(SettingError) as caught:
        load(tmp_path, **{variable: value})
    assert str(caught.value).startswith(f"{variable}: use ") and value not in str(caught.value)


def test_half_an_oidc_configuration_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SettingError) as caught:
        load(tmp_path, CLOUDFILM_OIDC_ISSUER="https://idp.example.org",
             CLOUDFILM_OIDC_CLIENT_SECRET="s3cret")
    assert str(caught.value).startswith("CLOUDFILM_OIDC_CLIENT_ID is not set")
    assert load(tmp_path, CLOUDFILM_OIDC_LINK_BY_USERNAME="true").oidc is None


def test_smtp_settings_wait_for_a_host_but_are_still_checked(tmp_path: Path) -> None:
    assert load(tmp_path, CLOUDFILM_SMTP_PORT="587").smtp is None
    with pytest.raises(SettingError):
        load(tmp_path, CLOUDFILM_SMTP_PORT="smtp")


# -- CLOUDFILM_SECRET_KEY: the key itself -----------------------------------------------------

KEY = bytes(range(32))


@pytest.mark.parametrize("written", [
    KEY.hex(), KEY.hex().upper(), f"  {KEY.hex()}\n", base64.b64encode(KEY).decode(),
    base64.urlsafe_b64encode(KEY).decode().rstrip("="), (KEY + KEY).hex(),
])
def test_the_secret_key_is_the_decoded_value(tmp_path: Path, written: str) -> None:
    key = load(tmp_path, CLOUDFILM_SECRET_KEY=written).secret_key
    assert key is not None and key[:32] == KEY and len(key) in (32, 64)


@pytest.mark.parametrize("written", [
    KEY[:31].hex(), base64.b64encode(KEY[:31]).decode(), "a passphrase of many words here",
    "/etc/cloudfilm/server.key", KEY.hex()[:-1],
])
def test_a_secret_key_under_32_bytes_or_not_hex_or_base64_is_refused_unechoed(
        tmp_path: Path, written: str) -> None:
    with pytest.raises(SettingError) as caught:
        load(tmp_path, CLOUDFILM_SECRET_KEY=written)
    assert str(caught.value).startswith("CLOUDFILM_SECRET_KEY: use a key of at least 32 bytes")
    assert written not in str(caught.value)


def test_the_secret_key_is_never_in_the_settings_repr(tmp_path: Path) -> None:
    settings = load(tmp_path, CLOUDFILM_SECRET_KEY=KEY.hex(), CLOUDFILM_SMTP_HOST="mail",
                    CLOUDFILM_SMTP_PASSWORD="pw-123", CLOUDFILM_OIDC_ISSUER="https://idp",
                    CLOUDFILM_OIDC_CLIENT_ID="cf", CLOUDFILM_OIDC_CLIENT_SECRET="oidc-456")
    shown = repr(settings)
    assert KEY.hex() not in shown and repr(KEY) not in shown
    assert "pw-123" not in shown and "oidc-456" not in shown


# -- two nodes, one key -----------------------------------------------------------------------


@pytest.fixture
def cluster(database_kind: str, tmp_path: Path) -> Iterator[tuple[Server, Server, Server]]:
    """Two nodes with one CLOUDFILM_SECRET_KEY and a third with another, on one database."""
    shared = tmp_path / "shared"
    shared.mkdir()
    url, schema = database_url_for(database_kind, shared)
    key = secrets.token_hex(32)
    nodes = [Server(tmp_path / name, url, extra_env={"CLOUDFILM_SECRET_KEY": k})
             for name, k in (("node1", key), ("node2", base64.b64encode(bytes.fromhex(key)).decode()),
                             ("stranger", secrets.token_hex(32)))]
    try:
        for node in nodes:
            node.start()
        yield nodes[0], nodes[1], nodes[2]
    finally:
        for node in nodes:
            node.stop()
        if schema:
            schema.drop()


def test_nodes_with_the_same_secret_key_open_each_others_films(
        cluster: tuple[Server, Server, Server]) -> None:
    """The key is the value given (here once as hex, once as base64): no key file is made,
    and a film issued on node 1 is listed with the same link and code on node 2, whose
    slip code leads to that link, which opens there. A node with another key derives
    another link from the same grant, which opens nowhere."""
    node1, node2, stranger = cluster
    desk = make_account(node1, "operator")
    study = store_study(node1, desk, HOSPITAL_A, unique("K"))
    issued = desk.http.post("/api/films", json={"study_uid": study})
    assert issued.status_code == 201, issued.text
    film = issued.json()
    for node in (node1, node2):
        assert not (node.data_dir / "server.key").exists()
    listed = {}
    for node in cluster:
        with node.http() as operator:
            listed[node.port] = operator.get("/api/films", params={"study_uid": study}).json()
    assert path_of(listed[node2.port][0]["url"]) == path_of(film["url"])
    assert listed[node2.port][0]["code"] == film["code"]
    assert path_of(listed[stranger.port][0]["url"]) != path_of(film["url"])

    with httpx.Client(base_url=node2.url, timeout=60) as phone:
        typed = type_code(phone, str(film["code"]))
        assert typed.status_code == 303 and typed.headers["location"] == path_of(film["url"])
        opened = phone.get(typed.headers["location"], follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/shared"
        assert study in phone.get("/shared").text
    with httpx.Client(base_url=stranger.url, timeout=60) as phone:
        typed = type_code(phone, str(film["code"]))
        assert typed.status_code == 303 and typed.headers["location"] != path_of(film["url"])
        assert phone.get(typed.headers["location"], follow_redirects=False).status_code == 404
    desk.http.close()
