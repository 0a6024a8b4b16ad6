#!/usr/bin/env bash
# PostgreSQL (Debian package `postgresql`) for tests/postgres.rs and the proxy's --postgres test.
#   postgres.sh install
#   postgres.sh serve PORT WORKDIR   cluster in WORKDIR/data (made on first serve, kept by a second
#                                    serve of the same WORKDIR: that is how a test restarts it),
#                                    trust auth, superuser `postgres`, database `postgres`,
#                                    listening on 127.0.0.1:PORT only (socket in WORKDIR)
# Stopping the script (SIGTERM/SIGINT, or the test process exiting) stops the server with a fast
# shutdown (SIGINT): open client connections are cut, committed data is kept.
source "$(dirname "$0")/lib.sh"

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$dir" && -x "$dir/postgres" ]] || die "no PostgreSQL server under /usr/lib/postgresql/*/bin"
  echo "$dir"
}

case "${1:-}" in
install)
  apt_install postgresql
  pg_bin >/dev/null
  ;;
serve)
  port=${2:?port}
  workdir=${3:?workdir}
  bin=$(pg_bin)
  as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)
  chown postgres: "$workdir"
  chmod 0700 "$workdir"
  if [[ ! -f "$workdir/data/PG_VERSION" ]]; then
    "${as_postgres[@]}" "$bin/initdb" -D "$workdir/data" -U postgres -A trust --no-sync -E UTF8 >&2 ||
      die "initdb failed"
  fi
  # Own session: a signal to the script's process group does not reach the server, whose smart
  # shutdown (SIGTERM) would wait for every client to disconnect; the trap below stops it fast.
  setsid "${as_postgres[@]}" "$bin/postgres" -D "$workdir/data" -h 127.0.0.1 -p "$port" -k "$workdir" \
    -c listen_addresses=127.0.0.1 -c log_min_messages=warning >&2 &
  pid=$!
  trap 'kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 0' TERM INT
  deadline=$((SECONDS + 60))
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; do
    kill -0 "$pid" 2>/dev/null || die "postgres exited before it accepted connections"
    ((SECONDS < deadline)) || die "postgres did not accept connections within 60s"
    sleep 0.2
  done
  echo READY
  while kill -0 "$pid" 2>/dev/null; do
    if [[ -n "${LLM_OBS_TEST_PID:-}" ]] && ! kill -0 "$LLM_OBS_TEST_PID" 2>/dev/null; then
      kill -INT "$pid" 2>/dev/null
      break
    fi
    sleep 1 &
    wait $! || true
  done
  wait "$pid" 2>/dev/null || true
  ;;
*)
  die "usage: $0 install | serve PORT WORKDIR"
  ;;
esac
