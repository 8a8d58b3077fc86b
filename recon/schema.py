"""The input batch's rules, as pandera checks: a raw table of strings in, Orders and Rejections out.

Every rule of DESIGN.md ("Input columns") is one vectorised pandera check, run lazily so that a
person sees every problem of the file at once, not the first one. Amounts are parsed once per
distinct text (money.parse_amount); the check on them reads the parse's verdict.

Choices the design leaves open, made here:
- `order_currency` is matched after upper-casing (`eur` is EUR); the Order holds the upper case.
- Values other than `comment` lose surrounding spaces when read (ingest); comments are kept whole.
- Every amount is read on its own: `1,234`, `1.234`, `1,000` (one separator, then exactly three
  digits) are an error of their row unless `decimal` says which separator is decimal. The file's
  other amounts never settle it: a file may mix `12,50` with `1,000` meant as a thousand. Excel
  number cells are never ambiguous (their text is ours, "." decimal).
- An amount written with more decimals than allowed, all of them trailing zeros (`100.00` JPY), is
  accepted and held with the allowed decimals (`100`). Such a value is unambiguous by itself
  (`100.00`, `1 000,000`, `1.0000`), or `decimal` was given: `1.000` with `--decimal .` is one.
  The three-zero pattern that could hide a thousand (`1,000`, `2.500`) is refused above first.
- `pos_id` (and the default POS) is held in the canonical lower-case UUID form, so that one POS
  written in two letter cases is one POS (the journal keys on it).
"""

from __future__ import annotations

import csv
import itertools
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import iso4217
import numpy as np
import pandas as pd
import pandera.pandas as pa

from recon import money
from recon.errors import UsageError
from recon.ingest import COLUMNS, RawTable

MAX_ORDER_ID = 32
MAX_COMMENT = 2048
MAX_URL = 2048
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
URL = re.compile(
    rf"[Hh][Tt][Tt][Pp][Ss]?://(?:(?:{_LABEL}\.)*{_LABEL}|\[[0-9A-Fa-f:.]+\])"
    r"(?::[0-9]{1,5})?(?:[/?#]\S*)?"
)
CURRENCIES = frozenset(c.code for c in iso4217.Currency if money.is_currency(c.code))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ALLOWED_DECIMALS = {code: money.allowed_decimals(code) for code in CURRENCIES}
# Amounts that need no interpreting: `1234.50` (not `1.234`, which could mean 1234), not zero.
_NOT_ZERO = r"(?!0+(?:\.0+)?$)"
_PLAIN_WRITTEN = re.compile(rf"(?!{money.AMBIGUOUS_DOT}$){_NOT_ZERO}{money.PLAIN_AMOUNT}")
# Excel number cells are written by us, "." always decimal: `1.234` is plain there.
_PLAIN_EXCEL = re.compile(rf"{_NOT_ZERO}{money.PLAIN_AMOUNT}")
# Cells that a spreadsheet would run as a formula when the errors CSV is opened.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Order:
    """One input row, typed. `amount` None means: capture the whole hold."""

    source_row: int  # the row number a person sees in Excel, or the CSV line
    order_id: str
    pos_id: str
    currency: str
    amount: Decimal | None
    comment: str = ""
    server_url: str = ""
    amount_text: str = ""  # as written in the file, for rejected rows whose amount did not parse


@dataclass(frozen=True)
class Rejection:
    """One problem with one cell (or a row, when column names the missing thing)."""

    source_row: int
    column: str
    value: str
    problem: str


@dataclass(frozen=True)
class Batch:
    """The validated input: every row read, valid or not, in input order."""

    orders: tuple[Order, ...]  # valid rows
    rejected: tuple[Order, ...]  # invalid rows, typed as far as they could be (amount may be None)
    rejections: tuple[Rejection, ...]

    @property
    def rows(self) -> tuple[Order, ...]:
        """Every row, valid and rejected, in input order."""
        return tuple(sorted(self.orders + self.rejected, key=lambda o: o.source_row))


# --- the rules --------------------------------------------------------------------------------

