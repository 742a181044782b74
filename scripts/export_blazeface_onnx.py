#!/usr/bin/env python3
"""Export the PyTorch port's BlazeFace weights (front 128×128, back 256×256) to ONNX for the ONNX backend.

PyTorch is needed only here, at export time (`pip install torch`); nvr itself runs the result with ONNX
Runtime. The network is defined below from BlazeFace's architecture (MediaPipe's graph: a 5×5 stem, then
BlazeBlocks = depthwise 3×3 + pointwise 1×1 with a residual, max-pooled and zero-channel-padded when the
block downsamples or widens), with layer names matching the port's state dicts so the weights load as-is.

    python scripts/export_blazeface_onnx.py [--weights-dir DIR] [--out-dir DIR]

reads the weights from $NVR_ASSETS/models/blazeface and writes blazeface_front.onnx and blazeface_back.onnx
(by default into models/, where downloaded models live; git ignores them there). Like MediaPipe's models:
input `input` [1, 3, H, W] float32 RGB scaled to [-1, 1]; outputs `regressors` [1, 896, 16] and
`classificators` [1, 896, 1].
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import nn

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from nvr.assets import assets_dir  # noqa: E402 - after the path set-up for running from a checkout

# (in_channels, out_channels, stride) per BlazeBlock. Front: MediaPipe's short-range graph (stride-2 blocks
# read from face_detection_short_range.tflite). Back: four stages of eight blocks, each opened by a
# stride-2 block except the first, as MediaPipe's back-camera graph.
Block = tuple[int, int, int]
FRONT_BACKBONE1: list[Block] = [
    (24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2),
    (48, 56, 1), (56, 64, 1), (64, 72, 1), (72, 80, 1), (80, 88, 1),
]  # fmt: skip
FRONT_BACKBONE2: list[Block] = [(88, 96, 2)] + [(96, 96, 1)] * 4
BACK_BACKBONE: list[Block] = (
    [(24, 24, 1)] * 7 + [(24, 24, 2)] + [(24, 24, 1)] * 7
    + [(24, 48, 2)] + [(48, 48, 1)] * 7 + [(48, 96, 2)] + [(96, 96, 1)] * 7
)  # fmt: skip


def same_padding(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's SAME padding for the even input sizes used here: the extra pixel goes right/bottom."""
    total = max(kernel - stride, 0)
    before = total // 2
    return F.pad(x, (before, total - before, before, total - before))


class BlazeBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, stride=stride, groups=in_channels),
            nn.Conv2d(in_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.max_pool2d(x, 2) if self.stride == 2 else x
        if self.extra_channels:
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.extra_channels))  # zero channels, as MediaPipe's PAD
        return F.relu(self.convs(same_padding(x, 3, self.stride)) + skip)


class FinalBlock(nn.Module):
    """The back model's last downsampling block: no residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, channels, 3, stride=2, groups=channels), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.convs(same_padding(x, 3, 2)))


def stem_and_blocks(blocks: list[Block]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 24, 5, stride=2), nn.ReLU(), *(BlazeBlock(i, o, s) for i, o, s in blocks)
    )


class BlazeFace(nn.Module):
    """Features at 1/8 (2 anchors per cell) and 1/16 (6 per cell) of the input feed 1×1 conv heads."""

    def __init__(self, back: bool) -> None:
        super().__init__()
        self.back = back
        if back:
            self.backbone = stem_and_blocks(BACK_BACKBONE)
            self.final = FinalBlock(96)
        else:
            self.backbone1 = stem_and_blocks(FRONT_BACKBONE1)
            self.backbone2 = nn.Sequential(*(BlazeBlock(i, o, s) for i, o, s in FRONT_BACKBONE2))
        fine_channels = 96 if back else 88
        self.classifier_8 = nn.Conv2d(fine_channels, 2, 1)
        self.classifier_16 = nn.Conv2d(96, 6, 1)
        self.regressor_8 = nn.Conv2d(fine_channels, 32, 1)
        self.regressor_16 = nn.Conv2d(96, 96, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = same_padding(x, 5, 2)
        if self.back:
            fine = self.backbone(x)
            coarse = self.final(fine)
        else:
            fine = self.backbone1(x)
            coarse = self.backbone2(fine)
        def flat(head: nn.Conv2d, features: torch.Tensor, width: int) -> torch.Tensor:
            # NCHW -> (batch, cells × anchors, width): anchor fastest, then x, then y (MediaPipe's order).
            flattened: torch.Tensor = head(features).permute(0, 2, 3, 1).flatten(1).unflatten(1, (-1, width))
            return flattened

        scores = torch.cat(
            (flat(self.classifier_8, fine, 1), flat(self.classifier_16, coarse, 1)), dim=1
        )
        boxes = torch.cat(
            (flat(self.regressor_8, fine, 16), flat(self.regressor_16, coarse, 16)), dim=1
        )
        return boxes, scores


MODELS = {  # output name -> (weights file, back model?, input size)
    "blazeface_front.onnx": ("blazeface.pth", False, 128),
    "blazeface_back.onnx": ("blazefaceback.pth", True, 256),
}


def load(weights: Path, back: bool) -> BlazeFace:
    model = BlazeFace(back)
    # blazeface.pth is a legacy (pre-zip) pickle, blazefaceback.pth a zip one; torch.load reads both.
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def export(weights: Path, back: bool, size: int, out: Path) -> None:
    model = load(weights, back)
    dummy = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        # The TorchScript exporter announces its own deprecation and that F.pad's index arithmetic cannot be
        # constant-folded; neither affects the exported graph.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(out),
            input_names=["input"],
            output_names=["regressors", "classificators"],
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: needs `onnx`, not onnxscript
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_weights = assets_dir() / "models" / "blazeface"
    parser.add_argument("--weights-dir", type=Path, default=default_weights)
    parser.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "models")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, (weights_name, back, size) in MODELS.items():
        weights = args.weights_dir / weights_name
        if not weights.is_file():
            print(f"export_blazeface_onnx: {weights}: no such weights file", file=sys.stderr)
            return 4
        out = args.out_dir / name
        export(weights, back, size, out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
