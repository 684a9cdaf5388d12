"""The ``xattn`` command line.

Each subcommand lives in the module that implements its idea; this file only wires
argument parsing to those modules and imports them lazily, so ``xattn --help`` is fast.

The rules every command follows:

* options may stand anywhere among the positional arguments (``xattn translate RUN --beam 4
  "a sentence"``): each command's arguments are parsed intermixed;
* an error the user can fix (a bad number, a missing or unwritable file, an unknown option, a
  wrong ``--set``: :class:`xattn_edu.common.errors.UserError`, argparse's own errors, and
  file-system errors such as a folder that cannot be created) prints one line
  ``xattn <command>: error: ...`` on stderr and exits with status 2, never a traceback;
* every option a message names exists on the command that printed it;
* exit status 1 is for ``xattn translate`` when some lines could not be translated (each named on
  stderr; the others are translated), 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xattn_edu.common.errors import UserError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``xattn <command>: error: ...``, and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, lowest: float | None = None, *, above: bool = False):
    """An argparse ``type``: ``kind`` (int or float) at least ``lowest`` (greater than it with ``above``)."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None  # fmt: skip
        if lowest is not None and (value <= lowest if above else value < lowest):
            raise argparse.ArgumentTypeError(f"must be {'greater than' if above else 'at least'} {lowest}, got {text}")
        return value

    convert.lowest, convert.above = lowest, above  # read by tests that try a value out of range
    return convert


def _cmd_info(args: argparse.Namespace) -> int:
    from xattn_edu.common.info import describe

    print(describe())
    return 0


