"""The authenticating reverse proxies of deploy/nginx/ in front of the loopback-only Dagster webserver.

Read with a small nginx config parser: every server that proxies to the webserver (127.0.0.1:3000) serves TLS
only, and every location that reaches it requires a login (basic auth set at server level, or oauth2-proxy's
auth_request), with the websocket upgrade the UI's GraphQL subscriptions need. Where nginx is installed, each
file is also checked by `nginx -t` itself, in a throwaway main configuration with a self-signed certificate.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "deploy" / "nginx").glob("*.conf"))
WEBSERVER = "http://127.0.0.1:3000"


@dataclass
class Block:
    name: str
    args: list[str]
    directives: list[tuple[str, list[str]]] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)

    def values(self, name: str) -> list[list[str]]:
        return [args for directive, args in self.directives if directive == name]


TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[{};]|[^\s{};"\']+')


def parse(text: str) -> Block:
    """nginx's configuration syntax: directives end with `;`, blocks are `name args { ... }`, `#` comments."""
    text = re.sub(r"(?m)(^|\s)#.*$", r"\1", text)
    root = Block("main", [])
    stack, words = [root], []
    for token in TOKEN.findall(text):
        if token == "{":
            block = Block(words[0], words[1:])
            stack[-1].children.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        elif token == ";":
            stack[-1].directives.append((words[0], words[1:]))
            words = []
        else:
            words.append(token.strip("\"'"))
    assert len(stack) == 1 and not words, "unbalanced braces"
    return root


def locations(block: Block) -> list[Block]:
    found = []
    for child in block.children:
        if child.name == "location":
            found.append(child)
            found.extend(locations(child))
    return found


def proxy_problems(text: str) -> list[str]:
    problems = []
    servers = [b for b in parse(text).children if b.name == "server"]
    fronting = [s for s in servers if any(args == [WEBSERVER] for loc in locations(s)
                                          for args in loc.values("proxy_pass"))]
    if not fronting:
        problems.append(f"no server proxies to the webserver ({WEBSERVER})")
    for server in fronting:
        listens = server.values("listen")
        if not listens or any("ssl" not in args for args in listens):
            problems.append(f"a server proxying to the webserver listens without TLS: {listens}")
        if not server.values("ssl_certificate"):
            problems.append("no ssl_certificate")
        basic = [args for args in server.values("auth_basic") if args != ["off"]]
        for location in locations(server):
            if [WEBSERVER] not in location.values("proxy_pass"):
                continue
            where = f"location {' '.join(location.args)}"
            if ["off"] in location.values("auth_basic") or ["off"] in location.values("auth_request"):
                problems.append(f"{where}: authentication switched off")
            if not basic and not location.values("auth_request"):
                problems.append(f"{where}: reaches the webserver without authentication")
            if ["1.1"] not in location.values("proxy_http_version"):
                problems.append(f"{where}: no proxy_http_version 1.1 (websockets)")
            headers = {args[0].lower(): args[1:] for args in location.values("proxy_set_header")}
            if headers.get("upgrade") != ["$http_upgrade"] or "connection" not in headers:
                problems.append(f"{where}: the websocket upgrade is not passed on")
    for server in servers:
        for location in locations(server):
            for args in location.values("proxy_pass"):
                if not re.match(r"http://127\.0\.0\.1:\d+", args[0]):
                    problems.append(f"proxy_pass {args[0]}: the proxied services listen on loopback only")
    return problems


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_proxy_requires_tls_and_a_login_for_every_path(path):
    assert proxy_problems(path.read_text()) == []


def test_the_rules_catch_an_open_proxy():
    text = (REPO / "deploy" / "nginx" / "dagster-auth.conf").read_text()
    no_login = text.replace('auth_basic "vault-pipeline Dagster";', "")
    assert any("without authentication" in p for p in proxy_problems(no_login))
    hole = text.replace("location / {", "location /graphql {\n        auth_basic off;\n"
                        "        proxy_pass http://127.0.0.1:3000;\n        proxy_http_version 1.1;\n    }\n"
                        "    location / {")
    assert any("switched off" in p for p in proxy_problems(hole))
    plain = text.replace("listen 443 ssl;", "listen 443;")
    assert any("without TLS" in p for p in proxy_problems(plain))
    no_ws = text.replace("proxy_set_header Upgrade $http_upgrade;", "")
    assert any("websocket" in p for p in proxy_problems(no_ws))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_nginx_accepts_the_configuration(path, tmp_path):
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed here (the tests do not install it): structure checked above only")
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                           "/CN=dagster.test", "-keyout", str(key), "-out", str(cert)], capture_output=True)
    assert made.returncode == 0, made.stderr
    site = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", path.read_text())
    site = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", site)
    site = re.sub(r"listen (\[::\]:)?(80|443)", lambda m: f"listen {m.group(1) or ''}{18000 + int(m.group(2))}",
                  site)
    (tmp_path / "site.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path};\n"
                    f"  include {tmp_path}/site.conf;\n}}\n")
    answer = subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(main)], capture_output=True,
                            text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
