"""Backups of an OverCloud's database tier, and restores from them.

A backup is a consistent logical dump of the OverCloud's WordPress database:
`mariadb-dump --single-transaction` inside the db container (one InnoDB snapshot: the site
keeps serving and writing while it runs, and the dump is of one instant), with
`--add-drop-database`, so a restore brings the database back exactly as it was — tables made
since are gone too. The dump streams out of the node through `lxc exec`, is compressed here
and kept under the state directory:

    STATE/backups/<overcloud>/<id>.sql.gz       the dump (gzip)
    STATE/backups/<overcloud>/<id>.uploads.tgz  WordPress's uploads (a tar, gzip)
    STATE/backups/<overcloud>/<id>.json         id, time, bytes, sha256, node, host, and the
                                                uploads' bytes and sha256

WordPress's uploads are the primary app replica's uploads volume (the first app node: the
web nodes' nginx send every request that writes or serves them there; see
orchestrator/stack/nginx/entrypoint.sh), read with `tar` inside its WordPress container right
after the dump. A restore replaces them — files uploaded since are gone, as the database's
rows are — after both files have been checked against their recorded SHA-256.

The dump is written to a `.part` file, checked complete (mariadb-dump's closing
`-- Dump completed` line) and fsynced before it is renamed and its `.json` written, so a
listed backup is a whole one; a killed or retried `dump` task starts the file again.
`prune` keeps the newest `keep` backups of the OverCloud.

Both run as orchestrator workflows (`BackupRequested`, `RestoreRequested`), so a request is
followed live like any other (`--wait`), refused while the OverCloud is not ready or busy,
and a killed orchestrator resumes it. The secrets never leave the node: the commands read
the root password from the db container's own environment.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from orchestrator.hosts import HostDriver, MovableHost
from orchestrator.provision import STACK_DIR, Context
from orchestrator.request import NAME_RE, OverCloudRequest
from orchestrator.stack.compose import SOURCE_SECRETS
from orchestrator.workflow import ActionRegistry, TaskContext, TaskSpec, WorkflowSpec
from overcloud.errors import PermanentError, TemporaryError
from overcloud.settings import Settings

ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
"""A backup id: its UTC time and 6 hex digits of the request's id (`20261130T060102Z-4f1c2a`)."""

DUMP_SH = (SOURCE_SECRETS + 'MYSQL_PWD="$DB_ROOT_PASSWORD" exec mariadb-dump -uroot --single-transaction '
           '--quick --routines --triggers --events --hex-blob --add-drop-database '
           '--databases "$DB_NAME"')
LOAD_SH = SOURCE_SECRETS + 'MYSQL_PWD="$DB_ROOT_PASSWORD" exec mariadb -uroot'
UPLOADS_PARENT = "/var/lib/wordpress/wp-content"
TAR_OUT_SH = f"cd {UPLOADS_PARENT} && exec tar -cf - uploads"
TAR_IN_SH = (f"cd {UPLOADS_PARENT}/uploads && find . -mindepth 1 -delete && "
             "exec tar -xf - --strip-components=1")
"""Replace the uploads with the archive's (its members are `uploads/...`; GNU tar refuses
members that climb out with `..`)."""
COMPLETE = b"-- Dump completed"
CHUNK = 1 << 16


