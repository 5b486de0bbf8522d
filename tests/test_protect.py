"""``akdray protect``: post-hoc AKD of an official-format teacher, proxy targets never used, audit, refusals."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import akdray.protect
from akdray.cli import main
from akdray.config import RunConfig
from akdray.data.splits import InputImages
from akdray.data.synthetic import synthetic_facades
from akdray.models import build_generator
from akdray.pix2pix_format import official_state_dict
from akdray.testing import TINY
from official_reference import OfficialUnet

SETS = [f"--set={k}={v}" for k, v in TINY.items() if k not in ("image_size", "n_train", "proxy_pool_size",
                                                                "proxy_size", "n_test", "n_val")]  # protect sets n_val


def write_pairs(folder, x, y):
    folder.mkdir(parents=True)
    for i in range(len(x)):
        pair = np.concatenate([x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy()], axis=1)
        Image.fromarray(pair).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    """The owner's aligned data (train/ val/ test/ as A|B PNGs at 32 px) and an official-format teacher."""
    root = tmp_path_factory.mktemp("owner")
    for split, role, n in (("train", "train", 12), ("val", "proxy", 8), ("test", "test", 12)):
        write_pairs(root / "facades" / split, *synthetic_facades(n, 32, 5, role)[:2])
    cfg = RunConfig(image_size=32, ngf=8)
    torch.manual_seed(3)
    teacher = build_generator(cfg)
    torch.save(official_state_dict(teacher, cfg), root / "latest_net_G.pth")
    return root


def _protect(owner, out, *extra):
    return main(["protect", "--teacher", str(owner / "latest_net_G.pth"), "--proxy", str(owner / "facades" / "val"),
                 *SETS, *extra, "--out", str(out)])


@pytest.mark.slow
def test_protect_with_audit_writes_both_formats_and_the_before_after_report(owner, tmp_path, capsys):
    out = tmp_path / "protected"
    assert _protect(owner, out, "--audit-data", str(owner / "facades"), "--references", "2") == 0
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "config.json", "pix2pix", "protect.json", "report.md",
                                                "roc.png", "scores.parquet", "references"}
    result = json.loads((out / "protect.json").read_text())
    audit = result["audit"]
    assert result["measured"] and result["teacher"]["format"] == "pix2pix" and result["proxy"]["n_images"] == 8
    assert audit["n_members"] == audit["n_nonmembers"] == 12 and audit["inference_mode"] == "eval"
    assert audit["attacks"] == ["loss", "lira", "rmia"] and audit["n_references"] == 2
    for name in ("teacher", "student"):
        m = audit[name]
        for a in m["attacks"].values():
            assert a["auc_lo"] <= a["auc"] <= a["auc_hi"] and a["ci_contains_chance"] == (a["auc_lo"] <= 0.5 <= a["auc_hi"])
            assert a["tpr_at_1pct_fpr"] is None  # 12 non-members cannot support a 1 % FPR
        assert m["leak_max"] == pytest.approx(max(max(a["auc"], 1 - a["auc"]) for a in m["attacks"].values()))
        assert m["leak_lo"] <= m["leak"] <= m["leak_hi"] and 0 < m["leak_p"] <= 1
        assert m["nkid"] is not None
    scores = pd.read_parquet(out / "scores.parquet")
    assert set(scores["attack"]) == {"loss", "lira", "rmia"} and set(scores["model"]) == {"teacher", "student"}
    assert "| teacher |" in (out / "report.md").read_text() and "| student |" in capsys.readouterr().out
    student = torch.load(out / "pix2pix" / "latest_net_G.pth", weights_only=True)
    OfficialUnet(5, 8, "batch").load_state_dict(student, strict=True)
    assert "--ngf 8 --norm batch" in (out / "pix2pix" / "opt.txt").read_text()
    assert main(["translate", "--checkpoint", str(out / "pix2pix" / "latest_net_G.pth"), "--input",
                 str(owner / "facades" / "test"), "--out", str(tmp_path / "translated")]) == 0
    assert len(list((tmp_path / "translated").iterdir())) == 12


