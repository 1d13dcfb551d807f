"""The OT engine's usage block in docs/ot-engine.md runs as written, and its answers are right."""

import os
import re
from pathlib import Path

import numpy as np
import ot
from scipy.spatial.distance import cdist

USAGE_DOC = Path(__file__).resolve().parents[1] / "docs" / "ot-engine.md"


def usage_block() -> str:
    text = USAGE_DOC.read_text()
    section = text[text.index("## Use the engine on your own documents"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def plain_wmd(ps, i: int, j: int) -> float:
    (xa, wa), (xb, wb) = ps.doc(i), ps.doc(j)
    return ot.emd2(wa / wa.sum(), wb / wb.sum(), cdist(xa.astype(np.float64), xb.astype(np.float64)))


def test_engine_usage_block_runs(shared_data, capsys):
    # the block names the data mirror as a checkout sees it; the tests may run from elsewhere
    code = usage_block().replace('"../shared/data"', repr(os.fspath(shared_data)))
    namespace: dict = {}
    exec(compile(code, "docs/ot-engine.md usage block", "exec"), namespace)
    assert "query 0's neighbours" in capsys.readouterr().out
    ps, gallery, idx, dist, wmd = (namespace[k] for k in ("ps", "gallery", "idx", "dist", "wmd"))
    # query 0's neighbours are the 10 nearest by a plain POT loop
    plain = np.array([plain_wmd(ps, 0, int(g)) for g in gallery])
    np.testing.assert_allclose(dist[0], np.sort(plain)[:10], atol=1e-8)
    np.testing.assert_allclose(plain[idx[0]], dist[0], atol=1e-8)
    assert wmd.shape == (40, 40) and np.array_equal(wmd, wmd.T) and np.all(np.diag(wmd) == 0)
    np.testing.assert_allclose(wmd[0, 1:6], [plain_wmd(ps, 0, j) for j in range(1, 6)], atol=1e-8)
    np.testing.assert_array_equal(namespace["idx_new"], idx[0])  # the index answers as the collection search
    np.testing.assert_allclose(namespace["dist_new"], dist[0], atol=1e-12)
