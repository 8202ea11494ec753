"""What to open: ``--camera`` / ``--source`` parsed into a :class:`SourceSpec` (no OpenCV here).

Part of :mod:`edgemask.vision.sources`, which re-exports every public name.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemask.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SOURCE_KINDS = ("camera", "file", "url", "folder", "gstreamer", "csi")
_URL_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.IGNORECASE)


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class SourceSpec:
    """What to open and how.

    Attributes:
        kind: one of :data:`SOURCE_KINDS`.
        target: device index (camera), path, URL or pipeline string.
        width, height, fps: requested size / rate; 0 = the source's own.
        loop: start a file / folder again at its end.
        as_live: treat a file like a camera (drop stale frames, reopen at the
            end); with ``fps`` it replays a recording as a live feed, for
            benchmarks and soak tests.
        as_video: read an image folder as consecutive frames of one video
            (numbered frame dumps); by default each photo is its own scene.
    """

    kind: str
    target: Any
    width: int = 0
    height: int = 0
    fps: float = 0.0
    loop: bool = False
    as_live: bool = False
    as_video: bool = False

    @property
    def is_image(self) -> bool:
        """A single photo (``--source photo.jpg``)."""
        return self.kind == "file" and Path(str(self.target)).suffix.lower() in IMAGE_EXTENSIONS

    @property
    def scenes(self) -> bool:
        """Each frame is an independent photo: tracks, votes and debounce start afresh per frame."""
        return (self.kind == "folder" or self.is_image) and not self.as_video and not self.as_live

    @property
    def live(self) -> bool:
        """Live sources drop stale frames and are reopened when they end; files end."""
        return self.as_live or self.kind in ("camera", "url", "gstreamer", "csi")

    def describe(self) -> str:
        if self.kind == "camera":
            return f"camera {self.target} (/dev/video{self.target})"
        if self.kind == "url":
            return _redact_url(str(self.target))
        return f"{self.kind} {self.target}"


def _redact_url(url: str) -> str:
    """``rtsp://user:pw@host/x`` → ``rtsp://user:***@host/x`` for logs (any characters in ``pw``)."""
    from edgemask.utils.redact import redact

    return redact(url)


def url_with_password(url: str, password: str) -> str:
    """``rtsp://user@host/x`` + password → ``rtsp://user:<password, percent-encoded>@host/x``.

    The password comes from the environment or a config file, never from the
    command line (every local user can read that). FFmpeg decodes the
    percent-encoding, so any character may be used.

    Raises:
        ConfigError: the URL names no user, or already holds a password.
    """
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    if u.password is not None:
        raise ConfigError("the --source URL already contains a password; give rtsp://USER@host/... only")
    if not u.username:
        raise ConfigError(
            f"a camera password is set but --source {_redact_url(url)} names no user; write it as rtsp://USER@host/..."
        )
    host = u.netloc.rsplit("@", 1)[1]
    netloc = f"{u.username}:{urllib.parse.quote(password, safe='')}@{host}"
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))


def parse_source(
    source: str | None = None,
    camera: int | None = None,
    *,
    width: int = 0,
    height: int = 0,
    fps: float = 0.0,
    loop: bool = False,
    device_profile: str = "jetson-orin-nano",
    as_video: bool = False,
) -> SourceSpec:
    """Turn ``--camera`` / ``--source`` into a :class:`SourceSpec`.

    ``source`` may be a video file, an image folder, a URL (rtsp/http/...), a
    raw GStreamer pipeline (anything containing ``!``) or ``csi://N`` (sensor
    N through the device profile's ``nvarguscamerasrc`` pipeline). An image
    folder or a single image is a sequence of independent photos unless
    ``as_video`` (a folder of numbered frames of one video).

    Raises:
        ConfigError: both or neither given, or a file/folder that does not exist.
    """
    if (camera is None) == (not source):
        raise ConfigError("give exactly one video source: --camera N or --source PATH|URL|PIPELINE|csi://N")
    kw = dict(width=int(width), height=int(height), fps=float(fps), loop=bool(loop), as_video=bool(as_video))
    if camera is not None:
        return SourceSpec("camera", int(camera), **kw)
    assert source is not None
    s = source.strip()
    m = re.match(r"^csi://(\d+)$", s)
    if m:
        from edgemask.devices.profiles import load_profile

        prof = load_profile(device_profile)
        pipe = prof.camera_pipeline(
            "csi", int(m.group(1)), width=width or 1280, height=height or 720, fps=int(round(fps)) or 30
        )
        return SourceSpec("csi", pipe, **kw)
    if s.lower().startswith("csi://"):
        raise ConfigError(f"--source {s!r}: write a CSI camera as csi://N with N the sensor id, e.g. csi://0")
    if _URL_RE.match(s):
        return SourceSpec("url", s, **kw)
    if "!" in s:
        if "appsink" not in s:
            raise ConfigError(
                "a GStreamer --source pipeline must end in 'appsink' (e.g. '... ! videoconvert ! "
                "video/x-raw,format=BGR ! appsink drop=true max-buffers=1')"
            )
        return SourceSpec("gstreamer", s, **kw)
    if re.fullmatch(r"\d+", s):
        raise ConfigError(f"--source {s!r} looks like a camera index; use --camera {s}")
    p = Path(s).expanduser()
    if p.is_dir():
        return SourceSpec("folder", str(p), **kw)
    if p.is_file():
        return SourceSpec("file", str(p), **kw)
    raise ConfigError(
        f"--source {s!r} is neither an existing file or folder, a URL (rtsp://, http://), "
        "a GStreamer pipeline (with '!') nor csi://N"
    )


def list_cameras() -> list[int]:
    """Indices of the V4L2 video devices present (``/dev/videoN``), sorted."""
    out = []
    for p in glob.glob("/dev/video*"):
        m = re.fullmatch(r"/dev/video(\d+)", p)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


__all__ = [
    "IMAGE_EXTENSIONS",
    "SOURCE_KINDS",
    "SourceSpec",
    "list_cameras",
    "parse_source",
    "url_with_password",
]
