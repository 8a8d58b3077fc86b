"""The `recon` command: parses options, calls the stages in order, maps errors to exit codes.

No business rule lives here (DESIGN.md): each command is a few calls into the library.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recon import __version__, money
from recon.batch import BatchOptions, Counts, Runner, run_batch
from recon.errors import EXCEPTIONS, OK, InvalidInput, ReconError, StoppedEarly, UsageError
from recon.ingest import RawTable, read_table
from recon.journal import Journal, OrderRecord, RunInfo, State, run_key, utc_now
from recon.pacing import RateLimiter
from recon.reconcile import Report, build_report, exit_code
from recon.schema import Batch, Rejection, validate, write_rejections_csv
from recon.settings import Settings, current_user, load_environment

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_JOURNAL = Path("reports/journal.sqlite")
REPORTS = Path("reports")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)
for _console in (err, out):
    if not _console.is_terminal:  # piped or captured: wide lines beat tables folded at 80
        _console.width = 160


class Finite(click.FloatRange):
    """A float range that also refuses nan and inf (click's FloatRange lets them through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class ReconFailure(click.ClickException):
    """A ReconError on its way out: its message, its exit code, no traceback."""

    def __init__(self, error: ReconError, secrets: Iterable[str] = ()) -> None:
        message = str(error)
        for secret in secrets:
            message = message.replace(secret, "****")
        super().__init__(message)
        self.exit_code = error.exit_code  # type: ignore[misc]  # click's is per class


class ReconGroup(click.Group):
    """The one place where named errors become messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort):
            raise ReconFailure(StoppedEarly("interrupted; run the same command again")) from None
        except ReconError as exc:
            env, _ = load_environment(os.environ)
            raise ReconFailure(exc, Settings.from_env(env).secrets()) from None


class SecretFilter(logging.Filter):
    """Masks credentials in every log record, whatever a library put in it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in self.secrets:
            message = message.replace(secret, "****")
        record.msg, record.args = message, None
        return True


@click.group(cls=ReconGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recon")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log every request and answer (secrets masked)."
)
@click.option("--debug", is_flag=True, help="Log everything, libraries included (secrets masked).")
def cli(verbose: bool, debug: bool) -> None:
    """Capture Financial Line holds in batches and write a reconciliation workbook.

    Credentials come from FINLINE_API_KEY, FINLINE_API_SECRET, FINLINE_ENDPOINTS_KEY,
    FINLINE_POS_ID and FINLINE_BASE_URL (environment or a .env file in this folder).

    Exit codes: 0 every order captured as asked; 1 finished with exceptions; 2 bad usage or
    invalid input, nothing sent; 3 stopped early (the same command resumes).
    """
    env, warnings = load_environment(os.environ)
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    if verbose or debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(SecretFilter(Settings.from_env(env).secrets()))
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        root = logging.getLogger() if debug else logging.getLogger("recon")
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)


def input_options(func: F) -> F:
    """Options shared by every command that reads an input sheet."""
    func = click.option(
        "--decimal",
        type=click.Choice([",", "."]),
        help="Decimal separator of the amounts, when the file leaves it ambiguous (1,234).",
    )(func)
    func = click.option(
        "--sheet", metavar="NAME", help="Worksheet of an .xlsx to read (default: the first)."
    )(func)
    return func


def out_option(func: F) -> F:
    return click.option(
        "--out",
        "out_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Workbook to write [default: reports/<input>-<run id>.xlsx].",
    )(func)


def journal_option(func: F) -> F:
    return click.option(
        "--journal",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_JOURNAL,
        show_default=True,
        help="SQLite journal of runs; it makes captures safe to resume.",
    )(func)


def _settings() -> Settings:
    env, _ = load_environment(os.environ)
    return Settings.from_env(env)


def _read(
    path: Path, sheet: str | None, decimal: str | None, pos_id: str | None
) -> tuple[RawTable, Batch]:
    table = read_table(path, sheet)
    for warning in table.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    return table, validate(table, pos_id, decimal)


