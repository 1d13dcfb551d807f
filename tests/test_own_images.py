"""Your own images: a folder per class, in three layouts, indexed like a catalogued dataset and run
by an image paper through the workflow (config key image_folders)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dmlrepro import DmlReproError
from dmlrepro.data.images import (ImageDataset, load_image_dataset, make_image_split, read_idx, scan_image_folder,
                                  write_image_folder_manifest)

N_PER_CLASS = 12


@pytest.fixture(scope="module")
def digits(shared_data):
    """The first 12 MNIST test images of each digit 0-5, as (images, labels)."""
    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    pick = np.concatenate([np.flatnonzero(labels == d)[:N_PER_CLASS] for d in range(6)])
    return images[pick], labels[pick]


def write_digits(root: Path, images, labels, role_of=None) -> Path:
    """PNG files root/[<role>/]<digit name>/<n>.png; role_of(label, n) -> role or None."""
    names = ["zero", "one", "two", "three", "four", "five"]
    for n, (img, y) in enumerate(zip(images, labels)):
        folder = root / (role_of(int(y), n) if role_of else "") / names[int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{n:04d}.png")
    return root


def test_class_folders_get_a_class_disjoint_split_in_name_order(tmp_path, digits):
    root = write_digits(tmp_path / "digits", *digits)
    (root / ".hidden").mkdir()
    (root / "zero" / "notes.txt").write_text("not an image")
    manifest = scan_image_folder(root, "class_folders", test_fraction=0.5)
    assert manifest["classes"] == ["five", "four", "one", "three", "two", "zero"]
    roles = dict(zip(manifest["classes"], [None] * 6))
    for label, role in zip(manifest["labels"], manifest["roles"]):
        roles[manifest["classes"][label]] = role if roles[manifest["classes"][label]] in (None, role) else "mixed"
    assert roles == {"five": "train", "four": "train", "one": "train", "three": "test", "two": "test", "zero": "test"}
    assert len(manifest["sources"]) == 6 * N_PER_CLASS and not any(s.endswith(".txt") for s in manifest["sources"])


def test_split_folders_and_split_file_keep_the_given_roles(tmp_path, digits):
    role_of = lambda y, n: "test" if n % 3 == 0 else "train"  # noqa: E731 (same classes, image split)
    root = write_digits(tmp_path / "by_role", *digits, role_of=role_of)
    m = scan_image_folder(root, "split_folders")
    assert sorted(set(m["roles"])) == ["test", "train"] and len(m["classes"]) == 6
    assert m["roles"].count("test") == sum(role_of(0, n) == "test" for n in range(len(digits[1])))
    flat = write_digits(tmp_path / "flat", *digits)
    listed = {s: ("test" if i % 2 else "train") for i, s in enumerate(scan_image_folder(flat, "class_folders")["sources"])}
    dropped = sorted(listed)[0]
    del listed[dropped]
    (tmp_path / "split.tsv").write_text("".join(f"{s}\t{r}\n" for s, r in listed.items()))
    m = scan_image_folder(flat, "split_file", split_file=tmp_path / "split.tsv")
    assert dict(zip(m["sources"], m["roles"])) == listed  # an unlisted image is left out


@pytest.mark.parametrize("layout,setup,named", [
    ("split_folders", lambda r: (r / "valid" / "a").mkdir(parents=True), "valid"),
    ("split_file", lambda r: (r.parent / "s.tsv").write_text("zero/9999.png\ttrain\n"), "9999.png"),
    ("split_file", lambda r: (r.parent / "s.tsv").write_text("zero/0000.png\tholdout\n"), "s.tsv:1"),
    ("class_folders", lambda r: None, "2 classes"),
])
def test_bad_folders_are_one_line_errors_naming_the_culprit(tmp_path, digits, layout, setup, named):
    images, labels = digits
    root = write_digits(tmp_path / "d", images[labels == 0], labels[labels == 0])
    setup(root)
    with pytest.raises(DmlReproError, match=named):
        scan_image_folder(root, layout, split_file=tmp_path / "s.tsv")


def test_a_prepared_folder_loads_like_a_catalogued_dataset(tmp_path, digits):
    root = write_digits(tmp_path / "digits", *digits)
    write_image_folder_manifest("my_digits", tmp_path / "images", root, "class_folders")
    index = load_image_dataset("my_digits", tmp_path / "images")
    assert len(index) == 6 * N_PER_CLASS and len(index.rows("test")) == 3 * N_PER_CLASS
    split = make_image_split(index, protocol="zero_shot", val_fraction=0.25, val_by="images", seed=0)
    assert not set(index.labels[split.fit]) & set(index.labels[split.test])
    image, label, row = ImageDataset(index, split.test)[0]
    assert image.size == (28, 28) and label == index.labels[split.test[0]]
    with pytest.raises(DmlReproError, match="unknown image dataset 'not_prepared': not catalogued .* no prepared image folder .*not_prepared/index.json"):
        load_image_dataset("not_prepared", tmp_path / "images")


def test_an_image_paper_runs_on_your_folder_from_config_alone(tmp_path, digits):
    from test_workflow import snakemake, write_config
    root = write_digits(tmp_path / "digits", *digits)
    block = {"seeds": [0], "methods": {"triplet": {"loss": {"name": "TripletMarginLoss", "margin": 0.2}}},
             "datasets": {"my_digits": {
                 "protocol": {"protocol": "zero_shot", "val_fraction": 0.25, "val_by": "images"},
                 "model": {"backbone": "lenet_ssdml", "embedding_dim": 8},
                 "train": {"epochs": 1, "iterations": 2, "batch_size": 12, "m": 4}, "recall_ks": [1, 2]}}}
    cfg = write_config(tmp_path / "c.yaml", image_folders={"my_digits": {"root": str(root)}},
                       papers={"image_foundation": block})
    res = snakemake(tmp_path, "--cores", "1", "results/image_foundation/tables/my_digits.md", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    stamp = json.loads((tmp_path / "resources/images/my_digits.json").read_text())
    assert stamp["images"] == 6 * N_PER_CLASS and stamp["classes"] == 6
    table = (tmp_path / "results/image_foundation/tables/my_digits.md").read_text()
    assert "| triplet " in table and "Initial (no metric learning)" in table and "image_folders.my_digits" in table
    assert "randomly initialised backbone" in table and "MNIST-family" not in table
    # the trained run applied to new images: embed, then search (documented in docs/own-data.md)
    from dmlrepro.cli import main
    run_dir = tmp_path / "results/image_foundation/my_digits/seed0/triplet"
    assert main(["embed", "--model", str(run_dir), "--input", str(root), "--out", str(tmp_path / "e.npy")]) == 0
    emb, meta = np.load(tmp_path / "e.npy"), json.loads((tmp_path / "e.json").read_text())
    assert emb.shape == (6 * N_PER_CLASS, 8) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert sorted(set(meta["classes"])) == ["five", "four", "one", "three", "two", "zero"]
    out = tmp_path / "hits.tsv"
    assert main(["search", "--model", str(run_dir), "--gallery", str(root), "--query", str(root / "five"),
                 "-k", "3", "--out", str(out)]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert len(rows) == 3 * N_PER_CLASS  # every query (a gallery member too) gets 3 others
    assert all(q != n for q, _, n, _, _ in rows)
    for q in {r[0] for r in rows}:
        dists = [float(r[4]) for r in rows if r[0] == q]
        assert dists == sorted(dists)
    clash = write_config(tmp_path / "clash.yaml", image_folders={"mnist": {"root": str(root)}})
    res = snakemake(tmp_path, "-n", "--configfile", str(clash))
    assert res.returncode != 0 and "image_folders.mnist" in res.stdout + res.stderr


def test_small_nets_take_your_images_at_any_size_and_mnist_unchanged(digits):
    from dmlrepro.models.images import build_image_embedder, build_transforms
    spec = build_image_embedder("lenet_ssdml", embedding_dim=8, pretrained=False).input_spec
    test_tf = build_transforms(spec, train=False)
    colour = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    assert tuple(test_tf(colour).shape) == (1, 28, 28)
    from torchvision.transforms import v2
    mnist = Image.fromarray(digits[0][0])
    plain = v2.Compose([v2.Grayscale(1), v2.ToImage(), v2.ToDtype(__import__("torch").float32, scale=True),
                        v2.Normalize(list(spec.mean), list(spec.std))])
    assert (test_tf(mnist) == plain(mnist)).all()  # the resize is a no-op at 28 pixels


def test_search_excludes_the_query_file_itself_and_matches_brute_force():
    from dmlrepro.evaluation.image_search import EmbeddedImages, search_images
    rng = np.random.default_rng(0)
    g = EmbeddedImages(rng.normal(size=(20, 4)).astype(np.float32), [f"g{i}" for i in range(20)], [""] * 20)
    q = EmbeddedImages(np.vstack([g.embeddings[:2], rng.normal(size=(2, 4))]).astype(np.float32),
                       ["g0", "g1", "q2", "q3"], [""] * 4)
    hits = search_images(q, g, 5)
    for qi, row in enumerate(hits):
        d = np.linalg.norm(g.embeddings - q.embeddings[qi], axis=1)
        order = [i for i in np.argsort(d) if g.paths[i] != q.paths[qi]][:5]
        assert [i for i, _ in row] == order and np.allclose([x for _, x in row], d[order], atol=1e-4)
    assert len(search_images(q, g, 50)[0]) == 19  # k beyond the gallery: every other image