@dataclass(frozen=True)
class Backup:
    id: str
    overcloud: str
    time: float
    bytes: int
    sha256: str
    node: str
    host: str
    request_id: str = ""
    """The OverCloud's incarnation (its creating request): a later OverCloud of the same name
    (after a delete) may be someone else's, and never restores this backup."""
    uploads_bytes: int = 0
    uploads_sha256: str = ""
    """The uploads archive's; empty for a backup made before uploads were backed up (its
    restore leaves the uploads as they are)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def backup_dir(s: Settings, overcloud: str) -> Path:
    """Where `overcloud`'s backups live; the name must be an OverCloud name (a DNS label), so
    no outside text ever picks another directory (`../x`)."""
    if not NAME_RE.fullmatch(overcloud):
        raise PermanentError(f"{overcloud[:64]!r} is not an OverCloud name")
    return s.state_dir / "backups" / overcloud


def new_id(request_id: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{request_id[:6]}"


def list_backups(s: Settings, overcloud: str, request_id: str | None = None) -> list[Backup]:
    """The OverCloud's complete backups, oldest first (a `.json` names each one); only those
    of one incarnation when `request_id` is given."""
    out = []
    for meta in backup_dir(s, overcloud).glob("*.json"):
        try:
            out.append(Backup(**json.loads(meta.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # a file that is not ours, or half-written by a crash: not a backup
    return sorted((b for b in out if request_id is None or b.request_id == request_id),
                  key=lambda b: (b.time, b.id))


def find_backup(s: Settings, overcloud: str, backup_id: str, request_id: str | None = None
                ) -> Backup:
    """The backup `backup_id` of `overcloud` — of its current incarnation when `request_id` is
    given."""
    if not ID_RE.fullmatch(backup_id):
        raise PermanentError(f"{backup_id[:40]!r} is not a backup id (e.g. 20261130T060102Z-4f1c2a; "
                             f"see: overcloud backup list {overcloud})")
    found = next((b for b in list_backups(s, overcloud) if b.id == backup_id), None)
    if found is None:
        raise PermanentError(f"{overcloud} has no backup {backup_id} (see: overcloud backup list "
                             f"{overcloud})")
    if request_id is not None and found.request_id != request_id:
        raise PermanentError(f"backup {backup_id} was made of an earlier OverCloud named "
                             f"{overcloud} (deleted since): this one cannot restore it")
    return found


def backup_spec(name: str, backup_id: str, keep: int) -> WorkflowSpec:
    return WorkflowSpec(kind="backup", subject=name, tasks=(
        TaskSpec("dump", "dump_database", {"id": backup_id}, after=(), retries=2, timeout=1800),
        TaskSpec("prune", "prune_backups", {"keep": keep}, after=("dump",), retries=2,
                 timeout=60),
    ))


def restore_spec(name: str, backup_id: str, source: str = "") -> WorkflowSpec:
    return WorkflowSpec(kind="restore", subject=name, tasks=(
        TaskSpec("restore", "restore_database", {"id": backup_id, "source": source}, after=(),
                 retries=2, timeout=1800),
    ))


def refused_spec(kind: str, name: str, reason: str) -> WorkflowSpec:
    """A backup or restore the orchestrator refused, as a workflow failing with the reason."""
    return WorkflowSpec(kind=kind, subject=name, tasks=(
        TaskSpec("refuse", "refuse_request", {"reason": reason}, after=(), retries=0,
                 timeout=10),))


def _compose_exec(*cmd: str, service: str = "db") -> tuple[str, ...]:
    return ("docker", "compose", "--project-directory", STACK_DIR, "exec", "-T", service, *cmd)


def _tier_node(c: Context, name: str, tier: str) -> tuple[str, str, MovableHost, str]:
    """The first node of `name` running `tier` (for `app`: the primary replica), its host,
    that host's driver, and the OverCloud's incarnation."""
    rec = c.registry.get(name)
    if rec is None:
        raise PermanentError(f"no OverCloud named {name!r}")
    first = next(iter(OverCloudRequest.from_spec(rec.spec).nodes_of(tier)), None)
    node = next((n for n in rec.nodes if n.node == first), None)
    if node is None:
        raise PermanentError(f"{name} has no {tier} node")
    driver: HostDriver | None = c.hosts.get(node.host)
    if driver is None:
        raise PermanentError(f"{node.node} runs on {node.host}, which is not one of our hosts")
    if not hasattr(driver, "exec_stream"):
        raise PermanentError(f"{node.host} cannot stream a dump out of a node")
    return node.node, node.host, driver, rec.request_id  # type: ignore[return-value]


def _db_node(c: Context, name: str) -> tuple[str, str, MovableHost, str]:
    return _tier_node(c, name, "db")


def _stream_out(driver: MovableHost, node: str, cmd: tuple[str, ...], part: Path
                ) -> tuple[str, bytes]:
    """Run `cmd` in `node` and keep its output gzipped in `part` (fsynced); returns the
    file's SHA-256 and the output's last 4 KiB. Raises TemporaryError (the `.part` removed)
    when the command fails."""
    proc = driver.exec_stream(node, *cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    digest, tail = hashlib.sha256(), b""
    try:
        with part.open("wb") as raw:
            with gzip.GzipFile(fileobj=_Hashing(raw, digest), mode="wb",
                               compresslevel=3) as gz:
                while chunk := proc.stdout.read(CHUNK):
                    gz.write(chunk)
                    tail = (tail + chunk)[-4096:]
            raw.flush()
            os.fsync(raw.fileno())
        _, err = proc.communicate(timeout=60)
    except BaseException:
        proc.kill()
        proc.wait(10)
        part.unlink(missing_ok=True)
        raise
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        why = (err or b"").decode(errors="replace").strip()[-300:] or f"exit {proc.returncode}"
        raise TemporaryError(f"{node}: {why}")
    return digest.hexdigest(), tail


def _stream_in(driver: MovableHost, node: str, cmd: tuple[str, ...], path: Path) -> None:
    """Feed the gzipped file `path`, uncompressed, to `cmd` in `node`."""
    proc = driver.exec_stream(node, *cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        # a BrokenPipeError means the command stopped reading: its exit status and stderr
        # say why
        with contextlib.suppress(BrokenPipeError), gzip.open(path, "rb") as gz:
            shutil.copyfileobj(gz, proc.stdin, CHUNK)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        err = proc.stderr.read()
        proc.wait(timeout=1800)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    if proc.returncode != 0:
        why = (err or b"").decode(errors="replace").strip()[-300:] or f"exit {proc.returncode}"
        raise TemporaryError(f"{node}: {why}")


def _check(path: Path, sha256: str, what: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise PermanentError(f"{what} is damaged (its SHA-256 is not the one recorded when it "
                             "was made): not restoring it")


def dump(c: Context, name: str, backup_id: str) -> Backup:
    """Dump the database of `name` into a new backup `backup_id` (idempotent by id)."""
    folder = backup_dir(c.settings, name)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    meta = folder / f"{backup_id}.json"
    if meta.exists():
        return Backup(**json.loads(meta.read_text()))
    node, host, driver, request_id = _db_node(c, name)
    part = folder / f"{backup_id}.sql.gz.part"
    try:
        sha256, tail = _stream_out(driver, node, _compose_exec("sh", "-c", DUMP_SH), part)
    except TemporaryError as exc:
        raise TemporaryError(f"dumping {name}'s database failed: {exc}") from None
    if COMPLETE not in tail:
        part.unlink(missing_ok=True)
        raise TemporaryError(f"dumping {name}'s database on {node} failed: the dump ended "
                             "early")
    final = folder / f"{backup_id}.sql.gz"
    part.rename(final)
    app, _, app_driver, _ = _tier_node(c, name, "app")
    upart = folder / f"{backup_id}.uploads.tgz.part"
    try:
        uploads_sha256, _ = _stream_out(
            app_driver, app, _compose_exec("sh", "-c", TAR_OUT_SH, service="wordpress"), upart)
    except TemporaryError as exc:
        raise TemporaryError(f"archiving {name}'s uploads failed: {exc}") from None
    uploads = folder / f"{backup_id}.uploads.tgz"
    upart.rename(uploads)
    b = Backup(backup_id, name, time.time(), final.stat().st_size, sha256, node, host,
               request_id, uploads.stat().st_size, uploads_sha256)
    tmp = meta.with_suffix(".json.part")
    tmp.write_text(json.dumps(b.to_dict()))
    tmp.rename(meta)
    return b


def prune(s: Settings, name: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` backups of `name`; returns the ids deleted."""
    gone, found, folder = [], list_backups(s, name), backup_dir(s, name)
    for b in found[: max(0, len(found) - keep)]:
        (folder / f"{b.id}.json").unlink(missing_ok=True)  # first: unlisted before it is gone
        (folder / f"{b.id}.sql.gz").unlink(missing_ok=True)
        (folder / f"{b.id}.uploads.tgz").unlink(missing_ok=True)
        gone.append(b.id)
    return gone


