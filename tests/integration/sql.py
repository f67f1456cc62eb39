"""SQL run as a tidemark's role in its PostgreSQL database (psql), for tests
and screenshot scripts that change the database under a running tidemark."""

import os
import subprocess


def psql(url: str, password: str, sql: str) -> None:
    """Runs `sql` at `url`; raises with psql's own message if it fails."""
    res = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
                         env={**os.environ, "PGPASSWORD": password},
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"psql failed ({res.returncode}): {res.stderr.strip()}")
