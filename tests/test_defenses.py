"""AKD / DMP / Gauss: privacy by construction, determinism, and the Gauss identity."""
import pytest
import torch

from akdray.attacks.references import serve_generator
from akdray.config import RunConfig
from akdray.data.splits import InputImages, PairedImages, Splits
from akdray.data.synthetic import synthetic_facades
from akdray.defenses.distill import fit_student, teacher_query
from akdray.defenses.gauss import add_output_noise
from akdray.models import build_generator
from akdray.run import Prepared, _serve_gauss, _train
from akdray.testing import TINY, Tripwire

CPU = torch.device("cpu")


def _pairs(n, role, guarded=False):
    x, y, names = synthetic_facades(n, 16, 0, role)
    return PairedImages(x, Tripwire() if guarded else y, names)


@pytest.mark.parametrize("method", ["akd", "dmp"])
@pytest.mark.train
def test_student_training_never_reads_private_or_proxy_targets(method):
    cfg = RunConfig(**TINY).replace(method=method, teacher_checkpoint="unused")
    with pytest.raises(AssertionError):
        _ = Tripwire().shape
    splits = Splits(train=_pairs(16, "train", guarded=True), proxy=_pairs(8, "proxy", guarded=True),
                    test=_pairs(16, "test", guarded=True), key="guarded")
    G, serve, _, _ = _train(Prepared(cfg, splits, build_generator(cfg), CPU, None))
    assert serve(splits.proxy.x[:2]).shape == (2, 3, 16, 16)


def test_fit_student_refuses_paired_data():
    cfg = RunConfig(**TINY)
    with pytest.raises(TypeError, match="InputImages"):
        fit_student(cfg, lambda x: x, _pairs(4, "proxy"), adversarial=True, device=CPU)


@pytest.mark.train
def test_same_seed_same_student_weights_and_teacher_is_queried():
    cfg = RunConfig(**TINY)
    teacher = build_generator(cfg)
    proxy = _pairs(8, "proxy").inputs_only()
    calls = []
    query = teacher_query(teacher, "eval", dropout=False)
    counting = lambda x: calls.append(len(x)) or query(x)  # noqa: E731
    a, _ = fit_student(cfg, counting, proxy, adversarial=True, device=CPU)
    b, _ = fit_student(cfg, query, proxy, adversarial=True, device=CPU)
    c, _ = fit_student(cfg.replace(seed=1), query, proxy, adversarial=True, device=CPU)
    assert sum(calls) == len(proxy) * cfg.distill_epochs
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("teacher_mode", ["eval", "train"])
def test_train_mode_teacher_query_leaves_teacher_untouched(teacher_mode):
    """A query in train mode runs a copy with batch statistics and dropout: the teacher keeps its weights,
    its BatchNorm running statistics and its own mode, whichever mode it was in."""
    cfg = RunConfig(**TINY)
    teacher = build_generator(cfg).train(teacher_mode == "train")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    query = teacher_query(teacher, "train", dropout=True)
    x = torch.randn(3, 3, 16, 16)
    torch.manual_seed(0)
    first = query(x)
    assert not torch.equal(first, query(x))  # the copy runs in train mode: dropout draws anew per query
    torch.manual_seed(0)
    assert torch.equal(first, query(x))  # ... from torch's seeded generator
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # running stats included
    assert teacher.training == (teacher_mode == "train")  # the copy, not the teacher, was switched
    assert all(m.training == teacher.training for m in teacher.modules())


def test_gauss_sigma_zero_equals_teacher_outputs_and_noise_is_seeded():
    cfg = RunConfig(**TINY).replace(method="gauss", teacher_checkpoint="unused", gauss_sigma=0.0)
    teacher = build_generator(cfg)
    x = _pairs(4, "test").x
    clean = serve_generator(teacher, cfg, CPU)(x)
    assert torch.equal(_serve_gauss(teacher, cfg, CPU)(x), clean)
    noisy = cfg.replace(gauss_sigma=0.2)
    a, b = _serve_gauss(teacher, noisy, CPU)(x), _serve_gauss(teacher, noisy, CPU)(x)
    assert torch.equal(a, b) and not torch.equal(a, clean)
    with pytest.raises(ValueError, match="non-negative"):
        add_output_noise(torch.zeros(1), -1.0, torch.Generator())


def test_inputs_only_has_no_targets():
    proxy = _pairs(4, "proxy").inputs_only()
    assert isinstance(proxy, InputImages) and not hasattr(proxy, "y")
