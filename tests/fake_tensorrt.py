"""A recording stand-in for the ``tensorrt`` Python module, for tests on machines without TensorRT.

``FakeTensorRT(version)`` is shaped after the documented TensorRT Python API of
that version and records the calls the engine builder makes, so tests check
*our* calls and bookkeeping, not TensorRT. The ``fake_trt`` fixture of
tests/conftest.py installs one as ``sys.modules["tensorrt"]``.
"""

from __future__ import annotations

from types import SimpleNamespace


class FakeTensorRT:
    """Records the calls engine_from_onnx makes; shaped after the TensorRT 8.x / 10.x / 11.x Python API.

    What differs by version is what the real bindings wheels of 8.6.1, 10.3 and
    11.4 have (tests/backends/test_tensorrt_conformance.py checks them):
    NetworkDefinitionCreationFlag EXPLICIT_BATCH=0 before 11 (STRONGLY_TYPED=1
    in 10.x) and only STRONGLY_TYPED=0 in 11; BuilderFlag FP16/INT8, the IInt8
    calibrator classes, ``config.int8_calibrator`` and
    ``set_calibration_profile`` only before 11. ``builder_fails``: TensorRT
    imports but ``trt.Builder`` raises as the real one does without a GPU.
    """

    def __init__(
        self,
        version: str = "10.3.0.26",
        parse_ok: bool = True,
        build_ok: bool = True,
        timing_cache_accepted: bool = True,
        builder_fails: bool = False,
    ):
        self.__version__ = version
        self.parse_ok, self.build_ok, self.builder_fails = parse_ok, build_ok, builder_fails
        self.timing_cache_accepted = timing_cache_accepted
        self.rec: dict = {"flags": set(), "profile": None, "builders": 0}
        major_minor = tuple(int(x) for x in version.split(".")[:2])
        v11 = major_minor[0] >= 11
        rec, fake = self.rec, self

        class Logger:
            WARNING, VERBOSE = 2, 4

            def __init__(self, level):
                rec["log_level"] = level

            def log(self, level, msg):
                rec.setdefault("log", []).append(msg)

        self.Logger = Logger
        if v11:
            self.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=0)
            self.BuilderFlag = SimpleNamespace(GPU_FALLBACK="GPU_FALLBACK")
        else:
            self.NetworkDefinitionCreationFlag = SimpleNamespace(
                EXPLICIT_BATCH=0, **({"STRONGLY_TYPED": 1} if major_minor[0] >= 10 else {})
            )
            self.BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
            for n in (
                "IInt8EntropyCalibrator2",
                "IInt8EntropyCalibrator",
                "IInt8MinMaxCalibrator",
                "IInt8LegacyCalibrator",
            ):
                setattr(self, n, type(n, (), {"__init__": lambda s: None}))
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.DeviceType = SimpleNamespace(DLA="DLA", GPU="GPU")

        class Cache:
            def __init__(self, blob):
                self.blob = blob

            def serialize(self):
                return b"TIMING" + self.blob[:0] + b"-v" + str(len(rec.get("timing_loaded", b""))).encode()

        class Config:
            __slots__ = ("default_device_type", "DLA_core") + (() if v11 else ("int8_calibrator",))

            def __init__(self):
                if not v11:
                    self.int8_calibrator = None  # removed in 11: assigning it raises AttributeError there
                self.default_device_type = "GPU"
                self.DLA_core = -1

            def set_flag(self, f):
                rec["flags"].add(f)

            def add_optimization_profile(self, p):
                rec["profile"] = p.shapes

            def create_timing_cache(self, blob):
                rec["timing_loaded"] = bytes(blob)
                return Cache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                # TensorRT returns False for a cache from another device/version when ignore_mismatch is False
                rec["timing_ignore_mismatch"] = ignore_mismatch
                ok = fake.timing_cache_accepted or not cache.blob or ignore_mismatch
                rec.setdefault("timing_attached", []).append((bytes(cache.blob), ok))
                return ok

        if not v11:
            Config.set_calibration_profile = lambda self, p: rec.__setitem__("calibration_profile", p.shapes)
        if major_minor >= (8, 4):
            Config.set_memory_pool_limit = lambda self, pool, size: rec.__setitem__("workspace", (pool, size))
        else:
            Config.max_workspace_size = property(lambda s: 0, lambda s, v: rec.__setitem__("workspace", ("max", v)))
        self._Config = Config

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, mn, opt, mx):
                self.shapes[name] = (mn, opt, mx)

        class Network:
            num_inputs = 1

            def get_input(self, i):
                return SimpleNamespace(name="input")

        class Builder:
            def __init__(self, logger):
                if fake.builder_fails:  # what the pybind11 bindings raise when no CUDA device answers
                    raise TypeError("pybind11::init(): factory function returned nullptr")
                rec["builders"] += 1

            def create_network(self, flags):
                rec["network_flags"] = flags
                return Network()

            def create_builder_config(self):
                c = Config()
                rec["config"] = c
                return c

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                if getattr(config, "int8_calibrator", None) is not None:  # TensorRT reads the cache first
                    rec["calibrator_cache"] = config.int8_calibrator.read_calibration_cache()
                rec["dla"] = (config.default_device_type, config.DLA_core)
                return b"FAKE-ENGINE:" + ",".join(sorted(rec["flags"])).encode() if fake.build_ok else None

        class Parser:
            num_errors = 1

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                rec["parsed"] = path
                return fake.parse_ok

            def get_error(self, i):
                return "In node 3 (importDequantizeLinear): UNSUPPORTED_NODE\nmore"

        self.Builder, self.OnnxParser = Builder, Parser