def _print_rejections(rejections: Iterable[Rejection], limit: int = 200) -> None:
    rejections = list(rejections)
    table = Table(title=f"{len(rejections)} problem(s) in the input", title_justify="left")
    for name in ("Row", "Column", "Value", "Problem"):
        table.add_column(name, overflow="fold")
    for r in rejections[:limit]:
        table.add_row(str(r.source_row), r.column, r.value[:60], r.problem)
    err.print(table)
    if len(rejections) > limit:
        err.print(f"... and {len(rejections) - limit} more (use --errors-out FILE.csv for all)")


def _plan_table(batch: Batch) -> Table:
    table = Table(title="Orders to capture", title_justify="left")
    for name in ("Currency", "Orders", "Whole hold", "Requested"):
        table.add_column(name, justify="right")
    for currency in sorted({o.currency for o in batch.orders}):
        mine = [o for o in batch.orders if o.currency == currency]
        total = sum((o.amount for o in mine if o.amount is not None), Decimal(0))
        whole = sum(1 for o in mine if o.amount is None)
        table.add_row(currency, str(len(mine)), str(whole), f"{money.quantize(total, currency):,f}")
    return table


def _summary_table(report: Report) -> Table:
    table = Table(
        title=f"Run {report.run.run_id}",
        title_justify="left",
        caption="Requested and Difference cover rows with an amount; whole-hold captures add to "
        "Captured only. Rejected rows are left out.",
        caption_justify="left",
    )
    for name in ("Currency", "Orders", "Requested", "Captured", "Difference", "Fees", "Net"):
        table.add_column(name, justify="right")
    for c in report.currencies:
        q = functools.partial(money.quantize, code=c.currency)
        table.add_row(
            c.currency, str(c.orders), f"{q(c.requested):,f}", f"{q(c.captured):,f}",
            f"{q(c.difference):,f}", f"{q(c.fees):,f}", f"{q(c.net):,f}",
        )  # fmt: skip
    return table


def _outcome_table(report: Report) -> Table:
    table = Table(title="Outcomes", title_justify="left")
    table.add_column("Outcome")
    table.add_column("Rows", justify="right")
    for o in report.outcomes:
        if o.count:
            table.add_row(o.outcome.value, str(o.count))
    return table


@cli.command("validate")
@click.argument(
    "input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@input_options
@click.option(
    "--errors-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every problem to this CSV file (row, column, value, problem).",
)
def validate_cmd(
    input_file: Path, sheet: str | None, decimal: str | None, errors_out: Path | None
) -> None:
    """Read and validate INPUT (.csv or .xlsx); print every problem. Sends nothing.

    Exit 0 when every row is valid, 2 when any is not.
    """
    _, batch = _read(input_file, sheet, decimal, _settings().pos_id)
    if errors_out is not None:
        write_rejections_csv(batch.rejections, errors_out)
    if batch.rejections:
        _print_rejections(batch.rejections)
        raise InvalidInput(
            f"{input_file}: {len(batch.rejected)} of {len(batch.rows)} rows are invalid",
            list(batch.rejections),
        )
    out.print(_plan_table(batch))
    out.print(f"{input_file}: all {len(batch.rows)} rows valid")


def _dry_records(batch: Batch) -> list[OrderRecord]:
    rejected = {o.source_row for o in batch.rejected}
    return [
        OrderRecord(seq, order, State.REJECTED if order.source_row in rejected else State.PLANNED)
        for seq, order in enumerate(batch.rows)
    ]


def _write(report: Report, out_file: Path | None, stem: str, journal: Journal | None) -> Path:
    from recon.workbook import write_workbook

    path = out_file or REPORTS / f"{stem}-{report.run.run_id}.xlsx"
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = write_workbook(report, path)
    if journal is not None:
        journal.record_workbook(report.run.run_id, path, sha)
    return path


def _run_async(runner_holder: list[Runner], coro: Any) -> Counts:
    """Run the batch; Ctrl-C (SIGINT) or SIGTERM asks the runner to stop after in-flight work."""

    async def main() -> Counts:
        loop = asyncio.get_running_loop()

        def interrupt() -> None:
            err.print("[yellow]interrupted: finishing requests in flight, then stopping[/]")
            for runner in runner_holder:
                runner.stop(StoppedEarly("interrupted; run the same command again to resume"))

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, interrupt)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        result: Counts = await coro
        return result

    return asyncio.run(main())


