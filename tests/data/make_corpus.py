"""Writes the input corpus of tests/data: order sheets shaped like the ones finance teams send.

Run from the repo root after changing it (the files are committed, so tests need no generator):

    .venv/bin/python tests/data/make_corpus.py

Every file is described in CORPUS.md next to it; tests/test_ingest.py and tests/test_schema.py
assert exactly what each one yields.
"""

from __future__ import annotations

import datetime
import io
import random
import zipfile
from pathlib import Path

import openpyxl

HERE = Path(__file__).resolve().parent
POS = "123e4567-e89b-12d3-a456-426614174000"
POS2 = "9b2f1c3e-0d4a-4e5b-8c6d-7e8f9a0b1c2d"


def text(name: str, content: str, encoding: str = "utf-8") -> None:
    (HERE / name).write_bytes(content.encode(encoding))


def raw(name: str, content: bytes) -> None:
    (HERE / name).write_bytes(content)


def csv_files() -> None:
    # Encodings and delimiters.
    text(
        "utf8_comma.csv",
        "order_id,order_currency,charge_amount,comment,server_url,pos_id\n"
        f"A-1,EUR,80.10,first order,https://shop.example.com/hook,{POS}\n"
        f"A-2,USD,,whole hold,,{POS2}\n"
        "A-3,JPY,1500,,,\n",
    )
    text(
        "utf8_bom_semicolon.csv",
        "order_id;order_currency;charge_amount;comment\r\n"
        "B-1;EUR;1 234,50;Zahlung für Bestellung\r\n"
        "B-2;EUR;99,9;\r\n",
        "utf-8-sig",
    )
    text(
        "cp1251_semicolon.csv",
        "order_id;order_currency;charge_amount;comment\r\n"
        "C-1;RUB;1234,5;Оплата заказа №1\r\n"
        "C-2;UAH;10;Возврат\r\n",
        "cp1251",
    )
    text(
        "utf16_tab.csv",
        "order_id\torder_currency\tcharge_amount\tcomment\r\n"
        "D-1\tGBP\t12.5\tUnicode text from Excel ✓\r\n"
        "D-2\tPLN\t7\tzażółć\r\n",
        "utf-16",  # Python writes the BOM, little-endian, as Excel's "Unicode text" does
    )
    text(
        "utf8_tab.txt",
        "order_id\torder_currency\tcharge_amount\nT-1\tCHF\t3.25\nT-2\tCHF\t4\n",
    )
    # Quoted fields: embedded delimiter, doubled quote, a line break inside a comment (CRLF file).
    text(
        "quoted_fields.csv",
        "order_id,order_currency,charge_amount,comment\r\n"
        'Q-1,EUR,"1,234.50","Smith, John"\r\n'
        'Q-2,EUR,5,"He said ""capture it"""\r\n'
        'Q-3,EUR,6,"line one\r\nline two\r\nline three"\r\n'
        "Q-4,EUR,7,after the multi-line record\r\n",
    )
    # Amount styles.
    text(
        "amounts_dot.csv",
        "order_id,order_currency,charge_amount\n"
        "P-1,USD,1234.5\n"
        'P-2,USD,"1,234.50"\n'
        "P-3,USD,1 234.50\n"
        "P-4,USD,1234\n"
        "P-5,USD,0.5\n"
        'P-6,USD,"1,234,567"\n'
        "P-7,JPY,100.00\n",
    )
    text(
        "amounts_comma.csv",
        "order_id;order_currency;charge_amount\n"
        "K-1;EUR;1234,5\n"
        "K-2;EUR;1 234,50\n"
        "K-3;EUR;1.234,50\n"
        "K-4;EUR;1\u00a0234,50\n"
        "K-5;EUR;1\u202f234,50\n"
        "K-6;EUR;0,99\n",
    )
    text(
        "amounts_bad.csv",
        "order_id,order_currency,charge_amount\n"
        "X-1,USD,1e3\n"
        "X-2,USD,NaN\n"
        "X-3,USD,inf\n"
        "X-4,USD,$5\n"
        "X-5,EUR,5 €\n"
        "X-6,USD,-5\n"
        "X-7,USD,0\n"
        "X-8,USD,0.00\n"
        "X-9,USD,12 34\n"
        "X-10,USD,1.2.3\n"
        "X-11,USD,1234.005\n"
        "X-12,JPY,100.5\n"
        "X-13,USD,five\n",
    )
    text(
        "ambiguous.csv",
        "order_id;order_currency;charge_amount\nM-1;USD;1,234\nM-2;USD;15\n",
    )
    text(
        "ambiguous_settled.csv",
        "order_id;order_currency;charge_amount\nS-1;USD;1,234\nS-2;USD;2,345.50\n",
    )
    # The review's file: `12,50` must not make `1,000` one euro (nor `2.500` two thousand five).
    text(
        "ambiguous_mixed.csv",
        "order_id;order_currency;charge_amount\n"
        "AM-1;EUR;12,50\n"
        "AM-2;EUR;1,000\n"
        "AM-3;EUR;2.500\n"
        "AM-4;EUR;1.234,50\n",
    )
    # Layout: title rows above the header, blank rows, aliases and unknown columns.
    text(
        "title_rows.csv",
        "Capture batch for December\n"
        "Prepared by finance; do not edit\n"
        ",,,\n"
        "order_id,order_currency,charge_amount,comment\n"
        "R-1,EUR,10,\n"
        "R-2,EUR,20,\n",
    )
    text(
        "blank_rows.csv",
        "order_id,order_currency,charge_amount\n\nB-1,EUR,1\n,,\n  ,  ,  \nB-2,EUR,2\n\n",
    )
    text(
        "aliases.csv",
        "Order, Currency ,AMOUNT,Comment,Server URL,POS ID,Customer\n"
        f"AL-1,usd,3,hello,http://example.org/cb,{POS},ACME Ltd\n",
    )
    text(
        "leading_zeros.csv",
        f"order_id,order_currency,charge_amount,pos_id\n00123,EUR,1,{POS}\n  0042  ,EUR,2,{POS}\n",
    )
    # Rules broken.
    text(
        "duplicates.csv",
        "order_id,order_currency,charge_amount\nDUP,EUR,1\nOK-1,EUR,2\nDUP,EUR,3\n",
    )
    text(
        "invalid_fields.csv",
        "order_id,order_currency,charge_amount,comment,server_url,pos_id\n"
        f"{'L' * 33},EUR,1,,,{POS}\n"
        f"F-2,EURO,1,,,{POS}\n"
        f"F-3,,1,,,{POS}\n"
        f"F-4,EUR,1,{'c' * 2049},,{POS}\n"
        f"F-5,EUR,1,,ftp://example.org/x,{POS}\n"
        "F-6,EUR,1,,,not-a-uuid\n"
        f",EUR,1,,,{POS}\n"
        f"F-8,usd,,fine,https://example.org/hook?x=1,{POS}\n",
    )
    text(
        "ragged_row.csv",
        "order_id,order_currency,charge_amount\nG-1,USD,1,234.50\nG-2,USD,5\n",
    )
    text("missing_column.csv", "order_id,amount,comment\nA,1,x\n")
    text("no_pos.csv", "order_id,order_currency\nN-1,EUR\n")
    # One POS written in two letter cases: the same POS, held once in canonical lower case.
    text(
        "pos_case.csv",
        f"order_id,order_currency,pos_id\nPC-1,EUR,{POS}\nPC-2,EUR,{POS.upper()}\nPC-3,EUR,\n",
    )
    text("empty.csv", "")
    text("header_only.csv", "order_id,order_currency,charge_amount\n")
    rng = random.Random(7)
    raw("garbage.csv", bytes(rng.randrange(256) for _ in range(4096)))
    text("not_zip.xlsx", "order_id,order_currency\nA,EUR\n")
    # A 100 KB unquoted cell: longer than any line of an order sheet.
    text("huge_cell.csv", "order_id,order_currency,comment\nH-1,EUR," + "x" * 100_000 + "\n")
    # A quoted cell of 140 KB split over short lines: over csv's field limit, not the line cap.
    lines = "\n".join("y" * 1000 for _ in range(140))
    text("huge_quoted_cell.csv", f'order_id,order_currency,comment\nH-1,EUR,"{lines}"\n')


