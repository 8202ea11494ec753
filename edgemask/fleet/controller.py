"""``edgemask fleet deploy | status | rollback``: drive the device agent on many boxes over SSH.

Per box: connect (host key checked against known_hosts and, when the
inventory pins one, its SHA-256 fingerprint; never accepted blindly), upload
the package by SFTP into ``<install_dir>/incoming/<sha>.part`` resuming from
the size already there, then run ``edgemask device install --root DIR
--sha256 SHA --json`` on the box. The command line is built from an argv
list with ``shlex.quote`` on every element: inventory values never become
shell syntax. Each box has a deadline (silence counts as a failure); at most
``concurrency`` boxes are worked on at once; waves halt when failures pass
the threshold over boxes attempted. Everything goes to the journal first.

Needs ``asyncssh`` (``pip install 'edgemask[fleet]'``), imported lazily.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from edgemask.config import EDGEMASK_FLEET_CUT_AFTER_BYTES, env_int
from edgemask.errors import ConfigError, EdgemaskError
from edgemask.fleet.inventory import Box, Inventory
from edgemask.fleet.journal import Journal, replay
from edgemask.fleet.waves import over_threshold, plan_waves

CHUNK = 256 * 1024
#: Fault injection for tests and benchmarks: drop the connection after this many uploaded bytes.
CUT_ENV = EDGEMASK_FLEET_CUT_AFTER_BYTES

ProgressFn = Callable[[str, Dict[str, Any]], None]


class HostError(EdgemaskError):
    """One box could not be worked on; the message says why and how to fix it."""


def _asyncssh():
    try:
        import asyncssh
    except ImportError:
        raise ConfigError("fleet commands need asyncssh; install it with pip install 'edgemask[fleet]'") from None
    return asyncssh


@dataclass
class HostResult:
    host: str
    ok: bool
    action: str = ""
    error: str = ""
    release: Optional[str] = None
    version: Optional[int] = None
    uploaded_bytes: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    agent: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def remote_command(box: Box, *args: str) -> str:
    """The command line run on the box: every element quoted (no inventory value is shell syntax)."""
    return " ".join(shlex.quote(a) for a in [box.edgemask, *args])


async def _connect(box: Box, connect_timeout: float):
    asyncssh = _asyncssh()
    kh = os.path.expanduser(box.known_hosts)
    if not os.path.isfile(kh):
        raise HostError(
            f"known_hosts file {kh} not found; add the box's key with ssh-keyscan -p {box.ssh_port} "
            f"{box.host} >> {kh} after checking its fingerprint"
        )
    opts: Dict[str, Any] = dict(
        port=box.ssh_port, username=box.user, known_hosts=kh, connect_timeout=connect_timeout, agent_forwarding=False
    )
    if box.identity:
        ident = os.path.expanduser(box.identity)
        if not os.path.isfile(ident):
            raise HostError(f"identity {ident} not found; set 'identity' in the inventory to your SSH key")
        opts["client_keys"] = [ident]
    try:
        conn = await asyncssh.connect(box.host, **opts)
    except asyncssh.HostKeyNotVerifiable as e:
        raise HostError(
            f"host key of {box.host}:{box.ssh_port} not verified against {kh} ({e.reason}); if the "
            "box was reinstalled, check its new fingerprint and update known_hosts"
        ) from None
    except asyncssh.PermissionDenied:
        raise HostError(
            f"{box.user}@{box.host}:{box.ssh_port} refused our key; add it to the box's "
            "authorized_keys or set 'identity'"
        ) from None
    except socket.gaierror as e:
        raise HostError(f"unknown host {box.host!r} ({e.strerror}); check 'host' in the inventory") from None
    except (OSError, asyncio.TimeoutError, asyncssh.Error) as e:
        raise HostError(
            f"{box.host}:{box.ssh_port} unreachable ({e.__class__.__name__}: "
            f"{getattr(e, 'strerror', None) or e}); is the box on and sshd running?"
        ) from None
    if box.host_key and not box.host_key.startswith("SHA256:REPLACE"):
        fp = conn.get_server_host_key().get_fingerprint("sha256")
        if fp != box.host_key:
            conn.close()
            raise HostError(f"host key of {box.host} is {fp}, the inventory pins {box.host_key}; refusing the box")
    return conn


async def _upload(conn: Any, box: Box, package: Path, sha: str) -> tuple:
    """Resume-or-upload ``package`` to ``incoming/<sha>.part``; returns (bytes sent, resumed from)."""
    incoming = f"{box.install_dir.rstrip('/')}/incoming"
    part, done = f"{incoming}/{sha}.part", f"{incoming}/{sha}.embundle"
    size = package.stat().st_size
    cut = env_int(CUT_ENV, 0)
    async with conn.start_sftp_client() as sftp:
        await sftp.makedirs(incoming, exist_ok=True)
        if await sftp.exists(done):
            return 0, size
        have = 0
        if await sftp.exists(part):
            have = int((await sftp.stat(part)).size or 0)
            if have > size:  # not a prefix of this package: start over
                await sftp.remove(part)
                have = 0
        sent = 0
        async with sftp.open(part, "r+b" if have else "wb") as f:
            with open(package, "rb") as src:
                src.seek(have)
                while True:
                    block = src.read(CHUNK)
                    if not block:
                        break
                    if cut and sent + len(block) > cut:
                        await f.write(block[: cut - sent], have + sent)
                        raise HostError(f"connection cut after {cut} bytes (fault injection {CUT_ENV})")
                    await f.write(block, have + sent)
                    sent += len(block)
        return sent, have


def _agent_json(stdout: str) -> Dict[str, Any]:
    for line in reversed((stdout or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


async def _run_agent(conn: Any, box: Box, args: Sequence[str]) -> Dict[str, Any]:
    r = await conn.run(remote_command(box, *args), check=False)
    out = r.stdout if isinstance(r.stdout, str) else (r.stdout or b"").decode("utf-8", "replace")
    err = r.stderr if isinstance(r.stderr, str) else (r.stderr or b"").decode("utf-8", "replace")
    res = _agent_json(out)
    if r.exit_status == 127 or ("command not found" in err) or ("No such file" in err and not res):
        raise HostError(
            f"the agent {box.edgemask!r} is not installed on {box.host}; set 'edgemask' in the "
            "inventory to its path (e.g. /opt/edgemask/venv/bin/edgemask)"
        )
    if r.exit_status != 0:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        msg = res.get("error") or next((ln for ln in reversed(lines) if "error:" in ln), lines[-1] if lines else "")
        msg = msg.split("error:", 1)[-1].strip() if "error:" in msg else msg
        res.setdefault("ok", False)
        res["error"] = msg or f"agent exited {r.exit_status}"
    return res


async def deploy_box(
    box: Box, package: Path, sha: str, deadline_s: float, extra_args: Sequence[str] = ()
) -> HostResult:
    """Upload + install on one box within ``deadline_s``; never raises (the result says what failed)."""
    t0 = time.monotonic()
    res = HostResult(box.name, False)

    async def work() -> None:
        conn = await _connect(box, connect_timeout=min(30.0, deadline_s))
        try:
            res.uploaded_bytes, res.resumed_from = await _upload(conn, box, package, sha)
            a = await _run_agent(
                conn, box, ["device", "install", "--root", box.install_dir, "--sha256", sha, "--json", *extra_args]
            )
        finally:
            conn.close()
        res.agent = a
        res.ok = bool(a.get("ok"))
        res.action = str(a.get("action", ""))
        res.error = "" if res.ok else str(a.get("error") or "agent gave no result")
        if not res.ok and res.action in ("rolled_back", "refused"):
            res.error = f"{res.action.replace('_', ' ')}: {res.error}"
        res.release, res.version = a.get("release"), a.get("version")

    try:
        await asyncio.wait_for(work(), timeout=deadline_s)
    except asyncio.TimeoutError:
        res.ok, res.error = False, f"no result within the deadline of {deadline_s:g} s (silence counts as failure)"
    except HostError as e:
        res.ok, res.error = False, str(e)
    except (OSError, EOFError) as e:
        res.ok, res.error = False, f"connection lost ({e.__class__.__name__}: {e})"
    except Exception as e:  # asyncssh errors mid-session
        if e.__class__.__module__.startswith("asyncssh"):
            res.ok, res.error = False, f"SSH error ({e.__class__.__name__}: {e})"
        else:
            raise
    res.seconds = round(time.monotonic() - t0, 2)
    return res


async def _run_each(boxes: Sequence[Box], concurrency: int, fn: Callable[[Box], Any]) -> List[Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(b: Box) -> Any:
        async with sem:
            return await fn(b)

    return list(await asyncio.gather(*(one(b) for b in boxes)))


@dataclass
class DeployReport:
    journal: str
    waves: List[List[str]]
    results: Dict[str, Dict[str, Any]]
    halted: Optional[Dict[str, Any]] = None
    skipped: List[str] = field(default_factory=list)  # done in an earlier run (resume)
    not_attempted: List[str] = field(default_factory=list)

    @property
    def failed(self) -> List[str]:
        return [h for h, r in self.results.items() if not r.get("ok")]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.halted and not self.not_attempted

    def to_dict(self) -> Dict[str, Any]:
        return {
            "journal": self.journal,
            "waves": self.waves,
            "results": self.results,
            "halted": self.halted,
            "skipped": self.skipped,
            "not_attempted": self.not_attempted,
            "failed": self.failed,
            "ok": self.ok,
        }


def default_journal(package_sha: str) -> Path:
    return Path(f"fleet-journal-{package_sha[:12]}.jsonl")


def deploy(
    inventory: Inventory,
    package: str | os.PathLike,
    *,
    journal: Optional[str] = None,
    resume: bool = False,
    retry_failed: bool = False,
    hosts: Optional[Sequence[str]] = None,
    extra_args: Sequence[str] = (),
    progress: Optional[ProgressFn] = None,
) -> DeployReport:
    """Roll ``package`` out to the inventory in waves; see the module docstring.

    Raises:
        ConfigError: bad package, a journal that exists without ``resume``
            (or belongs to another package), no asyncssh.
    """
    from edgemask.bundle.pack import read_packed_manifest
    from edgemask.utils.io import sha256_file

    _asyncssh()
    pkg = Path(package)
    if not pkg.is_file():
        raise ConfigError(f"package {pkg} not found; make it with 'edgemask bundle pack BUNDLE --out {pkg}'")
    manifest, _ = read_packed_manifest(pkg)
    sha = sha256_file(pkg)
    jpath = Path(journal) if journal else default_journal(sha)
    j = Journal(jpath)
    prev = replay(j)
    progress = progress or (lambda ev, d: None)
    boxes = [inventory.box(h) for h in hosts] if hosts else list(inventory.boxes)
    if prev.plan is not None:
        if not resume:
            raise ConfigError(
                f"journal {jpath} already holds a deploy of this package; pass --resume to continue "
                "it, or --journal NEW to start another"
            )
        if prev.plan.get("package_sha256") != sha:
            raise ConfigError(
                f"journal {jpath} is for package {str(prev.plan.get('package_sha256'))[:12]}…, not "
                f"{sha[:12]}…; pass the same package to --resume, or another --journal"
            )
        waves = [list(w) for w in prev.plan["waves"]]
        j.append("resume", retry_failed=retry_failed)
    else:
        if resume:
            raise ConfigError(f"nothing to resume: journal {jpath} has no deploy; run without --resume")
        waves = plan_waves([b.name for b in boxes], inventory.rollout)
        j.append(
            "plan",
            package=str(pkg),
            package_sha256=sha,
            bundle={"name": manifest.name, "version": manifest.version},
            waves=waves,
            rollout=asdict(inventory.rollout),
        )
    r = inventory.rollout
    results: Dict[str, Dict[str, Any]] = {
        h: dict(rec.get("result", {}), ok=rec.get("ok")) for h, rec in prev.results.items()
    }
    skipped = [h for h, v in results.items() if v.get("ok")]
    report = DeployReport(str(jpath), waves, results, skipped=skipped)
    by_name = {b.name: b for b in inventory.boxes}

    async def run_wave(todo: List[Box]) -> None:
        async def one(b: Box) -> HostResult:
            j.append("start", host=b.name)
            progress("start", {"host": b.name})
            hr = await deploy_box(b, pkg, sha, float(b.deadline_s or r.deadline_s), extra_args)
            j.append("done", host=b.name, ok=hr.ok, result=hr.to_dict())
            progress("done", hr.to_dict())
            return hr

        for hr in await _run_each(todo, r.concurrency, one):
            results[hr.host] = hr.to_dict()

    for wi, wave in enumerate(waves):
        missing = [h for h in wave if h not in by_name]
        if missing:
            raise ConfigError(
                f"the journal's plan names {', '.join(missing)}, which the inventory no longer has; "
                "put them back or start over with another --journal"
            )
        todo = []
        for h in wave:
            prior = results.get(h)
            if prior is None:  # never attempted, or started by a controller that died before its result
                todo.append(by_name[h])
            elif not prior.get("ok") and retry_failed:
                todo.append(by_name[h])
        if todo:
            progress("wave", {"wave": wi, "hosts": [b.name for b in todo]})
            asyncio.run(run_wave(todo))
        attempted = [h for w in waves[: wi + 1] for h in w if h in results]
        failed = [h for h in attempted if not results[h].get("ok")]
        is_canary = wi == 0 and r.canary > 0
        if over_threshold(len(failed), len(attempted), r.max_fail_percent, canary=is_canary):
            report.halted = {
                "wave": wi,
                "failed": len(failed),
                "attempted": len(attempted),
                "max_fail_percent": r.max_fail_percent,
                "canary": is_canary,
            }
            j.append("halt", **report.halted)
            progress("halt", report.halted)
            report.not_attempted = [h for w in waves[wi + 1 :] for h in w if h not in results]
            return report
    j.append("finished", failed=report.failed)
    return report


def plan_text(inventory: Inventory, hosts: Optional[Sequence[str]] = None) -> List[List[str]]:
    """The waves ``deploy`` would run (for ``--dry-run``)."""
    boxes = [inventory.box(h) for h in hosts] if hosts else list(inventory.boxes)
    return plan_waves([b.name for b in boxes], inventory.rollout)


def run_on_boxes(
    inventory: Inventory,
    args_for: Callable[[Box], List[str]],
    *,
    hosts: Optional[Sequence[str]] = None,
    progress: Optional[ProgressFn] = None,
) -> Dict[str, Dict[str, Any]]:
    """Run one agent command on every box (bounded concurrency, deadline each); {host: agent JSON or error}."""
    _asyncssh()
    boxes = [inventory.box(h) for h in hosts] if hosts else list(inventory.boxes)
    r = inventory.rollout

    async def one(b: Box) -> Dict[str, Any]:
        async def work() -> Dict[str, Any]:
            conn = await _connect(b, connect_timeout=min(30.0, float(b.deadline_s or r.deadline_s)))
            try:
                return await _run_agent(conn, b, args_for(b))
            finally:
                conn.close()

        try:
            out = await asyncio.wait_for(work(), timeout=float(b.deadline_s or r.deadline_s))
        except asyncio.TimeoutError:
            out = {"ok": False, "error": "no answer within the deadline"}
        except HostError as e:
            out = {"ok": False, "error": str(e)}
        except (OSError, EOFError) as e:
            out = {"ok": False, "error": f"connection lost ({e})"}
        if progress:
            progress("done", {"host": b.name, **out})
        return {"host": b.name, **out}

    async def all_() -> List[Dict[str, Any]]:
        return await _run_each(boxes, r.concurrency, one)

    return {d["host"]: d for d in asyncio.run(all_())}


def fleet_status(inventory: Inventory, hosts: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, Any]]:
    return run_on_boxes(inventory, lambda b: ["device", "status", "--root", b.install_dir, "--json"], hosts=hosts)


def fleet_rollback(
    inventory: Inventory, hosts: Optional[Sequence[str]] = None, progress: Optional[ProgressFn] = None
) -> Dict[str, Dict[str, Any]]:
    return run_on_boxes(
        inventory, lambda b: ["device", "rollback", "--root", b.install_dir, "--json"], hosts=hosts, progress=progress
    )


__all__ = [
    "CUT_ENV",
    "DeployReport",
    "HostError",
    "HostResult",
    "deploy",
    "deploy_box",
    "fleet_rollback",
    "fleet_status",
    "plan_text",
    "remote_command",
    "run_on_boxes",
]