def batch_options(func: F) -> F:
    """Options of every command that sends: pace, patience, and when a doubt is settled."""
    for option in reversed(_BATCH_OPTIONS):
        func = option(func)
    return func


_BATCH_OPTIONS = [
    click.option(
        "--rate",
        type=Finite(min=0.1),
        default=10.0,
        show_default=True,
        help="Requests per second, look-ups included.",
    ),
    click.option(
        "--concurrency",
        type=click.IntRange(min=1, max=256),
        default=8,
        show_default=True,
        help="Requests in flight at once.",
    ),
    click.option(
        "--timeout",
        type=Finite(min=0.1, max=3600),
        default=30.0,
        show_default=True,
        help="Seconds to wait for one answer.",
    ),
    click.option(
        "--settle-timeout",
        type=Finite(min=0, max=86400),
        default=120.0,
        show_default=True,
        help="Seconds a pending capture is looked up again before it is reported pending.",
    ),
    click.option(
        "--grace",
        type=Finite(min=0, max=3600),
        help="Seconds after a lost request's deadline before a look-up that finds no capture is "
        "believed and the order may be sent again [default: the --timeout, at least 5].",
    ),
]


def _options(
    concurrency: int, timeout: float, settle_timeout: float, grace: float | None
) -> BatchOptions:
    return BatchOptions(
        concurrency=concurrency, timeout=timeout, settle_timeout=settle_timeout,
        grace=grace if grace is not None else max(5.0, timeout),
    )  # fmt: skip


@cli.command("capture")
@click.argument(
    "input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@out_option
@journal_option
@batch_options
@input_options
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Send the valid rows; invalid ones end as 'rejected' (default: refuse the file).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate and write the workbook of what would be sent; send nothing.",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Run against the embedded simulator: no credentials, nothing leaves the process.",
)
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do not ask before moving money (required without a terminal).",
)
def capture_cmd(
    input_file: Path, out_file: Path | None, journal: Path, rate: float, concurrency: int,
    timeout: float, settle_timeout: float, grace: float | None, sheet: str | None,
    decimal: str | None, skip_invalid: bool, dry_run: bool, sandbox: bool, yes: bool,
) -> None:  # fmt: skip
    """Validate INPUT, capture every order, reconcile, and write the workbook.

    Re-running the same command on the same input and journal resumes the run: orders already
    answered are not sent again, and orders whose answer was lost are looked up first.
    """
    settings = _settings()
    transport: httpx.AsyncBaseTransport | None = None
    if sandbox:
        from recon.sandbox.app import SANDBOX_POS_ID
        from recon.sandbox.embedded import embedded_sandbox

        # The sandbox's own POS, never FINLINE_POS_ID: a sandbox run must not look like a real one.
        table, batch = _read(input_file, sheet, decimal, SANDBOX_POS_ID)
        transport, settings = embedded_sandbox(batch.orders, input_file)
    else:
        table, batch = _read(input_file, sheet, decimal, settings.pos_id)
    if batch.rejections:
        _print_rejections(batch.rejections)
        if not skip_invalid:
            raise InvalidInput(
                f"{input_file}: {len(batch.rejected)} of {len(batch.rows)} rows are invalid; "
                "nothing was sent (fix them, or pass --skip-invalid to send the valid rows)",
                list(batch.rejections),
            )
    logging.getLogger("recon").info("settings: %s", settings.masked())
    err.print(_plan_table(batch))
    if dry_run:
        run = RunInfo(
            run_id="dry-run", input_name=input_file.name, input_size=table.size,
            input_sha256=table.sha256, rows_read=len(batch.rows), rows_sent=0,
            started_at=utc_now(), finished_at=utc_now(), tool_version=__version__,
            base_url=settings.base_url, pos_ids=tuple(sorted({o.pos_id for o in batch.orders})),
            rate=rate, user=current_user(), host=os.uname().nodename,
        )  # fmt: skip
        report = build_report(run, _dry_records(batch), batch.rejections)
        path = _write(report, out_file, input_file.stem, None)
        out.print(f"dry run: nothing sent; workbook of the plan: {path}")
        return
    if not sandbox:
        settings.require_credentials()
    pos_ids = tuple(sorted({o.pos_id for o in batch.orders}))
    key = run_key(table.sha256, pos_ids, settings.base_url, sheet, decimal)
    with Journal(journal, exclusive=True) as jr:
        run_id = jr.find_run(key)
        to_send = len(batch.orders) if run_id is None else jr.unsettled(run_id)
        if not sandbox and not yes and to_send:
            _confirm(to_send, settings.base_url)
        if run_id is None:
            run_id = jr.create_run(
                batch, input_name=input_file.name, input_size=table.size,
                input_sha256=table.sha256, base_url=settings.base_url, rate=rate,
                user=current_user(), key=key,
            )  # fmt: skip
            err.print(f"run {run_id} started (journal {journal})")
        else:
            err.print(f"resuming run {run_id} of this input: {to_send} order(s) to settle")
        options = _options(concurrency, timeout, settle_timeout, grace)
        _drive(jr, run_id, settings, transport, rate, options, out_file, input_file.stem)


