"""The wider probe of bench_refusals.py: 100+ bad inputs beyond issue #25's list, by command.

Every case is a bad input (``expect="refuse"``) unless it says otherwise; see refusal_cases.py.
"""
from __future__ import annotations

from pathlib import Path

from refusal_cases import AK, PARETO, TINY, Case, Paths, sets

HUGE = {  # one value per count/size field no run could finish (or no machine could hold)
    "image_size": "4096", "ngf": "4096", "ndf": "4096", "n_train": "100000000", "proxy_pool_size": "100000000",
    "proxy_size": "10000000", "n_test": "100000000", "reference_pool_size": "100000000", "n_val": "100000000",
    "attack_n_per_side": "10000000", "epochs": "100000000", "epochs_decay": "100000000",
    "distill_epochs": "100000000", "distill_epochs_decay": "100000000", "batch_size": "10000000",
    "eval_batch_size": "10000000", "attack_bootstrap": "100000000", "kid_subset_size": "100000000",
    "kid_subsets": "100000000", "kid_max_images": "100000000", "n_sample_images": "100000000",
}


def wide_cases(work: Path) -> list[Case]:
    p = Paths(work)
    run = [*AK, "run", "--method", "teacher", "--preset", "tiny", *sets(*TINY)]
    dry = lambda *s: Case("wide: run dry", f"run --dry-run {' '.join(s)}", [*run, *sets(*s), "--dry-run"])  # noqa: E731
    audit = lambda name, ck, *a, out=None, **kw: Case("wide: audit", name, [  # noqa: E731
        *AK, "audit", "--checkpoint", ck, *a, "--out", out or p.out()], **kw)
    tr = lambda name, ck, inp, *a, out=None: Case("wide: translate", name, [  # noqa: E731
        *AK, "translate", "--checkpoint", ck, "--input", inp, *a, "--out", out or p.out()])
    prot = lambda name, t, proxy, *a, out=None: Case("wide: protect", name, [  # noqa: E731
        *AK, "protect", "--teacher", t, "--proxy", proxy, "--preset", "tiny",
        *sets("distill_epochs=1", "kid_subset_size=4", "kid_subsets=5", "device=cpu"), *a, "--out", out or p.out()])
    kid = lambda *a: Case("wide: kid", f"kid {' '.join(a)}", [*AK, "kid", f"{p.d16}/train", f"{p.d16}/test", *a])  # noqa: E731
    sw = lambda name, *a: Case("wide: sweep", name, [*PARETO, "--smoke-test", "--storage", p.sweeps, *a, "--dry-run"])  # noqa: E731
    resume = lambda name: Case("wide: sweep", f"--resume --dry-run of a stored sweep.json with {name}",  # noqa: E731
                               [*PARETO, "--storage", p.sweeps, "--name", name, "--resume", "--dry-run"])
    v32 = f"{p.d32}/val"
    cases = [dry(f"{k}={v}") for k, v in HUGE.items()]
    cases += [dry(s) for s in ("kid_max_images=1", "n_val=2", "n_test=3", "attack_n_per_side=2", "n_train=5",
                               f"data_root=file://{p.d16}?x=1", "data_root=s3://akdray-missing-bucket/d",
                               f"data_root={p.mixedtest}", f"data_root={p.firstok}", f"data_root={p.nonutf8}")]
    cases += [
        Case("wide: run", "run --out a symlink to a folder", [*run, "--out", p.linkdir]),
        Case("wide: run", "run --out inside data_root", [*run, *sets(f"data_root={p.d16}", "n_train=0",
                                                                       "proxy_pool_size=0", "n_test=0", "n_val=4"),
                                                          "--out", f"{p.d16}/run"]),
        Case("wide: run", "run --teacher a reference run (dmp)", [*AK, "run", "--method", "dmp", "--preset", "tiny",
                                                                  *sets(*TINY), "--teacher", p.ref1, "--out", p.out()]),
        Case("wide: run", "run --teacher inf weights (gauss)", [*AK, "run", "--method", "gauss", "--preset", "tiny",
                                                                *sets(*TINY, "image_size=32"), "--teacher", p.t32inf,
                                                                "--out", p.out()]),
        Case("wide: run", "run --teacher integer weights (akd)", [*AK, "run", "--method", "akd", "--preset", "tiny",
                                                                  *sets(*TINY, "image_size=32"), "--teacher", p.t32int,
                                                                  "--out", p.out()]),
        Case("wide: run", "run --teacher official NaN file (dmp)", [*AK, "run", "--method", "dmp", "--preset", "tiny",
                                                                    *sets(*TINY, "image_size=32"), "--teacher",
                                                                    f"{p.offnan}/latest_net_G.pth", "--out", p.out()]),
        Case("wide: run", "run data_root with mixed image sizes", [*run, *sets(f"data_root={p.mixedtest}", "n_train=0",
                                                                                "proxy_pool_size=0", "n_test=0"),
                                                                    "--out", p.out()]),
    ]
    cases += [kid(*a) for a in (("--subsets", "0"), ("--subsets", "1000000"), ("--subset-size", "1"),
                                ("--subset-size", "1000000000"), ("--batch-size", "100000000"),
                                ("--seed", "1099511627776"), ("--batch-size", "0"))]
    cases += [
        tr("translate --seed -1", p.t16, f"{p.d16}/val", "--seed", "-1"),
        tr("translate --seed 2^40", p.t16, f"{p.d16}/val", "--seed", "1099511627776"),
        tr("translate --image-size 0", p.t16, f"{p.d16}/val", "--image-size", "0"),
        tr("translate --image-size 100000", p.t16, f"{p.d16}/val", "--image-size", "100000"),
        tr("translate --image-size 2^20", p.t16, f"{p.d16}/val", "--image-size", "1048576"),
        tr("translate --out inside --input", p.t16, f"{p.d16}/val", out=f"{p.d16}/val/out"),
        tr("translate --out inside the checkpoint's run folder", p.t16, f"{p.d16}/val", out=f"{p.t16}/out"),
        tr("translate --out a dangling symlink", p.t16, f"{p.d16}/val", out=p.dangling),
        tr("translate: NaN weights (akdray)", p.t32nan, v32),
        tr("translate: inf weights (official)", f"{p.offinf}/latest_net_G.pth", v32),
        tr("translate: integer weights (official)", f"{p.offint}/latest_net_G.pth", v32),
        tr("translate: complex weights (akdray)", p.t32complex, v32),
        tr("translate --layout aligned on a square image file", p.t16, f"{p.square}/000.png", "--layout", "aligned"),
        tr("translate: a folder with a non-UTF-8 name", p.t16, f"{p.nonutf8}/test"),
        Case("wide: export", "export: inf weights", [*AK, "export", p.t32inf, "--format", "pix2pix", "--out", p.out()]),
        Case("wide: export", "export: integer weights", [*AK, "export", p.t32int, "--format", "pix2pix", "--out", p.out()]),
        Case("wide: export", "export: complex weights", [*AK, "export", p.t32complex, "--format", "pix2pix", "--out", p.out()]),
        Case("wide: export", "export --out inside the run folder", [*AK, "export", p.t32, "--format", "pix2pix",
                                                                   "--out", f"{p.t32}/pix2pix"]),
        Case("wide: export", "export --out a dangling symlink", [*AK, "export", p.t32, "--format", "pix2pix",
                                                                "--out", p.dangling]),
    ]
    cases += [
        audit("audit --references -1", p.t16, "--references", "-1"),
        audit("audit --references 1", p.t16, "--references", "1"),
        audit("audit --references 10^6", p.t16, "--references", "1000000"),
        audit("audit --reference-runs a missing folder", p.t16, "--reference-runs", p.ref0, f"{p.w}/noref"),
        audit("audit --reference-runs an official file", p.t16, "--reference-runs", p.ref0, f"{p.off}/latest_net_G.pth"),
        audit("audit --reference-runs a teacher run", p.t16, "--reference-runs", p.ref0, p.t16cpu),
        audit("audit --reference-runs of another image size", p.t16, "--reference-runs", p.ref0, p.t32),
        audit("audit --reference-runs: three, one twice", p.t16, "--reference-runs", p.ref0, p.ref1, p.ref0),
        audit("audit --out inside --checkpoint's folder", p.t16, out=f"{p.t16}/audit"),
        audit("audit --out = --data", p.t16, "--data", p.d16, out=p.d16),
        audit("audit --out inside a reference run", p.t16, "--reference-runs", p.ref0, p.ref1, out=f"{p.ref0}/a"),
        audit("audit --out a dangling symlink", p.t16, out=p.dangling),
        audit("audit --out a symlink to a folder", p.t16, out=p.linkdir),
        audit("audit --data missing", p.t16, "--data", f"{p.w}/nodata"),
        audit("audit --data a file", p.t16, "--data", p.file),
        audit("audit --data an empty folder", p.t16, "--data", p.empty),
        audit("audit --data with a non-image .png", p.t16, "--data", p.notimg),
        audit("audit --data: 3 members, 3 non-members", p.t16all, "--data", p.two),
        audit("audit --data: a decompression bomb in test/", p.t16, "--data", p.bomb),
        audit("audit --data with a query string", p.t16, "--data", f"file://{p.d16}?x=1"),
        audit("audit --data s3://missing-bucket", p.t16, "--data", "s3://akdray-missing-bucket/d"),
        audit("audit: official file, --data of another size", f"{p.off}/latest_net_G.pth", "--data", p.d16),
        audit("audit: official NaN file with --data", f"{p.offnan}/latest_net_G.pth", "--data", p.d32),
        audit("audit: integer weights", p.t32int),
        audit("audit: complex weights", p.t32complex),
        audit("audit --data 32 px for a 16 px model, --resize (allowed, recorded)", p.t16, "--data", p.d32, "--resize",
              expect="ok"),
    ]
    cases += [
        prot("protect --references 1", p.t32, v32, "--audit-data", p.d32, "--references", "1"),
        prot("protect --references 10^6", p.t32, v32, "--audit-data", p.d32, "--references", "1000000"),
        prot("protect --set method=akd (protect's own field)", p.t32, v32, "--set", "method=teacher"),
        prot("protect --set data_root=elsewhere", p.t32, v32, "--set", f"data_root={p.d16}"),
        prot("protect --set teacher_checkpoint=x", p.t32, v32, "--set", f"teacher_checkpoint={p.t16}"),
        prot("protect --set proxy_split=train", p.t32, v32, "--set", "proxy_split=train"),
        prot("protect --out inside --proxy", p.t32, v32, out=f"{v32}/out"),
        prot("protect --out = --audit-data", p.t32, v32, "--audit-data", p.d32, out=p.d32),
        prot("protect --out inside the teacher run", p.t32, v32, out=f"{p.t32}/student"),
        prot("protect --out a dangling symlink", p.t32, v32, out=p.dangling),
        prot("protect --teacher a reference run", p.ref0, f"{p.d16}/val"),
        prot("protect --teacher inf weights", p.t32inf, v32),
        prot("protect --teacher integer weights", p.t32int, v32),
        prot("protect --teacher official complex file", f"{p.offcomplex}/latest_net_G.pth", v32),
        prot("protect --audit-data: 1 member, 1 non-member", p.t32, v32, "--audit-data", p.one),
        prot("protect --audit-data of 16 px for a 32 px teacher", p.t32, v32, "--audit-data", p.d16),
        prot("protect --audit-data with a non-UTF-8 name", p.t32, v32, "--audit-data", p.nonutf8),
        prot("protect --set device=cuda:3", p.t32, v32, "--set", "device=cuda:3"),
        prot("protect --set seed=-1", p.t32, v32, "--set", "seed=-1"),
        prot("protect --set proxy_size=10^9", p.t32, v32, "--set", "proxy_size=1000000000"),
        prot("protect --set ngf=10^6", p.t32, v32, "--set", "ngf=1000000"),
        prot("protect --proxy = test/ of --audit-data (inputs only)", p.t32, f"{p.d32}/test", "--audit-data", p.d32,
             "--layout", "aligned"),
    ]
    cases += [
        sw("sweep --name '' ", "--name", ""), sw("sweep --name .", "--name", "."), sw("sweep --name a/b", "--name", "a/b"),
        sw("sweep --name ' x'", "--name", " x"), sw("sweep --name 'a?b'", "--name", "a?b"),
        sw("sweep --storage file:///x#frag", "--storage", f"file://{p.sweeps}#f"),
        sw("sweep --storage s3://b/p?region=x", "--storage", "s3://akdray-missing-bucket/p?region=x"),
        sw("sweep --storage under a file", "--storage", f"{p.file}/s"),
        sw("sweep --num-samples 10^9", "--num-samples", "1000000000"),
        sw("sweep --num-samples akd=10^9", "--num-samples", "akd=1000000000"),
        sw("sweep --references 10^6", "--references", "1000000"),
        sw("sweep --references-per-trial 10^6", "--references-per-trial", "1000000"),
        sw("sweep --refine-picks --refine-trials 10^9", "--refine-picks", "--refine-trials", "1000000000"),
        sw("sweep --refine-picks --refine-rounds 10^6", "--refine-picks", "--refine-rounds", "1000000"),
        sw("sweep --max-concurrent 10^12", "--max-concurrent", "1000000000000"),
        sw("sweep --gpus-per-trial inf", "--gpus-per-trial", "inf"),
        sw("sweep --gpus-per-trial nan", "--gpus-per-trial", "nan"),
        sw("sweep --cpus-per-trial inf", "--cpus-per-trial", "inf"),
        sw("sweep --max-failures 10^9", "--max-failures", "1000000000"),
        sw("sweep --search-kid-images 10^9", "--search-kid-images", "1000000000"),
        Case("wide: sweep", "sweep --set seed=2^31-1 --seeds 5", [*PARETO, "--preset", "tiny", "--storage", p.sweeps,
                                                                   "--set", "seed=2147483647", "--seeds", "5", "--dry-run"]),
        sw("sweep --set data_root=file:///x?y=1", "--set", f"data_root=file://{p.d16}?y=1", "--set", "n_val=4"),
        sw("sweep --set data_root with mixed sizes", "--set", f"data_root={p.mixedtest}", "--set", "n_val=4",
           "--set", "n_train=0", "--set", "n_test=0", "--set", "proxy_pool_size=0"),
        sw("sweep --defenses akd,,dmp", "--defenses", "akd,,dmp"),
        Case("wide: sweep", "sweep --confirm-seed-start 2^31-1", [*PARETO, "--confirm", f"{p.sweeps}/ok",
                                                                   "--confirm-seed-start", "2147483647", "--dry-run"]),
        resume("cpux"), resume("ns"), resume("dupdef"),
    ]
    return cases