def _skip_iri_grammars() -> None:
    """Keep jsonschema from importing ``rfc3987_syntax`` (if installed) in this process.

    jsonschema imports it to check IRI string formats, which notebooks never use, and it compiles
    38 grammars at import: about 3 s of the ~8 s CPU that ``xattn grade`` takes. nbformat, which
    validates every notebook with jsonschema, works the same without it.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # None in sys.modules makes the import fail fast


def _course_root(args: argparse.Namespace):
    """The course root: ``--course-root`` (pinned for the processes this one starts), else found from here upward."""
    from xattn_edu.grader.settings import find_course_root, pin_course_root

    return pin_course_root(args.course_root) if args.course_root else find_course_root()


def _cmd_build(args: argparse.Namespace) -> int:
    _skip_iri_grammars()
    from pathlib import Path

    from xattn_edu.grader.build import build, solutions_dir

    root = _course_root(args)
    solutions = Path(args.solutions) if args.solutions else solutions_dir(root)  # no course root: an error
    print(f"course root: {root or 'none'} (chapters from {solutions})")
    base = root or Path.cwd()
    out = Path(args.out) if args.out else solutions_dir(root).parent / "course"
    source = base / args.nbgrader_source if args.nbgrader_source else None  # relative to the course root
    package = base / "xattn_edu" / "grader"
    # the grading masters go into the course root's own copy of the package, when it is a checkout of it
    masters = package / "masters" if not (args.out or args.solutions) and package.is_dir() else None
    for path in build(args.chapters, out, solutions=solutions, nbgrader_source=source, grading_masters_dir=masters,
                      force=args.force):  # fmt: skip
        print(f"wrote {path}")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    _skip_iri_grammars()
    import json
    from pathlib import Path

    from xattn_edu.grader.build import masters_folder
    from xattn_edu.grader.selfgrade import grade_notebook

    root = _course_root(args)
    solutions = Path(args.solutions) if args.solutions else masters_folder()
    report = grade_notebook(args.notebook, html=args.html, timeout=args.timeout, solutions=solutions)
    where = {"course_root": str(root) if root else None, "masters": str(solutions)}
    if args.json:
        print(json.dumps({**report.to_dict(flags=False), **where}))
    else:
        settings = f"course root {root}" if root else "no course root (no nbgrader_config.py here or above)"
        print(f"graded with the settings of {settings}, against the masters in {solutions}")
        print(report.table())
    if args.html and not args.json:
        print(f"feedback written to {args.html}")
    return 0


def _cmd_grade_class(args: argparse.Namespace) -> int:
    _skip_iri_grammars()
    import json
    from pathlib import Path

    from xattn_edu.grader.build import masters_folder
    from xattn_edu.grader.classgrade import grade_class
    from xattn_edu.grader.pool import Limits

    given = {"workers": args.workers, "cell_timeout": args.cell_timeout, "notebook_timeout": args.notebook_timeout,
             "memory_mb": args.memory_mb, "max_processes": args.max_processes}
    # 0 turns a cap off (None); options not given keep the defaults of Limits
    limits = Limits(**{name: value or None for name, value in given.items() if value is not None})
    root = _course_root(args)
    solutions = Path(args.solutions) if args.solutions else None
    report = grade_class(args.chapter, args.submissions, args.out, limits=limits, regrade=args.regrade,
                         progress=not args.no_progress, solutions=solutions, name_pattern=args.name_pattern)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        settings = f"course root {root}" if root else "no course root (no nbgrader_config.py here or above)"
        print(f"graded with the settings of {settings}, against the masters in {solutions or masters_folder()}")
        print(report.table())
    return 0


def _warn(command: str, message: str) -> None:
    print(f"xattn {command}: warning: {message}", file=sys.stderr)


def _cpu_threads(device: str | None):
    """On the CPU, a context using the idle cores (:func:`xattn_edu.common.device.cpu_threads`); else nothing."""
    from contextlib import nullcontext

    from xattn_edu.common.device import cpu_threads_for_this_machine, resolve_device

    return cpu_threads_for_this_machine() if resolve_device(device).type == "cpu" else nullcontext()


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from xattn_edu.translate.evaluate import evaluate

    with _cpu_threads(args.device):
        report, _ = evaluate(args.dir, split=args.split, beam_size=args.beam, device=args.device,
                             batch_size=args.batch_size, data_dir=args.data_dir, src_file=args.src,
                             ref_file=args.ref, bleu_tokenize=args.bleu_tokenize)  # fmt: skip
    for warning in report.warnings:
        _warn("evaluate", warning)
    print(json.dumps(report.to_dict()) if args.json else report.table())
    return 0


def _show(results, what: str, first: int = 1) -> bool:
    """Print one stdout line per result (an empty one for a line that failed), warnings and errors on
    stderr naming the line; return whether every line was translated."""
    ok = True
    for number, result in enumerate(results, start=first):
        if result.unknown:
            words = ", ".join(repr(word) for word in result.unknown)
            _warn("translate", f"{what} {number}: {words} not in the training data (read as <unk>)")
        if result.error:
            print(f"xattn translate: error: {what} {number}: {result.error}; not translated", file=sys.stderr)
            ok = False
        print(result.text or "", flush=True)
    return ok


def _interactive(loaded, beam_size: int) -> bool:
    """Translate each line as it is typed, with a prompt on stderr; return whether every line was translated."""
    from xattn_edu.translate.translator import translate_lines

    print("Type a sentence and press Enter to translate it; Ctrl-D ends.", file=sys.stderr)
    ok, number = True, 0
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            print(file=sys.stderr)
            return ok
        number += 1
        ok = _show(translate_lines(loaded, [line.rstrip("\r\n")], beam_size=beam_size), "line", number) and ok


def _cmd_translate(args: argparse.Namespace) -> int:
    from xattn_edu.common.device import resolve_device
    from xattn_edu.translate.checkpoint import load_model
    from xattn_edu.translate.data.parallel_text import split_lines
    from xattn_edu.translate.translator import translate_lines

    loaded = load_model(args.dir, resolve_device(args.device))
    with _cpu_threads(args.device):
        if args.sentences:
            ok = _show(translate_lines(loaded, args.sentences, beam_size=args.beam), "sentence")
        elif sys.stdin.isatty():
            ok = _interactive(loaded, args.beam)
        else:
            ok = _show(translate_lines(loaded, split_lines(sys.stdin.read()), beam_size=args.beam), "line")
    return 0 if ok else 1


def _cmd_data(args: argparse.Namespace) -> int:
    if args.dataset == "multi30k":
        from xattn_edu.translate.data import multi30k

        print(multi30k.download(cache_dir=args.cache_dir))
        return 0
    from xattn_edu.translate.data.synthetic import generate, show_pair

    print("\n\n".join(show_pair(pair) for pair in generate(args.n, seed=args.seed)))
    return 0


def _parse_value(key: str, text: str, kind) -> object:
    """``text`` read as a value of the setting's type (bool, int, float, str, path, optional, tuple)."""
    import types
    import typing
    from pathlib import Path

    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() in ("none", ""):
            return None
        kind = next(a for a in args if a is not type(None))
    if typing.get_origin(kind) is tuple:
        parts, members = text.split(","), typing.get_args(kind)
        if len(parts) != len(members):
            raise UserError(f"--set {key}={text}: expected {len(members)} comma-separated values")
        return tuple(_parse_value(key, part.strip(), each) for part, each in zip(parts, members, strict=True))
    if kind is bool:
        words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.lower() not in words:
            raise UserError(f"--set {key}={text}: expected true or false")
        return words[text.lower()]
    try:
        return Path(text) if kind is Path else kind(text)
    except ValueError:
        raise UserError(f"--set {key}={text}: expected a value of type {kind.__name__}") from None


