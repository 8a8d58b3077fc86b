"""Reading the input sheet (CSV in any encoding and delimiter Excel writes, or .xlsx) as strings.

Everything is read as text so that nothing is lost before the rules see it: leading zeros of ids,
the exact digits of amounts. The header row may sit under title or note rows; it is the first row
(among the first few) that names known columns. Every limit below exists so that a hostile or
broken file fails fast with a message instead of exhausting memory.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import itertools
import operator
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import python_calamine

from recon import money
from recon.errors import InputError

# Canonical column names, in the order of DESIGN.md.
COLUMNS = ("order_id", "order_currency", "charge_amount", "comment", "server_url", "pos_id")
REQUIRED = ("order_id", "order_currency")
# Header names as matched: lower case, without spaces and underscores.
ALIASES = {
    **{c.replace("_", ""): c for c in COLUMNS},
    "order": "order_id",
    "currency": "order_currency",
    "amount": "charge_amount",
}
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
DELIMITERS = (",", ";", "\t")

# Rows looked at for the header: room for a title and a few notes above it.
HEADER_SEARCH_ROWS = 30
# A real row is a few hundred characters (comment ≤ 2048); a longer physical line is not an order
# sheet. Checked before csv splits it, so a 100 MB line or a million columns fails at once.
MAX_LINE_CHARS = 64 * 1024
MAX_COLUMNS = 256
# Excel: a sane sheet of orders unpacks to far less; a zip bomb to far more.
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
MAX_ZIP_RATIO = 100
ZIP_RATIO_MIN_MEMBER = 1024 * 1024  # small members compress absurdly well and harm no one
XML_PROLOG_BYTES = 64 * 1024

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_START_TAG = re.compile(rb"<[A-Za-z_]")


@dataclass(frozen=True)
class RawTable:
    """The input as read: every cell a string, headers mapped to canonical names."""

    frame: pd.DataFrame  # one column per canonical name found, all str ("" for blank)
    source_rows: tuple[int, ...]  # per frame row: Excel row number or CSV line number
    name: str  # file name as given
    size: int  # bytes
    sha256: str  # of the file's bytes: identifies the run for resume
    delimiter: str = ""  # CSV only
    encoding: str = ""  # CSV only
    warnings: tuple[str, ...] = field(default_factory=tuple)  # e.g. unknown columns
    # Row-level problems found while reading, as (source row, column, value, problem): validate
    # turns them into Rejections (e.g. a row with more cells than the header).
    issues: tuple[tuple[int, str, str, str], ...] = field(default_factory=tuple)
    # Frame positions whose amount was an Excel number cell: its text is canonical ("." decimal,
    # no grouping), so `1.234` there is not ambiguous.
    numeric_amounts: frozenset[int] = field(default_factory=frozenset)


def read_table(path: Path, sheet: str | None = None) -> RawTable:
    """Read CSV or .xlsx into a RawTable; InputError with a clear message when it cannot."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path.name}: is a folder, not a file") from None
    except OSError as exc:
        raise InputError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if path.suffix.lower() in EXCEL_SUFFIXES:
        return _read_xlsx(path, data, digest, sheet)
    if path.suffix.lower() == ".xls":
        raise InputError(f"{path.name}: old .xls workbooks are not read; save it as .xlsx or CSV")
    if sheet is not None:
        raise InputError(f"{path.name}: --sheet applies to .xlsx workbooks, not CSV")
    if not data or data.isspace():
        raise InputError(f"{path.name}: the file is empty")
    if data.startswith(b"PK\x03\x04"):
        raise InputError(f"{path.name}: this is a zip file (an Excel workbook?), not a CSV")
    text, encoding = _decode(path.name, data)
    size = len(data)
    del data  # the text is all that is needed now; a big file should not be held twice
    return _read_csv(path.name, text, encoding, size, digest)


# --- the header -------------------------------------------------------------------------------


def canonical(header: str) -> str | None:
    """The canonical column a header names, ignoring case, spaces and underscores; else None."""
    key = re.sub(r"[\s_]+", "", header.replace("\ufeff", "")).lower()
    return ALIASES.get(key)


