"""``cloudxfer run``: run methods over seeds through the runner and write their table.

Every run is the ``cloudxfer fit`` / ``test`` subprocess a user would type (``--print-commands``
lists them in dependency order for a cluster scheduler); finished runs are reused, interrupted
ones resume. Within one run, several GPUs or nodes are Lightning's DDP (``--trainer.devices``,
``torchrun``, SLURM); ``--jobs`` runs independent runs side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cloudxfer.files import TRAINING_FILENAME
from cloudxfer.reporting.report import convergence_summary, read_record
from cloudxfer.reporting.tables import (
    TableRow,
    collect,
    format_markdown,
    format_paper_table,
    write_csv,
)
from cloudxfer.runner.data_checks import (
    check_source,
    check_table,
    check_target,
    content_line,
    dataset_root,
    shipped_standardisation_warning,
)
from cloudxfer.runner.executor import RunnerError, execute, stale_runs
from cloudxfer.runner.methods import METHODS, TABLE_SETTINGS, TABLES
from cloudxfer.runner.plan import (
    PlannedRun,
    Setting,
    dataset_path,
    plan,
    profile_path,
    protocol_of,
)
from cloudxfer.runner.provenance import git_revision
from cloudxfer.sim.record import describe_simulation, simulation_record
from datamodules.errors import data_error
from datamodules.runfiles import atomic_write_text

__all__ = [
    "add_setting_arguments",
    "check_data",
    "convergence_section",
    "execute_and_collect",
    "main",
    "prepare_data",
    "print_commands",
    "setting_from",
]


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``chain``: profile, data set, data roots, simulation."""
    parser.add_argument("--profile", default="quick", help="profile name or YAML path")
    parser.add_argument(
        "--dataset",
        default="sen12ms_cloud",
        help="target data-set file, or the name of one under experiments/data/",
    )
    parser.add_argument("--data-root", type=Path, default=None, help="target data root")
    parser.add_argument("--source-root", type=Path, default=None, help="source data root")
    parser.add_argument(
        "--synth", action="store_true", help="simulate missing data under OUT/data first"
    )
    parser.add_argument("--pairs", type=int, default=1200, help="simulated target pairs")
    parser.add_argument(
        "--per-class", type=int, default=150, help="simulated source images per class"
    )
    parser.add_argument(
        "--source-role",
        choices=("nwpu", "aid"),
        default=None,
        help="which simulated source set --synth writes (NWPU-RESISC45 or AID role; default: "
        "the table's, else nwpu); a real folder's role is read from its class names",
    )
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--jobs", type=int, default=1, help="independent runs side by side")
    parser.add_argument(
        "--keep-last",
        action="store_true",
        help="keep each finished fit's last.ckpt (default: deleted once the fit finished, "
        "since only an interrupted fit resumes from it; best.ckpt is the run's result)",
    )
    parser.add_argument(
        "--reuse-stale",
        action="store_true",
        help="keep finished runs of the same configuration made by other code (default: "
        "report and re-run them); a table made of such runs names them in its header and CSV",
    )
    parser.add_argument(
        "--share-dir",
        type=Path,
        default=None,
        help="folder of finished source-domain runs (source pre-training, SPL's restorer) "
        "shared by tables and figure levels: such a run is copied from there when one of the "
        "same configuration finished, and put there when it finishes (default: no sharing)",
    )
    parser.add_argument(
        "--print-commands",
        action="store_true",
        help="print every fit/test command in dependency order and stop",
    )


class DataMismatchError(ValueError):
    """A data folder ``--synth`` would reuse was simulated with other settings."""


def _check_simulation(root: Path, wanted: dict[str, object]) -> None:
    """Refuse to reuse a simulated folder made with another seed, size, scheme or role.

    A folder without a simulation record (real data, or simulated elsewhere) is the user's
    data and is used as it is.
    """
    record = simulation_record(root)
    if record is None:
        return
    differ = {key: value for key, value in wanted.items() if record.get(key) != value}
    if differ:
        made = ", ".join(f"{key} {record.get(key)}" for key in differ)
        asked = ", ".join(f"{key} {value}" for key, value in differ.items())
        raise DataMismatchError(
            f"{root}: simulated with {made}, but --synth asks for {asked}; remove the folder, "
            "or give another --out or --data-root/--source-root"
        )


