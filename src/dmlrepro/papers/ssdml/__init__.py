"""SSDML (Dutta, Harandi & Sekhar, AAAI 2021, "Semi-Supervised Metric Learning: A Deep Resurrection").

Algorithm 1 with affinity-propagation triplets, Eq. 3 and the metric L on the Stiefel manifold
(:mod:`.algorithm`), trained on MNIST / Fashion-MNIST / CIFAR-10 with the paper's networks
(:mod:`.run`), Tables 1 and 4 with the paper's values beside ours (:mod:`.report`,
:mod:`.paper_values`) and its claims (:mod:`.claims`). See ``docs/ssdml.md``.
"""
