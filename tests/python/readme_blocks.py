"""The code blocks of a Markdown file, and running its shell and Python blocks in order as
a reader would type them: each shell block with ``bash -e`` (a failing command stops it),
the Python blocks one after the other in one interpreter, sharing their names. Rust blocks
are run by ``tests/readme.rs``.

Run as ``python readme_blocks.py FILE`` in the directory and environment the blocks are
written for; it prints a line before each block.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

#: A fenced block: its language and its code.
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(markdown: str) -> list[tuple[str, str]]:
    """The ``(language, code)`` of every fenced block, in order."""
    return [(language, code) for language, code in _FENCE.findall(markdown)]


def run(markdown: str, name: str) -> None:
    """Run the shell and Python blocks of ``markdown`` (called ``name`` in tracebacks)."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    for number, (language, code) in enumerate(blocks(markdown), 1):
        print(f"--- {name} block {number} ({language})", flush=True)
        if language == "sh":
            subprocess.run(["bash", "-e", "-c", code], check=True)
        elif language == "python":
            importlib.invalidate_caches()  # see what a shell block just installed
            exec(compile(code, f"{name} block {number}", "exec"), namespace)
            sys.stdout.flush()


if __name__ == "__main__":
    path = Path(sys.argv[1])
    run(path.read_text(), path.name)
