"""A recording stand-in for the ``tensorrt`` Python module, for tests on machines without TensorRT.

``FakeTensorRT(version)`` is shaped after the documented TensorRT Python API of
that version and records the calls the engine builder makes, so tests check
*our* calls and bookkeeping, not TensorRT. The ``fake_trt`` fixture of
tests/conftest.py installs one as ``sys.modules["tensorrt"]``.
"""

from __future__ import annotations

from types import SimpleNamespace


class FakeTensorRT:
    """Records the calls engine_from_onnx makes; shaped after the TensorRT 8.x/10.x Python API."""

    def __init__(self, version: str = "10.3.0.26", parse_ok: bool = True, build_ok: bool = True,
                 timing_cache_accepted: bool = True):
        self.__version__ = version
        self.parse_ok, self.build_ok = parse_ok, build_ok
        self.timing_cache_accepted = timing_cache_accepted
        self.rec: dict = {"flags": set(), "profile": None}
        major_minor = tuple(int(x) for x in version.split(".")[:2])
        rec, fake = self.rec, self

        class Logger:
            WARNING, VERBOSE = 2, 4

            def __init__(self, level):
                rec["log_level"] = level

            def log(self, level, msg):
                rec.setdefault("log", []).append(msg)

        self.Logger = Logger
        self.NetworkDefinitionCreationFlag = SimpleNamespace(EXPLICIT_BATCH=0)
        self.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
        self.BuilderFlag = SimpleNamespace(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
        self.DeviceType = SimpleNamespace(DLA="DLA", GPU="GPU")
        for n in ("IInt8EntropyCalibrator2", "IInt8EntropyCalibrator", "IInt8MinMaxCalibrator", "IInt8LegacyCalibrator"):
            setattr(self, n, type(n, (), {"__init__": lambda s: None}))

        class Cache:
            def __init__(self, blob):
                self.blob = blob

            def serialize(self):
                return b"TIMING" + self.blob[:0] + b"-v" + str(len(rec.get("timing_loaded", b""))).encode()

        class Config:
            def __init__(self):
                self.int8_calibrator = None
                self.default_device_type = "GPU"
                self.DLA_core = -1

            def set_flag(self, f):
                rec["flags"].add(f)

            def add_optimization_profile(self, p):
                rec["profile"] = p.shapes

            def set_calibration_profile(self, p):
                rec["calibration_profile"] = p.shapes

            def create_timing_cache(self, blob):
                rec["timing_loaded"] = bytes(blob)
                return Cache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                # TensorRT returns False for a cache from another device/version when ignore_mismatch is False
                rec["timing_ignore_mismatch"] = ignore_mismatch
                ok = fake.timing_cache_accepted or not cache.blob or ignore_mismatch
                rec.setdefault("timing_attached", []).append((bytes(cache.blob), ok))
                return ok


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
                pass

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
                if config.int8_calibrator is not None:  # TensorRT reads the cache first
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