# Check name → the problem, in plain words, from the cell's value.
_Problem = Callable[[str], str]
PROBLEMS: dict[str, _Problem] = {
    "order_id_blank": lambda v: "order_id is blank",
    "order_id_long": lambda v: (
        f"order_id has {len(v)} characters; at most {MAX_ORDER_ID} are allowed"
    ),
    "order_id_control": lambda v: "order_id holds a line break or another control character",
    "order_id_unique": lambda v: f"order_id {v!r} appears more than once in the file",
    "currency_blank": lambda v: "order_currency is blank; an ISO 4217 code such as EUR is needed",
    "currency_iso": lambda v: (
        f"{v!r} is not an ISO 4217 payment currency code (such as EUR or USD)"
    ),
    "amount": lambda v: v,  # not used: the amount check's column holds the problem itself
    "comment_long": lambda v: f"comment has {len(v)} characters; at most {MAX_COMMENT} are allowed",
    "server_url": lambda v: f"{v[:80]!r} is not an http(s) URL",
    "pos_id_blank": lambda v: "pos_id is blank and no default POS is set (FINLINE_POS_ID)",
    "pos_id_uuid": lambda v: (
        f"{v[:80]!r} is not a UUID (like 123e4567-e89b-12d3-a456-426614174000)"
    ),
}
# The input column each check reports against (the amount check runs on a derived column).
CHECK_COLUMN = {
    "amount": "charge_amount",
    **{k: "order_id" for k in PROBLEMS if k.startswith("order_id")},
    "currency_blank": "order_currency",
    "currency_iso": "order_currency",
    "comment_long": "comment",
    "server_url": "server_url",
    "pos_id_blank": "pos_id",
    "pos_id_uuid": "pos_id",
}


# Vectorised helpers: map() over the values runs at C speed, where pandas' .str methods on
# Python strings call a lambda per cell (3-5 times slower on a million rows).
def _lengths(s: pd.Series[str]) -> pd.Series[float]:
    return pd.Series(np.fromiter(map(len, s.tolist()), dtype=np.int64, count=len(s)), s.index)


def _matches(pattern: re.Pattern[str], s: pd.Series[str], full: bool = True) -> pd.Series[bool]:
    test = pattern.fullmatch if full else pattern.search
    found = np.fromiter(map(bool, map(test, s.tolist())), dtype=bool, count=len(s))
    return pd.Series(found, index=s.index)


def _check(name: str, ok: Callable[[pd.Series[str]], pd.Series[bool]]) -> pa.Check:
    return pa.Check(ok, name=name, ignore_na=False)


SCHEMA = pa.DataFrameSchema(
    {
        "order_id": pa.Column(
            None,
            checks=[
                _check("order_id_blank", lambda s: s != ""),
                _check("order_id_long", lambda s: _lengths(s) <= MAX_ORDER_ID),
                _check("order_id_control", lambda s: ~_matches(_CONTROL, s, full=False)),
                _check("order_id_unique", lambda s: (s == "") | ~s.duplicated(keep=False)),
            ],
        ),
        "order_currency": pa.Column(
            None,
            checks=[
                _check("currency_blank", lambda s: s != ""),
                _check("currency_iso", lambda s: (s == "") | s.isin(CURRENCIES)),
            ],
        ),
        "amount_problem": pa.Column(None, checks=[_check("amount", lambda s: s == "")]),
        "comment": pa.Column(
            None, checks=[_check("comment_long", lambda s: _lengths(s) <= MAX_COMMENT)]
        ),
        "server_url": pa.Column(
            None,
            checks=[
                _check(
                    "server_url",
                    lambda s: (s == "") | ((_lengths(s) <= MAX_URL) & _matches(URL, s)),
                )
            ],
        ),
        "pos_id": pa.Column(
            None,
            checks=[
                _check("pos_id_blank", lambda s: s != ""),
                _check("pos_id_uuid", lambda s: (s == "") | _matches(UUID, s)),
            ],
        ),
    },
    strict=False,
    name="orders",
)


# --- amounts ----------------------------------------------------------------------------------


