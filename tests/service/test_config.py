"""RunConfig validation, config files and where secrets may come from."""

from __future__ import annotations

import os

import pytest

from edgemask.errors import ConfigError
from edgemask.service.config import RunConfig, config_with_file, load_secrets, parse_roi


def ok(**kw) -> RunConfig:
    kw.setdefault("source", "x.mp4")
    kw.setdefault("backend", "null")
    return RunConfig(**kw)


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"source": ""}, "exactly one video source"),
        ({"camera": 0}, "exactly one video source"),
        ({"detector": "hog"}, "unknown --detector"),
        ({"detector": "yunet"}, "needs --face-model"),
        ({"detect_every": 0}, "--detect-every"),
        ({"min_confidence": 1.5}, "--min-confidence"),
        ({"width": 640}, "--width and --height together"),
        ({"metrics_port": 70000}, "--metrics-port"),
        ({"mqtt_qos": 3}, "--mqtt-qos"),
        ({"roi": "1,2,3"}, "--roi"),
        ({"stall_timeout_s": 0}, "stall_timeout_s"),
        ({"precision": "FP16"}, "unknown --precision 'FP16'; choose one of: fp32, fp16, int8"),
        ({"source": "rtsp://admin:hunter2@cam.local/live"}, "EDGEMASK_SOURCE_PASSWORD"),
    ],
)
def test_validate_rejects_bad_values_with_one_line(kw, fragment):
    with pytest.raises(ConfigError, match=fragment) as e:
        ok(**kw).validate()
    assert "\n" not in str(e.value) and "hunter2" not in str(e.value)


def test_no_bundle_means_the_shipped_pretrained_one_or_a_one_line_error(monkeypatch):
    import edgemask.pretrained as pretrained

    monkeypatch.setattr(pretrained, "default_bundle", lambda: None)
    with pytest.raises(ConfigError, match="--bundle is required: this install ships no pretrained bundle") as e:
        ok(backend="onnxrt").validate()
    assert "\n" not in str(e.value)
    monkeypatch.setattr(pretrained, "default_bundle", lambda: pretrained.BUNDLE_DIR)
    cfg = ok(backend="onnxrt")
    cfg.validate()
    assert cfg.bundle == str(pretrained.BUNDLE_DIR)
    cfg = ok(backend="null")
    cfg.validate()
    assert cfg.bundle == ""  # the fake classifier needs none


def test_defaults_validate_and_round_trip():
    cfg = ok()
    cfg.validate()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.crop_margin == 0.15 and cfg.alert_on == ("no_mask", "mask_incorrect") and cfg.metrics_host == "127.0.0.1"
    assert parse_roi("10,20,30,40") == (10, 20, 30, 40)
    with pytest.raises(ConfigError, match="unknown run option"):
        RunConfig.from_dict({"camera_index": 0})


def test_secrets_come_from_the_environment_first(tmp_path):
    f = tmp_path / "edgemask.toml"
    f.write_text('[secrets]\nmqtt_password = "from-file"\nwebhook_token = "tok-file"\nsource_password = "cam-file"\n')
    os.chmod(f, 0o600)
    s = load_secrets(str(f), environ={"EDGEMASK_MQTT_PASSWORD": "from-env"})
    assert (s.mqtt_password, s.webhook_token, s.source_password) == ("from-env", "tok-file", "cam-file")
    assert "from-env" not in repr(s) and "tok-file" not in repr(s) and "cam-file" not in repr(s)
    assert load_secrets("", environ={"EDGEMASK_SOURCE_PASSWORD": "cam-env"}).source_password == "cam-env"
    assert load_secrets("", environ={}).mqtt_password == ""


