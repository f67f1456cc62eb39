"""The world the integration tests run in, and the clients that live in it.

One XMPP server per test session: Prosody (scripts/prosody.sh), or ejabberd
(scripts/ejabberd.sh) when TIDEMARK_IT_SERVER=ejabberd; in a run directory of
its own, 127.0.0.1 only, c2s 15222, component 15347, or TIDEMARK_IT_C2S_PORT and
TIDEMARK_IT_COMPONENT_PORT (ejabberd also takes COMPONENT_PORT + 1 for
ejabberdctl), fresh users for every test
(alice -> alice7@localhost in test 7), and tidemark (target/release/tidemark)
connected to it as chat.localhost. Tests are `async def`; they get `world`
(or `tm`, which also makes sure tidemark is up) and write transcripts:

    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "m1"))
    got = await bob.expect(message(frm=alice.tracked_full, id="m1"))

Every wait is bounded (TIMEOUT seconds, TIDEMARK_TEST_TIMEOUT to change it);
absence is checked for at most about a second.

The store is sled, or PostgreSQL with TIDEMARK_IT_STORE=postgres: the session
then runs a private cluster (scripts/postgres.sh, on 127.0.0.1:PG_PORT, 15432
unless set, under /tmp; or the running one in TIDEMARK_IT_PG_DIR), and every
tidemark a test makes gets a database of its own, named after its directory,
so that a restart (or kill -9) of the same tidemark reopens the same store and
a new one (`World.use_config`) starts empty.
"""

import asyncio
import inspect
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from match import iq, presence  # noqa: E402
from stanzas import COMPONENT, disco_info, subscribe, subscribed  # noqa: E402
from xmpp_client import ABSENCE, TIMEOUT, Client, Recipient, Status  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("TIDEMARK_BIN", REPO / "target" / "release" / "tidemark"))
PROSODY_SH = REPO / "scripts" / "prosody.sh"
# Which server the suite runs against. The tests are the same; where a server
# behaves differently the test says so (`prosody_only`, or a comment).
SERVER = os.environ.get("TIDEMARK_IT_SERVER", "prosody")
if SERVER not in ("prosody", "ejabberd", "ejabberd-cluster"):
    raise RuntimeError(f"TIDEMARK_IT_SERVER={SERVER!r}: prosody, ejabberd or ejabberd-cluster")
# ejabberd-cluster: two ejabberd nodes in one cluster (scripts/ejabberd.sh
# cluster-start; node 1 on 127.0.0.1, node 2 on 127.0.0.2, the same ports),
# tidemark connected to node 1 (then node 2), and each test's clients logged
# in on the nodes in turn (alice on 1, bob on 2, carol on 1, ...), so that
# every stanza between two users crosses the cluster.
CLUSTER = SERVER == "ejabberd-cluster"
SERVER_SH = REPO / "scripts" / ("prosody.sh" if SERVER == "prosody" else "ejabberd.sh")
EJABBERD = SERVER != "prosody"
CLUSTER_NODES = ("127.0.0.1", "127.0.0.2")
# How deep the "deeply nested stanza" attacks nest. ejabberd 23.01 itself dies
# (the Erlang VM segfaults, taking every session with it) on a message
# nested 20,000 deep from any logged-in user, before tidemark sees it; under
# ejabberd the attack is 500 deep: far past tidemark's limits.max_depth (64),
# and the server survives it.
DEEP_NESTING = 500 if EJABBERD else 20_000


def prosody_only(why):
    """A mark for a test that needs Prosody itself (its log, its federation),
    not just a server: skipped under ejabberd, saying why."""
    return pytest.mark.skipif(EJABBERD, reason=f"Prosody-only: {why}")
STORE = os.environ.get("TIDEMARK_IT_STORE", "sled")
if STORE not in ("sled", "postgres"):
    raise RuntimeError(f"TIDEMARK_IT_STORE={STORE!r}: sled or postgres")
POSTGRES = STORE == "postgres"
POSTGRES_SH = REPO / "scripts" / "postgres.sh"


def sled_only(why):
    """A mark for a test of sled itself (its directory, its lock): skipped on
    PostgreSQL, saying why."""
    return pytest.mark.skipif(POSTGRES, reason=f"sled-only: {why}")


