"""The settings of a training run: one frozen config, saved in every checkpoint.

::

    RunConfig
    ├── model: Seq2SeqConfig      the network (xattn_edu.nn.model), nested as is, never copied
    ├── data: DataConfig          where the sentence pairs come from, files and seeds included
    ├── tokenizer: TokenizerConfig
    ├── optim: OptimConfig        steps, batch size, learning rate and its schedule, regularisation
    └── seed, log_every, eval_every, val_sample, stop_exact_match, save_every, time_budget, bf16, compile

Every setting has a dotted key (``model.pre_norm``, ``optim.lr``, ``seed``): :func:`setting_types`
lists them with their types and :meth:`RunConfig.with_values` changes them (the ``xattn train
--set KEY=VALUE`` option goes through it). Every number has a valid range (:data:`LIMITS`),
checked before anything is built, so a wrong value is a one-line :class:`UserError` naming it.

The vocabulary sizes are only known once the tokenizers are fitted, so a preset's model config
holds 0 for them (:func:`model_config`); training fills them in with
:meth:`RunConfig.with_vocabularies`, and the checkpoint records the filled-in config.

Data files are recorded as absolute paths, so a checkpoint's data can be found again from any
working directory (``xattn evaluate`` reads the validation pairs of a run trained on your files).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xattn_edu.common.errors import UserError
from xattn_edu.nn.model import Seq2SeqConfig

DATA_SOURCES = ("synthetic", "multi30k", "text")
TEXT_FILES = ("train_src", "train_tgt", "val_src", "val_tgt")

FILLED_AT_SETUP = ("model.src_vocab", "model.tgt_vocab", "model.pad_id")
"""Settings that come from the fitted tokenizers, never from the user."""

RESUMABLE = ("optim.steps", "compile", "log_every", "eval_every", "val_sample", "stop_exact_match", "save_every",
             "time_budget",
             *(f"data.{name}" for name in (*TEXT_FILES, "data_dir")))  # fmt: skip
"""What a resumed run may change: its length, compilation, bookkeeping, and where its data files now are.
Everything else would make the continued run differ from an uninterrupted one."""


def model_config(**fields: Any) -> Seq2SeqConfig:
    """A :class:`Seq2SeqConfig` whose vocabulary sizes are filled in at setup (0 until then)."""
    return Seq2SeqConfig(src_vocab=0, tgt_vocab=0, **fields)


@dataclass(frozen=True)
class DataConfig:
    """Where a run's sentence pairs come from. Paths are made absolute when the config is made."""

    source: str = "synthetic"  # "synthetic" (built-in grammar, offline), "multi30k" or "text" (your files)
    n_train: int = 20_000  # synthetic: training pairs
    n_val: int = 500  # synthetic: validation pairs; text without val files: at most this many held out
    n_test: int = 1_000  # synthetic: test pairs
    seed: int = 0  # synthetic: which corpus is drawn; text without val files: which pairs are held out
    train_src: Path | None = None  # text: training sources, one per line, or a source<TAB>target file
    train_tgt: Path | None = None  # text: their translations, line-aligned (None: train_src is a TSV)
    val_src: Path | None = None  # text: validation sources or TSV (None: hold out training pairs)
    val_tgt: Path | None = None  # text: validation translations (None with val_src: val_src is a TSV)
    data_dir: Path | None = None  # multi30k: folder holding the files (None: download them into the cache)
    tgt_lang: str | None = None  # target language code ("ja", "zh", "de"); picks BLEU's tokenizer (None: see below)

    @property
    def target_language(self) -> str | None:
        """``tgt_lang``, else the data source's target language (synthetic: "de", multi30k: "en"), else None."""
        return self.tgt_lang or {"synthetic": "de", "multi30k": "en"}.get(self.source)

    def __post_init__(self):
        if self.source not in DATA_SOURCES:
            raise UserError(f"unknown data source {self.source!r}; choose one of {', '.join(DATA_SOURCES)}")
        for name in (*TEXT_FILES, "data_dir"):
            value = getattr(self, name)
            if value is not None:  # absolute, so the run's data is found from any working directory
                object.__setattr__(self, name, Path(os.path.abspath(os.path.expanduser(value))))
        if self.train_tgt is not None and self.train_src is None:
            raise UserError("a training target file needs its training source file (--train-src)")
        if self.val_tgt is not None and self.val_src is None:
            raise UserError("a validation target file needs its validation source file (--val-src)")
        if self.source != "text" and any(getattr(self, name) is not None for name in TEXT_FILES):
            raise UserError(f"training and validation files are for the 'text' data source, not {self.source!r}")
        if self.source != "multi30k" and self.data_dir is not None:
            raise UserError(f"--data-dir names a folder of Multi30k files; this run's data source is {self.source!r}")


