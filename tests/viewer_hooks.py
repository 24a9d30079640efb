"""Reading the patient viewer's state from a browser test: its test hooks on
``window.cloudfilmViewer``, evaluated or polled (the page's CSP forbids string eval in
Playwright's own ``wait_for_function``, so polling goes through ``evaluate``)."""

from __future__ import annotations

import time
from typing import Any


def hook(page: Any, expression: str, *args: Any) -> Any:
    """Evaluate an expression over window.cloudfilmViewer (``v``) and the arguments (``a``)."""
    return page.evaluate(f"(a) => {{ const v = window.cloudfilmViewer; return {expression}; }}",
                         list(args))


def wait_for(page: Any, expression: str, timeout: float = 30.0, *args: Any) -> Any:
    """Poll a hook expression until it is truthy; on time-out say what the page shows."""
    deadline = time.monotonic() + timeout
    while True:
        value = hook(page, expression, *args)
        if value:
            return value
        if time.monotonic() > deadline:
            state = page.evaluate("""() => ({status: document.querySelector('.status')?.textContent,
                title: document.querySelector('.title')?.textContent, url: location.href,
                panes: [...document.querySelectorAll('.pane')].map(p => p.className + ' '
                    + p.querySelector('.progress-text')?.textContent)})""")
            raise AssertionError(f"timed out waiting for {expression}: {state}")
        time.sleep(0.05)