def restore(c: Context, name: str, backup_id: str, source: str = "") -> Backup:
    """Load backup `backup_id` into `name`'s database (the dump drops and re-creates it).

    `source`: the OverCloud the backup was made of, when it is another one (a clone to
    staging); it must still exist, as the incarnation the backup was made of. WordPress's
    own address (`siteurl`, `home`) is then set to `name`'s URL, or the clone would send its
    visitors to the original."""
    node, _, driver, request_id = _db_node(c, name)
    if source and source != name:
        src = c.registry.get(source)
        if src is None:
            raise PermanentError(f"no OverCloud named {source!r} to restore a backup of")
        request_id = src.request_id
    b = find_backup(c.settings, source or name, backup_id, request_id)
    folder = backup_dir(c.settings, source or name)
    path, uploads = folder / f"{b.id}.sql.gz", folder / f"{b.id}.uploads.tgz"
    _check(path, b.sha256, f"backup {b.id} of {source or name}")
    if b.uploads_sha256:
        _check(uploads, b.uploads_sha256, f"the uploads of backup {b.id} of {source or name}")
    try:
        _stream_in(driver, node, _compose_exec("sh", "-c", LOAD_SH), path)
    except TemporaryError as exc:
        raise TemporaryError(f"loading backup {b.id} into {name}'s database failed: "
                             f"{exc}") from None
    if b.uploads_sha256:
        app, _, app_driver, _ = _tier_node(c, name, "app")
        try:
            _stream_in(app_driver, app,
                       _compose_exec("sh", "-c", TAR_IN_SH, service="wordpress"), uploads)
        except TemporaryError as exc:
            raise TemporaryError(f"restoring {name}'s uploads from backup {b.id} failed: "
                                 f"{exc}") from None
    if source and source != name:
        _run_sql(driver, node, rebase_sql(c.registry.secrets(name).db_name,
                                          c.registry.get(name).url))  # type: ignore[union-attr]
    return b