def _settings(pairs: Sequence[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` options as {dotted key: typed value}; one-line errors naming the valid keys."""
    from xattn_edu.translate.config import setting_types

    known = setting_types()
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}; valid keys: {', '.join(known)}")
        if key not in known:
            raise UserError(f"--set: unknown setting {key!r}; valid keys: {', '.join(known)}")
        values[key] = _parse_value(key, text.strip(), known[key])
    return values


def run_config(args: argparse.Namespace):
    """The run config of ``xattn train``: a preset (with ``--resume``, the checkpoint's own settings)
    changed by the data options, ``--steps``, ``--seed``, ``--compile`` and then every ``--set``."""
    from pathlib import Path

    from xattn_edu.translate import checkpoint
    from xattn_edu.translate.config import get_preset

    if args.resume and args.preset is not None:
        raise UserError("--resume continues the saved run with its own settings; leave out --preset")
    cfg = checkpoint.read_config(args.out) if args.resume else get_preset(args.preset or "tiny")
    files = {name: getattr(args, name) for name in ("train_src", "train_tgt", "val_src", "val_tgt")}
    values: dict[str, object] = {}
    if any(files.values()):
        if not args.train_src:
            raise UserError("--train-tgt/--val-src/--val-tgt need --train-src")
        values["data.source"] = "text"
        values.update({f"data.{name}": Path(path) for name, path in files.items() if path})
    if args.data_dir:
        values["data.data_dir"] = Path(args.data_dir)
    if args.steps is not None:
        values["optim.steps"] = args.steps
    if args.seed is not None:
        values["seed"] = args.seed
    values["compile"] = args.compile
    return cfg.with_values({**values, **_settings(args.set)})


def _check_writable_folder(option: str, path: str) -> None:
    """:class:`UserError` now, not after hours of work, if ``path`` cannot become a folder we write in."""
    import os
    from pathlib import Path

    existing = Path(os.path.abspath(path))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: no permission to write in {existing}")


def _cmd_train(args: argparse.Namespace) -> int:
    from xattn_edu.translate.train import train

    cfg = run_config(args)
    _check_writable_folder("--out", args.out)
    train(cfg, args.out, device=args.device, resume=args.resume,
          progress=False if args.no_progress else None)  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = _Parser(
        prog="xattn",
        description="Cross-attention, step by step: course tools and a reference translator.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="versions, compute device, cache and data locations")
    info.set_defaults(func=_cmd_info)

    course_root = {"metavar": "DIR",
                   "help": "the course root: the folder holding nbgrader_config.py (default: the nearest one from "
                           "the working directory upward)"}  # fmt: skip

    build = sub.add_parser("build", help="generate the student notebooks in course/ from solutions/")
    build.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter names, e.g. 01_library_lookup")
    build.add_argument("--course-root", **course_root)
    build.add_argument("--out", metavar="DIR", help="write the release here instead of the course root's course/")
    build.add_argument(
        "--nbgrader-source",
        metavar="DIR",
        help="also write the master notebooks (solutions + hidden tests) for nbgrader into DIR/NN_slug/ "
             "(relative to the course root; e.g. source)",
    )
    build.add_argument("--force", action="store_true",
                       help="overwrite masters in --nbgrader-source that were edited since the build wrote them")
    build.add_argument("--solutions", metavar="DIR", help="folder of chapter sources (default: solutions/)")
    build.set_defaults(func=_cmd_build)

    grade = sub.add_parser("grade", help="grade your notebook offline, hidden tests included")
    grade.add_argument("notebook", metavar="NOTEBOOK", help="your copy of a course notebook (.ipynb)")
    grade.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    grade.add_argument("--html", metavar="OUT", help="also write feedback HTML (no hidden test code) to OUT")
    grade.add_argument("--timeout", type=_number(int, 1), metavar="S",
                       help="seconds a cell may run (default: nbgrader_config.py)")
    grade.add_argument("--course-root", **course_root)
    grade.add_argument("--solutions", metavar="DIR",
                       help="folder of chapter sources (default: the course root's solutions/, else the grading "
                            "masters shipped with xattn_edu)")
    grade.set_defaults(func=_cmd_grade)

    grade_class = sub.add_parser("grade-class", help="grade every student's notebook of a chapter, in parallel")
    grade_class.add_argument("chapter", metavar="CHAPTER", help="chapter name or number, e.g. 01_library_lookup or 01")
    grade_class.add_argument("submissions", metavar="SUBMISSIONS",
                             help="folder with one sub-folder per student, or an LMS zip / folder of LMS files "
                                  "(Canvas, Moodle, Blackboard, Gradescope)")
    grade_class.add_argument("--name-pattern", metavar="REGEX",
                             help="read the student from file names with this regular expression: its group "
                                  "(?P<student>...) names the student, an optional (?P<attempt>...) orders "
                                  "resubmissions")
    grade_class.add_argument("--out", metavar="DIR", help="results folder (default: ./graded/CHAPTER)")
    grade_class.add_argument("--workers", type=_number(int, 1), metavar="N",
                             help="notebooks graded at once (default: cores)")
    grade_class.add_argument("--cell-timeout", type=_number(int, 0), metavar="S",
                             help="seconds one cell may run, 0 for no limit (default: nbgrader_config.py, 120)")
    grade_class.add_argument("--notebook-timeout", type=_number(float, 0), metavar="S",
                             help="seconds one notebook may take in all, 0 for no limit (default: 600)")
    grade_class.add_argument("--memory-mb", type=_number(int, 0), metavar="M",
                             help="address-space cap per grading process in MiB, 0 for none (default: 4096)")
    grade_class.add_argument("--max-processes", type=_number(int, 0), metavar="P",
                             help="processes and threads per worker, 0 for no cap (default: 128)")
    grade_class.add_argument("--regrade", action="store_true", help="grade everyone again, even if unchanged")
    grade_class.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    grade_class.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    grade_class.add_argument("--course-root", **course_root)
    grade_class.add_argument("--solutions", metavar="DIR",
                             help="folder of chapter sources (default: the course root's solutions/, else the "
                                  "grading masters shipped with xattn_edu)")
    grade_class.set_defaults(func=_cmd_grade_class)

    evaluate = sub.add_parser("evaluate", help="score a trained checkpoint: BLEU, chrF, exact match, AER")
    evaluate.add_argument("dir", metavar="DIR", help="training output directory (holds checkpoint.pt)")
    evaluate.add_argument("--split", help="train, val or test (default: test, or val when the data has none); "
                          "Multi30k also takes a published test set: test_2016_flickr (= test), test_2017_flickr, "
                          "test_2017_mscoco, test_2018_flickr")
    evaluate.add_argument("--src", metavar="FILE", help="your own test sources, one per line (instead of a split)")
    evaluate.add_argument("--ref", metavar="FILE", help="their reference translations, line-aligned with --src")
    evaluate.add_argument("--bleu-tokenize", metavar="TOK",
                          help="sacreBLEU tokenizer for BLEU: 13a, intl, zh, ja-mecab, ko-mecab, char or none "
                               "(default: from the target language, or the script of unspaced text)")
    evaluate.add_argument("--beam", type=_number(int, 1), default=1, metavar="K", help="beam size (default 1: greedy)")
    evaluate.add_argument("--batch-size", type=_number(int, 1), default=128, metavar="N",
                          help="sentences decoded together")
    evaluate.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    evaluate.add_argument("--data-dir", metavar="DIR",
                          help="where the Multi30k files are now (default: where the run read them)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    evaluate.set_defaults(func=_cmd_evaluate)

    translate = sub.add_parser("translate", help="translate sentences with a trained checkpoint, one line each")
    translate.add_argument("dir", metavar="DIR", help="training output directory (holds checkpoint.pt)")
    translate.add_argument("sentences", nargs="*", metavar="SENTENCE",
                           help="source sentences (default: stdin, one per line; an empty line gives an empty line)")
    translate.add_argument("--beam", type=_number(int, 1), default=1, metavar="K", help="beam size (default 1: greedy)")
    translate.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    translate.set_defaults(func=_cmd_translate)

    data = sub.add_parser("data", help="download Multi30k, or show synthetic sentence pairs with alignments")
    data.add_argument("dataset", choices=["multi30k", "synthetic"], help="which corpus")
    data.add_argument("--cache-dir", metavar="DIR", help="multi30k: download here (default: the xattn data dir)")
    data.add_argument("-n", type=_number(int, 0), default=3, metavar="N", help="synthetic: how many pairs to show")
    data.add_argument("--seed", type=_number(int), default=0, help="synthetic: random seed")
    data.set_defaults(func=_cmd_data)

    train = sub.add_parser("train", help="train a translator (preset tiny: CPU, minutes; multi30k-cpu: real "
                                          "German→English, within 15 minutes on 2 CPU cores; multi30k: GPU)")
    train.add_argument("--preset", help="tiny (synthetic corpus, CPU), multi30k-cpu (Multi30k, 2 CPU cores) or "
                                        "multi30k (Multi30k, GPU) (default: tiny)")
    train.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change any setting, e.g. model.pre_norm=false, optim.lr=5e-4, data.n_train=1000 "
                            "(repeatable; a wrong key lists them all)")
    train.add_argument("--data-dir", metavar="DIR", help="Multi30k files already on disk (no download)")
    train.add_argument("--train-src", metavar="FILE", help="training sources, one per line, or a TSV of pairs")
    train.add_argument("--train-tgt", metavar="FILE", help="their translations, line-aligned (omit for a TSV)")
    train.add_argument("--val-src", metavar="FILE", help="validation sources or TSV (default: hold out training pairs)")
    train.add_argument("--val-tgt", metavar="FILE", help="validation translations")
    train.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    train.add_argument("--steps", type=_number(int, 1), metavar="N",
                       help="optimizer steps in total (default: the preset's)")
    train.add_argument("--seed", type=_number(int), help="initial weights, dropout and batch order (default: 0)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA only)")
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_cmd_train)

    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed with the command's options allowed anywhere among its positional arguments.

    argparse cannot parse intermixed arguments through sub-parsers, so the command (the first
    argument; the top level has no options but --help) picks its parser, which parses the rest.
    """
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)  # --help, or a one-line error naming the valid commands
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def _os_error(err: OSError) -> str:
    """A file-system error as one line: what went wrong and with which path."""
    paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    return f"{err.strerror or err}: {paths}" if paths else str(err.strerror or err)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xattn`` console script; returns the exit status."""
    try:
        args = parse_args(build_parser(), list(sys.argv[1:] if argv is None else argv))
    except SystemExit as done:  # --help (0) or a usage error, already printed (2)
        return done.code if isinstance(done.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"xattn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a folder that cannot be created, a file that cannot be written, a full disk
        print(f"xattn {args.command}: error: {_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xattn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
