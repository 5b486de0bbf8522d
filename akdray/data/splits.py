"""The paper's data roles: private train set, public proxy set (inputs only), test set, and the
validation non-members the search objectives are measured on (``n_val``; disjoint from the others).

Images live in memory as uint8 [N, 3, H, W]. The proxy set handed to a student is an
:class:`InputImages` - it has no targets at all, so the distillation code cannot read them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from akdray import seeds
from akdray.config import RunConfig
from akdray.data.aligned import DataError, list_images, load_aligned_split
from akdray.data.synthetic import synthetic_pairs
from akdray.storage import fetch_folder


@dataclass(frozen=True)
class InputImages:
    """Inputs x only: what the student's training path may see of the proxy set."""

    x: torch.Tensor
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class PairedImages:
    """Pairs (x, y) as uint8 tensors, with a name per pair (file path or synthetic id)."""

    x: torch.Tensor
    y: torch.Tensor
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index: torch.Tensor) -> "PairedImages":
        idx = index.tolist()
        return PairedImages(self.x[index], self.y[index], tuple(self.names[i] for i in idx))

    def inputs_only(self) -> InputImages:
        return InputImages(self.x, self.names)


@dataclass(frozen=True)
class Splits:
    train: PairedImages  # private members
    proxy: PairedImages  # the seeded proxy subset (targets used only for the leakage check)
    test: PairedImages  # non-members (empty for eval_split="val": a search trial never loads them)
    key: str  # identity of the data, for feature caches
    val: PairedImages | None = None  # validation non-members (n_val > 0 and eval_split != "test")


def data_key(cfg: RunConfig) -> str:
    if cfg.data_source == "synthetic":
        return f"synthetic-{cfg.synthetic_style}-s{cfg.resolved_data_seed}-{cfg.image_size}px"
    root = cfg.data_root if "://" in cfg.data_root else Path(cfg.data_root).resolve()
    return f"aligned-{root}-{cfg.direction}-{cfg.image_size}px"


def local_root(data_root: str) -> Path:
    """The aligned data folder on this machine; a URI (``s3://bucket/prefix``) is fetched into the cache once."""
    if "://" not in data_root:
        return Path(data_root)
    try:
        return fetch_folder(data_root)
    except (OSError, ValueError) as exc:  # pyarrow raises OSError/ArrowInvalid(ValueError) for bad URIs
        raise DataError(f"data_root {data_root} cannot be fetched: {exc}") from None


