#!/usr/bin/env bash
# Fuzz tidemark on stable Rust: mutated stanzas from tests/fuzz/corpus/ through
# the XML reader and the service (src/bin/tidemark-fuzz/).
#
#   bash scripts/fuzz.sh                      5,000,000 stanzas, seed 1
#   bash scripts/fuzz.sh 20000000 7           that many stanzas, that seed
#   bash scripts/fuzz.sh 1000000 1 --keep-going   go on past findings, list them
#
# A finding (panic, abort, a stanza over 2 s, a refusal that changed the
# store) stops the run with the input printed and saved under target/fuzz/;
# replay it with: target/release/tidemark-fuzz --replay target/fuzz/finding-*.xml
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
ensure_cargo

stanzas=${1:-5000000}
seed=${2:-1}
shift $(($# < 2 ? $# : 2))
log "cargo build --release --bin tidemark-fuzz"
cargo build --release --bin tidemark-fuzz
log "fuzzing: $stanzas stanzas, seed $seed"
target/release/tidemark-fuzz --stanzas "$stanzas" --seed "$seed" "$@"