def _amounts(
    table: RawTable, texts: pd.Series[str], currencies: pd.Series[str], decimal: str | None
) -> tuple[list[Decimal | None], pd.Series[str]]:
    """Per row: the amount (None when blank or bad) and the amount's problem ("" when none).

    Plain amounts (`1234.50`, the bulk of any big file) are converted in one vectorised pass;
    the rest are parsed one distinct text at a time with money.parse_amount.
    """
    n = len(texts)
    numeric = np.zeros(n, dtype=bool)  # Excel number cells: canonical text, "." decimal
    numeric[sorted(table.numeric_amounts)] = True
    plain = _matches(_PLAIN_WRITTEN, texts).to_numpy(dtype=bool) & ~numeric
    if decimal == ",":
        plain[:] = False
    if numeric.any():
        at = np.flatnonzero(numeric)
        plain[at] = _matches(_PLAIN_EXCEL, texts.iloc[at]).to_numpy(dtype=bool)
    plain_at = np.flatnonzero(plain)
    values = texts.iloc[plain_at].tolist()
    amounts = np.full(n, None, dtype=object)
    amounts[plain_at] = list(map(Decimal, values))
    # Decimals as written, and once trailing zeros are dropped: from the text, at C speed.
    dot = np.fromiter(map(str.find, values, itertools.repeat(".")), np.int64, len(values))
    length = np.fromiter(map(len, values), np.int64, len(values))
    trimmed = np.fromiter(
        map(len, map(str.rstrip, values, itertools.repeat("0"))), np.int64, len(values)
    )
    written = np.zeros(n, dtype=np.int64)
    places = np.zeros(n, dtype=np.int64)
    written[plain_at] = np.where(dot >= 0, length - dot - 1, 0)
    places[plain_at] = np.where(dot >= 0, trimmed - dot - 1, 0)
    problems = np.full(n, "", dtype=object)

    rest = np.flatnonzero(~plain & (texts != "").to_numpy(dtype=bool))
    cache: dict[tuple[str, bool], Decimal | str] = {}
    for i in rest.tolist():
        key = (str(texts.iat[i]), bool(numeric[i]))
        if key not in cache:
            try:
                cache[key] = money.parse_amount(key[0], "." if key[1] else decimal)
            except money.AmountError as exc:
                cache[key] = str(exc)
        result = cache[key]
        if isinstance(result, str):
            problems[i] = result
        else:
            amounts[i] = result
            written[i] = _written_places(result)
            places[i] = money.decimals_of(result)

    allowed = currencies.map(ALLOWED_DECIMALS).fillna(99).astype("int64").to_numpy()
    for i in np.flatnonzero((places > allowed) & (amounts != None)).tolist():  # noqa: E711
        problems[i] = f"{texts.iat[i]!r} has {_places(int(places[i]))}; {currencies.iat[i]} " + (
            f"allows at most {_places(int(allowed[i]))}" if allowed[i] else "allows no decimals"
        )
    # `100.00` JPY: only trailing zeros beyond the allowed decimals; hold it as `100`.
    for i in np.flatnonzero((written > allowed) & (places <= allowed)).tolist():
        amount = amounts[i]
        if isinstance(amount, Decimal) and not problems[i]:
            amounts[i] = amount.quantize(Decimal(1).scaleb(-int(allowed[i])))
    return amounts.tolist(), pd.Series(problems, index=texts.index, dtype=object)


def _places(n: int) -> str:
    return f"{n} decimal" + ("" if n == 1 else "s")


