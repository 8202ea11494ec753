"""``edgemask device init|install|status|commit|rollback|boot-check|unit``: the on-box agent."""

from __future__ import annotations

import json
import shlex
from typing import List, Optional

import typer

from edgemask.cli._common import console, err_console, run_cli

device_app = typer.Typer(
    help="The on-box agent: install a signed bundle safely, commit, roll back.", no_args_is_help=True
)

_ROOT = typer.Option("/opt/edgemask", "--root", help="Install root of this box (releases/, current, state.json).")


def _log(msg: str) -> None:
    err_console.print(msg, highlight=False, markup=False)


def _emit(result: dict, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(result, sort_keys=True, default=str))
    else:
        console.print(text, highlight=False)


@device_app.command("init")
def init_cmd(
    root: str = _ROOT,
    device: str = typer.Option("x86-cpu", "--device", help="Device profile of this box ('edgemask devices list')."),
    backend: str = typer.Option("onnxrt", "--backend", help="Runner the service uses (onnxrt, tensorrt, ...)."),
    precision: str = typer.Option("fp32", "--precision", help="Precision the service runs."),
    restart: str = typer.Option(
        "",
        "--restart",
        help="Command that restarts the service, e.g. "
        "'systemctl restart edgemask' (split into argv here; never run by a shell).",
    ),
    health_url: str = typer.Option(
        "", "--health-url", help="The service's /healthz, e.g. http://127.0.0.1:9108/healthz."
    ),
    trusted_key: List[str] = typer.Option([], "--trusted-key", help="A signer's .pub to trust (repeatable)."),
    keep: int = typer.Option(3, "--keep", help="Releases kept on disk."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing agent.toml."),
) -> None:
    """Write <root>/agent.toml and copy trusted keys into <root>/trusted/.

    Python: edgemask.fleet.agent_config.AgentConfig(...), config_toml(cfg)
    """
    with run_cli():
        import shutil
        from pathlib import Path

        from edgemask.errors import ConfigError
        from edgemask.fleet.agent_config import AgentConfig, config_toml
        from edgemask.fleet.layout import Layout
        from edgemask.utils.io import atomic_write_text

        layout = Layout.at(root)
        if layout.config.exists() and not overwrite:
            raise ConfigError(f"{layout.config} exists; pass --overwrite to replace it")
        cfg = AgentConfig(
            device=device,
            backend=backend,
            precision=precision,
            restart=shlex.split(restart),
            health_url=health_url,
            keep=keep,
        ).validate("--options")
        from edgemask.devices.profiles import load_profile

        load_profile(device)
        for k in trusted_key:
            if not Path(k).is_file():
                raise ConfigError(f"trusted key {k} not found; copy the signer's .pub file here first")
        layout.ensure()
        layout.trusted.mkdir(exist_ok=True)
        for k in trusted_key:
            shutil.copyfile(k, layout.trusted / Path(k).name)
        atomic_write_text(layout.config, config_toml(cfg))
        console.print(
            f"wrote {layout.config}; {len(list(layout.trusted.glob('*.pub')))} trusted key(s) in {layout.trusted}",
            highlight=False,
        )


@device_app.command("install")
def install_cmd(
    root: str = _ROOT,
    package: Optional[str] = typer.Option(None, "--package", help="A packed bundle ('edgemask bundle pack')."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="SHA-256 of an upload in <root>/incoming/<sha>.part."),
    no_commit: bool = typer.Option(False, "--no-commit", help="Stop once healthy; commit with 'device commit'."),
    allow_downgrade: bool = typer.Option(
        False, "--allow-downgrade", help="Accept a bundle older than the committed one."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON line (for the controller)."),
) -> None:
    """Verify, unpack, self-test, switch, restart, health-check, then commit (or roll back).

    Python: edgemask.fleet.agent.install(root, package=FILE)
    """
    from edgemask.fleet.agent import AgentError, install

    with run_cli():
        try:
            r = install(
                root,
                package=package,
                sha256=sha256,
                commit=not no_commit,
                log=_log,
                overrides={"allow_downgrade": True} if allow_downgrade else None,
            )
        except AgentError as e:
            if as_json:
                typer.echo(json.dumps({"ok": False, **e.result}, sort_keys=True, default=str))
            raise
    st = r.get("selftest") or {}
    _emit(
        {"ok": True, **r},
        as_json,
        f"{r['action'].replace('_', ' ')}: {r['name']} v{r['version']} ({r['release']}); "
        f"probe flip rate {st.get('probe_flip_rate')}",
    )


@device_app.command("status")
def status_cmd(root: str = _ROOT, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Committed release and version, pending switch, last self-test and probe flip rate.

    Python: edgemask.fleet.agent.status(root)
    """
    with run_cli():
        from edgemask.fleet.agent import status

        s = status(root)
        st = s.get("last_selftest") or {}
        _emit(
            {"ok": True, **s},
            as_json,
            f"committed {s['committed']} (v{s['version']}), {s['backend']}/{s['precision']} on {s['device']}; "
            f"pending {s['pending'] and s['pending'].get('release')}; last self-test "
            f"{'ok' if st.get('ok') else st.get('problems') if st else 'none'}, probe flip rate "
            f"{st.get('probe_flip_rate')}",
        )


def _simple(fn_name: str, root: str, as_json: bool) -> None:
    import edgemask.fleet.agent as agent

    with run_cli():
        try:
            r = getattr(agent, fn_name)(root, log=_log)
        except agent.AgentError as e:
            if as_json:
                typer.echo(json.dumps({"ok": False, **e.result}, sort_keys=True, default=str))
            raise
    _emit({"ok": True, **r}, as_json, " ".join(f"{k}={v}" for k, v in r.items()))


@device_app.command("commit")
def commit_cmd(root: str = _ROOT, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Commit a release installed with --no-commit. Python: edgemask.fleet.agent.commit(root)"""
    _simple("commit", root, as_json)


@device_app.command("rollback")
def rollback_cmd(root: str = _ROOT, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Undo a pending switch, or go back to the previous release. Python: edgemask.fleet.agent.rollback(root)"""
    _simple("rollback", root, as_json)


@device_app.command("boot-check")
def boot_check_cmd(root: str = _ROOT, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """At boot, before the service: roll back a release that was switched in but never committed.

    Python: edgemask.fleet.agent.boot_check(root)
    """
    _simple("boot_check", root, as_json)


@device_app.command("unit")
def unit_cmd(
    root: str = _ROOT,
    service: str = typer.Option("edgemask.service", "--service", help="The service unit boot-check runs before."),
    output: str = typer.Option("edgemask-boot-check.service", "--output", "-o", help="Where to write the unit."),
) -> None:
    """Write the oneshot systemd unit that runs 'device boot-check' before the service.

    Python: edgemask.service.systemd.boot_check_unit_text(root)
    """
    with run_cli():
        from edgemask.service.systemd import boot_check_unit_text
        from edgemask.utils.io import atomic_write_text

        atomic_write_text(output, boot_check_unit_text(root, service=service))
        console.print(
            f"wrote {output}; install it with: sudo cp {output} /etc/systemd/system/ && "
            f"sudo systemctl enable {output.rsplit('/', 1)[-1]}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")


__all__ = ["register"]