def workbook(name: str, sheets: dict[str, list[list[object]]]) -> None:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    ws.cell(row=r, column=c, value=value)
    fixed = datetime.datetime(2026, 1, 1)  # the same bytes on every run
    wb.properties.created = wb.properties.modified = fixed
    wb.save(HERE / name)


def excel_files() -> None:
    workbook(
        "excel_numbers.xlsx",
        {
            "Sheet1": [
                ["order_id", "order_currency", "charge_amount", "comment", "pos_id"],
                [123, "EUR", 80.1, "numeric id", POS],
                [456.0, "EUR", 0.1 + 0.2, None, POS],
                ["007", "usd", 1234.5, "text id", POS],
                ["E-4", "JPY", 1500, None, POS],
                ["E-5", "EUR", 1.234, "3 decimals, as a number", POS],
                ["E-6", "EUR", None, "whole hold", POS],
            ]
        },
    )
    workbook(
        "excel_layout.xlsx",
        {
            "Notes": [["This sheet is not the orders"]],
            "Orders": [
                ["December capture batch"],
                [None],
                ["Order", "Currency", "Amount", "Customer"],
                ["W-1", "EUR", "1 234,50", "ACME"],
                [None, None, None, None],
                ["W-2", "EUR", "99,5", None],
                [None],
                ["W-3", "EUR", 12, None],
            ],
        },
    )
    # Unsafe and broken workbooks, built from a good one.
    buffer = io.BytesIO()
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["order_id", "order_currency"])
    ws.append(["Z-1", "EUR"])
    wb.save(buffer)
    good = buffer.getvalue()

    def rewrite(name: str, change: dict[str, bytes], extra: dict[str, bytes]) -> None:
        out = io.BytesIO()
        with (
            zipfile.ZipFile(io.BytesIO(good)) as src,
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
        ):
            for item in src.infolist():
                dst.writestr(item.filename, change.get(item.filename, src.read(item.filename)))
            for member, content in extra.items():
                dst.writestr(member, content, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        raw(name, out.getvalue())

    with zipfile.ZipFile(io.BytesIO(good)) as src:
        sheet = src.read("xl/worksheets/sheet1.xml")
    doctype = (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n' + sheet.split(b"?>", 1)[-1].lstrip()
    )
    rewrite("excel_doctype.xlsx", {"xl/worksheets/sheet1.xml": doctype}, {})
    rewrite("excel_ratio_bomb.xlsx", {}, {"xl/media/padding.bin": bytes(5 * 1024 * 1024)})
    rewrite("excel_size_bomb.xlsx", {}, {"xl/media/padding.bin": bytes(201 * 1024 * 1024)})


if __name__ == "__main__":
    csv_files()
    excel_files()
    print(f"corpus written to {HERE}")
