"""The SQLite journal: runs, orders, attempts; the order state machine; resume.

Each order moves through explicit states, and each step is committed *before* the action it
describes, so that a crash at any instant leaves a journal that says what may have happened:

    planned ──► sending ──► answered (success / failure)      final
                  │   ├──► pending ──► answered | pending      looked up until the settle time
                  │   ├──► refused                            final 4xx: not processed
                  │   └──► in_doubt ──► answered | planned     settled by the status look-up
                  │                   └► unknown               look-up could not settle it
                  └──► planned                                429 / not sent: safe to send again
    rejected, duplicate                                       never sent

WAL mode with synchronous=NORMAL: a committed transaction survives the process being killed at
any instant (only a power loss could drop the last commits, and then the answer was lost too).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from recon import __version__
from recon.api import Operation
from recon.errors import JournalError
from recon.schema import Batch, Order, Rejection

SCHEMA_VERSION = "2"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
    run_id TEXT PRIMARY KEY, input_name TEXT NOT NULL, input_size INTEGER NOT NULL,
    input_sha256 TEXT NOT NULL, run_key TEXT NOT NULL, rows_read INTEGER NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT NOT NULL DEFAULT '', tool_version TEXT NOT NULL,
    base_url TEXT NOT NULL, pos_ids TEXT NOT NULL, rate REAL NOT NULL,
    user TEXT NOT NULL, host TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders(
    run_id TEXT NOT NULL REFERENCES runs(run_id), seq INTEGER NOT NULL,
    source_row INTEGER NOT NULL, order_id TEXT NOT NULL, pos_id TEXT NOT NULL,
    currency TEXT NOT NULL, amount TEXT, amount_text TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '', server_url TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL, duplicate_of TEXT NOT NULL DEFAULT '',
    http_status INTEGER, code TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',
    op_status TEXT NOT NULL DEFAULT '', op_code TEXT NOT NULL DEFAULT '',
    op_description TEXT NOT NULL DEFAULT '', op_amount TEXT, op_currency TEXT NOT NULL DEFAULT '',
    operation_id TEXT NOT NULL DEFAULT '', payment_id TEXT NOT NULL DEFAULT '',
    transaction_id TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL DEFAULT '',
    processing_time TEXT NOT NULL DEFAULT '', fee_amount TEXT,
    fee_currency TEXT NOT NULL DEFAULT '', first_sent REAL, updated_at TEXT NOT NULL,
    PRIMARY KEY(run_id, seq));
CREATE INDEX IF NOT EXISTS orders_by_order ON orders(order_id, pos_id);
CREATE TABLE IF NOT EXISTS attempts(
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    sent_at TEXT NOT NULL, deadline REAL NOT NULL, answered_at TEXT NOT NULL DEFAULT '',
    http_status INTEGER, reply TEXT NOT NULL DEFAULT '', body TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS attempts_by_order ON attempts(run_id, seq);
CREATE TABLE IF NOT EXISTS rejections(
    run_id TEXT NOT NULL, source_row INTEGER NOT NULL, column_name TEXT NOT NULL,
    value TEXT NOT NULL, problem TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workbooks(
    run_id TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, written_at TEXT NOT NULL);
"""

MAX_BODY_CHARS = 20_000  # what the journal keeps of an answer: enough for any real one
DEFER_LIMIT = 64  # answers held for the next commit, at most