def _drive(
    jr: Journal,
    run_id: str,
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    rate: float,
    options: BatchOptions,
    out_file: Path | None,
    stem: str,
) -> None:
    """Run the batch, write the workbook, print the summary, exit with the contract's code."""
    stopped: StoppedEarly | None = None
    runners: list[Runner] = []
    try:
        _capture(jr, run_id, settings, transport, rate, options, runners)
    except StoppedEarly as exc:
        stopped = exc
    else:
        jr.finish_run(run_id)
    report = build_report(jr.run_info(run_id), jr.records(run_id), jr.rejections(run_id))
    try:
        path = _write(report, out_file, stem, jr)
    except OSError as exc:
        raise StoppedEarly(
            f"the batch ran, but the workbook could not be written ({exc}); the journal "
            f"holds every answer: recon report {run_id} --journal {jr.path} --out FILE"
        ) from exc
    out.print(_summary_table(report))
    out.print(_outcome_table(report))
    out.print(f"workbook: {path}")
    if stopped is not None:
        raise stopped
    code = exit_code(report)
    if code != OK:
        err.print("finished with exceptions: see the Exceptions sheet")
    sys.exit(code)


@cli.command("resume")
@click.argument("run_id")
@journal_option
@batch_options
@out_option
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do not ask before moving money (required without a terminal).",
)
def resume_cmd(
    run_id: str, journal: Path, rate: float, concurrency: int, timeout: float,
    settle_timeout: float, grace: float | None, out_file: Path | None, yes: bool,
) -> None:  # fmt: skip
    """Finish RUN_ID from the journal alone, without its input file.

    For a run whose file has since changed (so `capture` would start a new run): its planned
    orders are sent, its lost answers looked up. It runs against FINLINE_BASE_URL, which must be
    the endpoint the run was made against.
    """
    settings = _settings()
    settings.require_credentials()
    if not journal.exists():
        raise UsageError(f"no journal at {journal}")
    with Journal(journal, exclusive=True) as jr:
        run = jr.run_info(run_id)
        if run.base_url != settings.base_url:
            raise UsageError(
                f"run {run_id} was made against {run.base_url}, not {settings.base_url}: "
                "set FINLINE_BASE_URL to its endpoint"
            )
        to_send = jr.unsettled(run_id)
        if to_send and not yes:
            _confirm(to_send, settings.base_url)
        err.print(f"resuming run {run_id}: {to_send} order(s) to settle")
        options = _options(concurrency, timeout, settle_timeout, grace)
        _drive(jr, run_id, settings, None, rate, options, out_file, Path(run.input_name).stem)


