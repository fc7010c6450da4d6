"""Progress bars for the long data commands: rich on stderr, off unless asked (quiet by default)."""

from __future__ import annotations

from collections.abc import Callable


class ProgressBar:
    """``with ProgressBar(enabled, total, label) as advance: ... advance()``."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label

    def __enter__(self) -> Callable[..., None]:
        if not self.enabled:
            return lambda n=1: None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total)
        return lambda n=1: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> bool:
        if self.enabled:
            self._bar.stop()
        return False
