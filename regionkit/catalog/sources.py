"""The source registry: every dataset regionkit reads, what its files are, and whose terms apply.

Builders look themselves up here for the files they expect (so a missing file names the catalog
entry that wants it), and dataset cards copy the license and citation of every source they hold.
`builder` is a lazy `module:Class` path so the catalog imports no builder code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExpectedFile:
    """A file (or glob) under the source's root, as users unpack it.

    Attributes:
        pattern: path relative to `--root`; `{split_by}` and `{split}` are filled from options.
        description: what the file holds, in one line.
    """

    pattern: str
    description: str


@dataclass(frozen=True)
class Source:
    """One catalog entry.

    Attributes:
        name: the CLI and record `source` name, e.g. `refcocog`.
        title: human name.
        format: the on-disk format, e.g. `refer (pickle + COCO json)`.
        files: files expected under `--root`.
        images: what `--images` must point at.
        license: a Hub license id (`cc-by-4.0`, `other`, ...).
        license_note: the terms in words, for the dataset card.
        citation: BibTeX.
        homepage: where the data is published.
        obtain: how a user gets the files.
        builder: `module:Class` of the builder, or None while the format has no reader yet.
        splits: the split names the source uses.
        files_option: the `regionkit build` option the expected files are given by.
        redistributable: whether the source's terms let a user publish its records and images;
            `regionkit publish` refuses a dataset with one that does not, unless told otherwise.
    """

    name: str
    title: str
    format: str
    files: tuple[ExpectedFile, ...]
    images: str
    license: str
    license_note: str
    citation: str
    homepage: str
    obtain: str
    builder: str | None
    splits: tuple[str, ...] = field(default_factory=tuple)
    files_option: str = "--root"
    redistributable: bool = True


_COCO_CITATION = """@inproceedings{lin2014coco,
  title={Microsoft {COCO}: Common Objects in Context},
  author={Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and Hays, James and Perona, Pietro and Ramanan, Deva and Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  booktitle={ECCV},
  year={2014}
}"""

_REFCOCO_CITATION = """@inproceedings{yu2016refcoco,
  title={Modeling Context in Referring Expressions},
  author={Yu, Licheng and Poirson, Patrick and Yang, Shan and Berg, Alexander C. and Berg, Tamara L.},
  booktitle={ECCV},
  year={2016}
}
@inproceedings{kazemzadeh2014referitgame,
  title={{ReferItGame}: Referring to Objects in Photographs of Natural Scenes},
  author={Kazemzadeh, Sahar and Ordonez, Vicente and Matten, Mark and Berg, Tamara L.},
  booktitle={EMNLP},
  year={2014}
}"""

_REFCOCOG_CITATION = """@inproceedings{mao2016refcocog,
  title={Generation and Comprehension of Unambiguous Object Descriptions},
  author={Mao, Junhua and Huang, Jonathan and Toshev, Alexander and Camburu, Oana and Yuille, Alan and Murphy, Kevin},
  booktitle={CVPR},
  year={2016}
}
@inproceedings{nagaraja2016umd,
  title={Modeling Context Between Objects for Referring Expression Understanding},
  author={Nagaraja, Varun K. and Morariu, Vlad I. and Davis, Larry S.},
  booktitle={ECCV},
  year={2016}
}"""

_REFER_FILES = (
    ExpectedFile("instances.json", "COCO-style images, annotations (masks) and categories"),
    ExpectedFile("refs({split_by}).p", "Python-2 pickle: a list of refs with sentences and split"),
)

_REFER_OBTAIN = (
    "Download the dataset's zip from the refer project (lichengunc/refer, data/README.md) and "
    "unzip it; --root is the folder holding instances.json and refs(...).p."
)

_COCO_IMAGES_NOTE = "Images are COCO's, under Flickr's terms of use."


def _refer_source(
    name: str,
    title: str,
    citation: str,
    splits: tuple[str, ...],
    images: str = "COCO train2014/",
    license_note: str = "Research use per the refer project. " + _COCO_IMAGES_NOTE,
    format: str = "refer (pickle + COCO json)",
    builder_class: str = "RefCocoBuilder",
) -> Source:
    """A dataset of the refer family: one folder with instances.json and refs(<split_by>).p."""
    return Source(
        name=name,
        title=title,
        format=format,
        files=_REFER_FILES,
        images=images,
        license="other",
        license_note=license_note,
        citation=citation,
        homepage="https://github.com/lichengunc/refer",
        obtain=_REFER_OBTAIN,
        builder=f"regionkit.builders.refer:{builder_class}",
        splits=splits,
    )


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            name="coco",
            title="COCO instances (2014, 2017)",
            format="COCO instances JSON",
            files=(
                ExpectedFile(
                    "annotations/instances_{split}.json",
                    "images, annotations (polygons, crowd RLE), categories",
                ),
            ),
            images="the split's image folder, e.g. val2017/ or train2014/",
            license="cc-by-4.0",
            license_note="Annotations CC BY 4.0. " + _COCO_IMAGES_NOTE,
            citation=_COCO_CITATION,
            homepage="https://cocodataset.org",
            obtain="Download annotations_trainval2017.zip (or 2014) and the image zips from "
            "cocodataset.org and unzip them.",
            builder="regionkit.builders.coco:CocoBuilder",
            splits=("train2014", "val2014", "train2017", "val2017"),
            files_option="--annotations",
        ),
        _refer_source("refcoco", "RefCOCO", _REFCOCO_CITATION, ("train", "val", "testA", "testB")),
        _refer_source(
            "refcoco+",
            "RefCOCO+",
            _REFCOCO_CITATION,
            ("train", "val", "testA", "testB"),
            builder_class="RefCocoPlusBuilder",
        ),
        _refer_source(
            "refcocog",
            "RefCOCOg (umd and google splits)",
            _REFCOCOG_CITATION,
            ("train", "val", "test"),
            builder_class="RefCocogBuilder",
        ),
        _refer_source(
            "refclef",
            "RefCLEF (ReferItGame on SAIAPR TC-12)",
            _REFCOCO_CITATION,
            ("train", "val", "test", "testA", "testB", "testC", "testAB"),
            images="saiapr_tc-12/ (the refer project's 19,997-image subset)",
            license_note="Research use per the refer project; images from IAPR TC-12, free "
            "for research.",
            format="refer (pickle + COCO json with RLE masks)",
            builder_class="RefClefBuilder",
        ),
        Source(
            name="grefcoco",
            title="gRefCOCO (generalized referring expressions)",
            format="grefs JSON + COCO json",
            files=(
                ExpectedFile("grefs(unc).json", "refs with list ann_id, no_target flags, splits"),
                ExpectedFile("instances.json", "COCO-2014-train-style images and annotations"),
            ),
            images="COCO train2014/",
            license="other",
            license_note="Research use per the GRES project's terms. " + _COCO_IMAGES_NOTE,
            citation="""@inproceedings{liu2023gres,
  title={{GRES}: Generalized Referring Expression Segmentation},
  author={Liu, Chang and Ding, Henghui and Jiang, Xudong},
  booktitle={CVPR},
  year={2023}
}""",
            homepage="https://github.com/henghuiding/gRefCOCO",
            obtain="Download grefcoco from the gRefCOCO project page and place "
            "grefs(unc).json beside a COCO-2014 instances.json.",
            builder="regionkit.builders.grefcoco:GRefCocoBuilder",
            splits=("train", "val", "testA", "testB"),
        ),
        Source(
            name="vg",
            title="Visual Genome v1.2 (objects and relationships v1.4)",
            format="Visual Genome JSON lists",
            files=(
                ExpectedFile("image_data.json", "image sizes, urls and coco_id/flickr_id"),
                ExpectedFile("objects.json", "objects with names, synsets, boxes"),
                ExpectedFile("attributes.json", "objects with attributes (key may be missing)"),
                ExpectedFile("relationships.json", "subject-predicate-object triples"),
                ExpectedFile("region_descriptions.json", "region phrases (top-level key `id`)"),
            ),
            images="the folder holding VG_100K/ and VG_100K_2/",
            license="cc-by-4.0",
            license_note="Visual Genome is CC BY 4.0; images come from YFCC100M and COCO.",
            citation="""@article{krishna2017visualgenome,
  title={Visual Genome: Connecting Language and Vision Using Crowdsourced Dense Image Annotations},
  author={Krishna, Ranjay and Zhu, Yuke and Groth, Oliver and Johnson, Justin and Hata, Kenji and Kravitz, Joshua and Chen, Stephanie and Kalantidis, Yannis and Li, Li-Jia and Shamma, David A. and Bernstein, Michael S. and Fei-Fei, Li},
  journal={IJCV},
  year={2017}
}""",
            homepage="https://homes.cs.washington.edu/~ranjay/visualgenome/",
            obtain="Download the v1.2 JSON zips (and v1.4 objects/relationships) and images.zip, "
            "images2.zip from the Visual Genome site.",
            builder="regionkit.builders.vg:VisualGenomeBuilder",
            splits=("train",),
        ),
        Source(
            name="vcr",
            title="VCR (Visual Commonsense Reasoning)",
            format="jsonl + per-image metadata JSON",
            files=(
                ExpectedFile("{split}.jsonl", "questions, answer and rationale choices, labels"),
            ),
            images="vcr1images/ (each image has a metadata .json with boxes and polygons beside it)",
            license="other",
            license_note="VCR's terms of use: non-commercial research, no redistribution; "
            "images are movie stills.",
            redistributable=False,
            citation="""@inproceedings{zellers2019vcr,
  title={From Recognition to Cognition: Visual Commonsense Reasoning},
  author={Zellers, Rowan and Bisk, Yonatan and Farhadi, Ali and Choi, Yejin},
  booktitle={CVPR},
  year={2019}
}""",
            homepage="https://visualcommonsense.com",
            obtain="Accept the terms at visualcommonsense.com and download vcr1annots.zip and "
            "vcr1images.zip.",
            builder="regionkit.builders.vcr:VcrBuilder",
            splits=("train", "val", "test"),
        ),
        Source(
            name="flickr30k",
            title="Flickr30k Entities",
            format="Sentences/*.txt markup + Annotations/*.xml (Pascal VOC-like)",
            files=(
                ExpectedFile("Sentences/*.txt", "five captions per image with [/EN#id/type ...]"),
                ExpectedFile("Annotations/*.xml", "boxes per entity chain, 1-based inclusive"),
                ExpectedFile("{split}.txt", "image ids of the split, one per line"),
            ),
            images="flickr30k-images/",
            license="other",
            license_note="Research use; images under Flickr's terms of use.",
            citation="""@inproceedings{plummer2015flickr30k,
  title={Flickr30k Entities: Collecting Region-to-Phrase Correspondences for Richer Image-to-Sentence Models},
  author={Plummer, Bryan A. and Wang, Liwei and Cervantes, Chris M. and Caicedo, Juan C. and Hockenmaier, Julia and Lazebnik, Svetlana},
  booktitle={ICCV},
  year={2015}
}""",
            homepage="https://github.com/BryanPlummer/flickr30k_entities",
            obtain="Unzip annotations.zip from the flickr30k_entities repository; request the "
            "Flickr30k images from its authors.",
            builder="regionkit.builders.flickr30k:Flickr30kBuilder",
            splits=("train", "val", "test"),
        ),
        Source(
            name="muse",
            title="MUSE (PixelLM multi-target reasoning segmentation)",
            format="JSON list of image records with questions and instance answers",
            files=(
                ExpectedFile(
                    "muse_{split}.json",
                    "questions, answers with instance polygons (or MUSE_{split}.json)",
                ),
            ),
            images="the folder holding COCO train2014/, train2017/ and val2017/",
            license="other",
            license_note="Research use per the PixelLM project; images are COCO's, under "
            "Flickr's terms of use.",
            citation="""@inproceedings{ren2024pixellm,
  title={{PixelLM}: Pixel Reasoning with Large Multimodal Model},
  author={Ren, Zhongwei and Huang, Zhicheng and Wei, Yunchao and Zhao, Yao and Fu, Dongmei and Feng, Jiashi and Jin, Xiaojie},
  booktitle={CVPR},
  year={2024}
}""",
            homepage="https://github.com/MaverickRen/PixelLM",
            obtain="Download the MUSE json files linked from the PixelLM repository.",
            builder="regionkit.builders.muse:MuseBuilder",
            splits=("train", "val", "test_less", "test_many"),
        ),
    )
}


def get_source(name: str) -> Source:
    """The catalog entry for `name`, or a KeyError listing the names that exist."""
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; the catalog has: {', '.join(SOURCES)}") from None