def _pair_digests(pairs: PairedImages) -> list[str]:
    return [hashlib.sha1(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest() for x, y in zip(pairs.x, pairs.y)]


def check_disjoint(train: PairedImages, other: PairedImages, role: str) -> None:
    """Refuse a proxy or test set that shares a pair with the private training set."""
    seen = dict(zip(_pair_digests(train), train.names))
    for digest, name in zip(_pair_digests(other), other.names):
        if digest in seen:
            raise DataError(f"{role} image {name} is identical to training image {seen[digest]}: "
                            f"the {role} set must not overlap the private training set")


def empty_pairs(size: int) -> PairedImages:
    """No pairs (a role that is not loaded)."""
    blank = torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return PairedImages(blank, blank, ())


def wants(cfg: RunConfig, role: str) -> bool:
    """Whether a run evaluates on ``role`` ("test" or "val") under its ``eval_split``."""
    if role == "val":
        return cfg.resolved_n_val > 0 and cfg.eval_split in ("both", "val")
    return cfg.eval_split in ("both", "test")


def carve_validation(pool: PairedImages, n_val: int, proxy_size: int, split: str) -> tuple[PairedImages, PairedImages]:
    """Aligned data: the last ``n_val`` files of the proxy folder are the validation non-members, the
    rest the proxy pool. Refuses (DataError) when fewer than ``proxy_size`` (and at least 1) remain."""
    rest = check_carve(len(pool), n_val, proxy_size, split)
    return pool.subset(torch.arange(rest)), pool.subset(torch.arange(rest, len(pool)))


def check_carve(n_pool: int, n_val: int, proxy_size: int, split: str) -> int:
    """Images left for the proxy pool after carving ``n_val``; DataError when fewer than ``proxy_size``."""
    rest = n_pool - n_val
    if rest < max(1, proxy_size):
        raise DataError(f"split {split!r} has {n_pool} images for the proxy pool: carving the last n_val={n_val} "
                        f"as validation non-members leaves {max(rest, 0)}, fewer than proxy_size={max(1, proxy_size)}; "
                        "lower n_val or proxy_size (--set n_val=... / proxy_size=...)")
    return rest


def _load_roles(cfg: RunConfig) -> tuple[PairedImages, PairedImages, PairedImages, PairedImages | None]:
    """(train, proxy pool, test, validation); test is empty and never read when the run does not want it."""
    want_test, n_val = wants(cfg, "test"), cfg.resolved_n_val
    if cfg.data_source == "synthetic":
        make = lambda n, role: PairedImages(*synthetic_pairs(  # noqa: E731
            n, cfg.image_size, cfg.resolved_data_seed, role, cfg.synthetic_style))
        test = make(cfg.n_test, "test") if want_test else empty_pairs(cfg.image_size)
        val = make(n_val, "val") if n_val and cfg.method != "reference" else None  # reference runs: no val audit
        return make(cfg.n_train, "train"), make(cfg.proxy_pool_size, "proxy"), test, val
    root = local_root(cfg.data_root)
    if not root.is_dir():
        raise DataError(f"data_root {root} does not exist (expected {root}/{cfg.train_split}, "
                        f"{root}/{cfg.proxy_split}, {root}/{cfg.test_split})")
    load = lambda split, n: PairedImages(*load_aligned_split(root / split, cfg.image_size, cfg.direction, n))  # noqa: E731
    train = load(cfg.train_split, cfg.n_train)
    test = empty_pairs(cfg.image_size)
    if cfg.proxy_split == cfg.test_split:  # e.g. Cityscapes: val cut into proxy and test halves
        half = len(list_images(root / cfg.proxy_split)) // 2
        both = load(cfg.proxy_split, 0) if want_test else load(cfg.proxy_split, half)  # the test half stays unread
        pool = both.subset(torch.arange(half))
        if want_test:
            test = _take(both.subset(torch.arange(half, len(both))), cfg.n_test, cfg.test_split)
    else:
        pool = load(cfg.proxy_split, 0 if n_val else cfg.proxy_pool_size)
        if want_test:
            test = load(cfg.test_split, cfg.n_test)
    val = None
    if n_val:
        pool, val = carve_validation(pool, n_val, cfg.proxy_size, cfg.proxy_split)
    pool = _take(pool, cfg.proxy_pool_size, cfg.proxy_split)
    return train, pool, test, val


def _take(pairs: PairedImages, n: int, split: str) -> PairedImages:
    if n > len(pairs):
        raise DataError(f"split {split!r} has {len(pairs)} images for this role, fewer than the {n} requested")
    return pairs.subset(torch.arange(n)) if n else pairs


def reference_training_set(cfg: RunConfig, train: PairedImages, pool: PairedImages) -> PairedImages:
    """A reference model's private set: ``n_train`` pairs drawn with ``cfg.seed`` from a pool that holds
    no audited image - the synthetic ``reference`` role (``resolved_reference_pool`` images), or, for
    aligned folders, the public proxy pool (then at most half of it, so references differ)."""
    if cfg.data_source == "synthetic":
        pool = PairedImages(*synthetic_pairs(cfg.resolved_reference_pool, cfg.image_size, cfg.resolved_data_seed,
                                             "reference", cfg.synthetic_style))
        n = cfg.n_train
    else:
        n = min(len(train), len(pool) // 2)
    if n < 1 or n > len(pool):
        raise DataError(f"the reference pool holds {len(pool)} images, too few to draw {max(n, 1)} for a reference model")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seeds.REFERENCE_SET.seed(cfg.seed)))
    return pool.subset(order[:n].sort().values)


def load_splits(cfg: RunConfig) -> Splits:
    """Load and check all roles; the proxy subset of ``proxy_size`` is drawn with ``cfg.seed``.

    For ``method = "reference"`` the returned ``train`` is the reference model's own training set
    (:func:`reference_training_set`, checked disjoint from the audited train and test images) and
    the proxy set is empty.
    """
    train, pool, test, val = _load_roles(cfg)
    check_disjoint(train, pool, "proxy")
    check_disjoint(train, test, "test")
    if val is not None:
        check_disjoint(train, val, "validation")
        if not wants(cfg, "val"):
            val = None
    if cfg.method == "reference":
        ref = reference_training_set(cfg, train, pool)
        check_disjoint(ref, train, "audited training")
        check_disjoint(ref, test, "audited test")
        return Splits(train=ref, proxy=pool.subset(torch.arange(0)), test=test, key=data_key(cfg), val=val)
    if cfg.proxy_size > len(pool):
        raise DataError(f"field 'proxy_size' ({cfg.proxy_size}) is larger than the proxy pool ({len(pool)} images)")
    halves = 2 if val is not None else 1  # members are split into a validation and a test half
    for role, nonmembers in (("test", test if wants(cfg, "test") else None), ("validation", val)):
        if nonmembers is not None and cfg.attack_n_per_side > min(len(train) // halves, len(nonmembers)):
            raise DataError(f"field 'attack_n_per_side' ({cfg.attack_n_per_side}) exceeds the smaller of "
                            f"the audited members ({len(train) // halves}) and {role} non-members ({len(nonmembers)})")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seeds.PROXY_SUBSET.seed(cfg.seed)))
    proxy = pool.subset(order[: cfg.proxy_size]) if cfg.proxy_size else pool.subset(order[:0])
    return Splits(train=train, proxy=proxy, test=test, key=data_key(cfg), val=val)