class State(StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    ANSWERED = "answered"
    PENDING = "pending"
    REFUSED = "refused"
    IN_DOUBT = "in_doubt"
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


# An order in one of these states in any run may have been captured: never send it again.
MAY_BE_CAPTURED = (State.SENDING, State.PENDING, State.IN_DOUBT, State.UNKNOWN)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RunInfo:
    """The evidence of one run, as the Summary sheet shows it."""

    run_id: str
    input_name: str
    input_size: int
    input_sha256: str
    rows_read: int
    rows_sent: int
    started_at: str  # ISO 8601 UTC
    finished_at: str  # ISO 8601 UTC, "" while running
    tool_version: str
    base_url: str
    pos_ids: tuple[str, ...]
    rate: float
    user: str
    host: str


@dataclass(frozen=True)
class OrderRecord:
    """One order as the journal holds it: input row, state, and the answer that settled it."""

    seq: int
    order: Order
    state: State
    duplicate_of: str = ""
    http_status: int | None = None
    code: str = ""  # the provider's code of the answer or refusal
    message: str = ""  # its description, or why the order is in doubt or unknown
    operation: Operation | None = None  # the capture as the provider reported it
    first_sent: float | None = None
    attempts: int = 0  # capture requests sent


@dataclass(frozen=True)
class Settlement:
    """What an answer says about an order, for `Journal.settle`."""

    state: State
    http_status: int | None = None
    code: str = ""
    message: str = ""
    operation: Operation | None = None


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def run_key(
    sha256: str, pos_ids: tuple[str, ...], base_url: str, sheet: str | None, decimal: str | None
) -> str:
    """What makes two invocations the same run: the same bytes read the same way (sheet,
    decimal separator), for the same POS ids, against the same endpoint. A sandbox run never
    resumes as a real one, and another sheet of the same workbook is another run."""
    pos = ",".join(sorted(p.lower() for p in pos_ids))
    return "|".join((sha256, pos, base_url.rstrip("/"), sheet or "", decimal or ""))


def _operation_columns(op: Operation | None) -> tuple[object, ...]:
    """The orders table's op_* columns, in their order, for an operation or none."""
    if op is None:
        return ("", "", "", None, "", "", "", "", "", "", None, "")
    return (
        op.status, op.status_code, op.status_description, _text(op.amount), op.currency,
        op.operation_id, op.payment_id, op.transaction_id, op.created_at, op.processing_time,
        _text(op.fee_amount), op.fee_currency,
    )  # fmt: skip


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def _lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalError(
            f"journal {path} is in use by another recon capture; wait for it to finish "
            "(two at once would send each other's orders)"
        ) from None
    return fd


class Journal:
    """One SQLite file; every method commits before it returns."""

    def __init__(self, path: Path, *, exclusive: bool = False) -> None:
        """Open or create the journal; `exclusive` holds a lock for as long as it is open, so
        that two captures never work on one journal at once (each would send the other's
        planned orders)."""
        self.path = path
        self._lock: int | None = None
        self._deferred: list[tuple[tuple[object, ...], tuple[object, ...] | None]] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists() and path.stat().st_size > 0
            if exclusive:
                self._lock = _lock(path)
            if not path.exists():
                # Owner-only from the first byte; SQLite gives -wal and -shm the same mode.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise JournalError(f"journal {path} cannot be opened: {exc.strerror or exc}") from exc
        try:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            if existed:
                result = self.db.execute("PRAGMA integrity_check").fetchone()
                if result is None or result[0] != "ok":
                    raise JournalError(
                        f"journal {path} fails SQLite's integrity check ({result and result[0]}); "
                        "refusing to use it: restore it from a backup or inspect it by hand"
                    )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            version = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if version is None:
                self.db.execute("INSERT INTO meta VALUES('schema', ?)", (SCHEMA_VERSION,))
            elif version[0] != SCHEMA_VERSION:
                raise JournalError(f"journal {path} has schema {version[0]}, not {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"journal {path} cannot be used: {exc}") from exc

    def close(self) -> None:
        self.flush()
        self.db.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction, which also carries the answers `settle` deferred."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._write_deferred()
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self._deferred.clear()

    def flush(self) -> None:
        """Commit the answers `settle` deferred (reads call it first, so they see everything)."""
        if self._deferred:
            with self._tx():
                pass

    def _write_deferred(self) -> None:
        for attempt, order in self._deferred:
            self.db.execute(
                "UPDATE attempts SET answered_at=?, http_status=?, reply=?, body=?, message=?"
                " WHERE id=?",
                attempt,
            )
            if order is not None:
                self.db.execute(
                    "UPDATE orders SET state=?, http_status=?, code=?, message=?, op_status=?,"
                    " op_code=?, op_description=?, op_amount=?, op_currency=?, operation_id=?,"
                    " payment_id=?, transaction_id=?, created_at=?, processing_time=?,"
                    " fee_amount=?, fee_currency=?, updated_at=? WHERE run_id=? AND seq=?",
                    order,
                )

    # --- runs -------------------------------------------------------------------------------

    def find_run(self, key: str) -> str | None:
        """The run of this input (see `run_key`), to resume it instead of starting over."""
        row = self.db.execute(
            "SELECT run_id FROM runs WHERE run_key=? ORDER BY started_at DESC", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def create_run(
        self,
        batch: Batch,
        *,
        input_name: str,
        input_size: int,
        input_sha256: str,
        base_url: str,
        rate: float,
        user: str,
        key: str = "",
    ) -> str:
        """Record a run and plan its orders; one another run may have captured is a duplicate."""
        run_id = new_run_id()
        pos_ids = tuple(sorted({o.pos_id for o in batch.orders}))
        now = utc_now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs(run_id, input_name, input_size, input_sha256, run_key, rows_read,"
                " started_at, tool_version, base_url, pos_ids, rate, user, host)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id, input_name, input_size, input_sha256, key or run_id,
                    len(batch.rows), now, __version__, base_url, ",".join(pos_ids), rate, user,
                    socket.gethostname(),
                ),
            )  # fmt: skip
            rejected = {o.source_row for o in batch.rejected}
            rows = []
            for seq, order in enumerate(batch.rows):
                state, dup = State.PLANNED, ""
                if order.source_row in rejected:
                    state = State.REJECTED
                else:
                    dup = self._captured_elsewhere(order, run_id)
                    state = State.DUPLICATE if dup else State.PLANNED
                rows.append(
                    (
                        run_id, seq, order.source_row, order.order_id, order.pos_id,
                        order.currency, _text(order.amount), order.amount_text, order.comment,
                        order.server_url, state, dup, now,
                    )
                )  # fmt: skip
            db.executemany(
                "INSERT INTO orders(run_id, seq, source_row, order_id, pos_id, currency, amount,"
                " amount_text, comment, server_url, state, duplicate_of, updated_at)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            db.executemany(
                "INSERT INTO rejections VALUES(?,?,?,?,?)",
                [(run_id, r.source_row, r.column, r.value, r.problem) for r in batch.rejections],
            )
        return run_id

    def _captured_elsewhere(self, order: Order, run_id: str) -> str:
        """The id of another run against the same endpoint that captured this order, or may
        have; "" when none did. POS ids are UUIDs: compared without regard to case."""
        row = self.db.execute(
            "SELECT o.run_id FROM orders o JOIN runs r ON r.run_id = o.run_id"
            " WHERE o.order_id=? AND lower(o.pos_id)=lower(?) AND o.run_id<>?"
            " AND r.base_url=(SELECT base_url FROM runs WHERE run_id=?)"
            " AND (o.state IN (?,?,?,?) OR (o.state=? AND o.op_status='success')) LIMIT 1",
            (order.order_id, order.pos_id, run_id, run_id, *MAY_BE_CAPTURED, State.ANSWERED),
        ).fetchone()
        return "" if row is None else str(row[0])

    def finish_run(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET finished_at=? WHERE run_id=?", (utc_now(), run_id))

    def run_info(self, run_id: str) -> RunInfo:
        self.flush()
        row = self.db.execute(
            "SELECT run_id, input_name, input_size, input_sha256, rows_read, started_at,"
            " finished_at, tool_version, base_url, pos_ids, rate, user, host FROM runs"
            " WHERE run_id=?",
            (run_id,),
        ).fetchone()
        if row is None:
            known = ", ".join(r.run_id for r in self.runs()[-5:]) or "none"
            raise JournalError(f"no run {run_id!r} in journal {self.path} (latest: {known})")
        sent = self.db.execute(
            "SELECT COUNT(DISTINCT seq) FROM attempts WHERE run_id=? AND kind='capture'", (run_id,)
        ).fetchone()[0]
        return RunInfo(
            run_id=row[0], input_name=row[1], input_size=row[2], input_sha256=row[3],
            rows_read=row[4], rows_sent=int(sent), started_at=row[5], finished_at=row[6],
            tool_version=row[7], base_url=row[8],
            pos_ids=tuple(p for p in row[9].split(",") if p), rate=row[10], user=row[11],
            host=row[12],
        )  # fmt: skip

    def runs(self) -> list[RunInfo]:
        ids = [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY started_at")]
        return [self.run_info(i) for i in ids]

    # --- orders -----------------------------------------------------------------------------

    def records(self, run_id: str) -> list[OrderRecord]:
        self.flush()
        attempts = dict(
            self.db.execute(
                "SELECT seq, COUNT(*) FROM attempts WHERE run_id=? AND kind='capture' GROUP BY seq",
                (run_id,),
            ).fetchall()
        )
        cursor = self.db.execute(
            "SELECT seq, source_row, order_id, pos_id, currency, amount, amount_text, comment,"
            " server_url, state, duplicate_of, http_status, code, message, op_status, op_code,"
            " op_description, op_amount, op_currency, operation_id, payment_id, transaction_id,"
            " created_at, processing_time, fee_amount, fee_currency, first_sent"
            " FROM orders WHERE run_id=? ORDER BY seq",
            (run_id,),
        )
        return [
            OrderRecord(
                seq=r[0],
                order=(
                    order := Order(
                        source_row=r[1],
                        order_id=r[2],
                        pos_id=r[3],
                        currency=r[4],
                        amount=_dec(r[5]),
                        amount_text=r[6],
                        comment=r[7],
                        server_url=r[8],
                    )
                ),
                state=State(r[9]),
                duplicate_of=r[10],
                http_status=r[11],
                code=r[12],
                message=r[13],
                operation=None
                if not r[14]
                else Operation(
                    order_id=order.order_id,
                    pos_id=order.pos_id,
                    method="capture",
                    status=r[14],
                    status_code=r[15],
                    status_description=r[16],
                    amount=_dec(r[17]),
                    currency=r[18],
                    operation_id=r[19],
                    payment_id=r[20],
                    transaction_id=r[21],
                    created_at=r[22],
                    processing_time=r[23],
                    fee_amount=_dec(r[24]),
                    fee_currency=r[25],
                ),
                first_sent=r[26],
                attempts=int(attempts.get(r[0], 0)),
            )  # fmt: skip
            for r in cursor
        ]

    def unsettled(self, run_id: str) -> int:
        """Orders of the run that a resume would send or look up."""
        self.flush()
        row = self.db.execute(
            "SELECT COUNT(*) FROM orders WHERE run_id=? AND state IN (?,?,?,?,?)",
            (run_id, State.PLANNED, State.SENDING, State.IN_DOUBT, State.UNKNOWN, State.PENDING),
        ).fetchone()
        return int(row[0])

    def rejections(self, run_id: str) -> list[Rejection]:
        cursor = self.db.execute(
            "SELECT source_row, column_name, value, problem FROM rejections WHERE run_id=?"
            " ORDER BY rowid",
            (run_id,),
        )
        return [Rejection(*r) for r in cursor]

    def mark_sending(self, run_id: str, seq: int, order: Order, timeout: float) -> int | State:
        """Commit "sending" before the request goes out: the attempt's id, or the state that
        forbids sending (`duplicate` when another run got there first, or whatever state the
        order is in when it is no longer `planned`).

        The deadline (send time + timeout) is kept with the attempt: a look-up that finds no
        capture proves nothing until it is past, because a slow request can still commit.
        """
        now = time.time()
        with self._tx() as db:
            dup = self._captured_elsewhere(order, run_id)
            if dup:
                db.execute(
                    "UPDATE orders SET state=?, duplicate_of=?, updated_at=?"
                    " WHERE run_id=? AND seq=? AND state=?",
                    (State.DUPLICATE, dup, utc_now(), run_id, seq, State.PLANNED),
                )
                return State.DUPLICATE
            updated = db.execute(
                "UPDATE orders SET state=?, first_sent=COALESCE(first_sent, ?), updated_at=?"
                " WHERE run_id=? AND seq=? AND state=?",
                (State.SENDING, now, utc_now(), run_id, seq, State.PLANNED),
            )
            if updated.rowcount != 1:  # only a planned order may be sent
                row = db.execute(
                    "SELECT state FROM orders WHERE run_id=? AND seq=?", (run_id, seq)
                ).fetchone()
                return State(row[0]) if row else State.REJECTED
            cursor = db.execute(
                "INSERT INTO attempts(run_id, seq, kind, sent_at, deadline) VALUES(?,?,?,?,?)",
                (run_id, seq, "capture", utc_now(), now + timeout),
            )
        return int(cursor.lastrowid or 0)

    def start_lookup(self, run_id: str, seq: int, timeout: float) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO attempts(run_id, seq, kind, sent_at, deadline) VALUES(?,?,?,?,?)",
                (run_id, seq, "lookup", utc_now(), time.time() + timeout),
            )
        return int(cursor.lastrowid or 0)

    def settle(
        self,
        run_id: str,
        seq: int,
        attempt_id: int,
        settlement: Settlement | None,
        *,
        reply: str,
        http_status: int | None,
        body: str,
        message: str,
    ) -> None:
        """Record an attempt's answer and, when it says something, the order's new state.

        Deferred to the next transaction (the next order's "sending", a look-up, a read, or
        `flush`) to halve the commits per order. Safe by construction: until it is committed
        the order reads "sending", which a resumed run settles by a look-up, never by a resend.
        """
        attempt = (utc_now(), http_status, reply, body[:MAX_BODY_CHARS], message, attempt_id)
        s = settlement
        order = None
        if s is not None:
            order = (
                s.state, s.http_status, s.code, s.message, *_operation_columns(s.operation),
                utc_now(), run_id, seq,
            )  # fmt: skip
        self._deferred.append((attempt, order))
        if len(self._deferred) >= DEFER_LIMIT:
            self.flush()

    def set_state(self, run_id: str, seq: int, state: State, message: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE orders SET state=?, message=CASE WHEN ?<>'' THEN ? ELSE message END,"
                " updated_at=? WHERE run_id=? AND seq=?",
                (state, message, message, utc_now(), run_id, seq),
            )

    def last_deadline(self, run_id: str, seq: int) -> float | None:
        """The last deadline of the order's captures: "no capture" is proof only after it."""
        row = self.db.execute(
            "SELECT MAX(deadline) FROM attempts WHERE run_id=? AND seq=? AND kind='capture'",
            (run_id, seq),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])  # epoch s: ok

    def had_operation(self, run_id: str, seq: int) -> bool:
        """Whether any answer for this order was an operation (the provider knows of it)."""
        self.flush()
        row = self.db.execute(
            "SELECT 1 FROM attempts WHERE run_id=? AND seq=? AND reply='operation' LIMIT 1",
            (run_id, seq),
        ).fetchone()
        return row is not None

    def first_sent(self, run_id: str, seq: int) -> float | None:
        row = self.db.execute(
            "SELECT first_sent FROM orders WHERE run_id=? AND seq=?", (run_id, seq)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])  # epoch s: ok

    def attempts(self, run_id: str, seq: int) -> list[dict[str, object]]:
        self.flush()
        cursor = self.db.execute(
            "SELECT kind, sent_at, deadline, answered_at, http_status, reply, body, message"
            " FROM attempts WHERE run_id=? AND seq=? ORDER BY id",
            (run_id, seq),
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor]

    # --- workbooks --------------------------------------------------------------------------

    def record_workbook(self, run_id: str, path: Path, sha256: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO workbooks VALUES(?,?,?,?)", (run_id, str(path), sha256, utc_now())
            )

    def workbooks(self, sha256: str) -> list[tuple[str, str]]:
        """(run id, path) of every workbook written with these bytes."""
        return [
            (r[0], r[1])
            for r in self.db.execute("SELECT run_id, path FROM workbooks WHERE sha256=?", (sha256,))
        ]
