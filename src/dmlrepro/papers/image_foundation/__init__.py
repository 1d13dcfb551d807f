"""The image foundation's own check: a baseline that belongs to no paper.

PML's ``TripletMarginLoss`` with semi-hard mining and ``MultiSimilarityLoss`` with its miner, trained
on the zero-shot Fashion-MNIST stand-in (classes 0-4 train, 5-9 test) from a LeNet pretrained with
labels on MNIST, the offline analogue of "ImageNet-pretrained backbone, unseen test classes". It
proves that datasets, backbones, sampler, trainer, selection and evaluation work together; it is a
check of method, never a number comparable to a paper's.
"""
