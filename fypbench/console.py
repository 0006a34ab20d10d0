"""Rich consoles for fypbench's progress and logs.

    python -c "from fypbench.console import make_console; make_console().print('hello')"

Written to a file or a pipe (a log, CI), rich wraps at 80 columns by default, splitting table rows, paths and
numbers across lines; such consoles get LOG_WIDTH columns instead. A terminal keeps its own width.
"""

from __future__ import annotations

from typing import Any

LOG_WIDTH = 160


def make_console(stderr: bool = True, **options: Any):
    from rich.console import Console

    console = Console(stderr=stderr, **options)
    if not console.is_terminal and "width" not in options:
        console.width = max(console.width, LOG_WIDTH)
    return console
