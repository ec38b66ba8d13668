"""`python -m benchmarks` (`make bench`): run every `benchmarks/bench_*.py` module's `main()`.

Each benchmark measures r1lab against a baseline in the same process run and writes its latest results to
`benchmarks/results/<topic>.json` and `.md` (with the machine description). Pass names to run a subset:
`python -m benchmarks rewards eval`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = [f"bench_{a}" if not a.startswith("bench_") else a for a in argv]
    unknown = set(wanted) - set(names)
    if unknown:
        print(f"unknown benchmark(s): {sorted(unknown)}; available: {names}", file=sys.stderr)
        return 2
    for name in wanted or names:
        print(f"== {name} ==", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