class Postgres:
    """The session's PostgreSQL cluster: one database per tidemark store."""

    def __init__(self):
        given = os.environ.get("TIDEMARK_IT_PG_DIR")
        self.owned = not given
        # Under /tmp: the postgres user must reach it (not so a clone under /root).
        self.dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="tidemark-it-pg-"))
        os.chmod(self.dir, 0o755)
        self.token = secrets.token_hex(3)  # databases of this session only
        if self.owned:
            self.run("start", str(self.dir))
        self.password_file = self.dir / "password"

    def run(self, *args):
        res = subprocess.run(["bash", str(POSTGRES_SH), *args], capture_output=True, text=True,
                             timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"postgres.sh {' '.join(args)} failed ({res.returncode}):\n"
                               f"{res.stdout}\n{res.stderr}")
        return res.stdout.strip()

    def database(self, name):
        """The URL of this session's database `name`, created if new."""
        slug = "".join(ch if ch.isalnum() else "_" for ch in name.lower())
        return self.run("createdb", str(self.dir), f"it_{self.token}_{slug}"[:63])

    def stop(self):
        if self.owned:
            self.run("stop", str(self.dir))
            shutil.rmtree(self.dir, ignore_errors=True)


# Two copies of the suite can run side by side when each is given its own
# ports (and, for federation, its own loopback addresses; test_federation.py).
C2S_PORT = int(os.environ.get("TIDEMARK_IT_C2S_PORT", "15222"))
COMPONENT_PORT = int(os.environ.get("TIDEMARK_IT_COMPONENT_PORT", "15347"))
TEST_DEADLINE = 120  # a whole test, as a last resort


# --- tidemark configuration -------------------------------------------------

DEFAULT_SERVER = (", ".join(f'"{n}:{COMPONENT_PORT}"' for n in CLUSTER_NODES) if CLUSTER
                  else f'"127.0.0.1:{COMPONENT_PORT}"')


def tidemark_toml(jid=COMPONENT, server=None, secret="s3cret",
                  storage="db", offline="reject", max_body_bytes=65536, level="info", extra="",
                  component_extra="", postgres=None):
    """The config file; `extra` is appended as is (say, [groups] or [[rooms]] sections),
    `component_extra` goes into [component] (say, the tls keys). `postgres`: (url,
    password file) of a PostgreSQL store instead of sled's `storage`."""
    server = DEFAULT_SERVER if server is None else f'"{server}"'
    if postgres:
        url, password_file = postgres
        storage_section = (f'backend = "postgres"\nurl = "{url}"\n'
                           f'password_file = "{password_file}"')
    else:
        storage_section = f'path = "{storage}"'
    return f"""\
[component]
jid = "{jid}"
server = [{server}]
secret = "{secret}"
{component_extra}

[storage]
{storage_section}

[presence]
offline = "{offline}"

[limits]
max_body_bytes = {max_body_bytes}

[log]
level = "{level}"
{extra}"""


class Tidemark:
    """One tidemark process with its own config file, database and log."""

    def __init__(self, world, name, **config):
        self.world = world
        self.name = name
        self.dir = world.dir / f"tidemark-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        config.setdefault("secret", world.secret)
        config.setdefault("storage", str(self.dir / "db"))
        if world.postgres is not None and "postgres" not in config:
            # The directory's name is the database's: the same tidemark
            # (a restart, Tidemark(world, "main") again) reopens its store.
            config["postgres"] = (world.postgres.database(self.dir.name),
                                  world.postgres.password_file)
        self.config_text = tidemark_toml(**config)
        self.config = self.dir / "tidemark.toml"
        self.config.write_text(self.config_text)
        self.log_path = self.dir / "tidemark.log"
        self.proc = None

    def start(self):
        if not BINARY.exists():
            pytest.fail(f"{BINARY} is missing: run `cargo build --release` (scripts/test.sh does)")
        self.world.note(f"tidemark[{self.name}] start")
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen([str(BINARY), "--config", str(self.config)], cwd=self.dir,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "NO_COLOR": "1"})
        log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10):
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.world.note(f"tidemark[{self.name}] SIGTERM")
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"tidemark[{self.name}] ignored SIGTERM for {timeout}s")

    def kill9(self):
        if self.alive():
            self.world.note(f"tidemark[{self.name}] SIGKILL")
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        self.start()

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# --- the world --------------------------------------------------------------

