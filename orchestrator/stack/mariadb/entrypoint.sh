#!/bin/sh
# Every start: the database, its user and the root password from the environment, by one
# server start with an init file (statements MariaDB runs before it takes any connection:
# no client ever sees the server without its root password). Idempotent (`IF NOT EXISTS`;
# the passwords are set again), so a copied or restored volume is set up the same way; not binary-logged (it is no data
# of the site's, and a replica must not replay it). One start instead of a bootstrap server
# and a real one: a new database answered in 0.49-0.51 s instead of 0.74-0.76 s here.
set -eu
# Secrets rotated in place (a pooled node claimed by an OverCloud: orchestrator/pool.py) are in
# this file of the container's own, which outlives a restart but not a re-creation (then the
# environment, from the rotated .env, holds them already): it wins over the environment.
secrets=/etc/overcloud/secrets.env
[ ! -r "$secrets" ] || . "$secrets"
: "${DB_NAME:?}" "${DB_USER:?}" "${DB_PASSWORD:?}" "${DB_ROOT_PASSWORD:?}"
chown mysql:mysql /var/lib/mysql /run/mysqld
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
init=/run/mysqld/oc-init.sql
umask 077
cat > "$init" <<SQL
SET sql_log_bin=0;
CREATE DATABASE IF NOT EXISTS \`${DB_NAME}\`;
CREATE USER IF NOT EXISTS '${DB_USER}'@'%' IDENTIFIED BY '${DB_PASSWORD}';
ALTER USER '${DB_USER}'@'%' IDENTIFIED BY '${DB_PASSWORD}';
GRANT ALL PRIVILEGES ON \`${DB_NAME}\`.* TO '${DB_USER}'@'%';
ALTER USER 'root'@'localhost' IDENTIFIED BY '${DB_ROOT_PASSWORD}';
FLUSH PRIVILEGES;
SQL
chown mysql:mysql "$init"
# The binary log with GTIDs, so the database can move by replication (a replica of this one
# catches up while the site serves: orchestrator/dbmove.py). A server id of its own per
# start: a replica must never share its source's; row events, so a replica replays exactly
# what was written; a week of binlogs at most. No reverse DNS of clients: every account is
# `%`, `localhost` or an address, and a node has no resolver that answers for the OverCloud's
# addresses, so a database that has not seen a client yet (one just moved) can keep its
# first connections waiting on the resolver (a bench move saw the page stall 5-9 s right
# after the switch, the resolver's timeout being 5 s).
server_id=$(( $(od -An -N4 -tu4 /dev/urandom) % 4294967294 + 1 ))
exec mariadbd --user=mysql --bind-address=0.0.0.0 --port=3306 --init-file="$init" \
  --skip-name-resolve \
  --log-bin=binlog --log-slave-updates --binlog-format=ROW --server-id="$server_id" \
  --binlog-expire-logs-seconds=604800 "$@"
