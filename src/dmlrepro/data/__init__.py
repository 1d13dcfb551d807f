"""Datasets, pointsets and splits.

Modules: ``catalog`` (raw files, datasets, word vectors), ``fetch`` (mirror copy or download,
verified), ``text_corpora`` (raw-text readers), ``word_vectors``, ``build`` (Kusner's
preprocessing, :func:`~dmlrepro.data.build.build_pointsets`), ``kusner_mat`` (Kusner's ``.mat``
files), ``pointsets`` (the pointset file) and ``splits`` (train / val / test splits).
Nothing is imported here, so that ``import dmlrepro.data`` stays cheap.
"""