@dataclass(frozen=True)
class TokenizerConfig:
    """How sentences become ids (fitted on the training split only)."""

    kind: str = "word"  # "word" (whitespace-separated words) or "sentencepiece" (one joint subword model)
    min_count: int = 1  # word: rarer words become <unk>
    vocab_size: int = 8000  # sentencepiece: size of the joint vocabulary

    def __post_init__(self):
        if self.kind not in ("word", "sentencepiece"):
            raise UserError(f"unknown tokenizer {self.kind!r}; choose word or sentencepiece")


@dataclass(frozen=True)
class OptimConfig:
    """The optimisation: AdamW, warm-up then decay, label smoothing, gradient clipping."""

    steps: int = 1000  # optimizer steps in total
    max_tokens: int = 4096  # padded tokens per batch (rows × longest row, summed over processes)
    lr: float = 1e-3  # peak learning rate, reached after warmup
    warmup: int = 100  # linear warm-up steps
    schedule: str = "cosine"  # decay after warm-up: "cosine" (to 0 at `steps`) or "inverse_sqrt"
    weight_decay: float = 0.01  # AdamW decoupled weight decay (matrices and embeddings only)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW moment decay rates
    label_smoothing: float = 0.1  # probability mass spread over the vocabulary
    clip_norm: float = 1.0  # gradient norm clip (0 = off)

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))  # a list after a JSON or checkpoint round trip
        if self.schedule not in ("cosine", "inverse_sqrt"):
            raise UserError(f"schedule must be 'cosine' or 'inverse_sqrt', got {self.schedule!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run (saved in every checkpoint)."""

    preset: str = "custom"  # name of the preset this config started from
    model: Seq2SeqConfig = field(default_factory=model_config)  # the network; vocabularies filled in at setup
    data: DataConfig = field(default_factory=DataConfig)  # the sentence pairs
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # sentences → ids
    optim: OptimConfig = field(default_factory=OptimConfig)  # the optimisation
    seed: int = 0  # initial weights, dropout and batch order
    log_every: int = 20  # steps between progress updates (and NaN checks)
    eval_every: int = 250  # steps between validations (0 = only at the end)
    val_sample: int = 200  # validation sentences decoded greedily for exact match
    # stop at the first validation whose exact match (percent) reaches this; 0 = run all steps
    # (takes effect only with validations during training: eval_every > 0, val_sample > 0)
    stop_exact_match: float = 0.0
    save_every: int = 500  # steps between checkpoints (0 = only at the end)
    time_budget: float = 0.0  # seconds of training loop (validation excluded) after which it stops early; 0 = none
    bf16: bool = True  # CUDA only: autocast matrix products to bfloat16
    compile: bool = False  # CUDA only: torch.compile the model

    def __post_init__(self):
        check_limits({key: self.value(key) for key in LIMITS})

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict of str, int, float, bool, None and tuples (saved in checkpoints)."""

        def plain(value: Any) -> Any:
            if dataclasses.is_dataclass(value):
                return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return str(value) if isinstance(value, Path) else value

        return plain(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; :class:`UserError` for settings this version does not know."""
        _check_known(cls, values, "")
        sections = {}
        for name, section in _sections().items():
            if name in values:
                _check_known(section, values[name], f"{name}.")
                sections[name] = _build(section, values[name])
        return _build(cls, {**values, **sections})

    def value(self, key: str) -> Any:
        """The setting called ``key`` (``"model.d_model"``, ``"seed"``)."""
        section, _, name = key.rpartition(".")
        return getattr(getattr(self, section) if section else self, name)

    def with_values(self, values: Mapping[str, Any]) -> RunConfig:
        """A copy with the settings named by dotted keys changed; :class:`UserError` naming the valid
        keys for an unknown one, or saying what is wrong with a value."""
        known = setting_types()
        for key in values:
            if key not in known:
                fixed = " (filled in from the fitted tokenizers)" if key in FILLED_AT_SETUP else ""
                raise UserError(f"unknown setting {key!r}{fixed}; valid keys: {', '.join(known)}")
        check_limits(values)  # before the sections are built: Seq2SeqConfig divides by n_heads
        return self._replaced(values)

    def with_vocabularies(self, src_vocab: int, tgt_vocab: int, pad_id: int) -> RunConfig:
        """The config with the fitted tokenizers' vocabulary sizes and padding id in its model config."""
        return self._replaced({"model.src_vocab": src_vocab, "model.tgt_vocab": tgt_vocab, "model.pad_id": pad_id})

    def resuming(self, saved: RunConfig) -> RunConfig:
        """The config that continues ``saved``: its settings, with this config's :data:`RESUMABLE` ones.

        Raises :class:`UserError` if this config changes anything else (a resumed run must equal an
        uninterrupted one).
        """
        changed = [key for key in setting_types() if key not in RESUMABLE and self.value(key) != saved.value(key)]
        if changed:
            details = ", ".join(f"{key} (saved {saved.value(key)!r}, asked {self.value(key)!r})" for key in changed)
            raise UserError(f"--resume continues the saved run and may change only {', '.join(RESUMABLE)}; "
                            f"not {details}")  # fmt: skip
        return saved._replaced({key: self.value(key) for key in RESUMABLE})

    def _replaced(self, values: Mapping[str, Any]) -> RunConfig:
        top, by_section = {}, {}
        for key, value in values.items():
            section, _, name = key.rpartition(".")
            (by_section.setdefault(section, {}) if section else top)[name] = value
        try:
            sections = {s: dataclasses.replace(getattr(self, s), **changes) for s, changes in by_section.items()}
            return dataclasses.replace(self, **top, **sections)
        except ValueError as err:  # Seq2SeqConfig's own checks
            raise UserError(str(err)) from err


def _at_least(low: int) -> tuple[Callable[[float], bool], str]:
    return (lambda x: x >= low), f"at least {low}"


_POSITIVE = ((lambda x: x > 0), "positive")
_FRACTION = ((lambda x: 0 <= x < 1), "in [0, 1)")

# The valid range of every numeric setting: key → (test, what it asks). A tuple setting
# (optim.betas) has the range for each of its members.
LIMITS: dict[str, tuple[Callable[[float], bool], str]] = {
    "model.d_model": _at_least(1), "model.n_heads": _at_least(1), "model.n_encoder_layers": _at_least(1),
    "model.n_decoder_layers": _at_least(1), "model.d_ff": _at_least(1), "model.dropout": _FRACTION,
    "model.max_len": _at_least(2),
    "data.n_train": _at_least(1), "data.n_val": _at_least(0), "data.n_test": _at_least(0),
    "tokenizer.min_count": _at_least(1), "tokenizer.vocab_size": _at_least(8),
    "optim.steps": _at_least(1), "optim.max_tokens": _at_least(1), "optim.lr": _POSITIVE,
    "optim.warmup": _at_least(0), "optim.weight_decay": _at_least(0), "optim.betas": _FRACTION,
    "optim.label_smoothing": _FRACTION, "optim.clip_norm": _at_least(0),
    "log_every": _at_least(1), "eval_every": _at_least(0), "val_sample": _at_least(0), "save_every": _at_least(0),
    "stop_exact_match": ((lambda x: 0 <= x <= 100), "in [0, 100]"), "time_budget": _at_least(0),
}  # fmt: skip


def check_limits(values: Mapping[str, Any]) -> None:
    """:class:`UserError` naming the first setting in ``values`` outside its range in :data:`LIMITS`."""
    for key, value in values.items():
        if key in LIMITS:
            test, wanted = LIMITS[key]
            if not all(test(number) for number in (value if isinstance(value, tuple) else (value,))):
                raise UserError(f"{key} must be {wanted}, got {value!r}")


def _sections() -> dict[str, type]:
    """RunConfig's nested sections: name → dataclass type."""
    hints = typing.get_type_hints(RunConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(hints[f.name])}


def _check_known(cls: type, values: Mapping[str, Any], prefix: str) -> None:
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise UserError(f"unknown settings {sorted(prefix + name for name in unknown)} (saved by a newer xattn?)")


def _build(cls: type, values: Mapping[str, Any]) -> Any:
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise UserError(f"invalid {cls.__name__}: {err}") from err


def setting_types() -> dict[str, Any]:
    """Every setting a user may change: dotted key → its type (``{"model.pre_norm": bool, ...}``)."""
    types: dict[str, Any] = {}
    sections = _sections()
    for f in dataclasses.fields(RunConfig):
        if f.name == "preset":
            continue  # a label, chosen with --preset
        if f.name not in sections:
            types[f.name] = typing.get_type_hints(RunConfig)[f.name]
            continue
        hints = typing.get_type_hints(sections[f.name])
        for sub in dataclasses.fields(sections[f.name]):
            key = f"{f.name}.{sub.name}"
            if key not in FILLED_AT_SETUP:
                types[key] = hints[sub.name]
    return types


PRESETS: dict[str, RunConfig] = {
    # CPU, synthetic corpus, offline: >= 98 % test exact match, train + evaluate in about half a minute on two
    # idle cores (benchmarks/main_job.py; docs/benchmarks.md). Tuned on that machine (issue 18): one layer a
    # side (the grammar's reordering needs no more; 1.4x the tokens/s of 2+2), small batches of 600 padded
    # tokens at a high peak lr (many updates per token seen), and a stop at the first validation of all 500
    # validation pairs at >= 99 % exact match (200 pairs stopped too early: test 97.4 % once).
    "tiny": RunConfig(
        preset="tiny",
        model=model_config(d_model=128, n_heads=4, n_encoder_layers=1, n_decoder_layers=1, d_ff=256, dropout=0.0,
                           max_len=64),
        data=DataConfig(source="synthetic", n_train=40_000, n_val=500, n_test=1_000),
        tokenizer=TokenizerConfig(kind="word"),
        optim=OptimConfig(steps=1400, max_tokens=600, lr=3e-3, warmup=40, schedule="cosine", label_smoothing=0.1),
        log_every=10, eval_every=100, val_sample=500, stop_exact_match=99.0, save_every=0,
    ),
    # One GPU, Multi30k de→en with a joint sentencepiece vocabulary; aims at DESIGN §8
    # (38.5 tokenized BLEU within 20 s of training on one H100). Estimated, not measured (no
    # GPU or Multi30k copy where this was written): a batch of 25k padded tokens holds roughly
    # 1,500 pairs, so an epoch (29k pairs) is about 20 steps and 400 steps about 20 epochs.
    # Untuned: sweep steps and lr on a GPU.
    "multi30k": RunConfig(
        preset="multi30k",
        model=model_config(d_model=512, n_heads=8, n_encoder_layers=3, n_decoder_layers=3, d_ff=2048, dropout=0.1,
                           max_len=128),
        data=DataConfig(source="multi30k"),
        tokenizer=TokenizerConfig(kind="sentencepiece", vocab_size=8000),
        optim=OptimConfig(steps=400, max_tokens=25_000, lr=1e-3, warmup=60, schedule="cosine", label_smoothing=0.1),
        log_every=20, eval_every=200, val_sample=200, save_every=0, bf16=True,
    ),
    # Two CPU cores, Multi30k de→en read from --data-dir: >= 30 tokenized BLEU on val (greedy) within 15 minutes
    # of wall time, training and validation included (docs/benchmarks.md, "Multi30k on 2 CPU cores": 31.2 in 13.0
    # minutes with these settings). Sized for the machine, not copied from the GPU preset: d=256 and 3+3 layers,
    # batches of 3,500 padded tokens (~150 pairs, ~130 steps an epoch: many updates in few epochs), a high peak lr
    # with a short warm-up and a cosine to zero at step 620 (about 4.3 epochs, ~12 minutes at 2.6-2.7k target
    # tokens/s; 490 steps left 5 of the 15 minutes unused at 27.5 BLEU); time_budget stops a slower machine at
    # 12 minutes of training. Validation decodes all 1,014 val sentences (BLEU against seconds in the run's record).
    "multi30k-cpu": RunConfig(
        preset="multi30k-cpu",
        model=model_config(d_model=256, n_heads=4, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024, dropout=0.1,
                           max_len=128),
        data=DataConfig(source="multi30k"),
        tokenizer=TokenizerConfig(kind="sentencepiece", vocab_size=8000),
        optim=OptimConfig(steps=620, max_tokens=3500, lr=1.5e-3, warmup=60, schedule="cosine", label_smoothing=0.1),
        log_every=10, eval_every=70, val_sample=1014, save_every=0, time_budget=720.0, bf16=False,
    ),
}  # fmt: skip


def get_preset(name: str) -> RunConfig:
    """The preset called ``name``; :class:`UserError` listing the choices otherwise."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