def prepare_data(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """Return the target and source roots, simulating missing ones under ``out`` if asked.

    A data file that names its root (``cloudxfer prepare`` writes one) is never simulated.
    """
    named = dataset_root(dataset_path(args.dataset))
    if named is not None and args.data_root is not None and args.data_root.resolve() != named:
        raise DataMismatchError(
            f"{dataset_path(args.dataset)} reads the data under {named}; --data-root "
            f"{args.data_root} would be ignored: leave it out"
        )
    data_root = (named or args.data_root or out / "data" / "target").resolve()
    source_root = (args.source_root or out / "data" / "source").resolve()
    if args.synth and not args.print_commands:
        from cloudxfer.runtime import available_cores
        from cloudxfer.sim.cli import main as synth

        scheme = "hunan" if dataset_path(args.dataset).stem == "cloudy_pairs" else "sen12ms_cloud"
        target = {"generator": "target", "scheme": scheme, "pairs": args.pairs}
        role = args.source_role or "nwpu"
        source = {"generator": "source", "role": role, "per_class": args.per_class}
        if named is None:
            _check_simulation(data_root, {**target, "seed": args.seed})
        _check_simulation(source_root, {**source, "seed": args.seed})
        workers = str(available_cores())
        if not data_root.exists() and named is None:
            synth(["target", "--out", str(data_root), "--pairs", str(args.pairs),
                   "--seed", str(args.seed), "--scheme", scheme, "--workers", workers])  # fmt: skip
        if not source_root.exists():
            synth(["source", "--out", str(source_root), "--per-class", str(args.per_class),
                   "--seed", str(args.seed), "--workers", workers,
                   "--role", role])  # fmt: skip
    return data_root, source_root


STAGE_PREFIX = "--stage."
"""``--stage.<method>.<key>=<value>``: an override for one method's runs alone."""


def setting_from(
    args: argparse.Namespace, parser: argparse.ArgumentParser, out: Path, overrides: list[str]
) -> Setting:
    """Build the runs' setting; the parser reports a missing profile or data set folder."""
    profile = profile_path(args.profile)
    dataset = dataset_path(args.dataset)
    for path in (profile, dataset):
        if not path.exists():
            parser.error(f"{path}: not found")
    dataset = dataset.resolve()
    common, per_stage = [], []
    for arg in overrides:
        if not arg.startswith(STAGE_PREFIX):
            common.append(arg)
            continue
        name, _, rest = arg.removeprefix(STAGE_PREFIX).partition(".")
        if name not in METHODS or not rest:
            parser.error(
                f"{arg}: give --stage.<method>.<key>=<value> with a registered method "
                f"({', '.join(METHODS)})"
            )
        per_stage.append((name, f"--{rest}"))
    try:
        data_root, source_root = prepare_data(args, out)
    except DataMismatchError as err:
        parser.error(str(err))
    # a data file naming its root (a prepared one) enters run ids by its text, whose content
    # line covers its patches; the root itself is then no run's argument
    roots = [f"--profile.source_root={source_root}"]
    if dataset_root(dataset) is None:
        roots.insert(0, f"--profile.data_root={data_root}")
    return Setting(
        profile=profile,
        dataset=dataset,
        overrides=(*roots, *common),
        stage_overrides=tuple(per_stage),
        run_root=lambda seed: out / f"seed{seed}",
        share_dir=args.share_dir.resolve() if args.share_dir else None,
    )


def check_data(runs: Sequence[PlannedRun]) -> None:
    """Check the data the planned runs open, before the first of them trains.

    The target root and its labels file or patch table (when a run reads target data), the
    source folder (when one reads source images): a problem is one line naming the file.

    Raises:
        DataError: What is missing or wrong.

    """
    if not runs:
        return
    setting = runs[0].setting
    roots = dict(
        arg.removeprefix("--profile.").split("=", 1)
        for arg in setting.overrides
        if arg.startswith(("--profile.data_root=", "--profile.source_root="))
    )
    methods = {run.method.name: run.method for run in runs}.values()
    if any(m.reads == "target" for m in methods):
        data_root = dataset_root(setting.dataset) or Path(roots.get("data_root", "."))
        check_target(setting.dataset, data_root)
        shipped_standardisation_warning(setting.dataset, data_root)
    if any(m.reads == "source" or "source" in m.card.streams for m in methods):
        check_source(Path(roots["source_root"]))


def data_description(setting: Setting) -> str:
    """Return the target and source roots, each with how it was simulated (or that it was not).

    A data file naming its root (``cloudxfer prepare``) is described by that root and the
    file's content line.
    """
    parts = []
    named = dataset_root(setting.dataset)
    if named is not None:
        content = content_line(setting.dataset)
        parts.append(
            f"data_root {named} (data on disk; data file {setting.dataset}"
            + (f", content {content})" if content else ")")
        )
    for override in setting.overrides[: 1 if named is not None else 2]:
        name, _, value = override.removeprefix("--profile.").partition("=")
        record = simulation_record(Path(value))
        made = describe_simulation(record) if record else "no simulation record: data on disk"
        parts.append(f"{name} {value} ({made})")
    return "; ".join(parts)


def classes_note(table: str, dataset: Path) -> str | None:
    """Return the header line saying a table's classes are not the paper's, when they differ."""
    from cloudxfer.runner.data_checks import SHIPPED_DATA, read_dataset

    own = read_dataset(SHIPPED_DATA / f"{TABLE_SETTINGS[table][0]}.yaml")["init_args"]
    classes = read_dataset(dataset)["init_args"].get("classes") or []
    if list(classes) == list(own.get("classes") or []):
        return None
    return (
        f"the data file's {len(classes)} classes ({', '.join(map(str, classes))}), not the "
        "paper's: the published numbers are of another class scheme and data set"
    )


def execute_and_collect(
    runs: Sequence[PlannedRun],
    jobs: int,
    prog: str,
    keep_last: bool = False,
    reuse_stale: bool = False,
) -> list[TableRow] | None:
    """Execute the runs and read their table rows; on failure print one error line, None."""
    try:
        execute(runs, jobs=jobs, keep_last=keep_last, reuse_stale=reuse_stale)
        return collect([run.directory for run in runs if run.method.tested])
    except (RunnerError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return None


def convergence_section(runs: Sequence[PlannedRun], with_seed: bool = True) -> str:
    """Return the convergence criterion and one verdict line per fitted run.

    Each line gives the run's final train loss, epochs, lowest held-out epoch and verdict
    (from its ``training.json``), so a table says which of its runs prove nothing yet.
    """
    from cloudxfer.diagnostics import convergence  # torch: imported when a table is written

    lines = [f"Convergence ({convergence([])['criterion']}):"]
    for run in runs:
        path = run.directory / TRAINING_FILENAME
        record = read_record(path)
        summary = f"no training record ({path})" if record is None else convergence_summary(record)
        name = f"{run.method.name} seed {run.seed}" if with_seed else run.method.name
        lines.append(f"{name}: {summary}")
    return "\n".join(lines)


def _check_table_data(parser: argparse.ArgumentParser, args: argparse.Namespace, out: Path) -> None:
    """Refuse a table's target data file of another kind, or a source set of another role.

    The role of a folder ``--synth`` is about to simulate is the one it will write (the
    table's unless ``--source-role`` says otherwise); an existing folder's is read from its
    simulation record or class names.
    """
    from cloudxfer.prepare.source import source_role

    wanted_role = TABLE_SETTINGS[args.table][1]
    if args.source_role is not None and args.source_role != wanted_role:
        parser.error(
            f"{args.table} takes a source set of the {wanted_role} role (--source-role "
            f"{args.source_role} given)"
        )
    args.source_role = wanted_role
    dataset = dataset_path(args.dataset)
    if not dataset.exists():
        parser.error(f"{dataset}: not found")
    source = (args.source_root or out / "data" / "source").resolve()
    if source.exists():
        role = source_role(source)
    elif args.synth or args.print_commands:
        role = wanted_role  # --synth writes the table's role
    else:
        raise data_error(source, "source root not found")
    check_table(args.table, dataset, role, source)


def submit_jobs(runs: Sequence[PlannedRun], args: argparse.Namespace, out: Path) -> bool | None:
    """Submit the plan's pending runs as jobs; True once local jobs ended, None on SLURM."""
    from cloudxfer.runner.cluster import ClusterOptions, submit

    options = ClusterOptions(
        kind="slurm" if args.executor == "slurm" else "local",
        folder=args.slurm_folder or out / "jobs",
        partition=args.slurm_partition,
        account=args.slurm_account,
        time_min=args.slurm_time,
        gpus=args.slurm_gpus,
        cpus=args.slurm_cpus,
    )
    jobs = submit(runs, options, keep_last=args.keep_last)
    if options.kind == "slurm":
        print(f"submitted {len(jobs)} jobs (logs under {options.folder}); when they are done, "
              "run the same command without --executor to write the table")  # fmt: skip
        return None
    for job in jobs.values():
        job.result()  # raises if a job failed
    return True


def print_commands(runs: Sequence[PlannedRun]) -> None:
    """Write every command in dependency order (fit, then test for scored runs)."""
    for run in runs:
        print(f"# {run.method.name} seed {run.seed} (id {run.run_id}; needs "
              f"{', '.join(u.method.name for u in run.upstream) or 'nothing'})")  # fmt: skip
        print(run.shell("fit"))
        if run.method.tested:
            print(run.shell("test"))


def main(argv: list[str] | None = None) -> int:
    """Plan, run and tabulate methods over seeds."""
    parser = argparse.ArgumentParser(prog="cloudxfer run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help=f"registry names (default: all): {', '.join(METHODS)}",
    )
    parser.add_argument(
        "--table",
        choices=sorted(TABLES),
        default=None,
        help="run every registered row of a paper table and write it in the paper's order",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    cluster = parser.add_argument_group("cluster (submitit; docs/cluster.md)")
    cluster.add_argument(
        "--executor",
        choices=("here", "slurm", "submitit-local"),
        default="here",
        help="here: run in this process (--jobs side by side); slurm: submit one job a run "
        "with afterok dependencies and stop (run the same command without --executor when they "
        "are done to write the table); submitit-local: submitit's local processes, then the table",
    )
    cluster.add_argument("--slurm-partition", default=None, help="SLURM partition")
    cluster.add_argument("--slurm-account", default=None, help="SLURM account")
    cluster.add_argument("--slurm-time", type=int, default=240, help="minutes per job")
    cluster.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job")
    cluster.add_argument("--slurm-cpus", type=int, default=None, help="CPUs per job")
    cluster.add_argument(
        "--slurm-folder", type=Path, default=None, help="job scripts and logs (OUT/jobs)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_setting_arguments(parser)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="extra CLI overrides for every run (--trainer.x=y) or one method's (--stage.sl.x=y)",
    )
    args, unknown = parser.parse_known_args(argv)
    layout = TABLES[args.table] if args.table else None
    out: Path = args.out.resolve()
    if args.table:
        _check_table_data(parser, args, out)
    if args.methods:
        methods = args.methods
    elif layout is not None:
        methods = [row.method for row in layout if row.method]
    else:
        methods = list(METHODS)
    unknown_methods = [m for m in methods if m not in METHODS]
    if unknown_methods:
        parser.error(f"unknown method(s) {', '.join(unknown_methods)}; known: {', '.join(METHODS)}")
    setting = setting_from(args, parser, out, [*args.overrides, *unknown])
    runs = plan(methods, args.seeds, setting)
    if args.print_commands:
        print_commands(runs)
        return 0
    check_data(runs)
    start = time.perf_counter()
    if args.executor != "here":
        try:
            if submit_jobs(runs, args, out) is None:
                return 0  # submitted to a scheduler: the table comes from a later invocation
        except Exception as err:  # noqa: BLE001 - a failed job (submitit raises its own types)
            print(f"cloudxfer run: error: {err}", file=sys.stderr)
            return 1
    rows = execute_and_collect(runs, args.jobs, "cloudxfer run", args.keep_last, args.reuse_stale)
    if rows is None:
        return 1
    table = format_markdown(rows) if layout is None else format_paper_table(rows, layout)
    command = " ".join(argv if argv is not None else sys.argv[1:])
    provenance = {
        "Command": f"cloudxfer run {command}",
        "Revision": git_revision(),
        "Profile": f"{setting.profile}; data set: {setting.dataset}",
        "Protocol": protocol_of(setting),
        "Data": data_description(setting),
        "Seeds": " ".join(map(str, args.seeds)),
    }
    note = classes_note(args.table, setting.dataset) if args.table else None
    if note:
        provenance["Classes"] = note
    stale = stale_runs(runs)
    if stale:
        provenance["Made by other code (kept: --reuse-stale)"] = ", ".join(
            f"{run.method.name} seed {run.seed}" for run in stale
        )
    write_csv(rows, out / "table.csv", layout, provenance)
    header = "\n".join(f"{key}: {value}" for key, value in provenance.items())
    from cloudxfer.reporting.compare import table_section  # the comparisons under the table
    from cloudxfer.reporting.tables import write_timing_csv

    tested = [run.directory for run in runs if run.method.tested]
    table = f"{table}\n\n{table_section(tested)}\n\n{convergence_section(runs)}"
    atomic_write_text(out / "table.md", f"{header}\n\n{table}\n")
    print("\n" + table)
    wall = time.perf_counter() - start
    write_timing_csv(out / "timing.csv", wall, len(runs), provenance)  # apart from the scores
    print(f"\nwrote {out / 'table.md'}, {out / 'table.csv'} and {out / 'timing.csv'}")
    print(f"Wall time: {wall:.0f} s")
    from cloudxfer.reporting.wandb_table import log_table_if_enabled  # with --wandb.enabled=true

    log_table_if_enabled([*args.overrides, *unknown], out / "table.csv", provenance, out.name)
    return 0