def test_readable_secrets_file_is_refused(tmp_path):
    f = tmp_path / "edgemask.toml"
    f.write_text('[secrets]\nmqtt_password = "pw"\n')
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_secrets(str(f), environ={})


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("not toml [", "not valid TOML"),
        ("[cameras]\nx = 1\n", "unknown table"),
        ("[secrets]\napi_key = 'x'\n", "unknown secret"),
    ],
)
def test_bad_config_files(tmp_path, text, fragment):
    f = tmp_path / "c.toml"
    f.write_text(text)
    os.chmod(f, 0o600)
    with pytest.raises(ConfigError, match=fragment):
        load_secrets(str(f), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_secrets(str(tmp_path / "missing.toml"))


def test_command_line_beats_config_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\ndebounce_s = 5.0\nvote_window = 7\nalert_on = "no_mask"\n')
    cfg = config_with_file(ok(config_file=str(f), vote_window=3), explicit={"vote_window"})
    assert (cfg.debounce_s, cfg.vote_window, cfg.alert_on) == (5.0, 3, ("no_mask",))
    f.write_text("[run]\nvote_windows = 7\n")
    with pytest.raises(ConfigError, match="vote_windows"):
        config_with_file(ok(config_file=str(f)), explicit=set())


# --------------------------------------------------------------------------- typed config files (issue 9 item 4)


@pytest.mark.parametrize(
    "line, fragment",
    [
        ('debounce_s = "soon"', "[run] debounce_s = 'soon' must be a number (seconds), e.g. debounce_s = 30"),
        ('headless = "no"', "[run] headless = 'no' must be true or false"),
        ("headless = 1", "must be true or false"),
        ("vote_window = 2.5", "must be a whole number"),
        ("camera = -1", "camera index"),
        ("source = 5", "must be a string in quotes"),
        ("alert_on = [1, 2]", "must be class names"),
        ("debounce = 3\ndebounce_s = 4", "sets debounce_s twice"),
    ],
)
def test_config_file_values_are_typed(tmp_path, line, fragment):
    f = tmp_path / "c.toml"
    f.write_text(f"[run]\n{line}\n")
    with pytest.raises(ConfigError) as e:
        config_with_file(ok(config_file=str(f)), explicit=set())
    assert fragment in str(e.value) and "\n" not in str(e.value) and str(f) in str(e.value)


def test_config_file_accepts_the_names_the_docs_use(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text(
        '[run]\ndebounce = 5\nhealth_stale = 20\nstall-timeout = 3\nstart_timeout = 0\ndevice = "jetson-nano"\n'
        "open_timeout = 4\nheadless = true\nduration = 9\n"
    )
    cfg = config_with_file(ok(config_file=str(f)), explicit=set())
    assert (cfg.debounce_s, cfg.health_stale_s, cfg.stall_timeout_s, cfg.start_timeout_s) == (5.0, 20.0, 3.0, 0.0)
    assert cfg.device_profile == "jetson-nano" and cfg.open_timeout_s == 4.0 and cfg.headless is True
    assert cfg.duration_s == 9.0 and isinstance(cfg.debounce_s, float)


def test_every_run_option_of_the_cli_is_a_config_key():
    import typer
    from typer.main import get_command

    from edgemask.cli.run import register
    from edgemask.service.config import valid_option_names

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    run = get_command(app).commands["run"]
    names = {p.opts[0].lstrip("-").replace("-", "_") for p in run.params if p.opts[0].startswith("--")}
    names -= {"config", "log_level", "json", "help"}
    assert names <= set(valid_option_names()), names - set(valid_option_names())


def test_unknown_key_lists_the_valid_ones(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[run]\ndebounse = 3\n")
    with pytest.raises(ConfigError) as e:
        config_with_file(ok(config_file=str(f)), explicit=set())
    msg = str(e.value)
    assert "unknown run option(s) debounse (did you mean debounce?)" in msg
    assert "valid ones: " in msg and "health_stale" in msg and "stall_timeout" in msg and "vote_window" in msg


# --------------------------------------------------------------------------- redaction (issue 9 item 5)


@pytest.mark.parametrize("password", ["pa/ss", "p@ss/w:rd", "a%2Fb", "x#y?z", "s p/a"])
def test_url_password_is_never_printed(password):
    from edgemask.utils.redact import redact, register_secret, url_has_password

    url = f"rtsp://admin:{password}@cam.local:554/live"
    if " " not in password:
        assert url_has_password(url)
        assert password not in redact(f"cannot open {url}: refused") and "admin:***@" in redact(url)
    register_secret(password)  # a secret from the environment: hidden whatever it holds
    assert password not in redact(f"error: {url!r}")


def test_source_password_with_a_slash_is_refused_without_echo():
    with pytest.raises(ConfigError) as e:
        ok(source="rtsp://admin:hun/ter2@cam.local/live").validate()  # slipped through before: '/' ended the match
    assert "hun/ter2" not in str(e.value) and "EDGEMASK_SOURCE_PASSWORD" in str(e.value)


@pytest.mark.parametrize("call", ["mqtt", "webhook", "unit"])
def test_sinks_and_unit_never_echo_a_password_with_a_slash(call):
    from edgemask.service.alerts import check_http_url, parse_mqtt_url
    from edgemask.service.systemd import unit_text

    with pytest.raises(ConfigError) as e:
        if call == "mqtt":
            parse_mqtt_url("mqtt://edge:zq/xv9@broker:1883/t")  # before: "Port could not be cast ... 'se'"
        elif call == "webhook":
            check_http_url("https://u:zq/xv9@host:99/x")
        else:
            unit_text(["--source", "rtsp://admin:zq/xv9@cam/live"], exec_start=["/x/edgemask"])
    assert "zq/xv9" not in str(e.value) and "xv9" not in str(e.value)


def test_log_lines_are_redacted(caplog):
    import logging

    from edgemask.utils.redact import RedactingFilter

    rec = logging.LogRecord(
        "edgemask.x", logging.WARNING, __file__, 1, "reopening %s failed", ("rtsp://a:b/c@h/x",), None
    )
    RedactingFilter().filter(rec)
    assert rec.getMessage() == "reopening rtsp://a:***@h/x failed"