@pytest.mark.train
def test_without_audit_data_nothing_is_measured_and_it_says_so(owner, tmp_path, capsys):
    out = tmp_path / "protected"
    assert _protect(owner, out) == 0
    result = json.loads((out / "protect.json").read_text())
    assert not result["measured"] and result["audit"] is None and "nothing was measured" in result["note"]
    assert "nothing was measured" in capsys.readouterr().out and not (out / "report.md").exists()


@pytest.mark.train
def test_proxy_targets_are_never_used(owner, tmp_path, monkeypatch):
    """Two proxy folders with the same input halves and unrelated target halves (noise vs black):
    the student sees InputImages holding exactly the input halves, and both students are bit-identical."""
    x, y, _ = synthetic_facades(8, 32, 5, "proxy")
    noise = torch.from_numpy(np.random.default_rng(9).integers(0, 255, tuple(y.shape), dtype=np.uint8))
    seen = []
    real_fit = akdray.protect.fit_student

    def spy(cfg, query, proxy, **kw):
        seen.append(proxy)
        return real_fit(cfg, query, proxy, **kw)

    monkeypatch.setattr(akdray.protect, "fit_student", spy)
    students = []
    for name, targets in (("noise", noise), ("black", torch.zeros_like(y))):
        proxy = write_pairs(tmp_path / name, x, targets)
        out = tmp_path / f"out-{name}"
        assert main(["protect", "--teacher", str(owner / "latest_net_G.pth"), "--proxy", str(proxy), *SETS,
                     "--out", str(out)]) == 0
        students.append(torch.load(out / "checkpoint.pt", weights_only=True)["generator"])
    assert all(isinstance(p, InputImages) and not hasattr(p, "y") and torch.equal(p.x, x) for p in seen)
    a, b = students
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("args, needle", [
    (["--teacher", "{owner}/facades/train/000.png"], "cannot be read"),
    (["--proxy", "{owner}/facades/train", "--audit-data", "{owner}/facades"], "overlap"),
    (["--audit-data", "{owner}/missing"], "missing"),
    (["--set", "image_size=16"], "image size 16"),
    (["--set", "norm=group"], "GroupNorm"),
    (["--set", "proxy_size=9"], "proxy_size"),
    (["--set", "bogus=1"], "bogus"),
    (["--references", "1", "--audit-data", "{owner}/facades"], "LiRA needs at least 2"),
    (["--references", "2"], "--references needs --audit-data"),
])
def test_bad_input_is_refused_before_training(owner, tmp_path, capsys, args, needle):
    given = dict(zip(args[::2], args[1::2]))
    base = {"--teacher": str(owner / "latest_net_G.pth"), "--proxy": str(owner / "facades" / "val")}
    base.update({k: v.format(owner=owner) for k, v in given.items() if k != "--set"})
    argv = [a for kv in base.items() for a in kv] + [a for k, v in given.items() if k == "--set" for a in (k, v)]
    out = tmp_path / "out"
    assert main(["protect", *argv, *SETS, "--out", str(out)]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_run_accepts_an_official_teacher(owner, tmp_path):
    """`akdray run --method dmp --teacher latest_net_G.pth`: the same loader serves `run`."""
    out = tmp_path / "dmp"
    data = ["--set=data_source=aligned", f"--set=data_root={owner / 'facades'}", "--set=image_size=32",
            "--set=n_train=0", "--set=proxy_pool_size=0", "--set=proxy_size=8", "--set=n_test=0",
            "--set=n_val=0"]  # val/ is all proxy pool here: no validation non-members carved from it
    assert main(["run", "--method", "dmp", *SETS, *data, "--teacher", str(owner / "latest_net_G.pth"),
                 "--out", str(out)]) == 0
    row = json.loads((out / "row.json").read_text())
    assert row["status"] == "ok" and row["teacher_checkpoint"].endswith("latest_net_G.pth")
