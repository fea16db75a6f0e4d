"""End to end: the demo project (demo/), set up with its management commands in a database
of its own, served by a real ``runserver`` and driven over HTTP with one Host per tenant."""

from __future__ import annotations

import html
import http.client
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import environ
import psycopg
import pytest
from psycopg import sql

from tests.pgserver import free_port
from tests.services import stop

DEMO = Path(__file__).resolve().parent.parent / "demo"
TENANTS = {
    "alpha": {"plan": "pro", "colour": "#2b6cb0"},
    "beta": {"plan": "free", "colour": "#2f855a"},
    "gamma": {"plan": "enterprise", "colour": "#9b2c2c"},
}
SEEDED = 5
NOTE_RE = re.compile(r'<article class="note" id="note-(\d+)">\s*<h2>(.*?)</h2>', re.S)
ATTACHMENT_RE = re.compile(
    r'<article class="note" id="note-(\d+)">.*?class="attachment" href="(.*?)"', re.S
)
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _connect(config: dict[str, Any]) -> psycopg.Connection[Any]:
    """Connect to the maintenance database of DATABASE_URL's server, else to its own one."""
    params = {
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        **config.get("OPTIONS", {}),
    }
    try:
        return psycopg.connect(dbname="postgres", autocommit=True, **params)
    except psycopg.OperationalError:
        return psycopg.connect(dbname=config["NAME"], autocommit=True, **params)


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=DEMO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} exited {result.returncode}:\n{output}"
    )
    return output


@pytest.fixture(scope="module")
def media_root() -> Iterator[str]:
    """The demo's MEDIA_ROOT: a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="schemata-demo-media.") as path:
        yield path


@pytest.fixture(scope="module")
def demo_env(media_root: str) -> Iterator[dict[str, str]]:
    """The environment of a demo set up as demo/run does it, in a throwaway database."""
    url = os.environ["DATABASE_URL"]
    name = f"schemata_demo_e2e_{os.getpid()}"
    parts = urllib.parse.urlsplit(url)
    demo_url = urllib.parse.urlunsplit(
        parts._replace(path=f"{parts.path.rsplit('/', 1)[0]}/{name}")
    )
    assert environ.Env.db_url_config(demo_url)["NAME"] == name
    env = {
        **os.environ,
        "DATABASE_URL": demo_url,
        "DJANGO_SETTINGS_MODULE": "demo_site.settings",
        "MEDIA_ROOT": media_root,
        # manage.py's directory holds the demo's apps (PYTHONSAFEPATH keeps it off sys.path).
        "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(DEMO)]),
    }

    with _connect(environ.Env.db_url_config(url)) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        out = manage(env, "manage_schemata")
        assert out.splitlines() == [
            "alpha: created",
            "beta: created",
            "gamma: created",
            "template: created",
        ]
        manage(env, "migrate", "--noinput")
        out = manage(env, "migrate_schemata", "--parallel", "2", "--noinput")
        assert "Summary: 4 applied." in out
        out = manage(env, "seed_demo")
        for tenant in TENANTS:
            assert f"[{tenant}] seeded {SEEDED} notes" in out
        assert out.count("created the shared announcement") == 1, out
        assert "[template] the template of new tenants, left empty" in out
        # Seeding again leaves every schema alone.
        out = manage(env, "each_schema", "seed_demo")
        assert out.count("has notes already, not seeded") == 3, out
        yield env
    finally:
        with _connect(environ.Env.db_url_config(url)) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": "alpha.localhost"})
        conn.getresponse().read()
    except OSError:
        return False
    finally:
        conn.close()
    return True


@pytest.fixture(scope="module")
def port(demo_env: dict[str, str]) -> Iterator[int]:
    """The port of the demo's runserver, started for real and stopped afterwards."""
    with tempfile.TemporaryFile() as log:
        process: subprocess.Popen[bytes] | None = None
        try:
            for _ in range(5):  # another process may take the port first
                port = free_port()
                process = subprocess.Popen(
                    [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                    cwd=DEMO,
                    env=demo_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                deadline = time.monotonic() + 30
                while process.poll() is None and time.monotonic() < deadline:
                    if _answers(port):
                        break
                    time.sleep(0.2)
                if process.poll() is None:
                    break
            assert process is not None
            if process.poll() is not None or not _answers(port):
                log.seek(0)
                pytest.fail(f"runserver did not start within 30 s:\n{log.read().decode()}")
            yield port
        finally:
            if process is not None:
                stop(process)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def notes(self) -> dict[str, int]:
        """Title -> primary key of every note on the board."""
        return {html.unescape(title): int(pk) for pk, title in NOTE_RE.findall(self.text)}

    def attachments(self) -> dict[int, str]:
        """Primary key -> attachment URL of every note on the board that has one."""
        return {int(pk): html.unescape(url) for pk, url in ATTACHMENT_RE.findall(self.text)}

    def csrf_token(self) -> str:
        match = CSRF_RE.search(self.text)
        assert match, "no CSRF token in the page"
        return match.group(1)


@dataclass
class Client:
    """An HTTP client for one Host, that keeps the cookies it is given."""

    port: int
    host: str
    cookies: dict[str, str] = field(default_factory=dict)

    def get(self, path: str = "/") -> Response:
        return self.request("GET", path)

    def post(
        self, path: str, form: dict[str, str], files: dict[str, tuple[str, bytes]] | None = None
    ) -> Response:
        return self.request("POST", path, form, files)

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes]] | None = None,
    ) -> Response:
        headers = {"Host": self.host}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{key}={value}" for key, value in self.cookies.items())
        body = None
        if files is not None:
            body, headers["Content-Type"] = _multipart(form or {}, files)
        elif form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            content = response.read()
        finally:
            conn.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            for key, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0":
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = morsel.value
        return Response(response.status, response.headers, content)