def _written_places(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


# --- validate ---------------------------------------------------------------------------------


def validate(table: RawTable, default_pos_id: str | None, decimal: str | None = None) -> Batch:
    """Check every rule of DESIGN.md at once (lazy) and split the rows into valid and rejected.

    Row problems come back as Rejections, never raised. UsageError only for settings that cannot
    work: `decimal` other than "." or ",", or a default POS id that is not a UUID.
    """
    if decimal not in (None, *money.DECIMAL_SEPARATORS):
        raise UsageError(f"the decimal separator must be '.' or ',', not {decimal!r}")
    if default_pos_id is not None and not UUID.fullmatch(default_pos_id.strip()):
        raise UsageError(f"the default POS id (FINLINE_POS_ID) {default_pos_id!r} is not a UUID")
    source = table.frame.reset_index(drop=True)
    n = len(source)
    blank = pd.Series([""] * n, dtype=object)
    # "" for blank is the RawTable contract; fillna guards frames built by hand (tests, tools).
    cells = {c: (source[c].astype(object).fillna("") if c in source else blank) for c in COLUMNS}
    currencies = cells["order_currency"].str.upper()
    pos_ids = cells["pos_id"]
    if default_pos_id is not None:
        pos_ids = pos_ids.where(pos_ids != "", _canonical_uuid(default_pos_id.strip()))
    pos_ids = _canonical_pos_ids(pos_ids)
    amounts, amount_problems = _amounts(table, cells["charge_amount"], currencies, decimal)
    work = pd.DataFrame(
        {
            "order_id": cells["order_id"],
            "order_currency": currencies,
            "amount_problem": amount_problems,
            "comment": cells["comment"],
            "server_url": cells["server_url"],
            "pos_id": pos_ids,
        }
    )
    rejections = _failures(work, cells, table.source_rows)
    rejections += [Rejection(*issue) for issue in table.issues]
    rejections.sort(key=lambda r: (r.source_row, _column_rank(r.column)))
    bad_rows = {r.source_row for r in rejections}

    orders: list[Order] = []
    rejected: list[Order] = []
    for row, oid, pos, cur, amount, text, comment, url in zip(
        table.source_rows,
        cells["order_id"].tolist(),
        pos_ids.tolist(),
        currencies.tolist(),
        amounts,
        cells["charge_amount"].tolist(),
        cells["comment"].tolist(),
        cells["server_url"].tolist(),
        strict=True,
    ):
        order = Order(row, oid, pos, cur, amount, comment, url, text)
        (rejected if row in bad_rows else orders).append(order)
    return Batch(tuple(orders), tuple(rejected), tuple(rejections))


def _canonical_uuid(value: str) -> str:
    """`123E4567-...` as `123e4567-...`: str(uuid.UUID()), for a value that matches UUID."""
    return str(uuid.UUID(value))


def _canonical_pos_ids(pos_ids: pd.Series[str]) -> pd.Series[str]:
    """Each pos_id that is a UUID in its canonical form; other values (blank, broken) as written.

    One conversion per distinct value: a file has a handful of POS ids over a million rows.
    """
    canonical = {
        value: _canonical_uuid(value) if UUID.fullmatch(value) else value
        for value in dict.fromkeys(pos_ids.tolist())
    }
    return pd.Series(list(map(canonical.__getitem__, pos_ids.tolist())), pos_ids.index, object)


def _failures(
    work: pd.DataFrame, cells: dict[str, pd.Series[str]], source_rows: tuple[int, ...]
) -> list[Rejection]:
    """Run the schema lazily and turn every failure case into a Rejection."""
    try:
        SCHEMA.validate(work, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return []
    found: list[tuple[int, str, str, str, str]] = []  # (row, check, column, value, failure)
    twins: dict[str, list[int]] = {}
    for check, index, failure in zip(
        cases["check"].tolist(),
        cases["index"].tolist(),
        cases["failure_case"].tolist(),
        strict=True,
    ):
        if check not in PROBLEMS or index is None or index != index:
            raise RuntimeError(f"unexpected schema failure {check!r}")  # a bug, not bad input
        column = CHECK_COLUMN[check]
        value = str(cells[column].iat[int(index)])
        row = source_rows[int(index)]
        if check == "order_id_unique":
            twins.setdefault(value, []).append(row)
        found.append((row, check, column, value, str(failure)))
    rejections: list[Rejection] = []
    for row, check, column, value, failure in found:
        if check == "amount":
            problem = failure  # the amount check's column holds the parse's own message
        elif check == "order_id_unique":  # name the twins: a person finds them without searching
            others = ", ".join(str(r) for r in sorted(twins[value]) if r != row)
            problem = f"order_id {value!r} appears more than once in the file (also row {others})"
        else:
            problem = PROBLEMS[check](value)
        rejections.append(Rejection(row, column, value, problem))
    return rejections


def _column_rank(column: str) -> int:
    return COLUMNS.index(column) if column in COLUMNS else len(COLUMNS)


def write_rejections_csv(rejections: Iterable[Rejection], path: Path) -> None:
    """The rejections as a CSV for --errors-out: UTF-8 with BOM so Excel shows non-ASCII text.

    A value that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, ...) gets a leading
    apostrophe: the file is opened by people, and the values come from an untrusted input.
    """
    try:
        with Path(path).open("w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["source_row", "column", "value", "problem"])
            for r in rejections:
                writer.writerow([r.source_row, r.column, _safe_cell(r.value), r.problem])
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _safe_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value
