"""xm top's full-screen view, with textual: xentop's header and table, refreshed
every delay, and its keys.  The text of every cell comes from cli/topformat.py, the
same as ``xm top -b`` prints.

Keys (xentop's): ``d`` delay, ``s``/``S`` sort by the next column / reverse the
order (or click a column header), ``n`` networks, ``x``/``b`` block devices, ``v``
vCPUs (their lines in the pane under the table), ``f`` full names, ``q``/Escape quit;
the arrows and Page Up/Down scroll."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

from dom0.cli import topformat
from dom0.errors import XendError
from dom0.model.figures import Snapshot

Fetch = Callable[[], Snapshot]


class TopApp(App[int]):
    CSS = """
    #summary { height: 3; }
    #table { height: 1fr; }
    #details { height: auto; max-height: 40%; }
    #delay { dock: bottom; display: none; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("escape", "quit", "Quit", show=False),
        Binding("d", "ask_delay", "Delay"),
        Binding("s", "next_sort", "Sort order"),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("n", "flip('networks')", "Networks"),
        Binding("x", "flip('vbds')", "vBds"),
        Binding("b", "flip('vbds')", "vBds", show=False),
        Binding("v", "flip('vcpus')", "VCPUs"),
        Binding("f", "flip('full_name')", "Full names", show=False),
    ]

    def __init__(self, fetch: Fetch, delay: float = 3.0, networks: bool = False,
                 vbds: bool = False, vcpus: bool = False, full_name: bool = False,
                 iterations: int = 0) -> None:
        super().__init__()
        #: -i: refreshes to show before ending (0: until q)
        self.iterations = iterations
        self.shown = 0
        self.fetch = fetch
        self.delay = delay
        self.sort = 0
        self.reverse = False
        self.networks, self.vbds, self.vcpus = networks, vbds, vcpus
        self.full_name = full_name
        self.snap: Snapshot | None = None
        self.prev: Snapshot | None = None
        self.error: str | None = None
        self._timer: Any = None

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        yield DataTable(id="table", cursor_type="row", zebra_stripes=False)
        yield Static(id="details")
        yield Input(placeholder="Delay in seconds", id="delay")
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name, width, _, _ in topformat.COLUMNS:
            table.add_column(name, width=max(width, len(name)), key=name)
        await self.refresh_figures()
        self._timer = self.set_interval(self.delay, self.refresh_figures)

    # ---- figures ---------------------------------------------------------------------

    async def refresh_figures(self) -> None:
        """One request for every domain's figures (in a thread: the client blocks)."""
        try:
            snap = await asyncio.to_thread(self.fetch)
        except (XendError, OSError) as exc:
            self.error = str(exc)
            self.query_one("#summary", Static).update(f"xentop - Error: {exc}")
            return
        self.error = None
        self.prev, self.snap = self.snap, snap
        self.redraw()
        self.shown += 1
        if self.iterations and self.shown >= self.iterations:
            self.exit(0)

    def redraw(self) -> None:
        if self.snap is None:
            return
        self.query_one("#summary", Static).update("\n".join(topformat.summary(self.snap)))
        table = self.query_one(DataTable)
        rows = topformat.rows(self.snap, self.prev, self.sort, self.reverse, self.full_name)
        table.clear()
        for row in rows:
            table.add_row(*[c.strip() for c in topformat.cells(row)],
                          key=f"{row.dom.uuid}:{row.dom.domid}")
        details: list[str] = []
        for row in rows:
            extra = (topformat.vcpu_lines(row.dom) if self.vcpus else []) + \
                (topformat.net_lines(row.dom) if self.networks else []) + \
                (topformat.vbd_lines(row.dom) if self.vbds else [])
            if extra:
                details += [row.dom.name, *("  " + x for x in extra)]
        self.query_one("#details", Static).update("\n".join(details))

    def sort_name(self) -> str:
        return topformat.HEADERS[self.sort]

    # ---- keys --------------------------------------------------------------------

    def action_next_sort(self) -> None:
        self.sort = (self.sort + 1) % len(topformat.COLUMNS)
        self.redraw()

    def action_reverse_sort(self) -> None:
        self.reverse = not self.reverse
        self.redraw()

    def action_flip(self, what: str) -> None:
        setattr(self, what, not getattr(self, what))
        self.redraw()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a column header sorts by it; a second click reverses."""
        index = topformat.HEADERS.index(str(event.column_key.value))
        if index == self.sort:
            self.reverse = not self.reverse
        else:
            self.sort, self.reverse = index, False
        self.redraw()

    def action_ask_delay(self) -> None:
        box = self.query_one("#delay", Input)
        box.value = f"{self.delay:g}"
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        box = event.input
        box.display = False
        self.query_one(DataTable).focus()
        try:
            delay = float(event.value)
        except ValueError:
            delay = 0.0
        if delay <= 0:
            self.notify(f"Invalid delay: {event.value}", severity="error")
            return
        self.delay = delay
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_interval(self.delay, self.refresh_figures)

    async def action_quit(self) -> None:
        self.exit(0)


def run(fetch: Fetch, options: Any) -> int:
    app = TopApp(fetch, delay=options.delay, networks=options.networks, vbds=options.vbds,
                 vcpus=options.vcpus, full_name=options.full_name,
                 iterations=options.iterations)
    return app.run() or 0
