"""Device profiles: the shipped files, validation errors, search order, planning, detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemask.devices import (
    list_profiles,
    load_all_profiles,
    load_profile,
    parse_profile,
    plan_dla,
    plan_precision,
    profile_dirs,
    profile_name_for,
    tensorrt_version_matches,
)
from edgemask.errors import ConfigError

EXPECTED = {
    "jetson-nano",
    "jetson-tx2",
    "jetson-xavier-nx",
    "jetson-agx-xavier",
    "jetson-orin-nano",
    "jetson-orin-nx-8gb",
    "jetson-orin-nx-16gb",
    "jetson-agx-orin",
    "x86-cpu",
    "x86-cuda",
}
NANO_TEXT = (Path(__file__).resolve().parents[2] / "devices" / "jetson-nano.toml").read_text()


def test_all_shipped_profiles_load_and_fleet_example_is_not_a_profile():
    assert set(list_profiles()) == EXPECTED
    assert "fleet.example" not in list_profiles()
    for p in load_all_profiles():
        assert p.name in EXPECTED and p.source.endswith(f"{p.name}.toml")


@pytest.mark.parametrize(
    "name,cc,trt,dla,int8,opset",
    [
        ("jetson-nano", "5.3", "8.2", 0, False, 13),
        ("jetson-tx2", "6.2", "8.2", 0, False, 13),
        ("jetson-xavier-nx", "7.2", "8.5", 2, True, 17),
        ("jetson-agx-xavier", "7.2", "8.5", 2, True, 17),
        ("jetson-orin-nano", "8.7", "10.3", 0, True, 20),
        ("jetson-orin-nx-8gb", "8.7", "10.3", 1, True, 20),
        ("jetson-orin-nx-16gb", "8.7", "10.3", 2, True, 20),
        ("jetson-agx-orin", "8.7", "10.3", 2, True, 20),
    ],
)
def test_jetson_facts(name, cc, trt, dla, int8, opset):
    p = load_profile(name)
    assert (p.compute_capability, p.tensorrt, p.dla_cores, "int8" in p.fast_precisions, p.max_onnx_opset) == (
        cc,
        trt,
        dla,
        int8,
        opset,
    )
    assert p.is_jetson and p.jetpack and p.l4t and "fp16" in p.fast_precisions
    assert "nvarguscamerasrc" in p.camera_pipeline("csi") and "appsink" in p.camera_pipeline("usb", index=1)
    assert "/dev/video1" in p.camera_pipeline("usb", index=1)


def test_x86_profiles():
    cpu, cuda = load_profile("x86-cpu"), load_profile("x86-cuda")
    assert not cpu.has_tensorrt and cpu.backends[0] == "onnxrt" and cpu.camera_pipeline("usb", index=2) == "v4l2:2"
    assert cuda.has_tensorrt and cuda.compute_capability == "" and cuda.backends[0] == "tensorrt"
    with pytest.raises(ConfigError, match="no CSI camera"):
        cpu.camera_pipeline("csi")


def test_unknown_name_lists_known_ones_and_suggests():
    with pytest.raises(ConfigError) as e:
        load_profile("jetson-nan")
    msg = str(e.value)
    assert "did you mean 'jetson-nano'" in msg and "x86-cuda" in msg and "\n" not in msg


def _edit(old: str, new: str) -> str:
    assert old in NANO_TEXT
    return NANO_TEXT.replace(old, new, 1)


@pytest.mark.parametrize(
    "text,fragment",
    [
        (_edit("dla_cores = 0\n", ""), "missing the field 'gpu.dla_cores'"),
        (_edit("dla_cores = 0", "dla_core = 0"), "unknown field 'gpu.dla_core' (did you mean 'gpu.dla_cores'?)"),
        (_edit("dla_cores = 0", 'dla_cores = "0"'), "'gpu.dla_cores' should be int, got str"),
        (_edit('compute_capability = "5.3"', "compute_capability = 5.3"), "'gpu.compute_capability' should be str"),
        (_edit('fast_precisions = ["fp32", "fp16"]', 'fast_precisions = ["fp32", "fp8"]'), "has 'fp8'"),
        (_edit('kind = "jetson"', 'kind = "arm"'), "'kind' is 'arm'"),
        (_edit('tensorrt = "8.2"', 'tensorrt = "eight"'), "'software.tensorrt' is 'eight'"),
        (_edit("[software]", "[softwere]"), "unknown table 'softwere' (did you mean 'software'?)"),
        (_edit("{width}", "{widht}"), "'camera.csi' has a bad placeholder"),
        (_edit("max_onnx_opset = 13", "max_onnx_opset = 3"), "'software.max_onnx_opset' is 3"),
        (_edit('tensorrt = "8.2"', 'tensorrt = "8.2"\ntensorrt_also = ["ten"]'), "'software.tensorrt_also' is 'ten'"),
        (
            _edit('tensorrt = "8.2"', 'tensorrt = "8.2"\ntensorrt_also = "8.5"'),
            "'software.tensorrt_also' should be list",
        ),
        ("name = [", "is not valid TOML"),
    ],
)
def test_bad_profiles_give_one_line_errors_naming_the_field(text, fragment):
    with pytest.raises(ConfigError) as e:
        parse_profile(text, where="bad.toml", expected_name="jetson-nano")
    assert fragment in str(e.value)
    assert "\n" not in str(e.value) and str(e.value).startswith("bad.toml")


def test_name_must_match_file(tmp_path, monkeypatch):
    (tmp_path / "my-box.toml").write_text(NANO_TEXT)  # name = "jetson-nano" inside
    monkeypatch.setenv("EDGEMASK_DEVICES_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="file is my-box.toml"):
        load_profile("my-box")


def test_env_dir_is_searched_first_and_can_override(tmp_path, monkeypatch):
    custom = NANO_TEXT.replace("workspace_mib = 256", "workspace_mib = 128")
    (tmp_path / "jetson-nano.toml").write_text(custom)
    (tmp_path / "lab-nano.toml").write_text(custom.replace('name = "jetson-nano"', 'name = "lab-nano"'))
    monkeypatch.setenv("EDGEMASK_DEVICES_DIR", str(tmp_path))
    assert load_profile("jetson-nano").workspace_mib == 128
    assert load_profile("lab-nano").name == "lab-nano"
    assert "lab-nano" in list_profiles() and EXPECTED < set(list_profiles())
    monkeypatch.delenv("EDGEMASK_DEVICES_DIR")
    assert load_profile("jetson-nano").workspace_mib == 256


def test_installed_layout_is_found(tmp_path, monkeypatch):
    """A wheel puts profiles in <prefix>/share/edgemask/devices; pretend no checkout exists."""
    import sys

    import edgemask

    share = tmp_path / "prefix" / "share" / "edgemask" / "devices"
    share.mkdir(parents=True)
    (share / "jetson-nano.toml").write_text(NANO_TEXT)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(edgemask, "__file__", str(tmp_path / "site" / "edgemask" / "__init__.py"))
    monkeypatch.delenv("EDGEMASK_DEVICES_DIR", raising=False)
    assert list_profiles() == ["jetson-nano"]
    assert load_profile("jetson-nano").source == str(share / "jetson-nano.toml")


def test_user_and_system_data_paths_are_searched(tmp_path, monkeypatch):
    """pip puts data files under the scheme's data path: ~/.local for --user, /usr/local for a
    system pip on Ubuntu/JetPack, where sys.prefix is /usr. Both must be found."""
    import sys
    import sysconfig

    import edgemask

    user = tmp_path / "home" / ".local"
    system = tmp_path / "usr-local"
    for root, name in ((user, "lab-a"), (system, "lab-b")):
        d = root / "share" / "edgemask" / "devices"
        d.mkdir(parents=True)
        (d / f"{name}.toml").write_text(NANO_TEXT.replace('name = "jetson-nano"', f'name = "{name}"'))
    real_get_path = sysconfig.get_path

    def fake_get_path(name, scheme=None, *a, **kw):
        if name == "data":
            return str(user if scheme and scheme.endswith("_user") else system)
        return real_get_path(name, scheme, *a, **kw) if scheme else real_get_path(name)

    monkeypatch.setattr(sysconfig, "get_path", fake_get_path)
    # Python 3.8 has no get_preferred_scheme (datadirs then uses "posix_user" itself).
    monkeypatch.setattr(sysconfig, "get_preferred_scheme", lambda key: "posix_user", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "usr"))
    monkeypatch.setattr(edgemask, "__file__", str(tmp_path / "site" / "edgemask" / "__init__.py"))
    monkeypatch.delenv("EDGEMASK_DEVICES_DIR", raising=False)
    assert list_profiles() == ["lab-a", "lab-b"]


def test_a_devices_folder_beside_site_packages_is_not_a_checkout(tmp_path, monkeypatch):
    import sys

    import edgemask

    site = tmp_path / "site-packages"
    (site / "devices").mkdir(parents=True)  # some other package's folder
    (site / "devices" / "jetson-nano.toml").write_text(NANO_TEXT)
    monkeypatch.setattr(edgemask, "__file__", str(site / "edgemask" / "__init__.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty-prefix"))
    monkeypatch.delenv("EDGEMASK_DEVICES_DIR", raising=False)
    assert site / "devices" not in profile_dirs() and "jetson-nano" not in list_profiles()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'edgemask'\n")  # now it is a checkout
    monkeypatch.setattr(edgemask, "__file__", str(tmp_path / "edgemask" / "__init__.py"))
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "jetson-nano.toml").write_text(NANO_TEXT)
    assert "jetson-nano" in list_profiles()


def test_plan_precision_nano_int8_falls_back_to_fp16_with_a_warning():
    nano = load_profile("jetson-nano")
    prec, warnings = plan_precision(nano, "int8")
    assert prec == "fp16" and len(warnings) == 1
    assert "no fast INT8" in warnings[0] and "building fp16 instead" in warnings[0] and "5.3" in warnings[0]
    assert plan_precision(nano, "fp16") == ("fp16", [])
    assert plan_precision(load_profile("jetson-orin-nano"), "int8") == ("int8", [])
    prec, w = plan_precision(load_profile("x86-cpu"), "fp16")
    assert prec == "fp32" and w
    with pytest.raises(ConfigError, match="precision 'int4'"):
        plan_precision(nano, "int4")


def test_plan_dla():
    orin_nano, agx = load_profile("jetson-orin-nano"), load_profile("jetson-agx-orin")
    core, prec, w = plan_dla(orin_nano, 0, "int8")
    assert core is None and prec == "int8" and "no DLA cores: building a GPU engine instead" in w[0]
    assert plan_dla(agx, 1, "int8") == (1, "int8", [])
    assert plan_dla(agx, None, "fp32") == (None, "fp32", [])
    core, prec, w = plan_dla(agx, 0, "fp32")
    assert (core, prec) == (0, "fp16") and "DLA runs fp16 and int8 only" in w[0]
    with pytest.raises(ConfigError, match="there is no DLA core 2"):
        plan_dla(agx, 2, "fp16")
    with pytest.raises(ConfigError, match="1 DLA core"):
        plan_dla(load_profile("jetson-orin-nx-8gb"), 1, "fp16")


@pytest.mark.parametrize(
    "model,mem,gpu,expected",
    [
        ("NVIDIA Jetson Nano Developer Kit", 4, False, "jetson-nano"),
        ("NVIDIA Jetson Orin Nano Developer Kit", 8, False, "jetson-orin-nano"),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", 15.3, False, "jetson-orin-nx-16gb"),
        ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", 7.4, False, "jetson-orin-nx-8gb"),
        ("NVIDIA Jetson AGX Orin Developer Kit", 30, False, "jetson-agx-orin"),
        ("NVIDIA Jetson Xavier NX Developer Kit", 8, False, "jetson-xavier-nx"),
        ("Jetson AGX Xavier", 32, False, "jetson-agx-xavier"),
        ("NVIDIA Jetson TX2", 8, False, "jetson-tx2"),
        ("NVIDIA Jetson TX2 NX Developer Kit", 4, False, "jetson-tx2"),
        (None, 64, True, "x86-cuda"),
        (None, 64, False, "x86-cpu"),
    ],
)
def test_profile_name_for(model, mem, gpu, expected):
    assert profile_name_for(model, mem, gpu) == expected


def test_a_jetson_without_a_profile_is_not_called_a_pc():
    with pytest.raises(ConfigError, match="has no device profile") as e:
        profile_name_for("NVIDIA Jetson TX1", 4, True)
    assert "--device" in str(e.value) and "\n" not in str(e.value)


def test_tensorrt_version_matches():
    assert tensorrt_version_matches("8.5", "8.5.2.2")
    assert tensorrt_version_matches("10", "10.3.0")
    assert not tensorrt_version_matches("8.5", "8.6.2")
    assert not tensorrt_version_matches("10.3", "10.30.0")
    assert not tensorrt_version_matches("", "10.3.0")


@pytest.mark.parametrize(
    "name,yes,no",
    [
        # what each box really has: JetPack's TensorRT on Jetsons (no JetPack has 11), the pip wheels on x86
        ("jetson-nano", ["8.2.1.8"], ["8.5.2.2", "10.3.0.30"]),
        ("jetson-xavier-nx", ["8.5.2.2", "8.2.1.8"], ["8.6.2.3", "10.3.0.30"]),
        ("jetson-orin-nano", ["10.3.0.30", "8.6.2.3", "8.5.2.2"], ["11.4.0.106", "10.16.1.11", "8.2.1.8"]),
        ("jetson-agx-orin", ["10.3.0.30", "8.6.2.3"], ["11.4.0.106"]),
        ("x86-cuda", ["10.3.0", "10.16.1.11", "11.4.0.106"], ["8.6.1", "12.0.0"]),
        ("x86-cpu", [], ["10.3.0"]),
    ],
)
def test_each_profile_accepts_the_tensorrt_its_device_really_has(name, yes, no):
    p = load_profile(name)
    assert [v for v in yes if p.accepts_tensorrt(v)] == yes
    assert [v for v in no if p.accepts_tensorrt(v)] == []


def test_tensorrt_text_and_opsets_per_version():
    orin = load_profile("jetson-orin-nano")
    assert orin.tensorrt_versions == ("10.3", "8.6", "8.5")
    assert orin.tensorrt_text() == "10.3 (JetPack 6.2), 8.6 or 8.5"
    assert load_profile("jetson-nano").tensorrt_text() == "8.2 (JetPack 4.6.1)"
    assert load_profile("x86-cuda").tensorrt_text() == "10 or 11"
    # the parser of the TensorRT that really builds decides the opset warning
    assert orin.max_onnx_opset_for("10.3.0.30") == 20 and orin.max_onnx_opset_for("8.5.2.2") == 17
    assert load_profile("jetson-xavier-nx").max_onnx_opset_for("8.2.1.8") == 13
    assert load_profile("x86-cuda").max_onnx_opset_for("11.4.0") == 20 and orin.max_onnx_opset_for(None) == 20
    assert load_profile("x86-cuda").to_dict()["tensorrt_also"] == ["11"]
