"""torchvision's ResNet-50 and GoogLeNet, less their classifiers.

Each backbone *is* the torchvision model class (a subclass), built with ``weights=None``
semantics (random init, nothing downloaded) and with ``fc`` (and GoogLeNet's dropout) removed,
so its state-dict keys are torchvision's own minus ``fc.*``: a torchvision ``.pth`` loads after
dropping the classifier keys.

GoogLeNet: batch norm (torchvision's version, which differs from the Caffe original: BN, and
3x3 where Caffe has 5x5 — vision#906), ``aux_logits=False``, ``transform_input=False``.
torchvision's ImageNet weights were trained on inputs scaled to [-1, 1] and its
``transform_input=True`` maps ImageNet-normalised input there; with ``transform_input=False``
we normalise with mean = std = 0.5 instead (see ``INPUT_SPECS``), which is the same function.
"""

from __future__ import annotations

from torch import Tensor
from torchvision.models import GoogLeNet, ResNet
from torchvision.models.resnet import Bottleneck


class ResNet50Backbone(ResNet):
    """ResNet-50 up to ``layer4``: ``feature_map`` is (b, 2048, 7, 7) at 224x224."""

    feature_dim = 2048
    classifier_prefixes = ("fc.",)

    def __init__(self) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])
        del self.fc, self.avgpool  # pooling and the head belong to the embedder

    def feature_map(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_map(x)


class GoogLeNetBackbone(GoogLeNet):
    """torchvision GoogLeNet (with BN) up to ``inception5b``: (b, 1024, 7, 7) at 224x224."""

    feature_dim = 1024
    classifier_prefixes = ("fc.", "aux1.", "aux2.")

    def __init__(self) -> None:
        super().__init__(aux_logits=False, transform_input=False, init_weights=True)
        del self.fc, self.avgpool, self.dropout

    def feature_map(self, x: Tensor) -> Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4c(self.inception4b(self.inception4a(x)))
        x = self.maxpool4(self.inception4e(self.inception4d(x)))
        return self.inception5b(self.inception5a(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_map(x)
