"""A small anchor-free face detector (CenterNet-style), trained from VOC boxes.

One output tensor, so every runner (ONNX Runtime, OpenCV DNN, TensorRT) runs
the same file and decode + NMS stay outside the graph
(:mod:`edgemask.vision.facedet_decode`, numpy only)::

    x (N, 3, H, W) RGB in [0, 1]
      -> backbone: strides 2, 4, 8, 16, 32
      -> top-down FPN back to stride 4 (the 4/8/16/32 features are summed)
      -> head (N, 5, H/4, W/4):
           [0]   face-centre heatmap, sigmoid already applied (in [0, 1])
           [1:3] log(box w / stride), log(box h / stride)
           [3:5] sub-cell offset of the centre, in cells (0..1)

Why stride 4: real crowd photos hold many 10-30 px faces; at stride 4 a 12 px
face still spans three heatmap cells, while the /32 level gives the receptive
field for faces of 200+ px. Plain 3x3 convs where the maps are large
(cheap at 16-32 channels) and depthwise-separable blocks below stride 8 keep
it near 0.25 GFLOPs at 384x288; all activations are ReLU so int8 QDQ is
friendly to every engine.
"""

from __future__ import annotations

import torch
from torch import nn

from edgemask.models.registry import DEFAULT_MEAN, DEFAULT_STD, Normalize, register_model

#: Output channels of the head, in order (the decode reads this layout).
HEAD_CHANNELS = ("heat", "log_w", "log_h", "off_x", "off_y")
STRIDE = 4


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _dws(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, each with BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class FaceDetNet(nn.Module):
    """See the module docstring. ``input_width``/``input_height`` are multiples of 32."""

    def __init__(
        self,
        input_width: int,
        input_height: int,
        widths: tuple[int, ...],
        fpn: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ):
        super().__init__()
        if input_width % 32 or input_height % 32:
            raise ValueError(f"detector input {input_width}x{input_height} must be a multiple of 32 on both sides")
        if len(widths) != 5:
            raise ValueError(f"widths needs 5 entries (strides 2..32), got {len(widths)}")
        self.input_width, self.input_height = int(input_width), int(input_height)
        self.stride = STRIDE
        self.num_outputs = len(HEAD_CHANNELS)
        self.normalize = Normalize(tuple(mean), tuple(std))
        c1, c2, c3, c4, c5 = widths
        self.s2 = _cbr(3, c1, 2)  # /2
        self.s4 = nn.Sequential(_cbr(c1, c2, 2), _cbr(c2, c2))  # /4
        self.s8 = nn.Sequential(_cbr(c2, c3, 2), _dws(c3, c3))  # /8
        self.s16 = nn.Sequential(_dws(c3, c4, 2), _dws(c4, c4))  # /16
        self.s32 = nn.Sequential(_dws(c4, c5, 2), _dws(c5, c5))  # /32
        self.lat = nn.ModuleList([nn.Conv2d(c, fpn, 1) for c in (c2, c3, c4, c5)])
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Sequential(_dws(fpn, fpn), nn.Conv2d(fpn, self.num_outputs, 1))
        # CenterNet's prior: start the heatmap near 0.01 so the focal loss is stable
        nn.init.constant_(self.head[-1].bias, 0.0)
        with torch.no_grad():
            self.head[-1].bias[0] = -4.6

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,3,H,W) in [0,1] -> (N,5,H/4,W/4)
        out = self.raw(x)
        return torch.cat([torch.sigmoid(out[:, :1]), out[:, 1:3], torch.sigmoid(out[:, 3:5])], dim=1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The head before its sigmoids (the training losses want logits)."""
        f4 = self.s4(self.s2(self.normalize(x)))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        p = self.lat[3](f32)  # (N, fpn, H/32, W/32)
        p = self.up(p) + self.lat[2](f16)
        p = self.up(p) + self.lat[1](f8)
        p = self.up(p) + self.lat[0](f4)  # (N, fpn, H/4, W/4)
        return self.head(p)


@register_model(
    "facedet",
    family="detector",
    task="detect",
    description="Anchor-free face detector (CenterNet-style, stride-4 head over a 4-level FPN)",
)
def facedet(
    input_width: int = 384,
    input_height: int = 288,
    widths: tuple[int, ...] = (16, 24, 40, 64, 96),
    fpn: int = 32,
    mean: tuple[float, ...] = DEFAULT_MEAN,
    std: tuple[float, ...] = DEFAULT_STD,
) -> FaceDetNet:
    return FaceDetNet(input_width, input_height, tuple(widths), fpn, tuple(mean), tuple(std))