def _known_count(row: Sequence[str]) -> int:
    return len({c for c in map(canonical, row) if c is not None})


def _find_header(rows: Sequence[Sequence[str]]) -> int:
    """Index of the header among the first rows: the first naming most known columns.

    Title and note rows above the header name none (or one by chance), so the first row with the
    most known names wins; when no row names any, the first non-blank row is taken as the header,
    and the missing-column message lists what it holds.
    """
    best, best_count = -1, 0
    for i, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        count = _known_count(row)
        if count > best_count:
            best, best_count = i, count
    if best >= 0:
        return best
    for i, row in enumerate(rows):
        if any(cell.strip() for cell in row):
            return i
    return 0


def _map_header(name: str, header: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Canonical column → cell index, and warnings for columns recon does not know."""
    mapping: dict[str, int] = {}
    warnings: list[str] = []
    for index, cell in enumerate(header):
        column = canonical(cell)
        if column is None:
            if cell.strip():
                warnings.append(f"column {cell.strip()!r} is not one recon knows; it is ignored")
            continue
        if column in mapping:
            first = header[mapping[column]].strip()
            raise InputError(
                f"{name}: columns {first!r} and {cell.strip()!r} both mean {column}; keep one"
            )
        mapping[column] = index
    missing = [c for c in REQUIRED if c not in mapping]
    if missing:
        found = ", ".join(repr(c.strip()) for c in header if c.strip()) or "none"
        raise InputError(
            f"{name}: required column{'s' if len(missing) > 1 else ''} "
            f"{' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} missing "
            f"(columns found: {found})"
        )
    return mapping, warnings


def _frame(
    name: str,
    mapping: dict[str, int],
    width: int,
    records: Iterable[tuple[int, list[str]]],
    strict_width: bool,
) -> tuple[pd.DataFrame, tuple[int, ...], list[tuple[int, str, str, str]]]:
    """Order rows as a frame of strings: blank rows skipped, short rows padded.

    A CSV row longer than its header (strict_width) is noted as an issue: the usual cause is an
    unquoted `1,234.50` in a comma-delimited file, which would shift every later value. Cells
    right of a worksheet's header carry no such risk and are ignored.
    """
    order = [c for c in COLUMNS if c in mapping]
    pick = operator.itemgetter(*(mapping[c] for c in order))
    picked: list[tuple[str, ...]] = []
    keep = picked.append
    rows: list[int] = []
    issues: list[tuple[int, str, str, str]] = []
    pad = [""] * width
    for line, cells in records:
        n = len(cells)
        if n < width:
            cells = cells + pad[n:]
        elif n > width and strict_width:
            extra = [c for c in cells[width:] if c.strip()]
            if extra:
                issues.append(
                    (
                        line,
                        "(row)",
                        ", ".join(extra),
                        f"the row has {n} cells but the header has {width}: a value may hold an "
                        "unquoted delimiter",
                    )
                )
        if not "".join(cells).strip():  # a blank row, or one of spaces only
            continue
        value = pick(cells)
        keep(value if isinstance(value, tuple) else (value,))
        rows.append(line)
    if not rows:
        raise InputError(f"{name}: there are no order rows under the header")
    columns: dict[str, Sequence[str]] = dict(zip(order, zip(*picked, strict=True), strict=True))
    del picked
    for column in order:
        if column != "comment":  # a comment is kept as written; other values lose outer spaces
            columns[column] = list(map(str.strip, columns[column]))  # C speed, unlike .str.strip
    frame = pd.DataFrame(columns, dtype=object)
    return frame, tuple(rows), issues


# --- CSV --------------------------------------------------------------------------------------


def _decode(name: str, data: bytes) -> tuple[str, str]:
    """The text and the encoding: UTF-8 (BOM or not), UTF-16 with BOM, else cp1251."""
    if data.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    elif b"\x00" in data:
        raise InputError(f"{name}: holds NUL bytes: it is binary, or UTF-16 without a BOM")
    else:
        candidates = ["utf-8", "cp1251"]
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if _CONTROL.search(text):
            raise InputError(f"{name}: holds control characters: it is not a text CSV file")
        return text, encoding
    raise InputError(f"{name}: the text is not UTF-8, UTF-16 or Windows-1251; save it as CSV UTF-8")


def _lines(name: str, text: str) -> Iterator[str]:
    """The physical lines for csv, refusing one too long for an order sheet before it is cut.

    Slicing the text in place costs no copy of the file (io.StringIO would hold four bytes a
    character), and a million-column line or a 100 MB cell fails here instead of becoming
    millions of Python strings.
    """
    find, end_of_text, start, number = text.find, len(text), 0, 0
    while start < end_of_text:
        end = find("\n", start) + 1 or end_of_text
        number += 1
        if end - start > MAX_LINE_CHARS:
            raise InputError(
                f"{name}: line {number} is longer than {MAX_LINE_CHARS:,} characters; "
                "this is not a sheet of orders"
            )
        yield text[start:end]
        start = end


def _sniff_delimiter(name: str, text: str) -> str:
    """`,` `;` or tab: the one that splits the header line into the most known column names."""
    head = text[: HEADER_SEARCH_ROWS * 4096]
    best, best_score = ",", (-1, -1)
    for delimiter in DELIMITERS:
        reader = csv.reader(_lines(name, head), delimiter=delimiter)
        rows: list[list[str]] = []
        try:
            for row in reader:
                rows.append(row)
                if len(rows) >= HEADER_SEARCH_ROWS:
                    break
        except csv.Error:
            pass  # the head may end inside a quoted field; what was read still counts
        if not rows:
            continue
        header = rows[_find_header(rows)]
        score = (_known_count(header), len(header))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _read_csv(name: str, text: str, encoding: str, size: int, digest: str) -> RawTable:
    if not text or text.isspace():
        raise InputError(f"{name}: the file is empty")
    if "\n" not in text and "\r" in text:  # classic Mac line ends: csv wants "\n" between lines
        text = text.replace("\r", "\n")
    delimiter = _sniff_delimiter(name, text)
    reader = csv.reader(_lines(name, text), delimiter=delimiter, strict=False)

    def records() -> Iterator[tuple[int, list[str]]]:
        start = 1
        try:
            for cells in reader:
                if len(cells) > MAX_COLUMNS:
                    raise InputError(
                        f"{name}: line {start} has {len(cells)} cells; "
                        f"an order sheet has at most {MAX_COLUMNS}"
                    )
                yield start, cells
                start = reader.line_num + 1
        except csv.Error as exc:
            raise InputError(f"{name}: line {start} cannot be read as CSV ({exc})") from None

    stream = records()
    head: list[tuple[int, list[str]]] = []
    for record in stream:
        head.append(record)
        if len(head) >= HEADER_SEARCH_ROWS:
            break
    header_at = _find_header([cells for _, cells in head])
    header = head[header_at][1] if head else []
    mapping, warnings = _map_header(name, header)
    rest = head[header_at + 1 :]

    records_after_header = itertools.chain(rest, stream)
    frame, rows, issues = _frame(
        name, mapping, len(header), records_after_header, strict_width=True
    )
    return RawTable(
        frame=frame,
        source_rows=rows,
        name=name,
        size=size,
        sha256=digest,
        delimiter=delimiter,
        encoding=encoding,
        warnings=tuple(warnings),
        issues=tuple(issues),
    )


# --- Excel ------------------------------------------------------------------------------------


def _check_zip(path: Path) -> None:
    """Refuse what is not a workbook, a zip bomb, or XML with DOCTYPE/ENTITY (entity bombs)."""
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if total > MAX_UNZIPPED_BYTES:
                raise InputError(
                    f"{name}: unpacks to {total // (1024 * 1024)} MB, more than "
                    f"{MAX_UNZIPPED_BYTES // (1024 * 1024)} MB; refused as a possible zip bomb"
                )
            for member in members:
                if (
                    member.file_size > ZIP_RATIO_MIN_MEMBER
                    and member.file_size > MAX_ZIP_RATIO * max(member.compress_size, 1)
                ):
                    raise InputError(
                        f"{name}: {member.filename} is compressed more than {MAX_ZIP_RATIO} to 1; "
                        "refused as a possible zip bomb"
                    )
            for member in members:
                if member.filename.endswith((".xml", ".rels")):
                    with archive.open(member) as stream:
                        _check_xml_head(name, member.filename, stream.read(XML_PROLOG_BYTES))
    except zipfile.BadZipFile:
        raise InputError(f"{name}: is not an Excel .xlsx workbook (not a zip file)") from None
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        raise InputError(f"{name}: the workbook cannot be opened ({exc})") from None
    except OSError as exc:
        raise InputError(f"{name}: the workbook is damaged ({exc})") from None


def _check_xml_head(name: str, member: str, head: bytes) -> None:
    """A DOCTYPE can only come before the root element, so the prolog is all there is to check."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or head[:2] in (b"<\0", b"\0<"):
        head = head.decode("utf-16", errors="ignore").encode("utf-8")
    start = _START_TAG.search(head)
    prolog = head if start is None else head[: start.start()]
    if _DOCTYPE.search(prolog):
        raise InputError(f"{name}: {member} declares a DOCTYPE or ENTITY; refused as unsafe XML")
    if start is None and len(head) >= XML_PROLOG_BYTES:
        raise InputError(f"{name}: {member} has no root element in its first 64 KB; refused")


_Cell = int | float | str | bool | dt.datetime | dt.date | dt.time | dt.timedelta


def _cell_text(value: _Cell) -> str:
    """A cell as the text Excel shows for it: numbers without `.0`, no float noise."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):  # ok: rejected, not kept
            return ""
        return money.excel_number(value)
    if isinstance(value, int):
        return str(value)
    return value.isoformat() if not isinstance(value, dt.timedelta) else str(value)


def _read_xlsx(path: Path, data: bytes, digest: str, sheet: str | None) -> RawTable:
    name = path.name
    _check_zip(path)
    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # noqa: BLE001 - calamine raises its own and Rust panics
        raise InputError(f"{name}: the workbook cannot be read ({exc})") from None
    try:
        names = list(workbook.sheet_names)
        if not names:
            raise InputError(f"{name}: the workbook has no sheets")
        if sheet is not None and sheet not in names:
            listed = ", ".join(repr(n) for n in names)
            raise InputError(f"{name}: there is no sheet {sheet!r} (sheets: {listed})")
        try:
            ws = workbook.get_sheet_by_name(sheet if sheet is not None else names[0])
            # Without skipping, the list starts at A1: list index + 1 is the Excel row number.
            rows: list[list[_Cell]] = ws.to_python(skip_empty_area=False)
        except Exception as exc:  # noqa: BLE001 - calamine raises its own and Rust panics
            raise InputError(f"{name}: the sheet cannot be read ({exc})") from None
    finally:
        workbook.close()
    head = [[_cell_text(v) for v in row] for row in rows[:HEADER_SEARCH_ROWS]]
    header_at = _find_header(head)
    header = head[header_at] if head else []
    mapping, warnings = _map_header(name, header)
    amount_at = mapping.get("charge_amount")
    numeric_lines: set[int] = set()

    def records() -> Iterator[tuple[int, list[str]]]:
        for index in range(header_at + 1, len(rows)):
            row = rows[index]
            if amount_at is not None and amount_at < len(row):
                if isinstance(row[amount_at], int | float) and not isinstance(row[amount_at], bool):
                    numeric_lines.add(index + 1)
            yield index + 1, [_cell_text(v) for v in row]

    frame, source_rows, issues = _frame(name, mapping, len(header), records(), strict_width=False)
    numeric = frozenset(i for i, line in enumerate(source_rows) if line in numeric_lines)
    return RawTable(
        frame=frame,
        source_rows=source_rows,
        name=name,
        size=len(data),
        sha256=digest,
        warnings=tuple(warnings),
        issues=tuple(issues),
        numeric_amounts=numeric,
    )
