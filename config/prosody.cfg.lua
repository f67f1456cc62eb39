-- tidemark: the lines an admin adds to an existing prosody.cfg.lua.
-- (This file is a snippet, not a complete configuration; scripts/prosody.sh
-- generates a complete development configuration from prosody.cfg.lua.in.)

-- In the global section (before any VirtualHost): where tidemark connects.
-- Keep the component port on loopback unless tidemark runs on another machine.
--
-- component_ports = { 5347 }
-- component_interfaces = { "127.0.0.1" }

-- At the end of the file: the component itself. The JID and secret must match
-- [component] jid and secret (or secret_file) in tidemark's TOML config.
--
-- Component "chat.example.org"
--     component_secret = "a long random secret"
