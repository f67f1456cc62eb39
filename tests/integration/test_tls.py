"""TLS on the component link (issue 12): the server's component port speaks
direct TLS (ejabberd: `tls: true` on ejabberd_service; Prosody 0.12:
mod_net_multiplex's ssl_ports), tidemark verifies the server's certificate
against component.ca_file for its name, and only then opens the XEP-0114
stream. A certificate of another CA or for another name is refused with a
log line that says why, the secret never goes out, and tidemark keeps
retrying with its backoff.

The server is restarted with TLS on its component port for these tests and
given back its plain port afterwards; the certificates are certs/'s
(certs/make-component-certs.sh)."""

import asyncio
import time

import pytest

from conftest import COMPONENT_PORT, EJABBERD, REPO, Tidemark
from match import marker_for, message, receipt_for
from stanzas import chat, marker, receipt

CERTS = REPO / "certs"
# What the server logs once a component's stream reached it: ejabberd when it
# checks the handshake (accepted or failed), Prosody when its component
# listener gets the stream header (after TLS, through mod_net_multiplex).
STREAM_REACHED = ("external component handshake authentication" if EJABBERD
                  else "Incoming Jabber component connection")


@pytest.fixture(scope="module")
def tls_server(world_session):
    """The module's server, with TLS on its component port; plain again after."""
    yield world_session
    world_session.tidemark.stop()
    world_session.reconfigure_server()


def serve_tls(world, pem):
    """The server's component port with direct TLS, presenting certs/PEM."""
    env = {"COMPONENT_TLS": "1", "COMPONENT_CERTFILE": str(CERTS / pem)}
    if world.server_env != env:
        # The running tidemark would knock on the TLS port in plain text.
        world.tidemark.stop()
        world.reconfigure_server(**env)


def tls_tidemark(world, *lines, ca="component-ca.crt"):
    keys = "\n".join(["tls = true", f'ca_file = "{CERTS / ca}"', "reconnect_max_secs = 2", *lines])
    return world.use_tidemark(Tidemark(world, f"tls{world.test_no}", component_extra=keys))


async def log_line(tm, text, timeout=10.0):
    """Waits for a line of tidemark's log holding `text`; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in tm.log_text().splitlines():
            if text in line:
                return line
        await asyncio.sleep(0.2)
    raise AssertionError(f"no log line with {text!r} within {timeout}s:\n{tm.log_text()[-3000:]}")


async def test_a_message_gets_its_statuses_over_tls(tls_server, world):
    serve_tls(world, "component-server.pem")
    tm = tls_tidemark(world)
    alice, bob = await world.clients("alice", "bob")
    await world.befriend(alice, bob)
    await alice.send(chat(bob.tracked, "t1", request=True, markable=True))
    await bob.expect(message(frm=alice.tracked_full, id="t1"))
    await bob.send(receipt(alice.tracked_full, "t1"))
    await alice.expect(receipt_for("t1", frm=bob.tracked_full))
    assert (await alice.status(bob.tracked, "t1"))[bob.jid].state == "delivered"
    await bob.send(marker("displayed", alice.tracked_full, "t1"))
    await alice.expect(marker_for("displayed", "t1", frm=bob.tracked_full))
    assert (await alice.status(bob.tracked, "t1"))[bob.jid].state == "read"
    line = await log_line(tm, "connected to server")
    assert "tls=true" in line, line


async def refused(world, tm, reason, server_log_from):
    """tidemark says why, retries (the backoff), and its stream never reached
    the server: no secret went out."""
    expected = f"TLS handshake with 127.0.0.1:{COMPONENT_PORT} failed: {reason}"
    await log_line(tm, expected)
    # A second attempt after the first backoff step (1 s).
    deadline = time.monotonic() + 10
    while tm.log_text().count(expected) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    log = tm.log_text()
    assert log.count(expected) >= 2, log[-3000:]
    assert "retry_in=" in log and "connected to server" not in log, log[-3000:]
    assert tm.alive()
    assert STREAM_REACHED not in world.server_log()[server_log_from:], world.server_log()[-3000:]


async def test_a_certificate_for_another_name_is_refused(tls_server, world):
    serve_tls(world, "component-server.pem")
    server_log_from = len(world.server_log())
    # The certificate is for localhost and 127.0.0.1. An IP address is not
    # sent as SNI, so both servers present the same certificate.
    tm = tls_tidemark(world, 'tls_server_name = "127.0.0.2"')
    await refused(world, tm, 'invalid peer certificate: certificate not valid for name "127.0.0.2"',
                  server_log_from)


async def test_a_certificate_of_another_ca_is_refused_before_the_secret_goes_out(tls_server, world):
    serve_tls(world, "other-server.pem")
    server_log_from = len(world.server_log())
    tm = tls_tidemark(world)
    await refused(world, tm, "invalid peer certificate: UnknownIssuer", server_log_from)
    # The same server is accepted by a tidemark that trusts its CA: the
    # refusal above was the certificate's, not a broken listener's.
    tm.stop()
    tm = tls_tidemark(world, ca="other-ca.crt")
    line = await log_line(tm, "connected to server")
    assert "tls=true" in line, line
