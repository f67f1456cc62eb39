"""Start-up errors: a config mistake exits with status 2 naming the key; a wrong
component secret exits with status 3 and says so."""

import re

from conftest import COMPONENT_PORT, EJABBERD, tidemark_toml


def config_without(line_start, **kw):
    return "".join(l + "\n" for l in tidemark_toml(**kw).splitlines() if not l.startswith(line_start))


def with_line_after(after, new_line, **kw):
    out = []
    for l in tidemark_toml(**kw).splitlines():
        out.append(l)
        if l == after:
            out.append(new_line)
    return "\n".join(out) + "\n"


def line_of(text, needle):
    return next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith(needle))


def test_unknown_key_exits_2_naming_key_and_line(world):
    cfg = with_line_after("[component]", 'colour = "blue"', storage="db")
    status, out = world.run_tidemark_once(cfg)
    assert status == 2, out
    assert "colour" in out, out
    n = line_of(cfg, "colour")
    assert re.search(rf"\bline {n}\b", out, re.I), f"error does not name line {n}:\n{out}"


def test_unknown_section_exits_2_naming_it(world):
    cfg = tidemark_toml(storage="db") + '\n[bogus]\nx = 1\n'
    status, out = world.run_tidemark_once(cfg)
    assert status == 2, out
    assert "bogus" in out, out


def test_missing_key_exits_2_naming_it(world):
    status, out = world.run_tidemark_once(config_without("jid", storage="db"))
    assert status == 2, out
    assert "jid" in out, out


def test_missing_storage_path_exits_2_naming_it(world):
    status, out = world.run_tidemark_once(config_without("path", storage="db"))
    assert status == 2, out
    assert "path" in out, out


def test_bad_offline_value_exits_2_naming_it(world):
    status, out = world.run_tidemark_once(tidemark_toml(storage="db", offline="sometimes"))
    assert status == 2, out
    assert "offline" in out, out


def test_bad_type_exits_2_naming_it(world):
    cfg = tidemark_toml(storage="db").replace("max_body_bytes = 65536", 'max_body_bytes = "big"')
    status, out = world.run_tidemark_once(cfg)
    assert status == 2, out
    assert "max_body_bytes" in out, out


def test_wrong_secret_exits_3_saying_secret(world):
    cfg = tidemark_toml(storage="db", secret="not-the-secret",
                        server=f"127.0.0.1:{COMPONENT_PORT}")
    status, out = world.run_tidemark_once(cfg, timeout=20)
    assert status == 3, out
    assert "secret" in out.lower(), out


def test_an_unknown_component_name_exits_3_naming_it(world):
    cfg = tidemark_toml(jid="nobody.localhost", storage="db", secret=world.secret,
                        server=f"127.0.0.1:{COMPONENT_PORT}")
    status, out = world.run_tidemark_once(cfg, timeout=20)
    assert status == 3, out
    if EJABBERD:
        # ejabberd answers not-authorized, as for a wrong secret: the message
        # names both causes.
        assert "not-authorized" in out and "secret is wrong" in out, out
        assert "serves no component named nobody.localhost" in out, out
    else:
        assert "host-unknown" in out and 'add `Component "nobody.localhost"`' in out, out
