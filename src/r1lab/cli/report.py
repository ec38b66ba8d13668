"""``r1lab report``: the HTML report of a run directory."""

from __future__ import annotations

import argparse

DESCRIPTION = """Write RUN_DIR/report.html: one self-contained page (plots embedded) with reward curves,
completion length, zero-variance groups, clipped ratio, KL/entropy, evaluation before/after each
stage, reflection-word frequency over training and sample completions. Works on partial runs.

examples:
  r1lab report runs/demo
  r1lab report runs/demo --out /tmp/demo.html
"""


def register(sub) -> None:
    """Add the ``report`` verb."""
    from r1lab.cli import HelpFormatter, add_common_flags

    p = sub.add_parser(
        "report", help="write a run's HTML report", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (runs/<name>)")
    p.add_argument("--out", default=None, help="where to write the HTML (default: RUN_DIR/report.html)")
    add_common_flags(p)
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``r1lab report``."""
    from r1lab.report import write_report

    path = write_report(args.run_dir, out=args.out)
    print(path)
    return 0
