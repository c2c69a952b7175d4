# Source me: installs PostgreSQL if missing, starts a throw-away server on loopback,
# exports BUDGETNAS_PG_URL and stops the server when the calling shell exits.
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PGBIN=$(pg_bin)
if [ -z "$PGBIN" ]; then
  echo "installing PostgreSQL"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PGBIN=$(pg_bin)
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
PGDATA_DIR=$(mktemp -d /tmp/budgetnas-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA_DIR"
PGPORT_CI=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR/data" -A trust -U postgres >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/server.log" -w \
  -o "-p $PGPORT_CI -k $PGDATA_DIR -c listen_addresses=127.0.0.1" start >/dev/null
trap 'as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR/data" -m fast stop >/dev/null 2>&1; rm -rf "$PGDATA_DIR"' EXIT
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT_CI" -U postgres nas
export BUDGETNAS_PG_URL="postgresql://postgres@127.0.0.1:$PGPORT_CI/nas"
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT_CI"