def _confirm(orders: int, base_url: str) -> None:
    """Real money moves only after a yes typed at a terminal (or --yes)."""
    if not sys.stdin.isatty():
        raise UsageError("no terminal to confirm on: pass --yes to capture without asking")
    if not click.confirm(f"Capture {orders} order(s) on {base_url}?", default=False):
        raise UsageError("not confirmed: nothing was sent")


def _capture(
    journal: Journal,
    run_id: str,
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None,
    rate: float,
    options: BatchOptions,
    runners: list[Runner],
) -> None:
    from recon.api import Client

    progress = Progress(
        TextColumn("capturing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[states]}"), console=err, transient=False,
    )  # fmt: skip
    task = progress.add_task("capture", total=None, states="")

    def on_progress(counts: Counts) -> None:
        states = " ".join(f"{k}:{v}" for k, v in sorted(counts.by_state.items()))
        progress.update(task, total=counts.total, completed=counts.settled, states=states)

    async def go() -> Counts:
        async with Client(
            settings, transport=transport, timeout=options.timeout,
            max_connections=options.concurrency,
        ) as client:  # fmt: skip
            return await run_batch(
                journal, run_id, client, RateLimiter(rate), options, on_progress, runners.append
            )

    with progress:
        _run_async(runners, go())


@cli.command("report")
@click.argument("run_id")
@journal_option
@out_option
def report_cmd(run_id: str, journal: Path, out_file: Path | None) -> None:
    """Write the workbook of RUN_ID again from the journal. Sends nothing."""
    if not journal.exists():
        raise UsageError(f"no journal at {journal}")
    with Journal(journal) as jr:
        run = jr.run_info(run_id)
        report = build_report(run, jr.records(run_id), jr.rejections(run_id))
        path = _write(report, out_file, Path(run.input_name).stem, jr)
    out.print(_summary_table(report))
    out.print(f"workbook: {path}")


@cli.command("runs")
@journal_option
def runs_cmd(journal: Path) -> None:
    """List the runs in the journal with their counts and totals."""
    if not journal.exists():
        raise UsageError(f"no journal at {journal}")
    table = Table(title=f"Runs in {journal}", title_justify="left")
    for name in (
        "Run",
        "Started (UTC)",
        "Finished",
        "Input",
        "Endpoint",
        "Rows",
        "Sent",
        "Outcomes",
        "Captured",
    ):
        # ids and times must stay whole: they are what `recon report` and an auditor quote
        table.add_column(name, no_wrap=name in ("Run", "Started (UTC)", "Finished"))
    with Journal(journal) as jr:
        for run in jr.runs():
            report = build_report(run, jr.records(run.run_id), [])
            outcomes = " ".join(f"{o.outcome.value}:{o.count}" for o in report.outcomes if o.count)
            captured = " ".join(
                f"{money.quantize(c.captured, c.currency):,f} {c.currency}"
                for c in report.currencies
            )
            table.add_row(
                run.run_id, run.started_at, run.finished_at or "(not finished)", run.input_name,
                run.base_url, str(run.rows_read), str(run.rows_sent), outcomes, captured,
            )  # fmt: skip
    out.print(table)