class World:
    """The server (Prosody or ejabberd) + tidemark on loopback, and the helpers
    tests use to drive them."""

    def __init__(self, base: Path):
        self.dir = base
        self.server_dir = base / SERVER
        self.secret = "it-" + secrets.token_hex(8)
        self.events = []  # timeline of the current test, printed on failure
        self.test_no = 0
        self.accounts = {}
        self.clients_now: list[Client] = []
        self.postgres = Postgres() if POSTGRES else None
        self.tidemark = Tidemark(self, "main")
        self.ready_needed = False
        # More settings for the server script (say, COMPONENT_TLS=1): see
        # reconfigure_server.
        self.server_env = {}

    # -- timeline
    def note(self, line):
        self.events.append(f"{time.monotonic():10.3f} {line}")

    # -- the server (scripts/prosody.sh or scripts/ejabberd.sh)
    def server(self, *args, check=True):
        if CLUSTER and args[0] in ("start", "stop", "restart", "status"):
            args = (f"cluster-{args[0]}", *args[1:])
        env = {**os.environ, "C2S_PORT": str(C2S_PORT), "COMPONENT_PORT": str(COMPONENT_PORT),
               "COMPONENT_JID": COMPONENT, "COMPONENT_SECRET": self.secret, **self.server_env}
        res = subprocess.run(["bash", str(SERVER_SH), *args], env=env, capture_output=True, text=True,
                             timeout=60)
        if check and res.returncode != 0:
            raise RuntimeError(f"{SERVER_SH.name} {' '.join(args)} failed ({res.returncode}):\n"
                               f"{res.stdout}\n{res.stderr}")
        return res

    def start_server(self):
        self.note(f"{SERVER} start")
        self.server("start", str(self.server_dir))
        # tidemark, if running, has to reconnect before it can answer again
        self.ready_needed = True

    def stop_server(self):
        self.note(f"{SERVER} stop")
        self.server("stop", str(self.server_dir))

    def restart_server(self):
        self.stop_server()
        self.start_server()

    def reconfigure_server(self, **env):
        """Restart the server with these settings of its script (say,
        COMPONENT_TLS="1"); none gives back the defaults. Users and rosters
        are kept."""
        self.stop_server()
        self.server_env = env
        self.start_server()

    def server_running(self):
        return self.server("status", str(self.server_dir), check=False).returncode == 0

    def server_log(self):
        """The server's own log, for failure reports."""
        name = {"prosody": "prosody.log", "ejabberd": "logs/ejabberd.log",
                "ejabberd-cluster": "node1/logs/ejabberd.log"}[SERVER]
        try:
            return (self.server_dir / name).read_text(errors="replace")
        except OSError:
            return ""

    def account(self, name):
        """name -> (user, password), registered once per test: alice -> alice7."""
        if name not in self.accounts:
            user = f"{name}{self.test_no}"
            password = "pw-" + secrets.token_hex(4)
            self.server("register", str(self.server_dir), user, password)
            self.accounts[name] = (user, password)
        return self.accounts[name]

    # -- clients
    async def client(self, name, available=True, resource=None) -> Client:
        user, password = self.account(name)
        host = CLUSTER_NODES[len(self.clients_now) % 2] if CLUSTER else "127.0.0.1"
        c = Client(name, user, password, resource or f"{name}res", port=C2S_PORT, note=self.note,
                   host=host)
        self.clients_now.append(c)
        await c.connect(available=available)
        if CLUSTER:
            # ejabberd replicates a new session to the other node a moment
            # after the login: a message sent at once from there would go
            # to offline storage.
            await asyncio.sleep(0.2)
        if self.ready_needed and self.tidemark.alive():
            await self.wait_ready(c, timeout=40)  # reconnect backoff is at most 30 s
        return c

    async def clients(self, *names, available=True):
        return [await self.client(n, available=available) for n in names]

    async def wait_ready(self, via: Client = None, timeout=20.0):
        """Poll disco#info on chat.localhost until tidemark answers it."""
        own = via is None
        if own:
            via = Client("probe", *self.account("probe"), "probe", port=C2S_PORT, note=self.note)
            self.clients_now.append(via)
            await via.connect(available=False)
        deadline = time.monotonic() + timeout
        last = None
        try:
            while time.monotonic() < deadline:
                qid = via.new_id("ready")
                await via.send(disco_info(qid))
                try:
                    last = await via.expect(iq(id=qid), timeout=1.0)
                    if last.type == "result":
                        self.ready_needed = False
                        return
                except AssertionError:
                    pass
                await asyncio.sleep(0.25)
            raise AssertionError(f"tidemark did not answer disco#info on {COMPONENT} within {timeout}s;"
                                 f" last reply: {last}\n--- tidemark log ---\n{self.tidemark.log_text()[-3000:]}")
        finally:
            if own:
                await via.disconnect()

    async def befriend(self, a: Client, b: Client, mutual=True):
        """a subscribes to b's tracked address and b approves (and the other way round)."""
        for x, y in ((a, b), (b, a)) if mutual else ((a, b),):
            await x.send(subscribe(y.tracked))
            await y.expect(presence(frm=x.tracked, type="subscribe"))
            await y.send(subscribed(x.tracked))
            await x.expect(presence(frm=y.tracked, type="subscribed"))
        # b's presence is mirrored to a: once it arrives, tidemark knows b is online.
        await a.expect(presence(frm=b.tracked_full, type=False))
        if mutual:
            await b.expect(presence(frm=a.tracked_full, type=False))

    # -- tidemark
    def ensure_tidemark(self):
        if not self.tidemark.alive():
            self.tidemark.start()
            self.ready_needed = True

    def use_tidemark(self, tm: Tidemark):
        """Swap the running tidemark for another (say, with offline = "queue")."""
        self.tidemark.stop()
        self.tidemark = tm
        tm.start()
        self.ready_needed = True
        return tm

    def use_config(self, extra, name=None):
        """Swap in a tidemark with a fresh database and this config snippet appended
        (say, "[groups]\nmarker_reflection_limit = 2\n" or a [[rooms]] section)."""
        return self.use_tidemark(Tidemark(self, name or f"t{self.test_no}", extra=extra))

    def room(self, name="team"):
        """A room name of this test's own: team -> team7@chat.localhost."""
        return f"{name}{self.test_no}@{COMPONENT}"

    def run_tidemark_once(self, config_text, timeout=15):
        """Run tidemark with this config until it exits: (status, output)."""
        if not BINARY.exists():
            pytest.fail(f"{BINARY} is missing: run `cargo build --release`")
        d = Path(tempfile.mkdtemp(prefix="once-", dir=self.dir))
        cfg = d / "tidemark.toml"
        cfg.write_text(config_text)
        self.note(f"tidemark once: {cfg}")
        try:
            res = subprocess.run([str(BINARY), "--config", str(cfg)], cwd=d, capture_output=True,
                                 text=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1"})
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            raise AssertionError(f"tidemark did not exit within {timeout}s; output:\n{out}") from None
        return res.returncode, res.stdout + res.stderr

    # -- per test
    def begin_test(self, nodeid):
        self.test_no += 1
        self.accounts = {}
        self.clients_now = []
        self.events = [f"test {self.test_no}: {nodeid}"]
        if not self.server_running():
            self.start_server()

    async def end_test(self):
        for c in self.clients_now:
            c.abort()
        self.clients_now = []
        await asyncio.sleep(0)


@pytest.fixture(scope="session")
def world_session():
    base_root = REPO / "run"
    base_root.mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="it-", dir=base_root))
    os.chmod(base, 0o755)  # the prosody or ejabberd user must reach the server's directory
    w = World(base)
    w.start_server()
    yield w
    w.tidemark.stop()
    w.stop_server()
    if w.postgres is not None:
        w.postgres.stop()
    if os.environ.get("KEEP_RUN_DIR") != "1" and not getattr(w, "failed", False):
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"\nintegration run directory kept: {base}")


