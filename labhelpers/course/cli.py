"""The ``labs`` command: run the labs with papermill and publish HTML reports with an index.

    python -m labhelpers.run                          # every notebooks/NN_*.ipynb, smoke profile
    labs notebooks/03_*.ipynb --profile full --seed 1 --student "Ann Lee" --group A-21 -j 2
    labs run notebooks/03_*.ipynb                     # the same, with the subcommand spelled out
    labs run --roster roster.csv -j 2                 # every lab for every student (course.roster)

Each lab executes in its own kernel (a process pool runs ``-j`` at a time) into a staging folder;
only when execution *and* HTML rendering succeed are its files moved over the previous report
(:mod:`.runner`). Every report starts with a title block (course, lab, student, group, instructor,
date, profile, seed). ``python -m labhelpers.run`` and the ``labs`` script both land here.
No TensorFlow here (papermill and nbconvert are imported inside the worker).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import config
from .execute import DEFAULT_CELL_TIMEOUT
from .notebooks import NOTEBOOK_PATTERN
from .reports import DEFAULT_COURSE
from .roster import run_roster
from .runner import run_notebooks


def parse_parameter(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` from the command line; VALUE stays a string unless it is a JSON number,
    true, false or null."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"want NAME=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
        if isinstance(parsed, (int, float, bool)) or parsed is None:
            return name.strip(), parsed
    except json.JSONDecodeError:
        pass
    return name.strip(), value


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``labs run`` (also what plain ``labs`` takes); extend it for new run modes."""
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help=f"notebooks to run (default: notebooks/{NOTEBOOK_PATTERN} of the repository)")
    parser.add_argument("--profile", default="smoke", help=f"one of {sorted(config.PROFILES)} (default: smoke)")
    parser.add_argument("--seed", type=int, default=config.DEFAULT_SEED,
                        help=f"seed passed to every lab (default: {config.DEFAULT_SEED})")
    title = parser.add_argument_group("title block (top of every report and of the index)")
    title.add_argument("--student", default="", help="student name")
    title.add_argument("--group", default="", help="student group")
    title.add_argument("--instructor", default="", help="instructor name")
    title.add_argument("--course", default=DEFAULT_COURSE,
                       help=f"course name (default, also when empty: {DEFAULT_COURSE!r})")
    parser.add_argument("-p", "--parameter", dest="parameters", action="append", type=parse_parameter,
                        default=[], metavar="NAME=VALUE",
                        help="a lab-specific papermill parameter (e.g. class_name=tabby), passed only to the "
                             "notebooks whose parameters cell declares NAME; repeatable")
    parser.add_argument("-j", "--jobs", type=int, default=1,
                        help="notebooks run at the same time; with --roster: students at a time (default: 1)")
    parser.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                        help=f"seconds a cell may run, 0: no limit (default: {DEFAULT_CELL_TIMEOUT})")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="reports land in OUTPUT_DIR/<profile>/ (default: the repository's reports/)")
    klass = parser.add_argument_group("class-wide runs (labhelpers.course.roster)")
    klass.add_argument("--roster", type=Path, default=None, metavar="CSV",
                       help="run every lab for every student of this CSV (columns: student, group, image_folder, "
                            "class_name; image_folder relative to the CSV, may be blank) into "
                            "OUTPUT_DIR/<profile>/students/<slug>/, plus OUTPUT_DIR/<profile>/class_index.html; "
                            "-j N runs N students at a time in a local process pool")
    klass.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="with --roster: run each student as one task on this Dask distributed scheduler "
                            "instead of the local pool (-j is then ignored: the workers' threads decide). The "
                            "workers need labhelpers installed and must see the same filesystem at the same "
                            "paths (notebooks, image folders, OUTPUT_DIR); start them with --nthreads 1")
    return parser


def run_command(args: argparse.Namespace) -> int:
    """``labs run``: execute the notebooks; 0 when all succeeded, 1 when any failed."""
    parameters = dict(args.parameters)
    if args.roster is not None:
        if args.student or args.group:
            raise ValueError("--student and --group come from the roster's columns; leave them out with --roster")
        outcome = run_roster(args.roster, args.notebooks or None, profile=args.profile, seed=args.seed,
                             instructor=args.instructor, course=args.course, parameters=parameters,
                             jobs=args.jobs, cell_timeout=args.cell_timeout, output_dir=args.output_dir,
                             scheduler=args.scheduler)
        return 0 if outcome.ok else 1
    if args.scheduler:
        raise ValueError("--scheduler needs --roster (a Dask cluster runs class-wide runs, one task per student)")
    results = run_notebooks(args.notebooks or None, profile=args.profile, seed=args.seed,
                            student=args.student, group=args.group, jobs=args.jobs,
                            cell_timeout=args.cell_timeout, output_dir=args.output_dir,
                            instructor=args.instructor, course=args.course, parameters=parameters)
    return 0 if all(r.ok for r in results) else 1


# subcommand -> (help, adds its arguments, runs it and returns the exit code)
SUBCOMMANDS = {
    "run": ("execute notebooks and write HTML reports with an index (the default)", add_run_arguments,
            run_command),
}
DEFAULT_SUBCOMMAND = "run"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labs", description="Execute the labs with papermill and write HTML reports with an index. "
                                 f"Without a subcommand, `labs ARGS` means `labs {DEFAULT_SUBCOMMAND} ARGS`.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, handler) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``labs`` command; returns the exit code (2: bad arguments, nothing ran)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, DEFAULT_SUBCOMMAND)  # plain `labs nb.ipynb --profile full`
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, ConnectionError) as exc:
        print(f"labs: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