def _multipart(form: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type, as a browser sends a form with files."""
    boundary = f"demo-boundary-{random.randrange(10**12)}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in form.items()
    ]
    for key, (filename, data) in files.items():
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{key}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_each_tenant_sees_its_own_notes_and_settings(port: int) -> None:
    for tenant, config in TENANTS.items():
        response = Client(port, f"{tenant}.localhost").get()
        assert response.status == 200, response.text
        label = tenant.capitalize()
        assert set(response.notes()) == {f"{label} note {n}" for n in range(1, SEEDED + 1)}
        assert f'<dd id="schema">{tenant}</dd>' in response.text
        assert f"<dt>plan</dt><dd>{config['plan']}</dd>" in response.text
        assert f'class="banner" style="background: {config["colour"]}"' in response.text
        # The shared app's row, in public, read through each tenant's connection.
        assert "(shared, in public): Welcome to the django-schemata demo." in response.text


def test_a_note_lives_in_its_tenant_only(port: int) -> None:
    alpha, beta, gamma = (Client(port, f"{name}.localhost") for name in TENANTS)
    title = f"Launch plan {random.randrange(10**6)}"

    form = {"title": title, "body": "Ship it & see.", "tags": "launch, Q3"}
    created = alpha.post("/", {**form, "csrfmiddlewaretoken": alpha.get().csrf_token()})
    assert created.status == 302, created.text
    pk = alpha.get().notes()[title]
    assert created.headers["Location"] == f"/#note-{pk}"
    page = alpha.get().text
    assert "Ship it &amp; see." in page
    assert '<span class="tag">launch</span><span class="tag">q3</span>' in page
    for other in (beta, gamma):
        assert title not in other.get().text

    # Primary keys are per schema: beta has no note with alpha's new key, and cannot delete it.
    refused = beta.post(f"/notes/{pk}/delete/", {"csrfmiddlewaretoken": beta.get().csrf_token()})
    assert refused.status == 404
    assert title in alpha.get().notes()

    deleted = alpha.post(f"/notes/{pk}/delete/", {"csrfmiddlewaretoken": alpha.get().csrf_token()})
    assert deleted.status == 302, deleted.text
    assert title not in alpha.get().notes()
    assert len(alpha.get().notes()) == SEEDED


def test_writes_need_post_and_a_csrf_token(port: int) -> None:
    alpha = Client(port, "alpha.localhost")
    pk = next(iter(alpha.get().notes().values()))
    assert alpha.get(f"/notes/{pk}/delete/").status == 405
    assert alpha.post(f"/notes/{pk}/delete/", {}).status == 403
    assert alpha.post("/", {"title": "no token"}).status == 403
    assert len(alpha.get().notes()) == SEEDED


def test_unknown_hosts(port: int) -> None:
    # Allowed by ALLOWED_HOSTS (".localhost") but named by no domain: 404.
    assert Client(port, "nope.localhost").get().status == 404
    # Not allowed at all: Django's 400, before any schema is looked up.
    assert Client(port, "evil.example").get().status == 400


def test_a_login_on_alpha_is_not_a_login_on_beta(port: int) -> None:
    alpha = Client(port, "alpha.localhost")
    login = {"username": "admin", "password": "admin", "next": "/admin/"}
    token = alpha.get("/admin/login/").csrf_token()
    response = alpha.post("/admin/login/", {**login, "csrfmiddlewaretoken": token})
    assert response.status == 302, response.text
    assert response.headers["Location"] == "/admin/"
    index = alpha.get("/admin/")
    assert index.status == 200
    assert "schema alpha" in index.text
    assert '<span id="user">signed in as admin</span>' in alpha.get().text

    # The same session cookie means nothing to beta: its sessions live in its own schema.
    beta = Client(port, "beta.localhost", cookies=dict(alpha.cookies))
    response = beta.get("/admin/")
    assert response.status == 302
    assert response.headers["Location"].startswith("/admin/login/")
    assert "signed in" not in beta.get().text


def _attach(client: Client, data: bytes) -> tuple[int, str]:
    """Add a note with an attachment on ``client``'s tenant; return its key and file's URL."""
    title = f"Attached {random.randrange(10**6)}"
    form = {
        "title": title,
        "body": "",
        "tags": "",
        "csrfmiddlewaretoken": client.get().csrf_token(),
    }
    created = client.post("/", form, files={"attachment": ("plan.txt", data)})
    assert created.status == 302, created.text
    page = client.get()
    pk = page.notes()[title]
    return pk, page.attachments()[pk]


def _delete(client: Client, pk: int) -> None:
    deleted = client.post(
        f"/notes/{pk}/delete/", {"csrfmiddlewaretoken": client.get().csrf_token()}
    )
    assert deleted.status == 302, deleted.text


def test_an_attachment_is_served_on_its_tenants_host_only(port: int) -> None:
    alpha, beta = Client(port, "alpha.localhost"), Client(port, "beta.localhost")
    data = b"alpha's plan \x00\xff"
    pk, url = _attach(alpha, data)

    served = alpha.get(url)
    elsewhere = beta.get(url)
    _delete(alpha, pk)

    assert url == "/media/attachments/plan.txt"
    assert (served.status, served.body) == (200, data)
    assert elsewhere.status == 404


def test_deleting_a_note_deletes_its_attachment(port: int) -> None:
    alpha = Client(port, "alpha.localhost")
    pk, url = _attach(alpha, b"soon gone")

    _delete(alpha, pk)

    assert alpha.get(url).status == 404


def test_the_sign_up_page_lists_the_tenants(port: int) -> None:
    page = Client(port, "localhost").get()

    assert page.status == 200
    for tenant in TENANTS:
        assert f'<a href="//{tenant}.localhost:{port}/">{tenant}.localhost</a>' in page.text
    assert "template.localhost" not in page.text


def test_signing_up_serves_a_new_tenant_at_once(port: int) -> None:
    signup = Client(port, "localhost")
    name = f"acme{random.randrange(10**6)}"

    created = signup.post("/", {"name": name, "csrfmiddlewaretoken": signup.get().csrf_token()})
    location = urllib.parse.urlsplit(created.headers["Location"])
    board = Client(port, location.netloc.split(":")[0]).get(f"/?{location.query}")

    assert created.status == 302, created.text
    assert (location.netloc, location.path) == (f"{name}.localhost:{port}", "/")
    assert board.status == 200, board.text
    assert f'<dd id="schema">{name}</dd>' in board.text
    assert re.search(
        rf"Your tenant is ready: schema {name} was cloned from the template in \d+ ms", board.text
    )
    assert board.notes() == {}
    assert f">{name}.localhost</a>" in signup.get().text
    assert f">{name}.localhost</a>" in Client(port, "alpha.localhost").get().text


def test_signing_up_refuses_a_taken_name(port: int) -> None:
    signup = Client(port, "localhost")

    refused = signup.post("/", {"name": "alpha", "csrfmiddlewaretoken": signup.get().csrf_token()})

    assert refused.status == 400
    assert "SCHEMATA_DOMAINS already has the schema" in html.unescape(refused.text)


def test_run_starts_postgresql_of_its_own_and_stops_it_on_sigterm() -> None:
    data = Path(tempfile.mkdtemp(prefix="schemata-demo-run.", dir="/tmp"))
    data.chmod(0o755)  # as root the server runs as nobody, who must reach its directory
    port = free_port()
    # As a user runs it: no DATABASE_URL, and nothing of this suite's imports.
    unset = {"DATABASE_URL", "PYTHONPATH", "PYTHONSAFEPATH", "DJANGO_SETTINGS_MODULE"}
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env.update(PORT=str(port), DEMO_PGDATA=str(data / "pgdata"))
    try:
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(
                [str(DEMO / "run")], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                deadline = time.monotonic() + 300
                while process.poll() is None and not _answers(port):
                    assert time.monotonic() < deadline, "the demo did not start in 300 s"
                    time.sleep(0.5)
                served = Client(port, "beta.localhost").get()
                process.send_signal(signal.SIGTERM)
                process.wait(60)
            finally:
                stop(process)
            log.seek(0)
            output = log.read().decode()

        assert served.status == 200, output
        assert '<dd id="schema">beta</dd>' in served.text
        assert process.returncode == 128 + signal.SIGTERM, output
        assert f"pgserver: creating a database cluster in {data / 'pgdata'}" in output
        assert output.rstrip().endswith("pgserver: stopped PostgreSQL")
        assert (data / "pgdata" / "PG_VERSION").exists()  # kept for the next run
        assert not (data / "pgdata" / "postmaster.pid").exists()
    finally:
        shutil.rmtree(data, ignore_errors=True)
