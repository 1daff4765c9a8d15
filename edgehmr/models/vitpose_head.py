"""ViTPose classic heatmap head: 2 x (deconv 4x4 s2, BN, ReLU), then a 1x1 conv to 17 COCO heatmaps.

Names and shapes equal the ``keypoint_head.*`` tensors of the published ViTPose checkpoints.
Features ``[B, C, 16, 12]`` -> heatmaps ``[B, 17, 64, 48]``.
"""

from __future__ import annotations

from torch import nn

NUM_KEYPOINTS = 17
DECONV_CHANNELS = 256
HEATMAP_SIZE = (64, 48)  # (H, W)
# COCO left/right pairs, used by the flip test when decoding.
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


class TopdownHeatmapSimpleHead(nn.Module):
    def __init__(self, in_channels: int, num_keypoints: int = NUM_KEYPOINTS, deconv_channels: int = DECONV_CHANNELS):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(channels, deconv_channels, kernel_size=4, stride=2, padding=1, output_padding=0,
                                   bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=False),
            ]
            channels = deconv_channels
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(deconv_channels, num_keypoints, kernel_size=1)

    def forward(self, x):
        return self.final_layer(self.deconv_layers(x))


def init_heatmap_head_weights(head: TopdownHeatmapSimpleHead) -> None:
    """Seeded initialisation for untrained use.

    He-normal deconvs and a final conv scaled so heatmaps have peaks of order one (mmpose's std 0.001 would give
    near-zero maps whose argmax is noise, which would make keypoint drift meaningless), plus non-trivial BN stats.
    """
    for m in head.modules():
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.05)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            # Untrained running stats are (0, 1); give them a spread so BN folding is exercised by exports.
            m.running_mean.normal_(0.0, 0.01)
            m.running_var.uniform_(0.5, 1.5)
