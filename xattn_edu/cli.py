"""The ``xattn`` command line.

Each subcommand lives in the module that implements its idea; this file only wires
argument parsing to those modules and imports them lazily, so ``xattn --help`` is fast.
Errors that a user can fix (:class:`xattn_edu.common.errors.UserError`) are printed as one line
and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xattn_edu.common.errors import UserError


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


def _cmd_build(args: argparse.Namespace) -> int:
    _skip_iri_grammars()
    from pathlib import Path

    from xattn_edu.grader.build import build

    out = Path(args.out) if args.out else None
    source = Path(args.nbgrader_source) if args.nbgrader_source else None
    solutions = Path(args.solutions) if args.solutions else None
    for path in build(args.chapters, out, solutions=solutions, nbgrader_source=source):
        print(f"wrote {path}")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    _skip_iri_grammars()
    import json
    from pathlib import Path

    from xattn_edu.grader.selfgrade import grade_notebook

    solutions = Path(args.solutions) if args.solutions else None
    report = grade_notebook(args.notebook, html=args.html, timeout=args.timeout, solutions=solutions)
    print(json.dumps(report.to_dict(flags=False)) if args.json else report.table())
    if args.html and not args.json:
        print(f"feedback written to {args.html}")
    return 0


def _cmd_grade_class(args: argparse.Namespace) -> int:
    _skip_iri_grammars()
    import json
    from pathlib import Path

    from xattn_edu.grader.classgrade import grade_class
    from xattn_edu.grader.pool import Limits

    given = {"workers": args.workers, "cell_timeout": args.cell_timeout, "notebook_timeout": args.notebook_timeout,
             "memory_mb": args.memory_mb, "max_processes": args.max_processes}
    # 0 turns a cap off (None); options not given keep the defaults of Limits
    limits = Limits(**{name: value or None for name, value in given.items() if value is not None})
    solutions = Path(args.solutions) if args.solutions else None
    report = grade_class(args.chapter, args.submissions, args.out, limits=limits, regrade=args.regrade,
                         progress=not args.no_progress, solutions=solutions)  # fmt: skip
    print(json.dumps(report.to_dict()) if args.json else report.table())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from xattn_edu.translate.evaluate import evaluate

    report, _ = evaluate(args.dir, split=args.split, beam_size=args.beam, device=args.device,
                         batch_size=args.batch_size, data_dir=args.data_dir)  # fmt: skip
    print(json.dumps(report.to_dict()) if args.json else report.table())
    return 0


def _cmd_translate(args: argparse.Namespace) -> int:
    from xattn_edu.common.device import resolve_device
    from xattn_edu.translate.checkpoint import load_model
    from xattn_edu.translate.evaluate import translate_texts

    sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    loaded = load_model(args.dir, resolve_device(args.device))
    for line in translate_texts(loaded, sentences, beam_size=args.beam):
        print(line)
    return 0


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


def _cmd_train(args: argparse.Namespace) -> int:
    from xattn_edu.translate.train import train

    train(run_config(args), args.out, device=args.device, resume=args.resume,
          progress=False if args.no_progress else None)  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="xattn",
        description="Cross-attention, step by step: course tools and a reference translator.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="versions, compute device, cache and data locations")
    info.set_defaults(func=_cmd_info)

    build = sub.add_parser("build", help="generate the student notebooks in course/ from solutions/")
    build.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter names, e.g. 01_library_lookup")
    build.add_argument("--out", metavar="DIR", help="write the release here instead of course/")
    build.add_argument(
        "--nbgrader-source",
        metavar="DIR",
        help="also write the master notebooks (solutions + hidden tests) for nbgrader into DIR/NN_slug/",
    )
    build.add_argument("--solutions", metavar="DIR", help="folder of chapter sources (default: solutions/)")
    build.set_defaults(func=_cmd_build)

    grade = sub.add_parser("grade", help="grade your notebook offline, hidden tests included")
    grade.add_argument("notebook", metavar="NOTEBOOK", help="your copy of a course notebook (.ipynb)")
    grade.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    grade.add_argument("--html", metavar="OUT", help="also write feedback HTML (no hidden test code) to OUT")
    grade.add_argument("--timeout", type=int, metavar="S", help="seconds a cell may run (nbgrader_config.py)")
    grade.add_argument("--solutions", metavar="DIR", help="folder of chapter sources (default: solutions/)")
    grade.set_defaults(func=_cmd_grade)

    grade_class = sub.add_parser("grade-class", help="grade every student's notebook of a chapter, in parallel")
    grade_class.add_argument("chapter", metavar="CHAPTER", help="chapter name, e.g. 01_library_lookup")
    grade_class.add_argument("submissions", metavar="SUBMISSIONS",
                             help="folder with one sub-folder per student, or an LMS zip / folder of LMS files")
    grade_class.add_argument("--out", metavar="DIR", help="results folder (default: ./graded/CHAPTER)")
    grade_class.add_argument("--workers", type=int, metavar="N", help="notebooks graded at once (default: cores)")
    grade_class.add_argument("--cell-timeout", type=int, metavar="S",
                             help="seconds one cell may run (default: nbgrader_config.py, 120)")
    grade_class.add_argument("--notebook-timeout", type=float, metavar="S",
                             help="seconds one notebook may take in all (default: 600)")
    grade_class.add_argument("--memory-mb", type=int, metavar="M",
                             help="address-space cap per grading process in MiB, 0 for none (default: 4096)")
    grade_class.add_argument("--max-processes", type=int, metavar="P",
                             help="processes and threads per worker, 0 for no cap (default: 128)")
    grade_class.add_argument("--regrade", action="store_true", help="grade everyone again, even if unchanged")
    grade_class.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    grade_class.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    grade_class.add_argument("--solutions", metavar="DIR", help="folder of chapter sources (default: solutions/)")
    grade_class.set_defaults(func=_cmd_grade_class)

    evaluate = sub.add_parser("evaluate", help="score a trained checkpoint on a split: BLEU, exact match, AER")
    evaluate.add_argument("dir", metavar="DIR", help="training output directory (holds checkpoint.pt)")
    evaluate.add_argument("--split", help="train, val or test (default: test, or val when the data has none)")
    evaluate.add_argument("--beam", type=int, default=1, metavar="K", help="beam size (default 1: greedy)")
    evaluate.add_argument("--batch-size", type=int, default=128, metavar="N", help="sentences decoded together")
    evaluate.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    evaluate.add_argument("--data-dir", metavar="DIR",
                          help="where the Multi30k files are now (default: where the run read them)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    evaluate.set_defaults(func=_cmd_evaluate)

    translate = sub.add_parser("translate", help="translate sentences with a trained checkpoint")
    translate.add_argument("dir", metavar="DIR", help="training output directory (holds checkpoint.pt)")
    translate.add_argument("sentences", nargs="*", metavar="SENTENCE", help="source sentences (default: stdin lines)")
    translate.add_argument("--beam", type=int, default=1, metavar="K", help="beam size (default 1: greedy)")
    translate.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    translate.set_defaults(func=_cmd_translate)

    data = sub.add_parser("data", help="download Multi30k, or show synthetic sentence pairs with alignments")
    data.add_argument("dataset", choices=["multi30k", "synthetic"], help="which corpus")
    data.add_argument("--cache-dir", metavar="DIR", help="multi30k: download here (default: the xattn data dir)")
    data.add_argument("-n", type=int, default=3, metavar="N", help="synthetic: how many pairs to show")
    data.add_argument("--seed", type=int, default=0, help="synthetic: random seed")
    data.set_defaults(func=_cmd_data)

    train = sub.add_parser("train", help="train a translator (preset tiny: CPU, minutes; multi30k: GPU)")
    train.add_argument("--preset", help="tiny (synthetic corpus, CPU) or multi30k (default: tiny)")
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
    train.add_argument("--steps", type=int, metavar="N", help="optimizer steps in total (default: the preset's)")
    train.add_argument("--seed", type=int, help="initial weights, dropout and batch order (default: 0)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA only)")
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_cmd_train)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xattn`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"xattn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xattn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
