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


@pytest.mark.parametrize("kw, fragment", [
    ({"source": ""}, "exactly one video source"),
    ({"camera": 0}, "exactly one video source"),
    ({"backend": "onnxrt"}, "--bundle is required"),
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
])
def test_validate_rejects_bad_values_with_one_line(kw, fragment):
    with pytest.raises(ConfigError, match=fragment) as e:
        ok(**kw).validate()
    assert "\n" not in str(e.value) and "hunter2" not in str(e.value)


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


@pytest.mark.parametrize("text, fragment", [
    ("not toml [", "not valid TOML"),
    ("[cameras]\nx = 1\n", "unknown table"),
    ("[secrets]\napi_key = 'x'\n", "unknown secret"),
])
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
    f.write_text('[run]\nvote_windows = 7\n')
    with pytest.raises(ConfigError, match="vote_windows"):
        config_with_file(ok(config_file=str(f)), explicit=set())
