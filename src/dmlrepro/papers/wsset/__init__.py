"""WSSET (Arsomngern et al., self-supervised DML for point sets): Tables I/II, Figs. 4 to 6.

- ``methods``: every trainable row (encoder, objective, transfer chain); the workflow reads it.
- ``objectives``, ``emd_triplets``, ``udml_ss``: the losses' compositions, WSSET's EMD triplet
  miner (Eq. 3) and the UDML-SS baseline adapted to sets.
- ``trainer``: the set-embedding trainer (``train_embedder``, ``embed``, ``load_model``);
  ``bert``: the BERT_BASE rows.
- ``paper_values``, ``claims``: the published numbers and the qualitative claims, as data.
- ``tables``, ``notes``, ``report``, ``study_figures``, ``query_time``, ``query_time_figure``:
  Tables I/II, their notes, the claims check, Figs. 4 and 6, Fig. 5's timing and figure.
- ``run``, ``commands``: the evaluation step and the CLI commands the rules call.
"""
