"""Fixtures for the dashboard's browser tests: real hub nodes (the built `statushub` binary), a real
redis-server, a switchable TCP proxy standing in for a load balancer, and Debian's chromium driven by Playwright.
Every server listens on 127.0.0.1 only and is stopped when its test ends."""

import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SECRET = "browser-test-secret-0123456789abcdef-0123"


def statushub_binary():
    explicit = os.environ.get("STATUSHUB_BIN")
    if explicit:
        return explicit
    bin_path = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    return str(Path(bin_path) / "statushub")


def free_port():
    """A loopback port below the kernel's ephemeral range, free when asked: a port from inside the range (what
    binding port 0 returns) can be taken by any outgoing connection before the hub binds it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


# The TLS hubs' throwaway certificates are self-signed: the harness's own requests do not verify them (the
# browser gets `ignore_https_errors`); what is tested is the page over https:// and wss://, not the PKI.
UNVERIFIED = ssl._create_unverified_context()


def http(method, url, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=10, context=UNVERIFIED if url.startswith("https:") else None) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Hub:
    """One `statushub serve` process."""

    def __init__(self, redis_url=None, env=None, tls=False):
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.certificates = None
        if tls:
            # A throwaway self-signed certificate from openssl(1); the node then serves only https:// and wss://.
            self.certificates = tempfile.mkdtemp(prefix="statushub-browser-tls-")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                 "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                 "-keyout", f"{self.certificates}/key.pem", "-out", f"{self.certificates}/cert.pem"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            env = dict(env or {}, STATUSHUB_SERVER_TLS_CERTIFICATE_FILE=f"{self.certificates}/cert.pem",
                       STATUSHUB_SERVER_TLS_PRIVATE_KEY_FILE=f"{self.certificates}/key.pem")
        arguments = [statushub_binary(), "serve", "--config", str(ROOT / "config/statushub.yaml"), "--host", "127.0.0.1", "--port", str(self.port)]
        if redis_url:
            arguments += ["--redis", redis_url]
        # The hub refuses STATUSHUB_* variables that name no config key, such as this harness's STATUSHUB_BIN.
        environment = {k: v for k, v in os.environ.items() if k != "STATUSHUB_BIN"}
        environment.update(STATUSHUB_LOG_LEVEL="warning", **(env or {}))
        self.process = subprocess.Popen(arguments, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("hub exited: " + self.process.stderr.read().decode()[-2000:])
            try:
                if http("GET", self.url + "/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("hub did not become ready")

    def publish(self, *events, token=None):
        """The events' keys as the dashboard's `window.statushub.seen` lists them: "<entity_id> <event_id>" (an id
        alone is unique only within a partition)."""
        status, answer = http("POST", self.url + "/v1/events", list(events), token=token)
        assert status == 202, answer
        return [f"{event['entity_id']} {accepted['event_id']}" for event, accepted in zip(events, answer["accepted"])]

    def publish_ids(self, *events, token=None):
        """The events' ids as the hub answered them."""
        return [key.split(" ")[1] for key in self.publish(*events, token=token)]

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.certificates:
            shutil.rmtree(self.certificates, ignore_errors=True)


class Redis:
    def __init__(self):
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="statushub-browser-redis-")
        self.url = f"redis://127.0.0.1:{self.port}"
        self._start()

    def _start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def restart_empty(self):
        """Killed and started again on the same port without persistence: everything it held is gone."""
        self.process.kill()
        self.process.wait(timeout=10)
        self._start()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


class Proxy:
    """A TCP forwarder on its own port whose upstream can be switched: a load balancer in front of two nodes."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.open = []
        self.frozen = set()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                client.close()  # the node is down: the browser sees a failed connection and backs off
                continue
            upstream.settimeout(None)  # the 2 s were for connecting: a connection quiet for 2 s is not cut
            self.open += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source, target):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if source in self.frozen:
                    continue  # swallowed: neither end hears of it
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def freeze(self):
        """Stops forwarding on every connection it holds without closing any (a Wi-Fi roam, a host that lost power:
        neither end hears a close); connections made afterwards flow."""
        self.frozen.update(self.open)

    def switch(self, upstream_port):
        self.upstream_port = upstream_port

    def drop(self):
        """Cuts every connection it forwards (the browser sees 1006) and keeps listening."""
        dropped, self.open = self.open, []
        for connection in dropped:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def stop(self):
        self.running = False
        self.listener.close()
        for connection in self.open:
            try:
                connection.close()
            except OSError:
                pass


def hs256_token(patterns, expires_in=3600, secret=SECRET, user=None, see=None):
    """`user`: the `sub` claim, whose session (`/v1/session`) the page keeps; `see`: the restricted fields' claims it
    holds (`pii`, `audit`, `financial`)."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"patterns": patterns, "exp": int(time.time()) + expires_in}
    if user:
        claims["sub"] = user
    if see is not None:
        claims["see"] = see
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


@pytest.fixture
def redis_server():
    server = Redis()
    yield server
    server.stop()


@pytest.fixture
def hubs():
    """Starts hubs on demand (`hubs.start(...)`) and stops every one at the end."""
    started = []

    class Starter:
        def start(self, **kwargs):
            hub = Hub(**kwargs)
            started.append(hub)
            return hub

    yield Starter()
    for hub in started:
        hub.stop()


@pytest.fixture(scope="session")
def browser():
    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    # ignore_https_errors: the TLS hubs' certificates are self-signed throwaways.
    context = browser.new_context(viewport={"width": 1400, "height": 900}, ignore_https_errors=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()


def machine_status(machine, status, line="Line-2", timestamp=None):
    return {
        "event_type": "resource_status_changed", "entity_type": "machine", "entity_id": machine, "line": line,
        "timestamp": timestamp or now_iso(), "data": {"current_status": status},
        "metadata": {"source": "mes", "triggered_by": "browser-test"},
    }


def alert(machine, message, severity="high", line="Line-2", timestamp=None):
    return {
        "event_type": "alert_raised", "entity_type": "machine", "entity_id": machine, "line": line, "timestamp": timestamp or now_iso(),
        "data": {"severity": severity, "message": message}, "metadata": {"source": "mes", "triggered_by": "sensor"},
    }


def now_iso(offset_seconds=0):
    moment = time.time() + offset_seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"
