"""Writes Gajim 1.7's settings for one account without its wizard: run as
the user Gajim runs as, with HOME set. Usage:

    python3 gajim_settings.py ACCOUNT JID PASSWORD HOST PORT CERT_PEM

The account connects to HOST:PORT (STARTTLS) and trusts CERT_PEM (the
development certificate) by putting it in Gajim's own certificate store,
which is how Gajim's "trust this certificate" button does it.
"""

import shutil
import sys
from pathlib import Path

from gajim.common import app, configpaths
from gajim.common.settings import Settings

account, jid, password, host, port, cert = sys.argv[1:7]
configpaths.init()
configpaths.create_paths()
app.settings = Settings()
app.settings.init()

for key, value in {
    "use_keyring": False,            # no keyring daemon here: the password in the settings
    "check_for_update": False,
    "positive_184_ack": True,        # Preferences → Chats → "Message Receipts (✔)"
    "show_help_start_chat": False,
    "show_trayicon": False,
}.items():
    app.settings.set(key, value)

if account not in app.settings.get_accounts():
    app.settings.add_account(account)
user, domain = jid.split("@", 1)
for key, value in {
    "name": user,
    "hostname": domain,
    "password": password,
    "savepass": True,
    "resource": "gajim",
    "active": True,
    "autoconnect": True,
    "use_custom_host": True,
    "custom_host": host,
    "custom_port": int(port),
    "custom_type": "START TLS",
    "confirm_unencrypted_connection": False,
    "account_label": jid,
    "restore_last_status": False,
    "last_status": "online",
}.items():
    app.settings.set_account_setting(account, key, value)

# Settings are committed on a GLib timer, and no main loop runs here.
app.settings.shutdown()

store = configpaths.get("CERT_STORE")
store.mkdir(parents=True, exist_ok=True)
shutil.copy(cert, Path(store) / "tidemark-dev.pem")
print(f"gajim account {account} ({jid}) -> {host}:{port}; settings in {configpaths.get('SETTINGS')}")
