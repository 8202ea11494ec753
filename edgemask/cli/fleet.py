"""``edgemask fleet deploy | status | rollback | export-ansible``: many boxes over SSH."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from edgemask.cli._common import console, err_console, run_cli

fleet_app = typer.Typer(help="Roll a signed bundle out to camera boxes over SSH, in waves.", no_args_is_help=True)

_INV = typer.Option("devices/fleet.toml", "--inventory", "-i", help="Fleet inventory (see devices/fleet.example.toml).")
_HOSTS = typer.Option([], "--host", help="Only this box (repeatable; default: all).")


def _progress(ev: str, d: dict) -> None:
    if ev == "wave":
        err_console.print(f"wave {d['wave']}: {', '.join(d['hosts'])}", highlight=False, markup=False)
    elif ev == "done":
        ok = d.get("ok")
        what = d.get("action") or ""
        err_console.print(
            f"  {d.get('host')}: {'ok' if ok else 'FAILED'} {what} {'' if ok else d.get('error', '')}".rstrip(),
            highlight=False,
            markup=False,
        )
    elif ev == "halt":
        err_console.print(
            f"halted after wave {d['wave']}: {d['failed']} of {d['attempted']} boxes failed "
            f"(threshold {d['max_fail_percent']} %{', canary' if d.get('canary') else ''})",
            highlight=False,
            markup=False,
        )


@fleet_app.command("deploy")
def deploy_cmd(
    package: str = typer.Argument(..., help="A signed, packed bundle ('edgemask bundle pack')."),
    inventory: str = _INV,
    journal: Optional[str] = typer.Option(
        None, "--journal", help="Journal file (default fleet-journal-<sha12>.jsonl)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the deploy in the journal; boxes done are skipped."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --resume: try failed boxes again."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the wave plan and exit."),
    host: List[str] = _HOSTS,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Upload, verify, self-test, switch and health-check on every box, canary first, then in waves.

    Exits 1 if any box failed or the rollout halted. Python: edgemask.fleet.controller.deploy(inv, package)
    """
    with run_cli():
        from edgemask.fleet.controller import deploy, plan_text
        from edgemask.fleet.inventory import load_inventory

        inv = load_inventory(inventory)
        if dry_run:
            waves = plan_text(inv, host or None)
            r = inv.rollout
            console.print(
                f"{sum(map(len, waves))} boxes in {len(waves)} waves; halt when failures exceed "
                f"{r.max_fail_percent:g} % of boxes attempted (any canary failure); {r.concurrency} at "
                f"a time, {r.deadline_s:g} s per box",
                highlight=False,
            )
            for i, w in enumerate(waves):
                label = "canary" if i == 0 and r.canary else f"wave {i}"
                console.print(f"  {label}: {', '.join(w)}", highlight=False)
            return
        rep = deploy(
            inv,
            package,
            journal=journal,
            resume=resume,
            retry_failed=retry_failed,
            hosts=host or None,
            progress=_progress,
        )
        if as_json:
            typer.echo(json.dumps(rep.to_dict(), sort_keys=True, default=str))
        else:
            done = [h for h, v in rep.results.items() if v.get("ok")]
            console.print(
                f"{len(done)} ok ({len(rep.skipped)} from before), {len(rep.failed)} failed, "
                f"{len(rep.not_attempted)} not attempted; journal {rep.journal}",
                highlight=False,
            )
            for h in rep.failed:
                err_console.print(f"  {h}: {rep.results[h].get('error')}", highlight=False, markup=False)
        if not rep.ok:
            raise typer.Exit(code=1)


@fleet_app.command("status")
def status_cmd(
    inventory: str = _INV, host: List[str] = _HOSTS, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Each box's committed version, engine precision, last self-test and probe flip rate.

    Python: edgemask.fleet.controller.fleet_status(inv)
    """
    with run_cli():
        from rich.table import Table

        from edgemask.fleet.controller import fleet_status
        from edgemask.fleet.inventory import load_inventory

        res = fleet_status(load_inventory(inventory), host or None)
        if as_json:
            typer.echo(json.dumps(res, sort_keys=True, default=str))
        else:
            t = Table(title="fleet status")
            for c in ("box", "version", "release", "backend/precision", "self-test", "probe flip rate", "pending"):
                t.add_column(c)
            for h, s in res.items():
                if not s.get("ok"):
                    t.add_row(h, "?", "unreachable", "", "", "", "")
                    continue
                st = s.get("last_selftest") or {}
                fr = st.get("probe_flip_rate")
                t.add_row(
                    h,
                    str(s.get("version", "-")),
                    str(s.get("committed", "-")),
                    f"{s.get('backend', '-')}/{s.get('precision', '-')}",
                    "-" if not st else ("ok" if st.get("ok") else "failed"),
                    "-" if fr is None else f"{fr:.1%} of {st.get('probe_count')}",
                    str((s.get("pending") or {}).get("release", "")),
                )
            console.print(t)
            for h, s in res.items():
                if not s.get("ok"):
                    err_console.print(f"  {h}: {s.get('error')}", highlight=False, markup=False)
        if any(not s.get("ok") for s in res.values()):
            raise typer.Exit(code=1)


@fleet_app.command("rollback")
def rollback_cmd(inventory: str = _INV, host: List[str] = _HOSTS) -> None:
    """Roll every box (or --host ones) back to its previous release. Python: edgemask.fleet.controller.fleet_rollback(inv)"""
    with run_cli():
        from edgemask.fleet.controller import fleet_rollback
        from edgemask.fleet.inventory import load_inventory

        res = fleet_rollback(load_inventory(inventory), host or None, progress=_progress)
        bad = [h for h, v in res.items() if not v.get("ok")]
        console.print(f"{len(res) - len(bad)} rolled back, {len(bad)} failed", highlight=False)
        if bad:
            raise typer.Exit(code=1)


@fleet_app.command("export-ansible")
def export_ansible_cmd(
    package: str = typer.Argument(..., help="A signed, packed bundle ('edgemask bundle pack')."),
    inventory: str = _INV,
    out: str = typer.Option("ansible", "--out", "-o", help="Folder for inventory.yml and deploy.yml."),
) -> None:
    """Write an Ansible inventory + playbook (serial waves, max_fail_percentage) that drive the same device agent.

    Run it with: ansible-playbook -i OUT/inventory.yml OUT/deploy.yml.
    Python: edgemask.fleet.ansible.export_ansible(inv, package, out)
    """
    with run_cli():
        from edgemask.fleet.ansible import export_ansible
        from edgemask.fleet.inventory import load_inventory

        a, b = export_ansible(load_inventory(inventory), package, out)
        console.print(f"wrote {a} and {b}; run: ansible-playbook -i {a} {b}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(fleet_app, name="fleet")


__all__ = ["register"]