@pytest.fixture
def world(world_session, request):
    world_session.begin_test(request.node.nodeid)
    yield world_session


@pytest.fixture
def tm(world):
    """The world with tidemark (default config) running; returns the Tidemark."""
    if world.tidemark.name != "main":
        world.tidemark.stop()
        world.tidemark = Tidemark(world, "main")
    world.ensure_tidemark()
    return world.tidemark


# --- running async tests without a plugin -----------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {n: pyfuncitem.funcargs[n] for n in pyfuncitem._fixtureinfo.argnames}
    w = pyfuncitem.funcargs.get("world") or pyfuncitem.funcargs.get("world_session")
    if w is None and "tm" in pyfuncitem.funcargs:
        w = pyfuncitem.funcargs["tm"].world

    async def run():
        try:
            await asyncio.wait_for(pyfuncitem.obj(**args), TEST_DEADLINE)
        finally:
            if w is not None:
                await w.end_test()

    asyncio.run(run())
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        w = item.funcargs.get("world") if hasattr(item, "funcargs") else None
        if w is not None:
            w.failed = True
            rep.sections.append(("timeline (stanzas sent and received)", "\n".join(w.events[-200:])))
            rep.sections.append(("tidemark log (tail)", w.tidemark.log_text()[-4000:]))
            slog = w.server_log()
            if slog:
                rep.sections.append((f"{SERVER} log (tail)", slog[-2000:]))
