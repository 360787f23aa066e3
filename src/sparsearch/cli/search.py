"""``sparsearch search``: run a search on this machine, with a progress bar, then print the
front (or the ``--json`` document scripts read)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from sparsearch.cli.common import (
    AccountingOption,
    ArtifactsOption,
    DbOption,
    EarlyStoppingOption,
    EpochsOption,
    FlashOption,
    InstructionsOption,
    MacsOption,
    OnOff,
    ParallelOption,
    RamMarginOption,
    RamOption,
    SeedOption,
    SpaceOption,
    StrategyName,
    StrategyOption,
    TargetName,
    TargetOption,
    TrialsOption,
    check_instructions,
    check_int,
    err,
    fail,
    given,
    masked,
    open_from,
    out,
    print_error,
    read_space,
    say,
    settings_from,
)
from sparsearch.errors import ConfigError, SparsearchError
from sparsearch.units import parse_size
from sparsearch.vocabulary import DEFAULT_STRATEGY, TFLM_RUNTIME_FLASH, target_of


def search(
    ctx: typer.Context,
    dataset: str = typer.Option(
        "digits", metavar="NAME", help="digits | fashion-mnist | idx:DIR | npz:FILE"
    ),
    flash: str = FlashOption,
    ram: str = RamOption,
    macs: str | None = MacsOption,
    max_instructions: int | None = InstructionsOption,
    ram_margin: str | None = RamMarginOption,
    trials: int = TrialsOption,
    parallel: int = ParallelOption,
    epochs: int = EpochsOption,
    seed: int = SeedOption,
    flash_accounting: str = AccountingOption,
    strategy: StrategyName | None = StrategyOption,
    target: TargetName = TargetOption,
    early_stopping: OnOff = EarlyStoppingOption,
    space: Path | None = SpaceOption,
    train_limit: int | None = typer.Option(
        None, metavar="N", help="Use a stratified training subset of N images"
    ),
    resume: str | None = typer.Option(
        None,
        metavar="JOB",
        help="Continue an interrupted job by id (refused while a live scheduler or another "
        "search holds it)",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout"),
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
) -> None:
    """Run an architecture + pruning search on this machine.

    A multi-objective search (accuracy, flash, RAM) over CNN architectures and pruning settings
    within the limits; a progress bar on stderr, then the Pareto front (or --json) on stdout."""
    from sparsearch.service.holder import JobHolder

    holder: Any = None
    try:
        check_int(train_limit, "--train-limit", low=1)
        check_instructions(max_instructions)
        settings = settings_from(db, artifacts)
        if resume is None:
            from sparsearch.datasets import load_dataset
            from sparsearch.jobconfig import JobConfig

            overrides = read_space(space, flash_accounting)[1] if space is not None else None
            cfg = JobConfig.create(
                dataset=dataset,
                flash_bytes=parse_size(flash, what="--flash"),
                ram_bytes=parse_size(ram, what="--ram"),
                macs=parse_size(macs, what="--macs") if macs else None,
                instructions=max_instructions,
                ram_margin_bytes=parse_size(ram_margin, what="--ram-margin") if ram_margin else 0,
                trials=trials,
                parallel=parallel,
                epochs=epochs,
                seed=seed,
                flash_accounting=flash_accounting,
                space=overrides,
                train_limit=train_limit,
                strategy=strategy or DEFAULT_STRATEGY,
                target=target,
                early_stopping=early_stopping == "on",
            )
            # Load (and so validate) the data before a job row exists: bad data creates nothing.
            data = load_dataset(cfg.dataset, seed=cfg.seed, train_limit=cfg.train_limit)
        else:
            if strategy is not None or space is not None:
                raise ConfigError(
                    "--strategy and --space set up a new search; a resumed job keeps its own",
                    f"drop them to resume job {resume}",
                )
            data = None
        storage = open_from(settings)
        if resume is not None and given(ctx, "max_instructions"):
            raise ConfigError(
                "--max-instructions sets up a new search; a resumed job keeps its limits",
                f"drop --max-instructions to resume job {resume}",
            )
        if resume is not None and given(ctx, "early_stopping"):
            raise ConfigError(
                "--early-stopping sets up a new search; a resumed job keeps its own",
                f"drop --early-stopping to resume job {resume}",
            )
        if resume is not None and given(ctx, "target"):
            kept = target_of(storage.get_job(resume).config)
            if target != kept:
                raise ConfigError(
                    f"--target {target} differs from job {resume}'s target {kept}; a resumed job "
                    "keeps its own",
                    f"drop --target to resume job {resume}",
                )
        # This process holds the job as a scheduler would (claim, heartbeats, cancel, takeover).
        holder = JobHolder(storage, settings)
        job = (
            holder.claim(resume)
            if resume
            else holder.create(dataset=cfg.dataset, config=cfg.to_dict())
        )
    except SparsearchError as e:
        if holder is not None:
            holder.close()
        fail(e)
    lim, bud = job.config["limits"], job.config["budget"]
    say(
        f"job {job.id}: {job.config['dataset']}, flash ≤ {lim['flash_bytes']} B, "
        f"RAM ≤ {lim['ram_bytes']} B{instructions_note(lim)}, {bud['trials']} trials "
        f"({bud['parallel']} parallel, {bud['epochs']} epochs), strategy {job.strategy}, "
        f"target {job.target}, database {masked(settings.database_url)}"
    )
    with holder:
        run_job(storage, job, settings, data=data, as_json=as_json, holder=holder)


def run_job(
    storage: Any, job: Any, settings: Any, *, data: Any, as_json: bool, holder: Any = None
) -> None:
    """Drive ``job`` to its end with a progress bar; exit 130 on Ctrl-C, 143 on SIGTERM (both
    leave the job ``interrupted``, the trials they cut short uncharged), 1 on a failed or
    cancelled job or one another process took over. ``holder`` (a ``JobHolder`` holding the
    job) answers the driver's ``should_stop``."""
    from sparsearch.cli.render import SearchProgress
    from sparsearch.search.driver import SearchDriver

    code = 0
    _signalled.clear()
    previous = {sig: signal.signal(sig, _on_stop_signal) for sig in STOP_SIGNALS}

    def should_stop() -> str | None:
        if _signalled:  # Ctrl-C or SIGTERM: the driver stops at its next poll (~1 s)
            return "interrupted"
        return holder.should_stop() if holder is not None else None

    def stopped_by_signal() -> None:
        nonlocal code
        terminated = _signalled.get("signum") == signal.SIGTERM
        stopped = "terminated (SIGTERM)" if terminated else "interrupted"
        say(f"{stopped}: resume with {_resume_command(job.id, settings)}")
        code = 143 if terminated else 130

    try:
        with SearchProgress(err, job.config["budget"]["trials"]) as bar:
            SearchDriver(
                storage,
                job.id,
                ray_address=settings.ray_address,
                ray_num_cpus=settings.ray_num_cpus,
                ray_object_store_mb=settings.ray_object_store_mb,
                on_progress=bar.update,
                data=data,
                should_stop=should_stop,
            ).run()
        if _signalled and storage.get_job(job.id).status == "interrupted":
            stopped_by_signal()
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the driver's loop began
        # The driver has left the job interrupted with its cut-short trials uncharged; this
        # only covers a stop before its loop began (and writes nothing if the job is not ours).
        _leave(holder, "interrupted", "interrupted", None, charged=False)
        _signalled.setdefault("signum", signal.SIGINT)
        stopped_by_signal()
    except SparsearchError as e:
        from sparsearch.errors import ClusterError

        if isinstance(e, ClusterError):
            _leave(holder, "interrupted", "interrupted", str(e), charged=True)
        else:
            _leave(holder, "failed", "job failed", str(e), charged=True)
        print_error(e.message, e.hint)
        code = 1
        if storage.get_job(job.id).status == "interrupted":  # e.g. the Ray cluster was away
            say(f"job {job.id} is interrupted; resume it with {_resume_command(job.id, settings)}")
    except BaseException as e:
        _leave(holder, "failed", "job failed", f"{type(e).__name__}: {e}", charged=True)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if holder is not None and holder.lost:
        now = storage.get_job(job.id)
        print_error(
            f"job {job.id} was taken over by {now.scheduler_id or 'another process'} while this "
            "search was not sending heartbeats; this search stopped and wrote nothing more",
            "follow it with `sparsearch status "
            f"{job.id} --watch --db {masked(settings.database_url)}`",
        )
        raise typer.Exit(1)
    doc = job_document(storage, job.id)
    if code == 0 and doc["status"] == "cancelled":
        say(f"job {job.id} was cancelled")
        code = 1
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    elif "finalized" in doc:
        print_finalized(doc, masked(settings.database_url))
    else:
        print_front(doc)
        if doc["pareto"]:
            # Under c the C project (the model as plain C, a Cortex-M4 demo) is what ships.
            pull = (
                "--format c_project -o model.zip" if doc.get("target") == "c" else "-o model.tflite"
            )
            say(
                f"take the most accurate to firmware: sparsearch pull {job.id} {pull} "
                f"--db {masked(settings.database_url)}"
            )
    raise typer.Exit(code)