@cli.command("verify")
@click.argument("workbook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@journal_option
def verify_cmd(workbook: Path, journal: Path) -> None:
    """Say whether WORKBOOK is the one the journal wrote, and if not, which cells differ.

    Exit 0 when it is, 1 when it is not.
    """
    from recon.verify import verify_workbook

    if not journal.exists():
        raise UsageError(f"no journal at {journal}")
    with Journal(journal) as jr:
        verdict = verify_workbook(workbook, jr)
    if verdict.matches:
        out.print(f"[green]OK[/]: {verdict.message}")
        return
    out.print(f"[red]NOT VERIFIED[/]: {verdict.message}")
    if verdict.differences:
        table = Table(title_justify="left")
        for name in ("Sheet", "Cell", "Journal says", "Workbook says"):
            table.add_column(name, overflow="fold")
        for d in verdict.differences:
            table.add_row(d.sheet, d.cell, repr(d.expected)[:60], repr(d.found)[:60])
        out.print(table)
        if verdict.total_differences > len(verdict.differences):
            out.print(f"... and {verdict.total_differences - len(verdict.differences)} more")
    sys.exit(EXCEPTIONS)


@cli.group("sandbox")
def sandbox_group() -> None:
    """The embedded Financial Line simulator."""


def _served_credentials() -> Any:
    """The FINLINE_* credentials when all three are set, so a client can be tested with its
    own; otherwise the sandbox's (see recon.sandbox.app.SANDBOX_CREDENTIALS)."""
    from recon.sandbox.app import Credentials

    s = _settings()
    if s.api_key and s.api_secret and s.endpoints_key:
        return Credentials(s.api_key.reveal(), s.api_secret.reveal(), s.endpoints_key.reveal())
    return None


@sandbox_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="TCP port."
)
@click.option(
    "--holds",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Holds CSV for the ledger [default: sample_data/holds.csv].",
)
@click.option(
    "--orders",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Make up holds for the orders of this input instead of --holds.",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0.1),
    help="Answer 429 past this many requests in any one-second window.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Delay before every answer, in milliseconds.",
)
@click.option(
    "--faults",
    metavar="SPEC",
    default="",
    help="Fault plan, e.g. 'drop_after_commit=0.02,slow=0.01:3' (see recon.sandbox.faults).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault plan.")
@click.option(
    "--allow-repeat",
    is_flag=True,
    help="Let a second capture of an order commit (as the real API may), so tests "
    "can see a client that sends one.",
)
def sandbox_serve_cmd(
    host: str, port: int, holds: Path | None, orders: Path | None, rate_limit: float | None,
    latency_ms: float, faults: str, seed: int, allow_repeat: bool,
) -> None:  # fmt: skip
    """Serve the simulator over HTTP on loopback (base URL http://HOST:PORT/api/v1).

    It takes FINLINE_API_KEY, FINLINE_API_SECRET and FINLINE_ENDPOINTS_KEY when all three are
    set, else the sandbox credentials (recon.sandbox.app.SANDBOX_CREDENTIALS); counts of
    requests, 429s and captures per order are at http://HOST:PORT/_sandbox/stats.
    """
    from recon.sandbox.app import SANDBOX_POS_ID, create_app, serve
    from recon.sandbox.faults import FaultSpecError, parse_faults
    from recon.sandbox.ledger import Ledger, holds_for_orders, load_holds

    if orders is not None:
        _, batch = _read(orders, None, None, _settings().pos_id or SANDBOX_POS_ID)
        hold_list = holds_for_orders(batch.orders)
    else:
        holds = holds or Path("sample_data/holds.csv")
        if not holds.is_file():
            raise UsageError(f"no holds file at {holds}: pass --holds FILE or --orders FILE")
        try:
            hold_list = load_holds(holds)
        except (ValueError, KeyError) as exc:
            raise UsageError(f"{holds} is not a holds file: {exc}") from exc
    try:
        plan = parse_faults(faults, seed=seed) if faults else None
    except FaultSpecError as exc:
        raise UsageError(f"--faults: {exc}") from exc
    ledger = Ledger(hold_list, refuse_repeat=not allow_repeat)
    app = create_app(
        ledger, credentials=_served_credentials(), faults=plan, rate_limit=rate_limit,
        latency_ms=latency_ms,
    )  # fmt: skip
    try:
        serve(app, host, port)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def main() -> None:
    cli(prog_name="recon")


__all__ = ["cli", "main"]
