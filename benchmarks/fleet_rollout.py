"""Fleet figures: refusals, kill-after-every-step, a 20-box rollout with 3 failures, on-device probe flip rates.

    python benchmarks/fleet_rollout.py               # about 5-10 min on 2 busy cores
    python benchmarks/fleet_rollout.py --boxes 20 --sites 2 --work fl   # keep everything in ./fl

Needs the fleet and test extras and OpenSSH's sshd (``apt-get install
openssh-server``): the 20 boxes are install roots behind ``--sites`` real
sshd instances on loopback, each box with its own (stand-in) service and
health port (tests/fleet/health_service.py). Prints four tables:

1. bundles refused by the agent (unsigned, wrong key, flipped byte,
   truncated, manifest changed after signing, downgrade): must be 100 %;
2. the agent SIGKILLed after each install step in turn: boxes left on
   neither the old nor the new release (must be 0) and where each ended up
   after boot-check;
3. a rollout to N boxes with 3 made to fail (their restart command fails, so
   the agent rolls them back): where it halted, then what ``--resume`` did,
   without and with the boxes fixed (``--retry-failed``), and how many
   installs each box got (must be 1);
4. the probe set's flip rate on ONNX Runtime at fp32/fp16/int8 (what each box
   records) beside the workstation stability study's 1 − adversarial
   agreement for the same bundle and engines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fleet"))


CLASSES = ["mask", "no_mask", "mask_incorrect"]
ARGS = dict(num_classes=3, input_size=32, widths=(8, 16), hidden=16)


def table(title, header, rows):
    w = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(n) for h, n in zip(header, w)))
    print("  ".join("-" * n for n in w))
    for r in rows:
        print("  ".join(str(x).ljust(n) for x, n in zip(r, w)))


def make_bundles(work: Path, probe_count: int):
    import torch

    from edgemask.bundle.pack import pack_bundle
    from edgemask.bundle.signing import generate_key, sign_bundle
    from edgemask.export import export_bundle
    from edgemask.export.calibration import synth_images
    from edgemask.models import create_model
    from edgemask.models.registry import resolved_args
    from edgemask.training.run import run_info_for, save_run_files

    s = synth_images(CLASSES, 32, 600, seed=11)
    x, y = torch.from_numpy(s.as_nchw_float()), torch.from_numpy(s.labels)
    torch.manual_seed(0)
    model = create_model("seed_cnn", **ARGS)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        for idx in torch.randperm(len(x), generator=g).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    run = work / "run"
    save_run_files(run, model, run_info_for(model, "seed_cnn", resolved_args("seed_cnn", **ARGS), CLASSES))
    recipe = work / "recipe.toml"
    recipe.write_text('source = "synth"\ncount = 64\nstratified = true\nseed = 7\n')
    key, other = generate_key(work / "keys"), generate_key(work / "other-keys")
    trusted = work / "trusted"
    trusted.mkdir(exist_ok=True)
    shutil.copy(key.public_path, trusted)
    out = work / "export" / "mask"
    bundles, pk = {}, {}
    for v in (1, 2):
        export_bundle(
            run,
            out,
            calibration=str(recipe),
            precisions="fp32,fp16,int8",
            opencv_check=False,
            simplify=False,
            overwrite=v > 1,
            name="mask",
            probe_count=probe_count,
        )
        bundles[v] = work / f"b{v}"
        shutil.copytree(out, bundles[v])
        sign_bundle(bundles[v], key.private_path)
        pk[v] = pack_bundle(bundles[v], work / f"mask-v{v}.embundle")
    return dict(key=key, other=other, trusted=trusted, bundles=bundles, packages=pk, model=model)


def bad_packages(work: Path, b: dict) -> dict:
    import tarfile

    from edgemask.bundle.pack import pack_bundle
    from edgemask.bundle.signing import sign_bundle

    out = {}
    d = work / "unsigned"
    shutil.copytree(b["bundles"][2], d)
    (d / "manifest.sig").unlink()
    out["unsigned"] = pack_bundle(d, work / "unsigned.embundle")
    d = work / "wrongkey"
    shutil.copytree(b["bundles"][2], d)
    sign_bundle(d, b["other"].private_path)
    out["wrong key"] = pack_bundle(d, work / "wrongkey.embundle")
    raw = bytearray(b["packages"][2].read_bytes())
    with tarfile.open(b["packages"][2]) as t:
        for i, name in enumerate(["model.fp32.onnx", "model.int8.onnx", "golden/outputs.fp32.npy", "probe/inputs.npy"]):
            m = t.getmember(name)
            flipped = bytearray(raw)
            flipped[m.offset_data + min(m.size - 1, 300 + 97 * i)] ^= 0x10
            out[f"flipped byte in {name}"] = work / f"flip{i}.embundle"
            out[f"flipped byte in {name}"].write_bytes(bytes(flipped))
    for frac in (0.1, 0.5, 0.95):
        p = work / f"trunc{frac}.embundle"
        p.write_bytes(bytes(raw[: int(len(raw) * frac)]))
        out[f"truncated at {frac:.0%}"] = p
    d = work / "forged"
    shutil.copytree(b["bundles"][2], d)
    m = json.loads((d / "manifest.json").read_text())
    m["golden"]["tolerance"]["fp32"] = 10.0
    (d / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    out["manifest edited after signing"] = pack_bundle(d, work / "forged.embundle")
    out["downgrade (v1 on a v2 box)"] = b["packages"][1]
    return out


def refusals(work: Path, b: dict):
    from fleet_helpers import make_box

    from edgemask.errors import EdgemaskError
    from edgemask.fleet import agent
    from edgemask.fleet.layout import Layout

    rows, refused = [], 0
    bad = bad_packages(work, b)
    for name, pkg in bad.items():
        box = make_box(work / "refuse" / name.replace(" ", "_").replace("/", "_"), b["trusted"], service=False)
        agent.install(box["root"], package=str(b["packages"][2]))
        before = Layout.at(box["root"]).current_release()
        try:
            agent.install(box["root"], package=str(pkg))
            verdict, why = "INSTALLED", ""
        except EdgemaskError as e:
            verdict, why = "refused", str(e).splitlines()[0][:90]
            refused += Layout.at(box["root"]).current_release() == before
        rows.append((name, verdict, why))
    table(
        f"1. bad bundles: {refused}/{len(bad)} refused ({100.0 * refused / len(bad):.0f} %), box stayed on v2",
        ["bundle", "agent", "why"],
        rows,
    )
    return refused, len(bad)


def kill_every_step(work: Path, b: dict):
    from fleet_helpers import edgemask_exe, make_box, stop_service

    from edgemask.bundle import verify_bundle
    from edgemask.fleet import agent
    from edgemask.fleet.agent import DIE_ENV, STEPS
    from edgemask.fleet.agent_config import load_agent_config
    from edgemask.fleet.layout import Layout
    from edgemask.fleet.state import load_state

    tpl = make_box(work / "kill" / "template", b["trusted"], service=False)
    r1 = agent.install(tpl["root"], package=str(b["packages"][1]))["release"]
    rows, neither = [], 0
    for step in STEPS:
        root = work / "kill" / step
        shutil.copytree(tpl["root"], root, symlinks=True)
        make_box(root, b["trusted"])
        try:
            subprocess.run(load_agent_config(Layout.at(root)).restart, check=True)
            p = subprocess.run(
                [edgemask_exe(), "device", "install", "--root", str(root), "--package", str(b["packages"][2])],
                env={**os.environ, DIE_ENV: step},
                capture_output=True,
            )
            lay = Layout.at(root)
            on = lay.current_release()
            intact = on is not None and not verify_bundle(lay.release(on))
            which = "old" if on == r1 else ("new" if intact else "NEITHER")
            neither += which == "NEITHER"
            agent.boot_check(root)
            st = load_state(lay)
            after = "old" if st.current == r1 else "new"
            again = agent.install(root, package=str(b["packages"][2]))["action"]
            rows.append((step, p.returncode, which, after, again))
        finally:
            stop_service(root)
    table(
        f"2. agent SIGKILLed after each step: {neither} of {len(STEPS)} boxes on neither release",
        ["killed after", "rc", "on (at kill)", "after boot-check", "re-run install"],
        rows,
    )
    return neither, len(STEPS)


def rollout(work: Path, b: dict, n_boxes: int, n_sites: int, fail_idx):
    from fleet_helpers import make_box, stop_service, write_inventory
    from sshd import Sshd

    from edgemask.fleet.controller import deploy
    from edgemask.fleet.inventory import load_inventory
    from edgemask.fleet.layout import Layout
    from edgemask.fleet.state import load_state

    sites = [Sshd(work / "sshd" / "s0")]
    for i in range(1, n_sites):
        sites.append(Sshd(work / "sshd" / f"s{i}", client_key=sites[0].identity))
    boxes = []
    try:
        for i in range(n_boxes):
            bx = make_box(work / "fleet" / f"box{i:02d}", b["trusted"])
            boxes.append((f"box{i:02d}", sites[i % n_sites], bx["root"], {}))
        for i in fail_idx:
            (boxes[i][2] / "service.mode").write_text("fail-restart")
        rollout_cfg = {
            "canary": 1,
            "waves": [10, 30, 60, 100],
            "max_fail_percent": 20,
            "concurrency": 4,
            "deadline_s": 180,
        }
        inv = load_inventory(write_inventory(work / "fleet.toml", boxes, rollout_cfg))
        j = str(work / "rollout.jsonl")
        rows = []

        def row(label, rep, t):
            ok = sum(1 for r in rep.results.values() if r.get("ok"))
            halted = (
                f"after wave {rep.halted['wave']} ({rep.halted['failed']}/{rep.halted['attempted']} failed)"
                if rep.halted
                else "no"
            )
            rows.append((label, ok, len(rep.failed), len(rep.not_attempted), len(rep.skipped), halted, f"{t:.0f}"))

        t = time.time()
        rep = deploy(inv, b["packages"][1], journal=j)
        row("deploy", rep, time.time() - t)
        waves = rep.waves
        t = time.time()
        rep = deploy(inv, b["packages"][1], journal=j, resume=True)
        row("--resume (boxes still broken)", rep, time.time() - t)
        for i in fail_idx:
            (boxes[i][2] / "service.mode").write_text("ok")
        t = time.time()
        rep = deploy(inv, b["packages"][1], journal=j, resume=True, retry_failed=True)
        row("--resume --retry-failed (fixed)", rep, time.time() - t)
        installs = [
            sum(1 for h in load_state(Layout.at(root)).history if h["event"] == "committed") for _, _, root, _ in boxes
        ]
        print(
            f"\n3. rollout to {n_boxes} boxes behind {n_sites} sshd; failing: "
            f"{', '.join(boxes[i][0] for i in fail_idx)}; waves {[len(w) for w in waves]} "
            f"(canary 1, then 10/30/60/100 %), halt above 20 % of boxes attempted"
        )
        table("", ["run", "ok", "failed", "not attempted", "skipped (done before)", "halted", "s"], rows)
        print(f"installs committed per box: min {min(installs)}, max {max(installs)} (1 = no box done twice)")
    finally:
        for _, _, root, _ in boxes:
            stop_service(root)
        for s in sites:
            s.stop()


def flip_rates(work: Path, b: dict, n_study: int):
    from edgemask.export.calibration import synth_images
    from edgemask.fleet.selftest import selftest_release
    from edgemask.stability import StabilityConfig, headline_rows, run_study

    bundle = b["bundles"][2]
    dev = {p: selftest_release(bundle, "onnxrt", p) for p in ("fp32", "fp16", "int8")}
    s = synth_images(CLASSES, 32, n_study, seed=123)
    cfg = StabilityConfig(
        n=n_study,
        engines=("onnxrt:fp32", "onnxrt:fp16", "onnxrt:int8"),
        noise_trials=1,
        sensitivity_trials=1,
        examples=0,
        alphas=(1.0,),
    )
    res = run_study(bundle, s.as_nchw_float(), s.labels, cfg)
    ws = {r["engine"]: r for r in headline_rows(res)}
    rows = []
    for p, st in dev.items():
        w = next((v for k, v in ws.items() if k.endswith(p) and "onnxrt" in k), None)
        adv = w.get("adv_agreement") if w else None
        rows.append(
            (
                f"onnxrt {p}",
                f"{st.probe_flips}/{st.probe_count}",
                "-" if st.probe_flip_rate is None else f"{st.probe_flip_rate:.1%}",
                "-" if adv is None else f"{1 - adv:.1%}",
                "-" if not w or w.get("transfer_rate") is None else f"{w['transfer_rate']:.1%}",
            )
        )
    table(
        f"4. probe flip rate on the box's runner vs the workstation study (n={n_study}, same bundle)",
        ["engine", "probe flips", "box flip rate", "workstation 1 - adv agreement", "workstation transfer"],
        rows,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="keep everything in this folder (default: a temporary one)")
    ap.add_argument("--boxes", type=int, default=20)
    ap.add_argument("--sites", type=int, default=2, help="sshd instances the boxes are spread over")
    ap.add_argument("--probe-count", type=int, default=32)
    ap.add_argument("--study-n", type=int, default=128)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: refuse,kill,rollout,flip")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    skip = set(a.skip.split(","))
    print(f"work folder {work}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    b = make_bundles(work, a.probe_count)
    if "refuse" not in skip:
        refusals(work, b)
    if "kill" not in skip:
        kill_every_step(work, b)
    if "rollout" not in skip:
        n = a.boxes
        rollout(work, b, n, a.sites, fail_idx=[int(n * 0.35), int(n * 0.45), int(n * 0.5)])
    if "flip" not in skip:
        flip_rates(work, b, a.study_n)
    print(f"\nload average {os.getloadavg()[0]:.1f}")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
