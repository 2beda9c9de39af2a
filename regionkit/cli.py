"""`regionkit`: build region datasets from source files, inspect them, and look at them.

Each subcommand maps to one function. Heavy libraries (Ray, datasets) are imported inside the
commands, so `regionkit --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from regionkit.builders.base import BuilderInputError
from regionkit.builders.registry import available_sources, builder_class
from regionkit.catalog.recipes import RECIPES
from regionkit.catalog.sources import SOURCES, get_source

if TYPE_CHECKING:
    from regionkit.pipelines.build import BuildOptions
    from regionkit.pipelines.llm.judge import CaptionJudge
    from regionkit.pipelines.recipe_run import RecipeFunction
    from regionkit.pipelines.report import BuildReport

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 3
"""An LLM budget ran out: what was done is kept, a rerun goes on."""
EXIT_INTERRUPTED = 130
"""What a shell reports for a program stopped by Ctrl-C (128 + SIGINT)."""


def _refuse(message: object) -> int:
    """Say why the input cannot be used; the exit code for bad input."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


EPILOG = """examples:
  regionkit demo
  regionkit build coco --annotations instances_val2017.json --images val2017 --out out/coco
  regionkit inspect out/coco
  regionkit show out/coco --n 8 --out preview.png
  regionkit sources coco
  regionkit recipes
  regionkit recipe seed --input out/refcoco --input out/vg --out out/seed
"""


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("build options")
    group.add_argument("--out", type=Path, required=True, help="output dataset folder")
    group.add_argument(
        "--items-per-shard",
        type=int,
        default=1000,
        help="images per Parquet shard (default 1000; shard counts are powers of two)",
    )
    group.add_argument("--shards", type=int, default=None, help="exact shard count per split")
    group.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to run on (default: $RAY_ADDRESS, a running local cluster, or an "
        "embedded one started for this build)",
    )
    group.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="shards submitted at once (default: twice the cluster's CPUs)",
    )
    group.add_argument(
        "--retries",
        type=int,
        default=2,
        help="reruns of a shard whose Ray worker, node or result was lost (default 2); an error "
        "in the data or the code is not retried",
    )
    group.add_argument(
        "--shard-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop and report a shard still running this long after it was submitted "
        "(default: no limit)",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing build of different inputs in --out (a build of the same "
        "inputs is resumed instead)",
    )
    group.add_argument(
        "--name", default=None, help="dataset name for the card (default: --out's name)"
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def _files_help(source: str) -> str:
    entry = get_source(source)
    files = "\n".join(f"  {f.pattern:34} {f.description}" for f in entry.files)
    where = "under --root" if entry.files_option == "--root" else f"({entry.files_option})"
    return (
        f"{entry.title}: {entry.format}.\n\nexpected files {where}:\n{files}\n"
        f"images: {entry.images}\n\n"
        f"license: {entry.license_note}\nobtain: {textwrap.fill(entry.obtain, 90)}"
    )


def _build_options(args: argparse.Namespace) -> BuildOptions:
    from regionkit.pipelines.build import BuildOptions

    return BuildOptions(
        out=args.out,
        items_per_shard=args.items_per_shard,
        shards=args.shards,
        ray_address=args.ray_address,
        max_in_flight=args.max_in_flight,
        retries=args.retries,
        shard_timeout=args.shard_timeout,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        name=args.name,
    )


def _reported(run: Callable[[], BuildReport]) -> int:
    """Run a build and print its report, or say in one paragraph why it did not finish."""
    from regionkit.pipelines.build import BuildFailed, BuildInterrupted
    from regionkit.pipelines.out_folder import OutFolderRefused
    from regionkit.pipelines.recipe_run import RecipeError

    try:
        report = run()
    except (BuilderInputError, OutFolderRefused, RecipeError) as error:
        return _refuse(error)
    except BuildFailed as error:
        if error.kinds.get("BudgetExhausted"):
            print(
                f"stopped: the LLM budget is spent ({error.kinds['BudgetExhausted']} shard(s) "
                "left unfinished). Finished shards are kept and every answer received is "
                "cached: rerun the same command, with a larger --max-requests or --max-tokens, "
                "to go on.",
                file=sys.stderr,
            )
            return EXIT_BUDGET
        print(f"build failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BuildInterrupted as interrupted:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    print(report.format())
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from regionkit.pipelines.build import run_build

    return _reported(
        lambda: run_build(builder_class(args.source).from_args(args), _build_options(args))
    )


def cmd_recipes(args: argparse.Namespace) -> int:
    for name, recipe in RECIPES.items():
        print(f"{name:13} {recipe.title}\n{'':13} reads: {', '.join(recipe.sources)}")
    return 0


def cmd_recipe(args: argparse.Namespace) -> int:
    from regionkit.pipelines.recipe_run import load_recipe

    return _reported(lambda: _run_recipe(load_recipe(args.recipe), args))


def _run_recipe(function: RecipeFunction, args: argparse.Namespace) -> BuildReport:
    """Connect to Ray first, so a budget can be one actor that every worker shares."""
    from regionkit.pipelines.build import run_pipeline
    from regionkit.pipelines.llm.budget import UNLIMITED, Budget
    from regionkit.pipelines.ray_runtime import RaySession
    from regionkit.pipelines.recipe_run import make_generator, recipe_inputs

    session = RaySession(args.ray_address)
    shared = None
    if args.max_requests is not None or args.max_tokens is not None:
        from regionkit.pipelines.ray_budget import SharedBudget

        session.connect()
        shared = SharedBudget(args.max_requests, args.max_tokens)
    budget: Budget = shared or UNLIMITED
    generator = make_generator(args.llm, _endpoint_options(args), args.llm_cache, budget)
    pipeline = function(recipe_inputs(args.input, args.evaluation, generator, args.with_image))
    try:
        return run_pipeline(pipeline, _build_options(args), session)
    finally:
        if shared is not None:
            print(f"LLM budget spent: {shared.spent()}", file=sys.stderr)


def _endpoint_options(args: argparse.Namespace) -> dict[str, object]:
    """The `--llm-*` options as `Endpoint` settings."""
    return {
        "base_url": args.llm_base_url,
        "api_key_env": args.llm_key_env,
        "timeout": args.llm_timeout,
        "retries": args.llm_retries,
        "max_in_flight": args.llm_in_flight,
    }


def _add_endpoint_options(llm: argparse._ArgumentGroup) -> None:
    """How to reach an OpenAI-compatible endpoint and keep its answers."""
    llm.add_argument(
        "--llm-base-url", default=None, help="the endpoint's API root, e.g. http://host:8000/v1"
    )
    llm.add_argument(
        "--llm-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default OPENAI_API_KEY; the key "
        "itself never appears in logs, the manifest or the card)",
    )
    llm.add_argument(
        "--llm-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="answer cache (default $REGIONKIT_LLM_CACHE or ~/.cache/regionkit/llm; on a "
        "cluster, a folder every node sees): a rerun asks nothing it has asked before",
    )
    llm.add_argument(
        "--llm-in-flight",
        type=int,
        default=16,
        help="requests in flight per shard task (default 16); at most --max-in-flight shard "
        "tasks run at once, so the bound overall is their product",
    )
    llm.add_argument("--llm-timeout", type=float, default=120.0, help="seconds per request")
    llm.add_argument(
        "--llm-retries",
        type=int,
        default=4,
        help="retries of a request that was rate limited, failed on the server or timed out "
        "(default 4, with backoff; a server's retry-after is honoured)",
    )


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recipe options")
    group.add_argument(
        "--input",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="a dataset built by `regionkit build` (repeat for several)",
    )
    group.add_argument(
        "--evaluation",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a further dataset whose val/test images training rows must not show (the "
        "inputs' own val/test splits always count)",
    )
    llm = parser.add_argument_group("generation")
    llm.add_argument(
        "--llm",
        default="template",
        metavar="GENERATOR",
        help="'template' (default: offline, deterministic) or 'openai:MODEL' for any "
        "OpenAI-compatible endpoint",
    )
    _add_endpoint_options(llm)
    llm.add_argument(
        "--with-image",
        action="store_true",
        help="show a vision endpoint each region: the image with the region outlined and a "
        "crop twice the region's size (fine_grained)",
    )
    llm.add_argument(
        "--max-requests", type=int, default=None, help="stop cleanly after this many requests"
    )
    llm.add_argument(
        "--max-tokens", type=int, default=None, help="stop cleanly after this many tokens"
    )


def recipe_main(function: RecipeFunction, argv: list[str] | None = None) -> int:
    """What a recipe file runs as a script: `python my_recipe.py --input DIR --out DIR`."""
    parser = argparse.ArgumentParser(description=(function.__doc__ or "a regionkit recipe"))
    _add_recipe_options(parser)
    _add_build_options(parser)
    args = parser.parse_args(argv)
    return _reported(lambda: _run_recipe(function, args))


def _unused(record: dict) -> str:
    """A step's rows dropped and turns cut, when there were any."""
    said = {
        "too_long": "rows too long",
        "no_dialogue": "rows without a dialogue",
        "turns_cut": "turns cut",
    }
    counts = [f"{record[key]} {words}" for key, words in said.items() if record.get(key)]
    return f"  ({', '.join(counts)})" if counts else ""


def cmd_train(args: argparse.Namespace) -> int:
    from regionkit.train.config import ConfigError, load_config
    from regionkit.train.distributed import placement
    from regionkit.train.trainer import train

    try:
        config = load_config(args.config)
    except ConfigError as error:
        return _refuse(error)

    def show(record: dict) -> None:
        parts = " ".join(f"{name} {value:.4f}" for name, value in sorted(record["parts"].items()))
        print(
            f"step {record['step']}/{config.steps}  loss {record['loss']:.4f}  ({parts})  "
            f"lr {record['lr']:.2e}  {record['samples_per_s']:.1f} samples/s  "
            f"{record['tokens_per_s']:.0f} tokens/s{_unused(record)}"
        )

    try:
        train(config, log=show, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as error:
        return _refuse(error)
    except KeyboardInterrupt:
        print(
            "interrupted: rerun the same command to resume from the last checkpoint",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if placement().is_main:
        print(f"done: checkpoint and log in {config.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from transformers import AutoTokenizer

    from regionkit.modeling import RegionForConditionalGeneration
    from regionkit.train.evaluate import dataset_rows, evaluate, format_results, processor_for
    from regionkit.train.questions import KINDS

    missing = [str(p) for p in [args.model, *args.data] if not Path(p).is_dir()]
    if missing:
        return _refuse(f"no such folder: {', '.join(missing)}")
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        return _refuse(f"--kinds {unknown}: known kinds are {list(KINDS)}")
    try:
        judge = _caption_judge(args)
    except ValueError as error:
        return _refuse(error)
    model = RegionForConditionalGeneration.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    processor = processor_for(model, tokenizer, args.max_tiles)
    results = {}
    for folder in args.data:
        try:
            rows = list(dataset_rows(folder, args.split))
        except (ValueError, FileNotFoundError) as error:
            return _refuse(error)
        scores = evaluate(model, processor, rows, kinds, max_new_tokens=args.max_new_tokens)
        for kind, metrics in scores.result(judge).items():
            results[f"{Path(folder).name}:{args.split}:{kind}"] = metrics
        if scores.cases and judge is None and "caption" in kinds:
            print(
                f"note: {Path(folder).name}: {len(scores.cases)} free-text answers not scored "
                "(pass --judge openai:MODEL to have an LLM judge them)",
                file=sys.stderr,
            )
        if scores.skipped:
            print(
                f"note: {Path(folder).name}: {scores.skipped} questions skipped (a target "
                "without a mask)",
                file=sys.stderr,
            )
    print(format_results(results))
    if judge is not None:
        print(f"judge: {dict(sorted(judge.take_counters().items()))}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.out}")
    return 0


def _caption_judge(args: argparse.Namespace) -> CaptionJudge | None:
    """The LLM judge `--judge` names, or None."""
    if args.judge is None:
        return None
    from regionkit.pipelines.llm.budget import LocalBudget
    from regionkit.pipelines.llm.client import Endpoint
    from regionkit.pipelines.llm.judge import CaptionJudge
    from regionkit.pipelines.recipe_run import default_cache_folder

    kind, _, name = args.judge.partition(":")
    if kind != "openai" or not name:
        raise ValueError(f"--judge {args.judge!r}: expected 'openai:MODEL'")
    endpoint = Endpoint(name, **_endpoint_options(args))  # type: ignore[arg-type]
    budget = LocalBudget(args.max_requests, None)
    return CaptionJudge(endpoint, args.llm_cache or default_cache_folder(), budget)


def cmd_publish(args: argparse.Namespace) -> int:
    from regionkit.pipelines.publish import (
        PublishError,
        PublishOptions,
        Staged,
        UploadFailed,
        publish,
    )

    options = PublishOptions(
        repo_id=args.repo,
        private=args.private,
        embed_images=args.embed_images,
        revision=args.revision,
        accept_restricted=args.accept_restricted_licenses,
    )
    try:
        result = publish(args.path, options, dry_run=args.dry_run)
    except PublishError as error:
        return _refuse(error)
    except UploadFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(result, Staged):
        print(f"dry run: would upload to {args.repo} ({args.revision}):")
        for path, local in result.files.items():
            print(f"  {path}  ({local.stat().st_size:,} bytes)")
        print("\nthe card (README.md):\n")
        print(result.card)
        return 0
    if result.commit_url is None:
        print(f"{args.repo} is up to date: nothing to upload")
    else:
        print(f"published: {result.commit_url}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from regionkit.pipelines.inspect import NotADataset, inspect_dataset

    try:
        report = inspect_dataset(args.path)
    except NotADataset as error:
        return _refuse(error)
    print(report.format())
    return 0 if report.ok else EXIT_FAILED


def cmd_show(args: argparse.Namespace) -> int:
    from regionkit.pipelines.inspect import NotADataset
    from regionkit.pipelines.preview import render_preview

    try:
        out = render_preview(args.path, args.out, args.n, args.split)
    except (NotADataset, ValueError) as error:
        return _refuse(error)
    print(f"wrote {out}")
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    if args.name:
        try:
            print(_files_help(args.name))
        except KeyError as error:
            return _refuse(error.args[0])
        print(f"\ncitation:\n{get_source(args.name).citation}")
        return 0
    ready = set(available_sources())
    for name, entry in SOURCES.items():
        state = "ready" if name in ready else "described"
        print(f"{name:10} {state:9} {entry.title} [{entry.license}]")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from regionkit.pipelines.build import BuildInterrupted
    from regionkit.pipelines.demo import demo_sources, run_demo, run_demo_recipes

    known = demo_sources()
    sources = args.sources or known
    unknown = [s for s in sources if s not in known]
    if unknown:
        print(
            f"error: no demo sample for {unknown}; choose from {', '.join(known)}", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    out: Path = args.out
    print(f"writing sample sources (broken records included) under {out / 'sources'}")
    try:
        results = run_demo(out, sources, args.seed, args.ray_address, progress=not args.no_progress)
        built = [out / r.source for r in results]
        results += run_demo_recipes(out, built, args.ray_address, progress=not args.no_progress)
    except (BuildInterrupted, KeyboardInterrupt):
        print("interrupted: rerun `regionkit demo` to run it again", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(results[0].report.format())
    print("\nevery source, then every recipe over them (units: in = out + quarantined):")
    for result in results:
        print(f"  {result.summary()}")
    if (out / "recipes" / "seed").is_dir() and (out / "grefcoco").is_dir():
        from regionkit.train.demo import train_and_evaluate
        from regionkit.train.evaluate import format_results

        records, scores = train_and_evaluate(
            out / "train", out / "recipes" / "seed", "train", out / "grefcoco", "val"
        )
        losses = ", ".join(f"{r['loss']:.3f}" for r in records)
        print(f"\ntiny model, {len(records)} steps on the seed recipe: loss {losses}")
        print(format_results(scores))
    print(f"\nquarantine reasons: {out}/<source>/quarantine/*.jsonl")
    print(f"previews: {out / 'previews'}/<source>.png")
    print(f"open one in Python: datasets.load_dataset({str(out / sources[0])!r})")
    return 0 if all(r.valid for r in results) else EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regionkit",
        description="Build unified region-level datasets (Arrow/Parquet) from RefCOCO, gRefCOCO, "
        "Visual Genome, VCR, Flickr30k Entities, COCO and MUSE files; inspect and preview them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # the deepspeed launcher puts --local_rank=N before the command; the environment has it too
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser(
        "build",
        help="build a dataset from a source's files on Ray",
        description="Read a source in its on-disk format and write data/*.parquet, "
        "quarantine/, manifest.json and a README.md dataset card. Rerunning with the same "
        "arguments resumes: only unfinished shards are built.",
    )
    per_source = build.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name in available_sources():
        sub = per_source.add_parser(
            name,
            help=get_source(name).title,
            description=_files_help(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        builder_class(name).add_arguments(sub)
        _add_build_options(sub)
        sub.set_defaults(func=cmd_build)

    inspect = commands.add_parser(
        "inspect",
        help="counts, per-split stats, quarantine summary and validation",
        description="Re-check a built dataset (shard hashes, row counts, every row, unique "
        "ids) and summarise it. Exits 1 if anything is wrong.",
    )
    inspect.add_argument("path", type=Path, help="a dataset folder written by `regionkit build`")
    inspect.set_defaults(func=cmd_inspect)

    show = commands.add_parser(
        "show",
        help="draw rows with masks, boxes and texts into a PNG",
        description="Draw rows of a built dataset into one PNG contact sheet: each region's "
        "mask tinted, its box outlined and labelled with its index and category, and the row's "
        "groundings, captions and messages below. Rows come from every split in turn unless "
        "--split picks one. Looking catches what counters cannot: shifted masks, boxes in the "
        "wrong convention, a grounding that points at the wrong region.",
    )
    show.add_argument("path", type=Path, help="a dataset folder written by `regionkit build`")
    show.add_argument("--n", type=int, default=8, help="rows to draw (default: 8)")
    show.add_argument("--split", default=None, help="only this split (default: every split)")
    show.add_argument(
        "--out", type=Path, default=Path("preview.png"), help="PNG to write (default: preview.png)"
    )
    show.set_defaults(func=cmd_show)

    recipes = commands.add_parser("recipes", help="list the recipes (training datasets)")
    recipes.set_defaults(func=cmd_recipes)

    recipe = commands.add_parser(
        "recipe",
        help="make a training dataset from built datasets (a recipe name or file)",
        description="Run a recipe over datasets built by `regionkit build`: it writes the "
        "dialogue of each image (generated by templates or by an LLM), checks it, and writes "
        "a dataset like a build does (resumable, quarantine, manifest, card). Training rows "
        "whose image a val/test split shows are kept out. With --max-requests/--max-tokens a "
        "build that spends its budget stops with exit code 3; rerun to go on.",
        epilog="examples:\n"
        "  regionkit recipe seed --input out/refcoco --input out/vg --out out/seed\n"
        "  OPENAI_API_KEY=... regionkit recipe fine_grained --input out/coco --out out/fg \\\n"
        "      --llm openai:gpt-4o-mini --max-requests 1000\n"
        "  regionkit recipe ./my_recipe.py --input out/coco --out out/mine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    recipe.add_argument("recipe", help=f"one of {', '.join(RECIPES)}, or a recipe file's path")
    _add_recipe_options(recipe)
    _add_build_options(recipe)
    recipe.set_defaults(func=cmd_recipe)

    train = commands.add_parser(
        "train",
        help="train the region model on built datasets (one process, or many under a launcher)",
        description="Train the region model on regionkit datasets as a CONFIG file (YAML or\n"
        "JSON) describes: the model ('tiny' or a PerceptionLM checkpoint), the datasets and\n"
        "their weights, steps, batch sizes, accumulation, learning rate with warmup and\n"
        "cosine decay, clipping, frozen parts, and the engine: DeepSpeed (ZeRO stage 2 by\n"
        "default, stage 3 and CPU offload by config, bf16 on GPUs) or plain torch.\n\n"
        "Run it as is for one process, or under torchrun or the deepspeed launcher for\n"
        "several. Checkpoints hold the model, optimizer, schedule, random generators and\n"
        "stream position: rerunning the same command resumes with the same next batch.",
        epilog="examples:\n"
        "  regionkit train run.yaml\n"
        "  torchrun --nproc-per-node 8 -m regionkit train run.yaml\n"
        "  deepspeed --num_gpus 8 --module regionkit train run.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("config", type=Path, help="the run's YAML or JSON config")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "eval",
        help="score a region model on built datasets by generating its answers",
        description="Put every question of a split to a saved region model, one at a time, and\n"
        "score its answers by the kind of the reference answer:\n"
        "  refer    a builder's referring texts, asked as 'Segment <text>.' (gRefCOCO's\n"
        "           no-target texts included): gIoU, cIoU, N-acc, T-acc (GSVA, ReLA)\n"
        "  segment  turns whose answer holds masks or is <rej>: the same, plus masks\n"
        "           matched one to one to the targets (Hungarian): matched_gIoU/cIoU\n"
        "  choice   lettered multiple choice: accuracy\n"
        "  caption  free-text answers, scored 1-10 against the reference by an LLM judge\n"
        "           (--judge), reported in [0, 1]; skipped without one\n"
        "Prints a table; --out also writes the results as JSON.",
        epilog="examples:\n"
        "  regionkit eval --model runs/first/model --data out/grefcoco --split val\n"
        "  regionkit eval --model runs/first/model --data out/relation --split val \\\n"
        "      --judge openai:gpt-4o-mini --max-requests 2000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument(
        "--model", type=Path, required=True, help="a saved region model and its tokenizer"
    )
    evaluate.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="a built dataset (repeat for several)",
    )
    evaluate.add_argument("--split", default="val", help="the split to score (default: val)")
    evaluate.add_argument(
        "--max-tiles", type=int, default=16, help="most tiles per image (default 16)"
    )
    evaluate.add_argument(
        "--max-new-tokens", type=int, default=64, help="most tokens per answer (default 64)"
    )
    evaluate.add_argument(
        "--kinds",
        default="refer,segment,choice,caption",
        help="the kinds of question to ask, comma-separated (default: all)",
    )
    evaluate.add_argument("--out", type=Path, default=None, help="results JSON to write")
    judge = evaluate.add_argument_group("caption judge")
    judge.add_argument(
        "--judge",
        default=None,
        metavar="openai:MODEL",
        help="the model that scores free-text answers, on any OpenAI-compatible endpoint",
    )
    _add_endpoint_options(judge)
    judge.add_argument(
        "--max-requests", type=int, default=None, help="stop cleanly after this many requests"
    )
    evaluate.set_defaults(func=cmd_eval)

    publish = commands.add_parser(
        "publish",
        help="upload a built dataset to the Hugging Face Hub",
        description="Upload a folder that `regionkit build` or `regionkit recipe` wrote to a\n"
        "Hub dataset repository, so that datasets.load_dataset('OWNER/NAME') and the\n"
        "dataset viewer work: the Parquet shards, the card (README.md, rewritten for the\n"
        "published copy: licenses, citations, counts, generators, prompts, checks, a preview),\n"
        "the manifest and the quarantine files.\n\n"
        "Rows name images by local path, so publishing needs --embed-images (the shards are\n"
        "rewritten with the image bytes into <DIR>/.publish/). Only what changed is sent, in\n"
        "one commit that also deletes stale shards; the same build again sends nothing, and\n"
        "an interrupted publish resumes when rerun. The token comes from $HF_TOKEN or\n"
        "`hf auth login` and is never printed; $HF_ENDPOINT points at another Hub.",
        epilog="examples:\n"
        "  regionkit publish out/relation --repo me/relation-regions --embed-images --dry-run\n"
        "  regionkit publish out/relation --repo me/relation-regions --embed-images --private",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    publish.add_argument("path", type=Path, help="a built dataset folder")
    publish.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the Hub dataset")
    publish.add_argument(
        "--private",
        action="store_true",
        help="create the repository private (an existing public one is refused)",
    )
    publish.add_argument(
        "--embed-images",
        action="store_true",
        help="write the image bytes into the shards (needed for rows that name local files)",
    )
    publish.add_argument(
        "--revision", default="main", help="the branch to commit to (default main)"
    )
    publish.add_argument(
        "--accept-restricted-licenses",
        action="store_true",
        help="publish sources whose terms forbid redistribution (VCR's), stating you may; "
        "the card records it",
    )
    publish.add_argument(
        "--dry-run",
        action="store_true",
        help="stage and list what would be uploaded, and print the card; no network",
    )
    publish.set_defaults(func=cmd_publish)

    sources = commands.add_parser("sources", help="list catalog sources, or describe one")
    sources.add_argument("name", nargs="?", help="a source name, e.g. refcocog")
    sources.set_defaults(func=cmd_sources)

    demo = commands.add_parser(
        "demo",
        help="write sample sources, build them on an embedded Ray, report and preview",
        description="Write a small sample of every source in its real on-disk format, broken "
        "records included, under OUT/sources/; build each into OUT/<source>/, re-validate it, "
        "draw OUT/previews/<source>.png, and print per source the rows and in = out + "
        "quarantined for every kind of input. Then run every recipe over those datasets with "
        "the template generator into OUT/recipes/<recipe>/, checked and previewed the same "
        "way. Exits 1 if any build does not validate.",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="folder for everything (default: out/demo; a rerun keeps the builds whose inputs "
        "did not change)",
    )
    demo.add_argument("--seed", type=int, default=0, help="sample generator seed (default: 0)")
    demo.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster (default: $RAY_ADDRESS, a running local cluster, or an embedded one)",
    )
    demo.add_argument(
        "--sources",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        default=None,
        help="comma-separated sources to demo (default: all of them)",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
