import numpy as np
import pytest
import torch
from PIL import Image

from akdray.config import RunConfig
from akdray.data.aligned import DataError, load_aligned_split
from akdray.data.splits import load_splits
from akdray.data import synthetic
from akdray.data.synthetic import synthetic_facades, synthetic_pairs
from akdray.testing import make_aligned, write_pair


def test_synthetic_is_deterministic_by_seed_and_role():
    a = synthetic_facades(4, 32, 7, "train")
    b = synthetic_facades(4, 32, 7, "train")
    c = synthetic_facades(4, 32, 8, "train")
    d = synthetic_facades(4, 32, 7, "test")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1]) and not torch.equal(a[1], d[1])
    assert a[0].dtype == torch.uint8 and a[0].shape == (4, 3, 32, 32)


def test_synthetic_draws_are_rendered_once_then_read_from_the_cache(monkeypatch):
    fresh = synthetic_pairs(6, 16, 5, "val", "flat")
    expected = synthetic_facades(6, 16, 5, "val", "flat")
    assert all(torch.equal(a, b) for a, b in zip(fresh[:2], expected[:2])) and fresh[2] == expected[2]
    files = list((synthetic.storage.cache_root() / "synthetic").glob("flat-s5-val-6x16-*.pt"))
    assert len(files) == 1
    rendered = []
    monkeypatch.setattr(synthetic, "synthetic_facades", lambda *a: rendered.append(a) or expected)
    cached = synthetic_pairs(6, 16, 5, "val", "flat")
    assert not rendered and all(torch.equal(a, b) for a, b in zip(cached[:2], expected[:2]))
    synthetic_pairs(6, 16, 5, "val", "sharp")  # another style is another entry
    assert len(rendered) == 1
    files[0].write_bytes(files[0].read_bytes()[:100])  # a truncated entry is rendered again and rewritten
    assert torch.equal(synthetic_pairs(6, 16, 5, "val", "flat")[1], expected[1]) and len(rendered) == 2
    assert files[0].stat().st_size > 100


def test_synthetic_photo_is_only_partly_predictable_from_labels():
    x, y, _ = synthetic_facades(64, 32, 0, "train")
    # the same label colour (wall) gets different photo colours in different images
    wall = torch.tensor([0, 85, 255], dtype=torch.uint8).view(3, 1, 1)
    means = [y[i].float()[:, (x[i] == wall).all(0)].mean(1) for i in range(len(x)) if (x[i] == wall).all(0).any()]
    assert torch.stack(means).std(0).min() > 10


def test_aligned_loader_splits_a_b_and_direction(tmp_path):
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, :16] = 10
    img[:, 16:] = 200
    (tmp_path / "train").mkdir()
    Image.fromarray(img).save(tmp_path / "train" / "p.png")
    x, y, names = load_aligned_split(tmp_path / "train", 16, "AtoB")
    assert x.shape == (1, 3, 16, 16) and int(x.float().mean()) == 10 and int(y.float().mean()) == 200
    x2, y2, _ = load_aligned_split(tmp_path / "train", 16, "BtoA")
    assert torch.equal(x2, y) and torch.equal(y2, x) and names[0].endswith("p.png")


def test_aligned_splits_roles_and_halves(tmp_path):
    root = make_aligned(tmp_path / "d")
    cfg = RunConfig(data_source="aligned", data_root=str(root), image_size=16, d_layers=2, n_train=0, proxy_pool_size=0,
                    proxy_size=3, n_test=0)
    s = load_splits(cfg)
    assert (len(s.train), len(s.proxy), len(s.test)) == (6, 3, 4)
    halves = load_splits(cfg.replace(test_split="val", proxy_size=2))  # Cityscapes-style
    assert (len(halves.proxy), len(halves.test)) == (2, 2)


def test_proxy_subset_is_seeded():
    cfg = RunConfig(image_size=16, d_layers=2, n_train=8, proxy_pool_size=10, proxy_size=4, n_test=8)
    a, b, c = load_splits(cfg), load_splits(cfg), load_splits(cfg.replace(seed=1))
    assert a.proxy.names == b.proxy.names and a.proxy.names != c.proxy.names


def test_missing_folder_odd_width_and_corrupt_png_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_aligned_split(tmp_path / "nope", 16, "AtoB")
    (tmp_path / "odd").mkdir()
    write_pair(tmp_path / "odd" / "bad.png", width=25)
    with pytest.raises(DataError, match=r"bad\.png.*odd"):
        load_aligned_split(tmp_path / "odd", 16, "AtoB")
    (tmp_path / "corrupt").mkdir()
    write_pair(tmp_path / "corrupt" / "ok.png")
    (tmp_path / "corrupt" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(DataError, match=r"broken\.png"):
        load_aligned_split(tmp_path / "corrupt", 16, "AtoB")


def test_proxy_overlapping_training_set_is_refused(tmp_path):
    root = make_aligned(tmp_path / "d")
    (root / "val" / "000.png").write_bytes((root / "train" / "002.png").read_bytes())
    cfg = RunConfig(data_source="aligned", data_root=str(root), image_size=16, d_layers=2, n_train=0, proxy_pool_size=0,
                    proxy_size=2, n_test=0)
    with pytest.raises(DataError, match=r"proxy image .*val/000\.png.*train/002\.png"):
        load_splits(cfg)