URL_RE = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+/?")
DB_NAME_RE = re.compile(r"[A-Za-z0-9_]{1,64}")


def sql_string(text: str) -> str:
    """`text` as a MariaDB string literal (the one way SQL text is quoted here)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''").replace("\0", "\\0") + "'"


REBASE_SQL = (
    "SET @t := (SELECT COUNT(*) FROM information_schema.tables WHERE "
    "table_schema = DATABASE() AND table_name = 'wp_options');\n"
    "SET @q := IF(@t > 0, 'UPDATE wp_options SET option_value = ? WHERE option_name "
    "IN (''siteurl'', ''home'')', 'SELECT ?');\n"
    "PREPARE s FROM @q; EXECUTE s USING @u; DEALLOCATE PREPARE s;\n"
)
"""Set WordPress's `siteurl` and `home` to `@u`, if WordPress is installed (a prepared
statement: the URL is a parameter, never part of the statement's text)."""


def sql_ident(name: str) -> str:
    """A MariaDB identifier (a database name) quoted, after checking it is a plain name."""
    if not DB_NAME_RE.fullmatch(name):
        raise PermanentError(f"{name[:64]!r} is not a database name we make")
    return "`" + name + "`"


def rebase_sql(db_name: str, url: str) -> str:
    """Point WordPress at `url` (its `siteurl` and `home` options), if it is installed: a
    restored clone otherwise redirects to the OverCloud it was copied from."""
    if not URL_RE.fullmatch(url):
        raise PermanentError(f"cannot set WordPress's address to {url[:80]!r}")
    return "".join(["USE ", sql_ident(db_name), ";\n",
                    "SET @u := ", sql_string(url.rstrip("/")), ";\n", REBASE_SQL])


def _run_sql(driver: MovableHost, node: str, sql: str) -> None:
    proc = driver.exec_stream(node, *_compose_exec("sh", "-c", LOAD_SH), stdin=subprocess.PIPE)
    _, err = proc.communicate(sql.encode(), timeout=120)
    if proc.returncode != 0:
        raise TemporaryError(f"{node}: {(err or b'').decode(errors='replace').strip()[-300:]}")


class _Hashing:
    """A file object that hashes what is written through it (the compressed bytes)."""

    def __init__(self, f: BinaryIO, digest: Any) -> None:
        self._f, self._digest = f, digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def register_backup_actions(actions: ActionRegistry, c: Context) -> None:
    @actions.action("dump_database")
    def dump_database(ctx: TaskContext) -> dict[str, Any]:
        b = dump(c, str(ctx.input["name"]), str(ctx.args["id"]))
        ctx.report(f"backup {b.id}: {b.bytes} bytes from {b.node} on {b.host}, uploads "
                   f"{b.uploads_bytes} bytes")
        return b.to_dict()

    @actions.action("prune_backups")
    def prune_backups(ctx: TaskContext) -> list[str]:
        gone = prune(c.settings, str(ctx.input["name"]), int(ctx.args["keep"]))
        if gone:
            ctx.report(f"deleted {len(gone)} older backup{'s' * (len(gone) != 1)}")
        return gone

    @actions.action("refuse_request")
    def refuse_request(ctx: TaskContext) -> None:
        raise PermanentError(str(ctx.args["reason"]))

    @actions.action("restore_database")
    def restore_database(ctx: TaskContext) -> dict[str, Any]:
        source = str(ctx.args.get("source") or "")
        b = restore(c, str(ctx.input["name"]), str(ctx.args["id"]), source)
        ctx.report(f"{ctx.input['name']}'s database"
                   + (" and uploads are" if b.uploads_sha256 else " is") + " as "
                   + (f"{source}'s was" if source else "it was") + f" at backup {b.id}")
        return b.to_dict()