def print_finalized(doc: dict[str, Any], db: str) -> None:
    """A finalize job's outcome: per source trial, its final status and measured numbers."""
    from sparsearch.cli.render import final_table

    out.print(final_table(doc["finalized"], title=f"Final models of job {doc['finalizes']}"))
    out.print(
        f"pull one with `sparsearch pull {doc['finalizes']} --trial N -o model.tflite --db {db}` "
        "(the final model is the default)"
    )


def _leave(
    holder: Any, status: str, trial_reason: str, error: str | None, *, charged: bool
) -> None:
    if holder is not None:
        holder.leave(status, trial_reason, error, charged=charged)


#: The signals that stop a running search gracefully: Ctrl-C (exit 130) and SIGTERM (143).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Which stop signal arrived during ``run_job`` (``{"signum": n}``; empty: none).
_signalled: dict[str, int] = {}


def _on_stop_signal(signum: int, frame: Any) -> None:
    """The first Ctrl-C or SIGTERM asks the driver to stop (it polls ``should_stop``): the
    job ends ``interrupted``, its in-flight trials failed "interrupted" and uncharged. The
    handler raises nothing then: an exception raised in a signal handler is lost when the
    signal lands inside a gc callback (jax, which BoTorch imports when it is installed,
    registers one). A second Ctrl-C raises KeyboardInterrupt (stop now); a second SIGTERM
    is ignored."""
    if not _signalled:
        _signalled["signum"] = signum
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt


def _resume_command(job_id: str, settings: Any) -> str:
    return f"`sparsearch search --resume {job_id} --db {masked(settings.database_url)}`"


def job_document(storage: Any, job_id: str) -> dict[str, Any]:
    """The --json document: job, limits, hypervolume, every trial, the front."""
    job = storage.get_job(job_id)
    trials = [t.to_json() for t in storage.list_trials(job_id)]
    return {
        "job_id": job.id,
        "status": job.status,
        "error": job.error,
        "dataset": job.config["dataset"],
        "limits": limits_document(job.config["limits"]),
        "budget": job.config["budget"],
        "flash_accounting": job.config.get("flash_accounting", "dense"),
        "strategy": job.strategy,
        "target": job.target,
        "screened": job.screened,
        "hypervolume": job.hypervolume,
        "best_accuracy": job.best_accuracy,
        "trials": trials,
        "pareto": [t for t in trials if t["pareto"]],
        **_finalized(storage, job.config),
    }


def limits_document(limits: dict[str, Any]) -> dict[str, Any]:
    """A job's stored limits as documents show them: ``instructions`` always there (null:
    none; jobs stored before it existed have none)."""
    return {**limits, "instructions": limits.get("instructions")}


def instructions_note(limits: dict[str, Any]) -> str:
    """What a summary line adds after flash and RAM for an instructions limit, e.g.
    ``", ≤ 2,000,000 instructions"`` ("" when the job has none)."""
    n = limits.get("instructions")
    return f", ≤ {n:,} instructions" if n else ""


def _finalized(storage: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A finalize job's document also lists the source trials' final trainings."""
    plan = config.get("finalize")
    if not plan:
        return {}
    finals = [
        {"index": i, "final": storage.get_trial(plan["job_id"], i).final} for i in plan["trials"]
    ]
    return {"finalizes": plan["job_id"], "finalized": finals}


def print_front(doc: dict[str, Any]) -> None:
    """Print a front table; ``doc`` needs job_id (or id), status, hypervolume, pareto, and may
    say flash_accounting (default dense: a sparse job's table shows the non-zero flash) and
    target (what the flash and RAM are, said under the table; without one, TFLM's)."""
    from sparsearch.cli.render import front_table

    hv = doc["hypervolume"]
    title = (
        f"Pareto front of job {doc.get('job_id') or doc['id']} ({doc['status']}, "
        f"hypervolume {0.0 if hv is None else hv:.3f})"
    )

    def score(t: dict[str, Any]) -> float:
        return t["accuracy"] if t.get("int8_accuracy") is None else t["int8_accuracy"]

    front = sorted(doc["pareto"], key=lambda t: -score(t))
    accounting = doc.get("flash_accounting") or "dense"
    out.print(front_table(front, title=title, flash_accounting=accounting))
    if not front:
        out.print("no feasible completed trial yet")
        return
    if (doc.get("target") or target_of({})) == "c":
        out.print(
            "accuracy: int8 (the C model, bit-exact with TFLite Micro); flash: what the C model "
            "adds to a Cortex-M4 firmware image; RAM: its static RAM + peak stack (~ marks "
            "estimates)"
        )
        return
    out.print(
        "accuracy: int8 on TFLite Micro; flash: the stripped .tflite; RAM: the TFLM arena "
        "(~ marks estimates); " + TFLM_RUNTIME_FLASH.summary()
    )
