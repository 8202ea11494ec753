"""The device agent: install, commit, rollback, boot-check, status (local logic only).

Install runs these steps in order; each leaves the box on its committed
release until ``switched``, and from ``pending`` on a crash is undone by
``boot-check`` (or by the next install, which first rolls back a pending
switch it finds):

1. ``received``  the upload ``incoming/<sha>.part`` hashes to <sha>; renamed ``.embundle``
2. ``verified``  unpacked into a temporary folder; signature by a trusted key,
   every file's hash, no downgrade, device compatibility, free space; renamed
   to ``releases/<version>-<hash>``
3. ``engine``    the box's TensorRT engine built (skipped without TensorRT)
4. ``selftest``  golden outputs within tolerance on the box's runner; probe flip rate
5. ``pending``   state.json says: switching from the old release to the new one
6. ``switched``  ``current`` renamed atomically to the new release, folder fsynced
7. ``restarted`` the service's restart command (argv) ran
8. ``healthy``   ``/healthz`` reports the new model's hash, frames and inferences
9. ``committed`` state.json: the new release is current, nothing pending
10. ``cleaned``  old releases beyond ``keep`` and the upload removed

A failure at 7 or 8 switches back, restarts the service on the old release
and records why. Every step is idempotent: a release folder exists only once
verified, and re-running an install of the committed release does nothing.

``EDGEMASK_AGENT_DIE_AFTER=<step>`` kills the agent (SIGKILL) right after that
step: the fault-injection hook of the tests and of ``benchmarks/fleet_faults.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from edgemask.config import EDGEMASK_AGENT_DIE_AFTER, setting
from edgemask.errors import BundleError, ConfigError, EdgemaskError
from edgemask.fleet.agent_config import AgentConfig, load_agent_config
from edgemask.fleet.layout import Layout, check_sha256, release_id
from edgemask.fleet.state import AgentState, load_state, save_state
from edgemask.fleet.switch import remove_current, switch_current
from edgemask.utils.io import atomic_write_text, sha256_bytes, sha256_file

STEPS = (
    "received",
    "verified",
    "engine",
    "selftest",
    "pending",
    "switched",
    "restarted",
    "healthy",
    "committed",
    "cleaned",
)
DIE_ENV = EDGEMASK_AGENT_DIE_AFTER

LogFn = Callable[[str], None]


class AgentError(EdgemaskError):
    """An install that was refused or rolled back; the box stays on (or returns to) its committed release."""

    def __init__(self, message: str, result: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.result = result or {}


def _quiet(msg: str) -> None:
    pass


def _step_done(step: str, log: LogFn, steps: List[str]) -> None:
    steps.append(step)
    log(f"step {step}: done")
    if setting(DIE_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def agent_lock(layout: Layout) -> Iterator[None]:
    """One agent per install root at a time (a killed agent's lock goes with it)."""
    layout.ensure()
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"another edgemask device agent is working on {layout.root}; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- helpers


def _restart(cfg: AgentConfig, log: LogFn) -> Optional[str]:
    """Run the restart command; None on success, else why it failed."""
    if not cfg.restart:
        log("no restart command configured; the service is not restarted")
        return None
    try:
        r = subprocess.run(
            cfg.restart,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=cfg.restart_timeout_s,
            check=False,
        )
    except FileNotFoundError:
        return f"restart command {cfg.restart[0]!r} not found"
    except subprocess.TimeoutExpired:
        return f"restart command did not finish within {cfg.restart_timeout_s:g} s"
    if r.returncode != 0:
        tail = r.stdout.decode("utf-8", "replace").strip().splitlines()[-1:] if r.stdout else []
        return f"restart command exited {r.returncode}" + (f": {tail[0]}" if tail else "")
    return None


def _manifest_sha(release_dir: Path) -> str:
    return sha256_file(release_dir / "manifest.json")


def _check_compatible(manifest: Any, cfg: AgentConfig) -> None:
    from edgemask.devices.profiles import load_profile

    profile = load_profile(cfg.device)
    onnx = manifest.precisions("onnx")
    engines = [m for m in manifest.models if m.format == "tensorrt" and m.device == cfg.device]
    if cfg.precision not in onnx and not any(m.precision == cfg.precision for m in engines):
        raise BundleError(
            f"bundle {manifest.name} v{manifest.version} has no {cfg.precision} model (it has ONNX "
            f"{', '.join(onnx) or 'none'}); this box runs {cfg.precision}: export that precision"
        )
    if profile.has_tensorrt and manifest.opset is not None and int(manifest.opset) > profile.max_onnx_opset:
        raise BundleError(
            f"bundle {manifest.name} v{manifest.version} has ONNX opset {manifest.opset}; "
            f"{profile.name}'s TensorRT reads up to {profile.max_onnx_opset}: export with "
            f"--device {profile.name}"
        )


def _check_space(layout: Layout, manifest: Any, cfg: AgentConfig) -> None:
    need = sum(int(v.get("bytes", 0)) for v in manifest.files.values()) + (cfg.min_free_mib << 20)
    free = shutil.disk_usage(layout.releases).free
    if free < need:
        raise BundleError(
            f"{layout.releases} has {free >> 20} MiB free; the release needs {need >> 20} MiB "
            f"(bundle + min_free_mib {cfg.min_free_mib}); free space or lower keep"
        )


def _locate_package(layout: Layout, package: Optional[str], sha256: Optional[str]) -> Path:
    if package:
        p = Path(package)
        if not p.is_file():
            raise ConfigError(f"package {p} not found; pack a bundle with 'edgemask bundle pack BUNDLE --out FILE'")
        if sha256 and sha256_file(p) != check_sha256(sha256):
            raise BundleError(f"package {p} does not hash to {sha256[:12]}…; copy it again")
        return p
    if not sha256:
        raise ConfigError("pass the package (--package FILE) or the SHA-256 of an upload in incoming/ (--sha256 H)")
    done, part = layout.package(sha256), layout.partial(sha256)
    if done.is_file():
        return done
    if not part.is_file():
        raise BundleError(f"no upload {part.name} in {layout.incoming}; upload the package there first")
    got = sha256_file(part)
    if got != sha256.lower():
        raise BundleError(
            f"upload {part.name} is incomplete or damaged ({part.stat().st_size} bytes, SHA-256 "
            f"{got[:12]}…); resume the upload"
        )
    os.replace(part, done)
    return done


def _drop_upload(layout: Layout, pkg: Path) -> None:
    """Remove an upload in incoming/ (a package given by path elsewhere is the caller's)."""
    if pkg.parent == layout.incoming:
        with contextlib.suppress(FileNotFoundError):
            pkg.unlink()


def _prune(layout: Layout, state: AgentState, keep: int, log: LogFn) -> List[str]:
    keepers = {r for r in (state.current, state.previous) if r}
    rels = sorted(
        (p for p in layout.releases.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for p in rels:
        if p.name in keepers:
            continue
        if len(keepers) < keep:
            keepers.add(p.name)
            continue
        shutil.rmtree(p, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (layout.selftests / f"{p.name}.json").unlink()
        removed.append(p.name)
        log(f"removed old release {p.name}")
    for p in layout.releases.iterdir():  # staging folders of killed installs
        if p.name.startswith(".") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    return removed


def _release_version(layout: Layout, rid: Optional[str]) -> Optional[int]:
    if not rid:
        return None
    try:
        return int(json.loads((layout.release(rid) / "manifest.json").read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def _rollback_pending(
    layout: Layout, state: AgentState, cfg: AgentConfig, reason: str, log: LogFn, restart: bool
) -> Dict[str, Any]:
    """Undo a pending switch: ``current`` back to the release it came from, pending cleared."""
    pend = state.pending or {}
    back = pend.get("from")
    if back and layout.release(back).is_dir():
        switch_current(layout, back)
    elif back is None:
        remove_current(layout)
    log(f"rolled back from {pend.get('release')} to {back or 'nothing (first install)'}: {reason}")
    restart_error = None
    if restart and pend.get("step") in ("switched", "restarted", "healthy"):
        restart_error = _restart(cfg, log)
        if restart_error:
            log(f"warning: restarting the service on the old release failed: {restart_error}")
    state.pending = None
    state.last_error = reason
    state.record("rolled_back", release=pend.get("release"), to=back, reason=reason)
    save_state(layout, state)
    return {"rolled_back_from": pend.get("release"), "to": back, "restart_error": restart_error}


def _set_step(layout: Layout, state: AgentState, step: str) -> None:
    assert state.pending is not None
    state.pending["step"] = step
    save_state(layout, state)


def _repair_current(layout: Layout, state: AgentState, log: LogFn) -> None:
    """With nothing pending, ``current`` must be the committed release."""
    if state.pending is None and state.current and layout.current_release() != state.current:
        if layout.release(state.current).is_dir():
            switch_current(layout, state.current)
            log(f"current pointed elsewhere; reset to the committed {state.current}")


# --------------------------------------------------------------------------- commands


def install(
    root: str | os.PathLike,
    *,
    package: Optional[str] = None,
    sha256: Optional[str] = None,
    overrides: Optional[Dict[str, Any]] = None,
    commit: bool = True,
    log: LogFn = _quiet,
) -> Dict[str, Any]:
    """Install a packed bundle on this box; see the module docstring for the steps.

    Returns:
        ``{"action": "installed" | "already_installed" | "pending", "release", "version", "selftest", ...}``.

    Raises:
        AgentError: refused (bad package, signature, downgrade, device, space,
            self-test) or rolled back (restart, health); ``.result`` says more.
        ConfigError: bad agent.toml or arguments, or another agent is running.
    """
    from edgemask.bundle.pack import read_packed_manifest

    layout = Layout.at(root)
    cfg = load_agent_config(layout, overrides)
    steps: List[str] = []
    with agent_lock(layout):
        state = load_state(layout)
        if state.pending is not None:  # a previous install died after 'pending': undo it first
            _rollback_pending(layout, state, cfg, "an earlier install did not finish", log, restart=True)
        _repair_current(layout, state, log)
        pkg = _locate_package(layout, package, sha256)
        _step_done("received", log, steps)  # 1

        manifest, mbytes = read_packed_manifest(pkg)
        rid = release_id(manifest.version, sha256_bytes(mbytes))
        base = {
            "release": rid,
            "version": manifest.version,
            "name": manifest.name,
            "from": state.current,
            "steps": steps,
        }
        if rid == state.current:
            return _reinstall_of_committed(layout, state, pkg, rid, base, log)

        rel = _unpack_and_verify(layout, state, cfg, pkg, manifest, rid, base)
        _step_done("verified", log, steps)  # 2

        base["engine"] = _build_engine(rel, cfg, log)
        _step_done("engine", log, steps)  # 3

        base["selftest"] = _selftest(layout, state, cfg, rel, rid, base, log)
        _step_done("selftest", log, steps)  # 4

        state.pending = {
            "release": rid,
            "version": manifest.version,
            "from": state.current,
            "step": "pending",
            "t": round(time.time(), 3),
        }
        save_state(layout, state)
        _step_done("pending", log, steps)  # 5

        switch_current(layout, rid)
        _set_step(layout, state, "switched")
        _step_done("switched", log, steps)  # 6

        err = _restart(cfg, log)
        if err is None:
            _set_step(layout, state, "restarted")
            _step_done("restarted", log, steps)  # 7
            err = _health_error(cfg, rel, base)
            if err is None:
                _set_step(layout, state, "healthy")
                _step_done("healthy", log, steps)  # 8
        if err is not None:
            rb = _rollback_pending(layout, state, cfg, err, log, restart=True)
            raise AgentError(f"{rid} rolled back: {err}", {**base, "action": "rolled_back", "error": err, **rb})
        if not commit:
            log(
                f"{rid} runs and is healthy; commit it with 'edgemask device commit' (boot-check rolls it back otherwise)"
            )
            return {**base, "action": "pending"}
        _commit(layout, state)
        _step_done("committed", log, steps)  # 9
        removed = _prune(layout, state, cfg.keep, log)
        _drop_upload(layout, pkg)
        _step_done("cleaned", log, steps)  # 10
        return {**base, "action": "installed", "removed": removed}


def _refuse(layout: Layout, state: AgentState, rid: str, base: Dict[str, Any], msg: str, **more: Any) -> AgentError:
    """Record a refused install in state.json; the error to raise."""
    state.last_error = msg
    state.record("refused", release=rid, reason=msg)
    save_state(layout, state)
    return AgentError(msg, {**base, "action": "refused", "error": msg, **more})


def _reinstall_of_committed(
    layout: Layout, state: AgentState, pkg: Path, rid: str, base: Dict[str, Any], log: LogFn
) -> Dict[str, Any]:
    """Same manifest as the committed release: nothing to switch, but the package is still checked
    (a damaged or unsigned copy of it is refused, not reported as installed)."""
    from edgemask.bundle.pack import unpack_bundle
    from edgemask.bundle.signing import verify_signature

    try:
        with tempfile.TemporaryDirectory(prefix=".check-", dir=layout.releases) as tmp:
            unpack_bundle(pkg, Path(tmp) / "b")
            verify_signature(Path(tmp) / "b", layout.trusted)
    except BundleError as e:
        _drop_upload(layout, pkg)
        raise _refuse(layout, state, rid, base, str(e).splitlines()[0]) from None
    _drop_upload(layout, pkg)
    log(f"release {rid} is already installed and committed; nothing to do")
    return {**base, "action": "already_installed", "selftest": state.last_selftest}


def _unpack_and_verify(
    layout: Layout, state: AgentState, cfg: AgentConfig, pkg: Path, manifest: Any, rid: str, base: Dict[str, Any]
) -> Path:
    """Step 2: compatibility, space, unpack into ``releases/<rid>`` and verify signature, hashes, version."""
    from edgemask.bundle.pack import unpack_bundle
    from edgemask.bundle.signing import verify_signature
    from edgemask.utils.io import atomic_dir

    rel = layout.release(rid)
    try:
        _check_compatible(manifest, cfg)
        if not rel.is_dir():
            _check_space(layout, manifest, cfg)
            with atomic_dir(rel) as tmp:  # releases/.<rid>.*.partial until verified
                unpack_bundle(pkg, tmp, overwrite=True)
                verify_signature(
                    tmp, layout.trusted, installed_version=state.current_version, allow_downgrade=cfg.allow_downgrade
                )
        else:  # unpacked by an earlier, interrupted run: check it again all the same
            verify_signature(
                rel, layout.trusted, installed_version=state.current_version, allow_downgrade=cfg.allow_downgrade
            )
    except BundleError as e:
        _drop_upload(layout, pkg)
        if rel.is_dir() and rid not in (state.current, state.previous):
            shutil.rmtree(rel, ignore_errors=True)
        raise _refuse(layout, state, rid, base, str(e).splitlines()[0]) from None
    return rel


def _selftest(
    layout: Layout, state: AgentState, cfg: AgentConfig, rel: Path, rid: str, base: Dict[str, Any], log: LogFn
) -> Dict[str, Any]:
    """Step 4: golden outputs and probe on this box's runner, recorded; a failure removes the release."""
    from edgemask.fleet.selftest import selftest_release

    st = selftest_release(rel, cfg.backend, cfg.precision).to_dict()
    st.update(release=rid, t=round(time.time(), 3))
    atomic_write_text(layout.selftests / f"{rid}.json", json.dumps(st, indent=2) + "\n")
    state.last_selftest = st
    if not st["ok"]:
        shutil.rmtree(rel, ignore_errors=True)
        raise _refuse(
            layout,
            state,
            rid,
            base,
            f"self-test of {rid} failed on {cfg.backend}/{cfg.precision}: {st['problems'][0]}",
            selftest=st,
        )
    log(f"self-test ok: golden max |Δ| {st['golden_max_abs_diff']}, probe flip rate {st['probe_flip_rate']}")
    save_state(layout, state)
    return st


def _health_error(cfg: AgentConfig, rel: Path, base: Dict[str, Any]) -> Optional[str]:
    """Step 8: why ``/healthz`` does not report the new release (None when healthy or not configured)."""
    if not cfg.health_url:
        return None
    from edgemask.fleet.health import wait_healthy

    h = wait_healthy(cfg.health_url, _manifest_sha(rel), cfg.health_timeout_s, cfg.health_poll_s)
    base["health"] = {"ok": h.ok, "reason": h.reason, "seconds": h.seconds}
    return None if h.ok else f"health check failed: {h.reason}"


def _commit(layout: Layout, state: AgentState) -> None:
    pend = state.pending or {}
    if pend.get("release") != state.current:
        state.previous = state.current
    state.current = pend.get("release")
    state.current_version = pend.get("version")
    state.pending = None
    state.last_error = None
    state.record("committed", release=state.current)
    save_state(layout, state)


def _build_engine(rel: Path, cfg: AgentConfig, log: LogFn) -> Dict[str, Any]:
    """The box's TensorRT engine for the release (not exercised here: no TensorRT on this machine)."""
    from edgemask.devices.profiles import load_profile
    from edgemask.errors import NotAvailableError

    profile = load_profile(cfg.device)
    if cfg.backend != "tensorrt" or not profile.has_tensorrt:
        log(f"engine: not built ({cfg.device} runs backend {cfg.backend})")
        return {"built": False, "reason": f"backend {cfg.backend}"}
    from edgemask.bundle import load_bundle
    from edgemask.bundle.engines import bundle_cache_dir
    from edgemask.export.engine import build_engine

    try:
        # Into the bundle's engine cache (where the TensorRT runner looks), so the release stays as signed.
        r = build_engine(
            rel,
            cfg.device,
            cfg.precision,
            out_dir=bundle_cache_dir(load_bundle(rel)),
            add_to_bundle=False,
            on_warning=log,
        )
    except NotAvailableError as e:
        log(f"engine: not built, {str(e).splitlines()[0]}")
        return {"built": False, "reason": "no TensorRT here"}
    return {"built": True, "file": str(getattr(r, "path", "")), "precision": r.entry.precision}


def commit(root: str | os.PathLike, log: LogFn = _quiet) -> Dict[str, Any]:
    """Commit a pending release (installed with ``--no-commit`` and found healthy)."""
    layout = Layout.at(root)
    cfg = load_agent_config(layout)
    with agent_lock(layout):
        state = load_state(layout)
        if state.pending is None:
            return {"action": "nothing_pending", "release": state.current}
        if state.pending.get("step") != "healthy":
            raise ConfigError(
                f"release {state.pending.get('release')} is pending at step {state.pending.get('step')}, "
                "not healthy; run 'edgemask device rollback' or install it again"
            )
        rid = state.pending["release"]
        _commit(layout, state)
        _prune(layout, state, cfg.keep, log)
        return {"action": "committed", "release": rid}


def rollback(root: str | os.PathLike, log: LogFn = _quiet, reason: str = "asked to roll back") -> Dict[str, Any]:
    """Undo a pending switch, or go back from the committed release to the previous one."""
    layout = Layout.at(root)
    cfg = load_agent_config(layout)
    with agent_lock(layout):
        state = load_state(layout)
        if state.pending is not None:
            return {"action": "rolled_back", **_rollback_pending(layout, state, cfg, reason, log, restart=True)}
        prev = state.previous
        if not prev or not layout.release(prev).is_dir():
            raise ConfigError(f"{layout.root} has no previous release to roll back to (committed: {state.current})")
        old = state.current
        state.pending = {
            "release": prev,
            "version": _release_version(layout, prev),
            "from": old,
            "step": "pending",
            "t": round(time.time(), 3),
            "rollback": True,
        }
        save_state(layout, state)
        switch_current(layout, prev)
        _set_step(layout, state, "switched")
        err = _restart(cfg, log)
        if err is None and cfg.health_url:
            from edgemask.fleet.health import wait_healthy

            h = wait_healthy(
                cfg.health_url, _manifest_sha(layout.release(prev)), cfg.health_timeout_s, cfg.health_poll_s
            )
            err = None if h.ok else f"health check failed: {h.reason}"
        if err is not None:
            state.pending["step"] = "restarted"
            rb = _rollback_pending(layout, state, cfg, f"rollback to {prev} failed: {err}", log, restart=True)
            raise AgentError(
                f"rollback to {prev} failed ({err}); stayed on {old}", {"action": "rollback_failed", "error": err, **rb}
            )
        state.pending["step"] = "healthy"
        _commit(layout, state)
        log(f"rolled back from {old} to {prev}")
        return {"action": "rolled_back", "rolled_back_from": old, "to": prev}


def boot_check(root: str | os.PathLike, log: LogFn = _quiet) -> Dict[str, Any]:
    """At boot, before the service: roll back a switch that was never committed; repair ``current``."""
    layout = Layout.at(root)
    cfg = load_agent_config(layout)
    with agent_lock(layout):
        state = load_state(layout)
        if state.pending is not None:
            rb = _rollback_pending(layout, state, cfg, "not committed before restart (boot-check)", log, restart=False)
            return {"action": "rolled_back", **rb}
        _repair_current(layout, state, log)
        return {"action": "ok", "release": state.current}


def status(root: str | os.PathLike) -> Dict[str, Any]:
    """What this box runs: committed release and version, pending switch, last self-test, releases on disk."""
    layout = Layout.at(root)
    state = load_state(layout)
    cfg = load_agent_config(layout)
    rels = (
        sorted(p.name for p in layout.releases.iterdir() if p.is_dir() and not p.name.startswith("."))
        if layout.releases.is_dir()
        else []
    )
    uploads = {p.name: p.stat().st_size for p in layout.incoming.iterdir()} if layout.incoming.is_dir() else {}
    return {
        "root": str(layout.root),
        "device": cfg.device,
        "backend": cfg.backend,
        "precision": cfg.precision,
        "committed": state.current,
        "version": state.current_version,
        "previous": state.previous,
        "pending": state.pending,
        "current_link": layout.current_release(),
        "releases": rels,
        "uploads": uploads,
        "last_selftest": state.last_selftest,
        "last_error": state.last_error,
        "history": state.history[-5:],
    }


__all__ = ["AgentError", "DIE_ENV", "STEPS", "agent_lock", "boot_check", "commit", "install", "rollback", "status"]
