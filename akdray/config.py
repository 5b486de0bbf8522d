"""The one frozen ``RunConfig`` that flows CLI -> Ray trial -> Parquet row -> analysis.

Every knob of a run is a flat, typed field here; the same names are the Parquet columns.
Presets are dictionaries of overrides applied on top of the field defaults.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping

from akdray.bounds import FIELD_MAX, MIN_AUDIT_PER_SIDE, audit_size_problem, field_range  # noqa: F401 (re-exported)

METHODS = ("teacher", "akd", "dmp", "dpsgd", "gauss", "reference")
DEPLOYED_METHODS = METHODS[:5]  # the methods whose models are deployed and judged (not the reference models)
DISTILLATION_METHODS = ("akd", "dmp")
METHODS_NEEDING_TEACHER = ("akd", "dmp", "gauss")
DATA_SOURCES = ("synthetic", "aligned")
NORMS = ("batch", "instance", "group")
INFERENCE_MODES = ("eval", "train")
EVAL_SPLITS = ("both", "val", "test")  # which audit sets evaluate() reads (a search trial: "val" only)
DIRECTIONS = ("AtoB", "BtoA")
GAN_MODES = ("vanilla", "lsgan")
SYNTHETIC_STYLES = ("textured", "flat", "sharp")
MAX_SEED = 2**31 - 1  # seeds feed torch, numpy and Ray; one range for all of them


class ConfigError(ValueError):
    """A bad configuration value; the message names the field."""


@dataclass(frozen=True)
class RunConfig:
    """All settings of one run (teacher, a defense, or a baseline)."""

    # --- what to run -----------------------------------------------------------------
    method: str = "teacher"
    seed: int = 0
    preset: str = "cpu-small"
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    # --- data: roles per the paper (private train, public proxy pool, test) ------------
    data_source: str = "synthetic"
    data_root: str = ""  # aligned-format root with train/ val/ test/ folders
    direction: str = "AtoB"
    train_split: str = "train"  # aligned folder names for each role
    proxy_split: str = "val"
    test_split: str = "test"  # == proxy_split: that folder is cut in halves (Cityscapes)
    data_seed: int = -1  # synthetic generation seed; -1 = follow `seed` (each run seed is its own draw)
    synthetic_style: str = "textured"  # textured (bricks, glare, planks: GAN vs L1 visible) | flat (akdray <= 0.1)
    image_size: int = 32
    n_train: int = 200  # 0 = every file of the folder (aligned)
    proxy_pool_size: int = 400
    proxy_size: int = 100  # seeded subset of the pool the student sees
    n_test: int = 1000  # the attack's non-members: 1,000 so TPR at 1 % FPR rests on 10 false positives
    reference_pool_size: int = 0  # synthetic `reference` role images reference models draw from; 0 = 2 x n_train
    # validation non-members (synthetic `val` role; aligned: the last n_val files of proxy_split); 0 = none;
    # -1 = auto: 500 for synthetic data, 0 for an aligned folder (the paper presets set theirs; sweeps need > 0)
    n_val: int = -1

    # --- models -----------------------------------------------------------------------
    ngf: int = 16  # generator width (the student's, for distillation methods)
    ndf: int = 16
    unet_depth: int = 0  # 0 = log2(image_size) (unet_256 at 256x256)
    d_layers: int = 3  # 3 = the 70x70 PatchGAN
    norm: str = "batch"
    use_dropout: bool = True  # dropout 0.5 in the inner decoder blocks (pix2pix's noise z)

    # --- optimisation (pix2pix recipe, Eq. 1-2) ----------------------------------------
    epochs: int = 40  # constant-lr epochs (teacher, DP-SGD)
    epochs_decay: int = 0  # then linear decay to 0 over this many epochs
    batch_size: int = 4
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gan_mode: str = "vanilla"
    jitter: bool = False  # pix2pix training jitter: resize to 286/256 x size, random crop, flip (x and y alike)
    gan_weight: float = 1.0  # weight of the teacher's GAN term (Eq. 2); 0 = an L1-only pix2pix teacher
    l1_lambda: float = 100.0  # lambda of Eq. 2 for teacher and DP-SGD

    # --- evaluation ---------------------------------------------------------------------
    inference_mode: str = "eval"  # mode of the deployed generator during evaluation
    eval_split: str = "both"  # val: only the validation set (val_* columns; test images never loaded) | test | both
    attack_n_per_side: int = 0  # members = non-members = this many; 0 = every training pair and every test pair
    reference_checkpoints: str = ""  # comma-separated reference run folders / URIs (calibrated attacks cal, lira)
    attack_bootstrap: int = 1000  # permutations behind leak_p (>= 1000); the AUC CI bootstrap before issue #27
    kid_subset_size: int = 50
    kid_subsets: int = 100
    kid_max_images: int = 100  # images per KID set (outputs, real) for speed; 0 = all (sweep search trials: --search-kid-images)
    eval_batch_size: int = 16
    n_sample_images: int = 4  # first test images saved as PNG (input, target, output) per run

    # --- distillation: AKD (Eq. 4-5) and DMP ------------------------------------------
    teacher_checkpoint: str = ""
    teacher_inference_mode: str = "eval"  # mode of the teacher when labelling proxy inputs
    teacher_dropout: bool = False  # keep the teacher's dropout (noise z) on when labelling
    distill_lambda: float = 100.0
    distill_epochs: int = 60
    distill_epochs_decay: int = 0

    # --- DP-SGD (Opacus) ------------------------------------------------------------------
    dp_noise_multiplier: float = 1.0
    dp_max_grad_norm: float = 1.0
    dp_delta: float = 0.0  # 0 = 1 / (10 n_train): below 1/N, which would allow publishing one record

    # --- Gauss: teacher outputs + N(0, sigma^2) in [-1, 1] pixel units ----------------------
    gauss_sigma: float = 0.1

    def __post_init__(self) -> None:
        _check_types(self)
        _check_values(self)

    # convenience -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "RunConfig":
        return from_dict({**self.to_dict(), **changes})

    @property
    def resolved_unet_depth(self) -> int:
        return self.unet_depth or int(round(math.log2(self.image_size)))

    @property
    def resolved_data_seed(self) -> int:
        """The synthetic draw: ``data_seed``, or ``seed`` when it is -1 (the default)."""
        return self.seed if self.data_seed == -1 else self.data_seed

    @property
    def resolved_n_val(self) -> int:
        """``n_val``, or for -1: 500 synthetic validation non-members, none for an aligned folder."""
        return resolve_n_val(self.n_val, self.data_source)

    @property
    def resolved_reference_pool(self) -> int:
        return self.reference_pool_size or 2 * self.n_train

    @property
    def reference_list(self) -> list[str]:
        return [p.strip() for p in self.reference_checkpoints.split(",") if p.strip()]


SYNTHETIC_N_VAL = 500


def resolve_n_val(n_val: int, data_source: str) -> int:
    """The number of validation non-members a config asks for (see ``RunConfig.n_val``)."""
    if n_val != -1:
        return n_val
    return SYNTHETIC_N_VAL if data_source == "synthetic" else 0


_TYPE_NAMES = {"str": str, "int": int, "float": float, "bool": bool}
FIELD_TYPES: dict[str, type] = {f.name: _TYPE_NAMES[str(f.type)] for f in fields(RunConfig)}


def _check_types(cfg: RunConfig) -> None:
    for name, typ in FIELD_TYPES.items():
        value = getattr(cfg, name)
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(cfg, name, float(value))
            ok = True
        if not ok:
            raise ConfigError(f"field {name!r}: expected {typ.__name__}, got {value!r}")


def _choice(cfg: RunConfig, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(cfg, name) not in allowed:
        raise ConfigError(f"field {name!r}: {getattr(cfg, name)!r} is not one of {', '.join(allowed)}")


def _positive(cfg: RunConfig, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(cfg, name)
        bad = value < 0 if allow_zero else value <= 0
        if bad or (isinstance(value, float) and not math.isfinite(value)):
            need = "non-negative" if allow_zero else "positive"
            raise ConfigError(f"field {name!r} must be {need} and finite, got {value!r}")


def _check_values(cfg: RunConfig) -> None:
    for name, high in FIELD_MAX.items():
        value = getattr(cfg, name)
        if value > high:
            raise ConfigError(f"field {name!r} must be at most {high:,}, got {value!r} (no run could finish; "
                              "`akdray fields` lists every bound)")
    _choice(cfg, "method", METHODS)
    _choice(cfg, "data_source", DATA_SOURCES)
    _choice(cfg, "norm", NORMS)
    _choice(cfg, "inference_mode", INFERENCE_MODES)
    _choice(cfg, "teacher_inference_mode", INFERENCE_MODES)
    _choice(cfg, "direction", DIRECTIONS)
    _choice(cfg, "gan_mode", GAN_MODES)
    _choice(cfg, "synthetic_style", SYNTHETIC_STYLES)
    _choice(cfg, "eval_split", EVAL_SPLITS)
    if cfg.preset not in PRESETS:
        raise ConfigError(f"field 'preset': unknown preset {cfg.preset!r}; known: {', '.join(PRESETS)}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.device):
        raise ConfigError(f"field 'device': {cfg.device!r} is not auto, cpu, cuda or cuda:N")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"field 'seed' must be in 0..{MAX_SEED}, got {cfg.seed}")
    if not -1 <= cfg.data_seed <= MAX_SEED:
        raise ConfigError(f"field 'data_seed' must be in 0..{MAX_SEED}, or -1 to follow 'seed'; got {cfg.data_seed}")
    size = cfg.image_size
    if size < 16 or size & (size - 1):
        raise ConfigError(f"field 'image_size' must be a power of two >= 16, got {size}")
    if cfg.unet_depth and not 2 <= cfg.unet_depth <= int(math.log2(size)):
        raise ConfigError(f"field 'unet_depth' must be in 2..log2(image_size)={int(math.log2(size))}, got {cfg.unet_depth}")
    if cfg.d_layers < 1 or size // 2 ** cfg.d_layers < 4:
        raise ConfigError(f"field 'd_layers': {cfg.d_layers} stride-2 layers leave under 4 pixels of image_size {size}")
    _positive(cfg, "ngf", "ndf", "batch_size", "lr", "eval_batch_size", "kid_subsets", "kid_subset_size")
    if cfg.kid_subset_size < 2:  # the unbiased MMD of KID needs 2 images per subset
        raise ConfigError(f"field 'kid_subset_size' must be at least 2 (KID's unbiased MMD), got {cfg.kid_subset_size}")
    if cfg.kid_max_images == 1:
        raise ConfigError("field 'kid_max_images' must be 0 (all) or at least 2 (KID's unbiased MMD), got 1")
    _positive(cfg, "l1_lambda", "distill_lambda", "dp_max_grad_norm")
    _positive(cfg, "epochs", "epochs_decay", "distill_epochs", "distill_epochs_decay", allow_zero=True)
    _positive(cfg, "n_train", "proxy_pool_size", "proxy_size", "n_test", "attack_n_per_side", "n_sample_images",
              allow_zero=True)
    _positive(cfg, "dp_noise_multiplier", "dp_delta", "gauss_sigma", "kid_max_images", "gan_weight", allow_zero=True)
    for name in ("beta1", "beta2"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise ConfigError(f"field {name!r} must be in [0, 1), got {getattr(cfg, name)}")
    _positive(cfg, "reference_pool_size", allow_zero=True)
    if cfg.n_val < -1:
        raise ConfigError(f"field 'n_val' must be >= 0, or -1 for auto; got {cfg.n_val}")
    if cfg.eval_split == "val" and cfg.resolved_n_val == 0:
        raise ConfigError("field 'eval_split' is 'val' but 'n_val' is 0: there is no validation set to evaluate on")
    if cfg.attack_bootstrap < 1000:
        raise ConfigError(f"field 'attack_bootstrap' must be at least 1000 resamples, got {cfg.attack_bootstrap}")
    n_refs = len(cfg.reference_list)
    if n_refs == 1:
        raise ConfigError("field 'reference_checkpoints' names 1 reference model; LiRA needs at least 2 (or give none)")
    if n_refs and cfg.method == "reference":
        raise ConfigError("field 'reference_checkpoints' must be empty for a 'reference' run")
    if cfg.method == "reference" and cfg.data_source == "synthetic" and cfg.resolved_reference_pool < cfg.n_train:
        raise ConfigError(f"field 'reference_pool_size' ({cfg.resolved_reference_pool}) is smaller than 'n_train' ({cfg.n_train})")
    if cfg.dp_delta >= 1.0:
        raise ConfigError(f"field 'dp_delta' must be < 1, got {cfg.dp_delta}")
    if cfg.data_source == "synthetic":
        for name in ("n_train", "proxy_pool_size", "n_test"):
            if getattr(cfg, name) == 0:
                raise ConfigError(f"field {name!r} must be positive for synthetic data (0 means 'all files' only for aligned data)")
    if cfg.data_source == "synthetic" and cfg.data_root:
        raise ConfigError(f"field 'data_root' is {cfg.data_root!r} but data_source is 'synthetic', which ignores it; "
                          "use --set data_source=aligned to train on that folder, or drop data_root")
    if cfg.data_source == "aligned" and not cfg.data_root:
        raise ConfigError("field 'data_root' must name a folder when data_source is 'aligned'")
    if cfg.proxy_pool_size and cfg.proxy_size > cfg.proxy_pool_size:
        raise ConfigError(f"field 'proxy_size' ({cfg.proxy_size}) is larger than the proxy pool 'proxy_pool_size' ({cfg.proxy_pool_size})")
    if cfg.method in DISTILLATION_METHODS and cfg.proxy_size == 0:
        raise ConfigError("field 'proxy_size' must be positive for distillation methods")
    if cfg.method in METHODS_NEEDING_TEACHER and not cfg.teacher_checkpoint:
        raise ConfigError(f"method {cfg.method!r} needs a trained teacher: set 'teacher_checkpoint' (CLI: --teacher RUN_DIR)")
    if cfg.epochs + cfg.epochs_decay == 0 and cfg.method in ("teacher", "dpsgd", "reference"):
        raise ConfigError("fields 'epochs' + 'epochs_decay' must be positive")
    if cfg.distill_epochs + cfg.distill_epochs_decay == 0 and cfg.method in DISTILLATION_METHODS:
        raise ConfigError("fields 'distill_epochs' + 'distill_epochs_decay' must be positive")
    problem = audit_size_problem(cfg)
    if problem:
        raise ConfigError(problem)


# --------------------------------------------------------------------------------------------
# Presets: overrides on top of the field defaults.
# --------------------------------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    # The embedded default: procedural facades at 32x32, fast on 2 CPU cores.
    "cpu-small": {},
    # The smallest run that still exercises every stage: the tests, the analysis' test data and the
    # smoke sweep (``sweeps/pareto.py --smoke-test``). Trains in seconds; its numbers mean nothing.
    "tiny": dict(
        image_size=16, ngf=8, ndf=8, d_layers=2, n_train=16, proxy_pool_size=12, proxy_size=8, n_test=16,
        epochs=2, distill_epochs=2, batch_size=4, kid_subset_size=8, kid_subsets=10, kid_max_images=8, n_val=8,
    ),
    # CMP Facades as in the paper: 400 train / 100 val (80 proxy + 20 validation) / 106 test, 256x256,
    # 200 epochs (100 constant + 100 linear decay), batch 1, lambda 100, Adam 2e-4 (0.5, 0.999).
    "facades": dict(
        data_source="aligned", data_root="datasets/facades", direction="BtoA",
        image_size=256, n_train=0, proxy_pool_size=0, proxy_size=80, n_test=0,
        n_val=20,  # validation non-members: the last 20 of the 100 val files; the other 80 are the proxy pool
        ngf=64, ndf=64, epochs=100, epochs_decay=100, batch_size=1,
        distill_epochs=100, distill_epochs_decay=100, kid_max_images=0, kid_subset_size=100,
        inference_mode="train", teacher_inference_mode="train",  # as the official test.py (no --eval)
        jitter=True,  # as pix2pix trains: --preprocess resize_and_crop, load 286, crop 256, flip
    ),
    # Cityscapes: 2,975 train; the 500 val images are cut in halves into proxy (200 + 50 validation) and test.
    "cityscapes": dict(
        data_source="aligned", data_root="datasets/cityscapes", direction="BtoA",
        train_split="train", proxy_split="val", test_split="val",
        image_size=256, n_train=0, proxy_pool_size=0, proxy_size=200, n_test=0,
        n_val=50,  # validation non-members: the last 50 of the proxy half of val; the other 200 are the proxy pool
        ngf=64, ndf=64, epochs=100, epochs_decay=100, batch_size=1,
        distill_epochs=100, distill_epochs_decay=100, kid_max_images=0, kid_subset_size=100,
        inference_mode="train", teacher_inference_mode="train", jitter=True,
    ),
}


def parse_value(name: str, text: str) -> Any:
    """Parse the text of ``--set name=text`` into the field's type (error names the field)."""
    if name not in FIELD_TYPES:
        raise ConfigError(f"unknown field {name!r}; see `akdray fields` for the list")
    typ = FIELD_TYPES[name]
    try:
        if typ is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        return typ(text)
    except ValueError:
        raise ConfigError(f"field {name!r}: cannot read {text!r} as {typ.__name__}") from None


def from_dict(values: Mapping[str, Any]) -> RunConfig:
    """Build a config from a flat dict, refusing unknown keys (by name)."""
    unknown = sorted(set(values) - set(FIELD_TYPES))
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    return RunConfig(**values)


def make_config(preset: str = "cpu-small", overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Preset, then explicit overrides (typed values or strings from the CLI)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[preset], "preset": preset}
    if (overrides or {}).get("data_root") and "data_source" not in (overrides or {}):
        values["data_source"] = "aligned"  # a data folder given on its own means: train on it
    for name, value in (overrides or {}).items():
        if name not in FIELD_TYPES:
            raise ConfigError(f"unknown field {name!r}")
        values[name] = parse_value(name, value) if isinstance(value, str) and FIELD_TYPES[name] is not str else value
    return from_dict(values)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` with errors naming the bad item."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set expects field=value, got {item!r}")
        if name.strip() not in FIELD_TYPES:
            raise ConfigError(f"unknown field {name.strip()!r} in --set {item!r}")
        out[name.strip()] = value
    return out
