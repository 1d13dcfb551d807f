"""SSDML's own small networks (TARGETS 001-§2, the paper's "Implementation details").

The paper adapts MatConvNet's example networks and lists their layers; we follow that list
exactly and take from MatConvNet only what the list leaves out (paddings, pooling windows):

* ``LeNetSSDML`` (MNIST, Fashion-MNIST; 28x28 grey): Conv1(5x5, 20) -> max-pool ->
  Conv2(5x5, 50) -> max-pool -> Conv3(4x4, 500) -> ReLU -> FC(500x128). MatConvNet's
  ``cnn_mnist_init`` pools 2x2 stride 2 without padding and has no ReLU after Conv1/Conv2 — the
  paper's list has none either. The FC is MatConvNet's 1x1 convolution, so the last
  convolutional map *is* the 128-d feature (d = 128), 1x1 at 28x28. The paper's "l2" and
  L(128x64) come after: the l2 is the embedder's normalisation, L belongs to the loss.
* ``CifarSSDML`` (CIFAR-10; 32x32 colour): Conv1(5x5, 32) -> max-pool -> ReLU -> Conv2(5x5, 32)
  -> ReLU -> avg-pool -> Conv3(5x5, 64) -> ReLU -> avg-pool -> Conv4(4x4, 64) -> ReLU
  (d = 64). MatConvNet's ``cnn_cifar_init`` ("CIFAR10-quick") pads the 5x5 convolutions by 2
  and pools 3x3, stride 2, padding [0 1 0 1] (bottom/right); we get the same 32 -> 16 -> 8 -> 4
  sizes with ``ceil_mode=True`` and no padding, where the partial last window is taken over the
  valid cells only (MatConvNet's padded max-pool cannot pick a pad cell either).

No batch normalisation: the paper lists none. Initialisation is PyTorch's default.
"""

from __future__ import annotations

from torch import Tensor, nn


class LeNetSSDML(nn.Module):
    """SSDML's MNIST/Fashion-MNIST network; ``feature_map`` is (b, 128, 1, 1) at 28x28."""

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2, stride=2)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2, stride=2)
        self.conv3 = nn.Conv2d(50, 500, kernel_size=4)
        self.relu3 = nn.ReLU(inplace=True)
        self.fc = nn.Conv2d(500, self.feature_dim, kernel_size=1)  # FC(500x128), as MatConvNet writes it

    def feature_map(self, x: Tensor) -> Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        return self.fc(self.relu3(self.conv3(x)))

    forward = feature_map


class CifarSSDML(nn.Module):
    """SSDML's CIFAR-10 network; ``feature_map`` is (b, 64, 1, 1) at 32x32."""

    feature_dim = 64

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=5, padding=2)
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 32, kernel_size=5, padding=2)
        self.pool2 = nn.AvgPool2d(3, stride=2, ceil_mode=True)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        self.pool3 = nn.AvgPool2d(3, stride=2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, self.feature_dim, kernel_size=4)
        self.relu = nn.ReLU(inplace=True)

    def feature_map(self, x: Tensor) -> Tensor:
        x = self.relu(self.pool1(self.conv1(x)))
        x = self.pool2(self.relu(self.conv2(x)))
        x = self.pool3(self.relu(self.conv3(x)))
        return self.relu(self.conv4(x))

    forward = feature_map
