#!/bin/sh
# First start: create the database and its user, set the root password (the system tables
# come with the image). Later starts (the named volume survives `down`) go straight on.
set -eu
: "${DB_NAME:?}" "${DB_USER:?}" "${DB_PASSWORD:?}" "${DB_ROOT_PASSWORD:?}"
marker=/var/lib/mysql/.overcloud-configured
if [ ! -e "$marker" ]; then
  chown -R mysql:mysql /var/lib/mysql
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
  mariadbd --user=mysql --skip-networking --socket=/run/mysqld/boot.sock &
  pid=$!
  i=0
  until mariadb-admin --socket=/run/mysqld/boot.sock ping --silent 2>/dev/null; do
    i=$((i + 1)); [ "$i" -lt 600 ] || { echo "bootstrap server did not start" >&2; exit 1; }
    sleep 0.1
  done
  mariadb --socket=/run/mysqld/boot.sock <<SQL
CREATE DATABASE IF NOT EXISTS \`${DB_NAME}\`;
CREATE USER IF NOT EXISTS '${DB_USER}'@'%' IDENTIFIED BY '${DB_PASSWORD}';
GRANT ALL PRIVILEGES ON \`${DB_NAME}\`.* TO '${DB_USER}'@'%';
ALTER USER 'root'@'localhost' IDENTIFIED BY '${DB_ROOT_PASSWORD}';
FLUSH PRIVILEGES;
SQL
  kill "$pid"
  wait "$pid" || true
  touch "$marker"
fi
# The binary log with GTIDs, so the database can move by replication (a replica of this one
# catches up while the site serves: orchestrator/dbmove.py). A server id of its own per
# start: a replica must never share its source's; row events, so a replica replays exactly
# what was written; a week of binlogs at most.
server_id=$(( $(od -An -N4 -tu4 /dev/urandom) % 4294967294 + 1 ))
exec mariadbd --user=mysql --bind-address=0.0.0.0 --port=3306 \
  --log-bin=binlog --log-slave-updates --binlog-format=ROW --server-id="$server_id" \
  --binlog-expire-logs-seconds=604800 "$@"
